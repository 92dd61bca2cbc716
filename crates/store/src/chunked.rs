//! A double-ended queue kept in fixed-size chunks, for lists that reach millions of entries
//! (a queue's ready list, a log's live index).
//!
//! A `VecDeque` grows by doubling: the push that fills a list of 8 million entries allocates
//! a buffer for 16 million, copies everything into it (making all its pages resident at once)
//! and only then frees the old one. For a list that holds a tenth of the process's memory that
//! is a step of a fifth of it, in one push, which a memory alarm checked every few megabytes
//! cannot see coming. [`Chunked`] allocates [`CHUNK`] entries at a time instead, so the
//! process grows (and shrinks, as the list drains) by one chunk at a time, and a list costs at
//! most one partly filled chunk at each end beyond its entries (plus 32 bytes per chunk in
//! the outer deque, which itself doubles, but is 1/`CHUNK` the size). A list that never
//! passes one chunk costs what a `VecDeque` costs: its only chunk grows by doubling.
//!
//! Layout: every chunk but the first and the last holds exactly [`CHUNK`] entries, so entry
//! `i` is found in constant time; the first may hold fewer (entries are popped from its
//! front) and so may the last (entries are pushed to its back). An insertion in the middle
//! (a requeued message going back to its place) carries one entry per chunk over to the
//! nearer end, where the partial chunk absorbs it.

use std::collections::VecDeque;

/// Entries per chunk: 4096 (64 KiB of 16-byte entries, 160 KiB of 40-byte ones).
#[cfg(not(test))]
pub const CHUNK: usize = 4096;
/// Small in this crate's tests, so that they exercise many chunks.
#[cfg(test)]
pub const CHUNK: usize = 16;
/// An emptied only chunk of at most this many entries is kept for the next push.
const KEEP: usize = 64;

/// A deque of `T` stored in chunks of [`CHUNK`] entries.
#[derive(Debug, Clone)]
pub struct Chunked<T> {
    chunks: VecDeque<VecDeque<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: VecDeque::new(),
            len: 0,
        }
    }
}

/// A new chunk. A list's only chunk grows by doubling up to [`CHUNK`] entries (a short list,
/// such as each of 10,000 MQTT session queues holding a few messages, must not pay for a whole
/// chunk); any further one is allocated whole.
fn chunk<T>(chunks: &VecDeque<VecDeque<T>>) -> VecDeque<T> {
    if chunks.is_empty() {
        VecDeque::new()
    } else {
        VecDeque::with_capacity(CHUNK)
    }
}

impl<T> Chunked<T> {
    /// An empty deque (allocates nothing).
    pub fn new() -> Self {
        Chunked::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Entries it can hold without allocating (what it costs in memory, in entries).
    pub fn capacity(&self) -> usize {
        self.chunks.iter().map(VecDeque::capacity).sum()
    }

    /// Where entry `i` is: (chunk, position in the chunk).
    fn locate(&self, i: usize) -> Option<(usize, usize)> {
        if i >= self.len {
            return None;
        }
        let first = self.chunks.front().map_or(0, VecDeque::len);
        if i < first {
            return Some((0, i));
        }
        let j = i - first;
        Some((1 + j / CHUNK, j % CHUNK))
    }

    /// Entry `i` (0 is the front).
    pub fn get(&self, i: usize) -> Option<&T> {
        let (c, k) = self.locate(i)?;
        self.chunks.get(c)?.get(k)
    }

    /// Entry `i`, mutably.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        let (c, k) = self.locate(i)?;
        self.chunks.get_mut(c)?.get_mut(k)
    }

    /// The first entry.
    pub fn front(&self) -> Option<&T> {
        self.chunks.front()?.front()
    }

    /// The last entry.
    pub fn back(&self) -> Option<&T> {
        self.chunks.back()?.back()
    }

    /// Appends an entry at the back.
    pub fn push_back(&mut self, value: T) {
        // A single chunk may be short at its front (popped) and is the last one too: a new
        // chunk starts only once the last one is full, so every middle chunk stays full.
        match self.chunks.back_mut() {
            Some(last) if last.len() < CHUNK => last.push_back(value),
            _ => {
                let mut c = chunk(&self.chunks);
                c.push_back(value);
                self.chunks.push_back(c);
            }
        }
        self.len += 1;
    }

    /// Puts an entry at the front.
    pub fn push_front(&mut self, value: T) {
        match self.chunks.front_mut() {
            Some(first) if first.len() < CHUNK => first.push_front(value),
            _ => {
                let mut c = chunk(&self.chunks);
                c.push_front(value);
                self.chunks.push_front(c);
            }
        }
        self.len += 1;
    }

    /// Frees chunk `c` if it is empty, unless it is a small only chunk: a queue that keeps
    /// going from one message to none would otherwise allocate and free a chunk per message.
    fn emptied(&mut self, c: usize) {
        if self
            .chunks
            .get(c)
            .is_some_and(|ch| ch.is_empty() && (self.chunks.len() > 1 || ch.capacity() > KEEP))
        {
            self.chunks.remove(c);
        }
    }

    /// Takes the first entry out.
    pub fn pop_front(&mut self) -> Option<T> {
        let value = self.chunks.front_mut()?.pop_front()?;
        self.emptied(0);
        self.len -= 1;
        Some(value)
    }

    /// Takes the last entry out.
    pub fn pop_back(&mut self) -> Option<T> {
        let value = self.chunks.back_mut()?.pop_back()?;
        self.emptied(self.chunks.len() - 1);
        self.len -= 1;
        Some(value)
    }

    /// Inserts an entry at position `i` (at most `len`), shifting later entries back.
    pub fn insert(&mut self, i: usize, value: T) {
        if i == 0 {
            return self.push_front(value);
        }
        if i >= self.len {
            return self.push_back(value);
        }
        let Some((c, k)) = self.locate(i) else {
            return self.push_back(value);
        };
        let last = self.chunks.len() - 1;
        self.chunks[c].insert(k, value);
        self.len += 1;
        if c == 0 || c == last {
            // An end chunk may hold more than CHUNK for a moment: split it.
            if self.chunks[c].len() > CHUNK {
                if c == 0 {
                    let carry = self.chunks[0].pop_front();
                    let mut front = chunk(&self.chunks);
                    front.extend(carry);
                    self.chunks.push_front(front);
                } else {
                    let carry = self.chunks[c].pop_back();
                    let mut back = chunk(&self.chunks);
                    back.extend(carry);
                    self.chunks.push_back(back);
                }
            }
            return;
        }
        // A middle chunk must stay exactly full: carry one entry to the nearer end.
        if c <= last / 2 {
            for j in (1..=c).rev() {
                if let Some(v) = self.chunks[j].pop_front() {
                    self.chunks[j - 1].push_back(v);
                }
            }
            if self.chunks[0].len() > CHUNK {
                let carry = self.chunks[0].pop_front();
                let mut front = chunk(&self.chunks);
                front.extend(carry);
                self.chunks.push_front(front);
            }
        } else {
            for j in c..last {
                if let Some(v) = self.chunks[j].pop_back() {
                    self.chunks[j + 1].push_front(v);
                }
            }
            if self.chunks[last].len() > CHUNK {
                let carry = self.chunks[last].pop_back();
                let mut back = chunk(&self.chunks);
                back.extend(carry);
                self.chunks.push_back(back);
            }
        }
    }

    /// Takes entry `i` out, shifting later entries forward.
    pub fn remove(&mut self, i: usize) -> Option<T> {
        let (c, k) = self.locate(i)?;
        let value = self.chunks[c].remove(k)?;
        self.len -= 1;
        let last = self.chunks.len() - 1;
        if c == 0 || c == last {
            self.emptied(c);
            return Some(value);
        }
        // A middle chunk must stay exactly full: take one entry from the nearer end.
        if c <= last / 2 {
            for j in (1..=c).rev() {
                if let Some(v) = self.chunks[j - 1].pop_back() {
                    self.chunks[j].push_front(v);
                }
            }
            self.emptied(0);
        } else {
            for j in c..last {
                if let Some(v) = self.chunks[j + 1].pop_front() {
                    self.chunks[j].push_back(v);
                }
            }
            self.emptied(last);
        }
        Some(value)
    }

    /// The index of the first entry for which `pred` is false, the entries being partitioned
    /// (true ones first), as [`slice::partition_point`].
    pub fn partition_point(&self, mut pred: impl FnMut(&T) -> bool) -> usize {
        // The chunk holding the partition point: the first whose last entry fails `pred`.
        let c = self
            .chunks
            .partition_point(|ch| ch.back().is_some_and(&mut pred));
        let before: usize = match c {
            0 => 0,
            c if c == self.chunks.len() => return self.len,
            c => {
                let first = self.chunks.front().map_or(0, VecDeque::len);
                first + (c - 1) * CHUNK
            }
        };
        before + self.chunks.get(c).map_or(0, |ch| ch.partition_point(pred))
    }

    /// The entries in order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    /// The entries from position `from` on, in order (skipping costs nothing).
    pub fn iter_from(&self, from: usize) -> impl Iterator<Item = &T> + '_ {
        let (c, k) = self.locate(from).unwrap_or((self.chunks.len(), 0));
        self.chunks
            .iter()
            .skip(c)
            .enumerate()
            .flat_map(move |(n, ch)| ch.iter().skip(if n == 0 { k } else { 0 }))
    }

    /// Takes the first `n` entries out (all of them if there are fewer), in order.
    pub fn drain_front(&mut self, n: usize) -> Vec<T> {
        let n = n.min(self.len);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let Some(first) = self.chunks.front_mut() else {
                break;
            };
            let take = (n - out.len()).min(first.len());
            out.extend(first.drain(..take));
            if take == 0 {
                break;
            }
            self.emptied(0);
        }
        self.len -= out.len();
        out
    }

    /// Takes every entry out, in order.
    pub fn drain(&mut self) -> impl Iterator<Item = T> {
        self.len = 0;
        std::mem::take(&mut self.chunks).into_iter().flatten()
    }

    /// Removes every entry.
    pub fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }
}

impl<T: Clone> Chunked<T> {
    /// Appends `n` copies of `value`.
    pub fn extend_with(&mut self, n: usize, value: T) {
        for _ in 0..n {
            self.push_back(value.clone());
        }
    }
}

impl<T> std::ops::Index<usize> for Chunked<T> {
    type Output = T;
    /// Entry `i`; panics past the end, as `VecDeque` does.
    fn index(&self, i: usize) -> &T {
        let (c, k) = self.locate(i).unwrap_or((usize::MAX, 0));
        &self.chunks[c][k]
    }
}

impl<T> std::ops::IndexMut<usize> for Chunked<T> {
    fn index_mut(&mut self, i: usize) -> &mut T {
        let (c, k) = self.locate(i).unwrap_or((usize::MAX, 0));
        &mut self.chunks[c][k]
    }
}

impl<T> FromIterator<T> for Chunked<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut out = Chunked::new();
        for v in iter {
            out.push_back(v);
        }
        out
    }
}

impl<T> Extend<T> for Chunked<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for v in iter {
            self.push_back(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    impl<T> Chunked<T> {
        fn check(&self) {
            let n = self.chunks.len();
            for (i, c) in self.chunks.iter().enumerate() {
                assert!(
                    !c.is_empty() || (n == 1 && self.len == 0),
                    "empty chunk {i} of {n}"
                );
                assert!(c.len() <= CHUNK);
                if i > 0 && i + 1 < n {
                    assert_eq!(c.len(), CHUNK, "middle chunk {i} of {n} not full");
                }
            }
            assert_eq!(
                self.chunks.iter().map(VecDeque::len).sum::<usize>(),
                self.len
            );
        }
    }

    #[test]
    fn grows_and_shrinks_a_chunk_at_a_time() {
        let mut d = Chunked::new();
        for i in 0..(10 * CHUNK + 7) {
            d.push_back(i);
            assert!(d.capacity() - d.len() < CHUNK);
        }
        d.check();
        assert_eq!(d.get(5 * CHUNK + 3), Some(&(5 * CHUNK + 3)));
        for i in 0..(4 * CHUNK + 1) {
            assert_eq!(d.pop_front(), Some(i));
        }
        d.check();
        assert!(d.capacity() <= d.len() + 2 * CHUNK);
        assert_eq!(d.get(0), Some(&(4 * CHUNK + 1)));
        assert_eq!(d.get(CHUNK), Some(&(5 * CHUNK + 1)));
        let from: Vec<_> = d.iter_from(CHUNK - 2).take(3).copied().collect();
        assert_eq!(from, vec![5 * CHUNK - 1, 5 * CHUNK, 5 * CHUNK + 1]);
        let rest: Vec<_> = d.drain().collect();
        assert_eq!(rest.len(), 6 * CHUNK + 6);
        assert_eq!(d.capacity(), 0);
    }

    #[derive(Clone, Debug)]
    enum Op {
        PushBack,
        PushFront,
        PopFront,
        PopBack,
        Insert(usize),
        Remove(usize),
        Set(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => Just(Op::PushBack),
            1 => Just(Op::PushFront),
            2 => Just(Op::PopFront),
            1 => Just(Op::PopBack),
            2 => any::<usize>().prop_map(Op::Insert),
            1 => any::<usize>().prop_map(Op::Remove),
            1 => any::<usize>().prop_map(Op::Set),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn behaves_like_a_vecdeque(ops in prop::collection::vec(op(), 1..3000)) {
            let mut d = Chunked::new();
            let mut model = VecDeque::new();
            for (n, op) in ops.into_iter().enumerate() {
                match op {
                    Op::PushBack => { d.push_back(n); model.push_back(n); }
                    Op::PushFront => { d.push_front(n); model.push_front(n); }
                    Op::PopFront => prop_assert_eq!(d.pop_front(), model.pop_front()),
                    Op::PopBack => prop_assert_eq!(d.pop_back(), model.pop_back()),
                    Op::Insert(i) => {
                        let i = i % (model.len() + 1);
                        d.insert(i, n);
                        model.insert(i, n);
                    }
                    Op::Remove(i) => {
                        let i = i % (model.len() + 1);
                        prop_assert_eq!(d.remove(i), model.remove(i));
                    }
                    Op::Set(i) if !model.is_empty() => {
                        let i = i % model.len();
                        *d.get_mut(i).unwrap() = n;
                        model[i] = n;
                    }
                    Op::Set(_) => {}
                }
                if n % 997 == 996 {
                    let k = n % 41;
                    let want: Vec<_> = model.drain(..k.min(model.len())).collect();
                    prop_assert_eq!(d.drain_front(k), want);
                    d.check();
                }
                prop_assert_eq!(d.len(), model.len());
            }
            d.check();
            prop_assert!(d.iter().eq(model.iter()));
            let mid = model.len() / 3;
            prop_assert!(d.iter_from(mid).eq(model.iter().skip(mid)));
            prop_assert_eq!(d.front(), model.front());
            prop_assert_eq!(d.back(), model.back());
            let sorted: Chunked<usize> = (0..model.len()).map(|i| i * 2).collect();
            for x in [0, 1, 7, model.len(), 2 * model.len() + 5] {
                let sv: Vec<usize> = sorted.iter().copied().collect();
                prop_assert_eq!(sorted.partition_point(|&v| v < x), sv.partition_point(|&v| v < x));
            }
        }
    }
}
