//! Topic matching: a trie over the dot-separated words of the binding patterns.
//!
//! Semantics are RabbitMQ's: a routing key is split on `.` (the empty key has zero words, `a..b`
//! has an empty middle word); `*` matches exactly one word and `#` matches zero or more.
//!
//! The trie is updated in place: inserting or removing a pattern walks its words only, so a
//! SUBSCRIBE next to 100,000 bindings costs what it costs next to ten. Matching walks the key
//! without splitting it into a vector, so it does not allocate.

use std::collections::HashMap;

/// Binding patterns of one topic exchange, each carrying a value (the exchange stores its
/// binding's id and destination there).
#[derive(Debug)]
pub struct TopicTrie<T = usize> {
    root: Node<T>,
}

impl<T> Default for TopicTrie<T> {
    fn default() -> Self {
        TopicTrie {
            root: Node::default(),
        }
    }
}

#[derive(Debug)]
struct Node<T> {
    words: HashMap<Box<str>, Node<T>>,
    star: Option<Box<Node<T>>>,
    hash: Option<Box<Node<T>>>,
    values: Vec<T>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            words: HashMap::new(),
            star: None,
            hash: None,
            values: Vec::new(),
        }
    }
}

/// Splits a key or pattern into words; the empty string has none.
fn words(s: &str) -> impl Iterator<Item = &str> {
    let mut it = (!s.is_empty()).then(|| s.split('.'));
    std::iter::from_fn(move || it.as_mut().and_then(Iterator::next))
}

/// The words of a key still to match: `None` when there are none left, else the rest of the
/// key (at least one word, possibly empty).
type Rest<'a> = Option<&'a str>;

/// The next word and what follows it.
fn next_word(rest: Rest<'_>) -> Option<(&str, Rest<'_>)> {
    let key = rest?;
    Some(match key.split_once('.') {
        Some((word, tail)) => (word, Some(tail)),
        None => (key, None),
    })
}

impl<T> TopicTrie<T> {
    /// Adds `pattern` with `value`.
    pub fn insert(&mut self, pattern: &str, value: T) {
        let mut node = &mut self.root;
        for word in words(pattern) {
            node = match word {
                "*" => node.star.get_or_insert_with(Box::default),
                "#" => node.hash.get_or_insert_with(Box::default),
                w => node.words.entry(w.into()).or_default(),
            };
        }
        node.values.push(value);
    }

    /// Removes the first value of `pattern` for which `which` is true, and the nodes left empty.
    /// Returns whether one was found.
    pub fn remove(&mut self, pattern: &str, mut which: impl FnMut(&T) -> bool) -> bool {
        self.root.remove(&mut words(pattern), &mut which)
    }

    /// Whether no pattern is stored.
    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// Calls `each` with the value of every pattern that matches `key` (a value can come more
    /// than once, e.g. for `#.#`). Does not allocate.
    pub fn for_each_match(&self, key: &str, mut each: impl FnMut(&T)) {
        self.root
            .collect((!key.is_empty()).then_some(key), &mut each);
    }

    /// Appends the values whose pattern matches `key` to `out` (possibly repeated).
    pub fn matches(&self, key: &str, out: &mut Vec<T>)
    where
        T: Clone,
    {
        self.for_each_match(key, |v| out.push(v.clone()));
    }
}

impl<T> Node<T> {
    fn is_empty(&self) -> bool {
        self.values.is_empty()
            && self.words.is_empty()
            && self.star.is_none()
            && self.hash.is_none()
    }

    fn collect(&self, key: Rest<'_>, each: &mut impl FnMut(&T)) {
        if let Some(hash) = &self.hash {
            // `#` swallows zero or more words: try every split point.
            let mut rest = key;
            loop {
                hash.collect(rest, each);
                match next_word(rest) {
                    Some((_, tail)) => rest = tail,
                    None => break,
                }
            }
        }
        let Some((first, rest)) = next_word(key) else {
            self.values.iter().for_each(each);
            return;
        };
        if let Some(child) = self.words.get(first) {
            child.collect(rest, each);
        }
        if let Some(star) = &self.star {
            star.collect(rest, each);
        }
    }

    fn remove<'a>(
        &mut self,
        words: &mut impl Iterator<Item = &'a str>,
        which: &mut impl FnMut(&T) -> bool,
    ) -> bool {
        match words.next() {
            None => match self.values.iter().position(&mut *which) {
                Some(i) => {
                    self.values.remove(i);
                    true
                }
                None => false,
            },
            Some(w @ ("*" | "#")) => {
                let slot = if w == "*" {
                    &mut self.star
                } else {
                    &mut self.hash
                };
                let Some(child) = slot else {
                    return false;
                };
                let removed = child.remove(words, which);
                if child.is_empty() {
                    *slot = None;
                }
                removed
            }
            Some(w) => {
                let Some(child) = self.words.get_mut(w) else {
                    return false;
                };
                let removed = child.remove(words, which);
                if child.is_empty() {
                    self.words.remove(w);
                }
                removed
            }
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

    #[test]
    fn removal_is_exact_and_prunes() {
        let mut trie = TopicTrie::default();
        trie.insert("a.*.c", 1);
        trie.insert("a.*.c", 2);
        trie.insert("a.#", 3);
        trie.insert("", 4);
        let all = |trie: &TopicTrie<i32>, key: &str| {
            let mut out = Vec::new();
            trie.matches(key, &mut out);
            out.sort_unstable();
            out
        };
        assert_eq!(all(&trie, "a.b.c"), [1, 2, 3]);
        assert!(!trie.remove("a.*.c", |&v| v == 3), "3 is not under a.*.c");
        assert!(!trie.remove("a.*.d", |_| true));
        assert!(trie.remove("a.*.c", |&v| v == 1));
        assert_eq!(all(&trie, "a.b.c"), [2, 3]);
        assert!(trie.remove("a.*.c", |&v| v == 2));
        assert!(trie.remove("a.#", |&v| v == 3));
        assert_eq!(all(&trie, "a.b.c"), Vec::<i32>::new());
        assert_eq!(all(&trie, ""), [4]);
        assert!(trie.remove("", |&v| v == 4));
        assert!(trie.is_empty(), "empty nodes are pruned: {trie:?}");
    }

    /// The definition, word by word.
    fn naive(pattern: &[&str], key: &[&str]) -> bool {
        match pattern.split_first() {
            None => key.is_empty(),
            Some((&"#", rest)) => (0..=key.len()).any(|i| naive(rest, &key[i..])),
            Some((&"*", rest)) => !key.is_empty() && naive(rest, &key[1..]),
            Some((w, rest)) => key.first() == Some(w) && naive(rest, &key[1..]),
        }
    }

    fn text() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(vec!["a", "b", "", "*", "#"]), 0..4)
            .prop_map(|w| w.join("."))
    }

    use proptest::prelude::*;

    proptest! {
        /// Inserting and removing in place leaves the trie matching exactly what a trie built
        /// from the remaining patterns would.
        #[test]
        fn in_place_updates_match_the_definition(
            ops in proptest::collection::vec((any::<bool>(), text(), 0u8..4), 0..40),
            keys in proptest::collection::vec(text(), 1..10),
        ) {
            let mut trie = TopicTrie::default();
            let mut reference: Vec<(String, u8)> = Vec::new();
            for (insert, pattern, value) in ops {
                if insert {
                    trie.insert(&pattern, value);
                    reference.push((pattern, value));
                } else {
                    let at = reference.iter().position(|(p, v)| *p == pattern && *v == value);
                    prop_assert_eq!(trie.remove(&pattern, |&v| v == value), at.is_some());
                    if let Some(i) = at {
                        reference.remove(i);
                    }
                }
            }
            for key in keys.iter().filter(|k| !k.contains(['*', '#'])) {
                let mut got = Vec::new();
                trie.matches(key, &mut got);
                got.sort_unstable();
                got.dedup();
                let key_words: Vec<&str> = words(key).collect();
                let mut want: Vec<u8> = reference
                    .iter()
                    .filter(|(p, _)| naive(&words(p).collect::<Vec<_>>(), &key_words))
                    .map(|(_, v)| *v)
                    .collect();
                want.sort_unstable();
                want.dedup();
                prop_assert_eq!(got, want, "key {:?}", key);
            }
            if reference.is_empty() {
                prop_assert!(trie.is_empty());
            }
        }
    }
}
