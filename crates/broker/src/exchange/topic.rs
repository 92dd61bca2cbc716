//! Topic matching: a trie over the dot-separated words of the binding patterns.
//!
//! Semantics are RabbitMQ's: a routing key is split on `.` (the empty key has zero words, `a..b`
//! has an empty middle word); `*` matches exactly one word and `#` matches zero or more.
//!
//! The trie is updated in place: inserting or removing a pattern walks its words only, so a
//! SUBSCRIBE next to 100,000 bindings costs what it costs next to ten. Matching walks the key
//! without splitting it into a vector, so it does not allocate (unless patterns have a `#` after
//! another one, see below).
//!
//! Matching is polynomial in the key and the trie, whatever the patterns: any authenticated user
//! can bind a pattern, and matching runs under the exchange's read lock. Consecutive `#` words
//! are stored as one (`#.#` matches what `#` matches), and a `#` node below another `#` (as in
//! `#.a.#` or `#.*.#.*`), which can be reached at many positions of the key by many paths, is
//! entered at each position once per match: at most (trie nodes) x (key words + 1) steps.

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
    /// Never has a `hash` of its own: consecutive `#` are stored as one.
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

/// The words of a binding pattern as the trie stores it: a `#` right after a `#` is dropped
/// (`#.#.#` matches exactly what `#` matches, as in RabbitMQ). Insert and remove both use it,
/// so unbinding `a.#.#` finds what binding it stored.
fn pattern_words(pattern: &str) -> impl Iterator<Item = &str> {
    let mut after_hash = false;
    words(pattern).filter(move |w| {
        let hash = *w == "#";
        let keep = !(hash && after_hash);
        after_hash = hash;
        keep
    })
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

/// How many `#` nodes one match remembers without allocating.
const INLINE_ENTERED: usize = 8;

/// The state of one match: the `#` nodes below another `#` that it entered, each with the
/// lowest key position it was entered at. A `#` node is only ever entered at every position
/// from some point of the key to its end (its parent tries every split), so what it was entered
/// at is `lowest..=end`, and one number per node says it.
struct Matching {
    key_len: usize,
    inline: [(usize, usize); INLINE_ENTERED],
    inline_len: usize,
    /// Past [`INLINE_ENTERED`] nodes (created only then).
    spill: Option<HashMap<usize, usize>>,
}

impl Matching {
    fn new(key: &str) -> Matching {
        Matching {
            key_len: key.len(),
            inline: [(0, 0); INLINE_ENTERED],
            inline_len: 0,
            spill: None,
        }
    }

    /// Where `rest` starts in the key: positions grow as words are consumed, and no words left
    /// is past the end.
    fn position(&self, rest: Rest<'_>) -> usize {
        match rest {
            Some(r) => self.key_len - r.len(),
            None => self.key_len + 1,
        }
    }

    /// Records that the `#` node `node` is entered at every position from `from` on, and
    /// returns the position from which it already was (so only those before it are left to
    /// enter); `usize::MAX` when it was not entered yet.
    fn enter<T>(&mut self, node: &Node<T>, from: usize) -> usize {
        let id = node as *const Node<T> as usize;
        let lowest = match self.inline[..self.inline_len]
            .iter_mut()
            .find(|(n, _)| *n == id)
        {
            Some((_, lowest)) => lowest,
            None if self.inline_len < INLINE_ENTERED => {
                self.inline[self.inline_len] = (id, usize::MAX);
                self.inline_len += 1;
                &mut self.inline[self.inline_len - 1].1
            }
            None => self
                .spill
                .get_or_insert_with(HashMap::new)
                .entry(id)
                .or_insert(usize::MAX),
        };
        let before = *lowest;
        *lowest = before.min(from);
        before
    }
}

/// Test-only accounting of matching steps (calls of `Node::collect`), with a budget that fails
/// the test at once instead of letting an exponential match run for hours.
#[cfg(test)]
mod steps {
    use std::cell::Cell;

    thread_local! {
        static STEPS: Cell<u64> = const { Cell::new(0) };
        static BUDGET: Cell<u64> = const { Cell::new(u64::MAX) };
    }

    pub fn step() {
        let n = STEPS.with(|s| {
            s.set(s.get() + 1);
            s.get()
        });
        let budget = BUDGET.with(Cell::get);
        assert!(n <= budget, "topic match took more than {budget} steps");
    }

    /// Starts counting from zero, failing past `budget` steps.
    pub fn start(budget: u64) {
        STEPS.with(|s| s.set(0));
        BUDGET.with(|b| b.set(budget));
    }

    pub fn taken() -> u64 {
        STEPS.with(Cell::get)
    }
}

impl<T> TopicTrie<T> {
    /// Adds `pattern` with `value`.
    pub fn insert(&mut self, pattern: &str, value: T) {
        let mut node = &mut self.root;
        for word in pattern_words(pattern) {
            node = match word {
                "*" => node.star.get_or_insert_with(Box::default),
                "#" => node.hash.get_or_insert_with(Box::default),
                w => node.words.entry(w.into()).or_default(),
            };
        }
        node.values.push(value);
    }

    /// Removes the first value of `pattern` for which `which` is true, and the nodes left empty.
    /// Returns whether one was found. Patterns are compared normalised: `a.#.#` finds a value
    /// inserted with `a.#` (the exchange tells bindings apart by id in `which`).
    pub fn remove(&mut self, pattern: &str, mut which: impl FnMut(&T) -> bool) -> bool {
        self.root.remove(&mut pattern_words(pattern), &mut which)
    }

    /// Whether no pattern is stored.
    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// Calls `each` with the value of every pattern that matches `key`, once per pattern
    /// stored (patterns equal once normalised, e.g. `a.#` and `a.#.#`, are one pattern stored
    /// twice). Does not allocate, unless the patterns reached have more than a few `#` nodes
    /// below other `#` nodes.
    pub fn for_each_match(&self, key: &str, mut each: impl FnMut(&T)) {
        let mut matching = Matching::new(key);
        self.root.collect(
            (!key.is_empty()).then_some(key),
            false,
            &mut matching,
            &mut each,
        );
    }

    /// Appends the values whose pattern matches `key` to `out`.
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

    /// Matches the rest of the key, `key`, against this node's subtree. `below_hash`: this node
    /// is below a `#` node, so it may be reached at several positions of the key (else it is
    /// reached once, at the position of its depth, and needs no bookkeeping).
    fn collect(
        &self,
        key: Rest<'_>,
        below_hash: bool,
        matching: &mut Matching,
        each: &mut impl FnMut(&T),
    ) {
        #[cfg(test)]
        steps::step();
        if let Some(hash) = &self.hash {
            // `#` swallows zero or more words: try every split point, except those from which
            // the `#` node was already entered in this match (below another `#`, it can be
            // reached again from other positions; what it matches from there is known).
            let until = if below_hash {
                let from = matching.position(key);
                matching.enter(hash, from)
            } else {
                usize::MAX
            };
            let mut rest = key;
            while matching.position(rest) < until {
                hash.collect(rest, true, matching, each);
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
            child.collect(rest, below_hash, matching, each);
        }
        if let Some(star) = &self.star {
            star.collect(rest, below_hash, matching, each);
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

    #[test]
    fn consecutive_hashes_are_one_and_unbind_finds_them() {
        let mut trie = TopicTrie::default();
        trie.insert("#.#.#", 1);
        trie.insert("a.#.#.b", 2);
        trie.insert("#", 3);
        // One `#` node under the root, holding both 1 and 3.
        assert!(trie.root.hash.as_ref().is_some_and(|h| h.hash.is_none()));
        let all = |trie: &TopicTrie<i32>, key: &str| {
            let mut out = Vec::new();
            trie.matches(key, &mut out);
            out.sort_unstable();
            out
        };
        assert_eq!(all(&trie, ""), [1, 3]);
        assert_eq!(all(&trie, "a.b"), [1, 2, 3]);
        assert_eq!(all(&trie, "a.x.y.b"), [1, 2, 3]);
        assert!(
            trie.remove("#.#.#", |&v| v == 1),
            "unbind with the pattern as bound"
        );
        assert!(trie.remove("a.#.#.b", |&v| v == 2));
        assert_eq!(all(&trie, "a.b"), [3]);
        assert!(trie.remove("#", |&v| v == 3));
        assert!(trie.is_empty(), "empty nodes are pruned: {trie:?}");
    }

    /// Matches `key` against `patterns` (values: their indexes), failing past `budget` steps.
    fn match_within(patterns: &[String], key: &str, budget: u64) -> (Vec<usize>, u64) {
        let mut trie = TopicTrie::default();
        for (i, p) in patterns.iter().enumerate() {
            trie.insert(p, i);
        }
        steps::start(budget);
        let mut out = Vec::new();
        trie.matches(key, &mut out);
        let taken = steps::taken();
        steps::start(u64::MAX);
        out.sort_unstable();
        (out, taken)
    }

    /// Patterns an authenticated user may bind to make matching exponential: each is matched
    /// against a 100-word key within (trie nodes) x (key words + 1) steps (each node entered at
    /// most once per position). Trying every split, `#` x 50 against 100 words took a step for
    /// each way of sharing 100 words among 50 `#` (about 10^40); the budget fails it at once.
    #[test]
    fn pathological_patterns_match_in_polynomial_steps() {
        let key_words = vec!["a"; 100];
        let key = key_words.join(".");
        let repeat = |w: &str, n: usize| vec![w; n].join(".");
        let hashes = repeat("#", 50);
        let hash_star = repeat("#.*", 25);
        let hash_a_then_b = format!("{}.b", repeat("#.a", 50));
        let hash_a = repeat("#.a", 50);
        let star_hash_101 = format!("{}.#", repeat("#.*", 101));
        let cases = [
            (hashes, true),
            (hash_star, true),
            (hash_a_then_b, false),
            (hash_a, true),
            (star_hash_101, false),
        ];
        for (pattern, expected) in cases {
            let nodes = pattern_words(&pattern).count() as u64 + 1;
            let budget = nodes * (key_words.len() as u64 + 1);
            let (got, taken) = match_within(std::slice::from_ref(&pattern), &key, budget);
            assert_eq!(got.is_empty(), !expected, "{pattern}");
            assert!(taken <= budget, "{taken} steps");
        }
        // All of them in one trie, next to each other.
        let patterns: Vec<String> = (1..=20)
            .map(|i| repeat("#.a", i))
            .chain((1..=20).map(|i| format!("{}.#", repeat("*.#", i))))
            .collect();
        let nodes: u64 = patterns
            .iter()
            .map(|p| pattern_words(p).count() as u64)
            .sum::<u64>()
            + 1;
        let budget = nodes * (key_words.len() as u64 + 1);
        let (got, _) = match_within(&patterns, &key, budget);
        assert_eq!(got, (0..40).collect::<Vec<_>>());
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

    fn long_pattern() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(vec!["a", "b", "", "*", "#"]), 0..9)
            .prop_map(|w| w.join("."))
    }

    fn long_key() -> impl proptest::strategy::Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(vec!["a", "b", ""]), 0..12)
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
                    // Patterns are equal once normalised (`#.#` is `#`).
                    let norm = |p: &str| pattern_words(p).collect::<Vec<_>>().join(".");
                    let at = reference
                        .iter()
                        .position(|(p, v)| norm(p) == norm(&pattern) && *v == value);
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

        /// Longer patterns, with `#` after `#`, `*` and words: every matching pattern is
        /// reported once, and only those.
        #[test]
        fn matches_are_the_definitions_and_reported_once(
            patterns in proptest::collection::vec(long_pattern(), 0..12),
            keys in proptest::collection::vec(long_key(), 1..10),
        ) {
            let mut trie = TopicTrie::default();
            for (i, p) in patterns.iter().enumerate() {
                trie.insert(p, i);
            }
            for key in &keys {
                let mut got = Vec::new();
                trie.matches(key, &mut got);
                got.sort_unstable();
                let key_words: Vec<&str> = words(key).collect();
                let want: Vec<usize> = patterns
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| naive(&words(p).collect::<Vec<_>>(), &key_words))
                    .map(|(i, _)| i)
                    .collect();
                prop_assert_eq!(got, want, "key {:?}", key);
            }
        }
    }
}
