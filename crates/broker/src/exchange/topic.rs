//! Topic matching: a trie over the dot-separated words of the binding patterns.
//!
//! Semantics are RabbitMQ's: a routing key is split on `.` (the empty key has zero words, `a..b`
//! has an empty middle word); `*` matches exactly one word and `#` matches zero or more.

use std::collections::HashMap;

/// Binding patterns of one topic exchange, each tagged with the index of its binding.
#[derive(Debug, Default)]
pub struct TopicTrie {
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    words: HashMap<Box<str>, Node>,
    star: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    bindings: Vec<usize>,
}

/// Splits a key or pattern into words; the empty string has none.
fn words(s: &str) -> impl Iterator<Item = &str> {
    let mut it = (!s.is_empty()).then(|| s.split('.'));
    std::iter::from_fn(move || it.as_mut().and_then(Iterator::next))
}

impl TopicTrie {
    /// Adds `pattern` for binding number `binding`.
    pub fn insert(&mut self, pattern: &str, binding: usize) {
        let mut node = &mut self.root;
        for word in words(pattern) {
            node = match word {
                "*" => node.star.get_or_insert_with(Box::default),
                "#" => node.hash.get_or_insert_with(Box::default),
                w => node.words.entry(w.into()).or_default(),
            };
        }
        node.bindings.push(binding);
    }

    /// Appends the binding numbers whose pattern matches `key` to `out` (possibly repeated).
    pub fn matches(&self, key: &str, out: &mut Vec<usize>) {
        let key_words: Vec<&str> = words(key).collect();
        self.root.collect(&key_words, out);
    }
}

impl Node {
    fn collect(&self, key: &[&str], out: &mut Vec<usize>) {
        if let Some(hash) = &self.hash {
            // `#` swallows zero or more words: try every split point.
            for skip in 0..=key.len() {
                hash.collect(&key[skip..], out);
            }
        }
        let Some((first, rest)) = key.split_first() else {
            out.extend_from_slice(&self.bindings);
            return;
        };
        if let Some(child) = self.words.get(*first) {
            child.collect(rest, out);
        }
        if let Some(star) = &self.star {
            star.collect(rest, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, key: &str) -> bool {
        let mut trie = TopicTrie::default();
        trie.insert(pattern, 7);
        let mut out = Vec::new();
        trie.matches(key, &mut out);
        out.contains(&7)
    }

    #[test]
    fn rabbitmq_topic_semantics() {
        let cases = [
            ("a.b.c", "a.b.c", true),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.c", false),
            ("a.#", "a", true),
            ("a.#", "a.b.c", true),
            ("#", "", true),
            ("#", "a.b", true),
            ("*", "", false),
            ("*", "a", true),
            ("*.*", "a", false),
            ("a.#.b", "a.b", true),
            ("a.#.b", "a.x.y.b", true),
            ("a.#.b", "a.x.y.c", false),
            ("#.#", "a", true),
            ("#.b", "b", true),
            ("a..b", "a..b", true),
            ("a.*.b", "a..b", true),
            ("", "", true),
            ("", "a", false),
            ("*.error", "app.error", true),
            ("*.error", "app.x.error", false),
            ("log.#", "log", true),
        ];
        for (pattern, key, expected) in cases {
            assert_eq!(matches(pattern, key), expected, "{pattern} vs {key}");
        }
    }
}
