//! The in-memory index of a log's live messages: seq -> where its record is, and whether it
//! was delivered. It is the one per-message cost a broker pays for a message it keeps only on
//! disk, so it is compact:
//!
//! - An entry is packed into 16 bytes: 32-bit segment number, offset and length, the flag and
//!   the caller's optional tag byte (a [`Location`] and a flag take 32). An offset always fits, because segments are at most
//!   4 GiB (`StoreOptions::segment_size` is capped); a location that does not fit (a segment
//!   number past 2^32 - 3, or a segment written by an older build with larger segments) is
//!   kept whole in a side table, so nothing is ever lost to the packing.
//! - Seqs as a broker appends them are consecutive, so entries live in a *dense* window: a
//!   deque indexed by `seq - base`, an acknowledged message leaving a hole, holes trimmed at
//!   both ends (16 bytes per live message plus at most two partly filled chunks of 4096,
//!   against about 49 in a B-tree and 78 before packing, measured with sequential seqs). The
//!   deque is [`Chunked`]: it grows and gives memory back 64 KiB at a time, never by doubling
//!   (a `VecDeque` of 100 million entries would allocate and fill a 3.2 GB buffer in one push,
//!   which a memory alarm cannot anticipate). A seq a little past the window's end (at most
//!   [`MAX_GAP`] or a quarter of the window) extends it with holes, as long as the window
//!   stays at least a quarter full: a broker skips the seqs of messages it never appends
//!   (transient messages in a durable queue, MQTT QoS 0 beside QoS 1), and those gaps must
//!   not push every later seq out of the window. Any other seq outside the window goes to a
//!   *sparse* B-tree. When acknowledgements leave the window less than a quarter full (a few
//!   messages held at its front while the rest flows through), its front is moved to the
//!   sparse tree, so the window never costs more than four entries per live message.

use std::collections::{BTreeMap, HashMap};
use std::iter::Peekable;
use std::ops::{Bound, RangeBounds};

use super::Location;
use crate::chunked::Chunked;

/// Segment number of a packed entry whose location is in the side table.
const WIDE: u32 = u32::MAX;
/// Segment number of a hole in the dense window.
const HOLE: u32 = u32::MAX - 1;
/// The window is compacted only past this many slots.
const MIN_COMPACT: usize = 1024;
/// Holes a new seq may always add at the end of the window (more if the window is large:
/// a quarter of its length), as long as the window stays a quarter full.
const MAX_GAP: usize = 64;

#[derive(Clone, Copy, Debug)]
struct Entry {
    segment: u32,
    offset: u32,
    len: u32,
    delivered: bool,
    /// Whether `tag` holds the caller's tag (`QueueLog::append_tagged`).
    tagged: bool,
    tag: u8,
}

impl Entry {
    const HOLE: Entry = Entry {
        segment: HOLE,
        offset: 0,
        len: 0,
        delivered: false,
        tagged: false,
        tag: 0,
    };

    fn tag(&self) -> Option<u8> {
        self.tagged.then_some(self.tag)
    }

    fn is_hole(&self) -> bool {
        self.segment == HOLE
    }
}

/// Live messages by seq.
#[derive(Debug, Default)]
pub(crate) struct LiveIndex {
    /// Seq of `dense[0]`.
    base: u64,
    dense: Chunked<Entry>,
    /// Entries of `dense` that are not holes.
    dense_live: usize,
    /// Seqs outside the dense window.
    sparse: BTreeMap<u64, Entry>,
    /// Locations that do not pack, by seq.
    wide: HashMap<u64, Location>,
}

impl LiveIndex {
    pub(crate) fn len(&self) -> usize {
        self.dense_live + self.sparse.len()
    }

    /// The position of `seq` in the dense window.
    fn slot(&self, seq: u64) -> Option<usize> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        (i < self.dense.len()).then_some(i)
    }

    fn location(&self, seq: u64, e: &Entry) -> Location {
        if e.segment == WIDE {
            if let Some(location) = self.wide.get(&seq) {
                return *location;
            }
        }
        Location {
            segment: u64::from(e.segment),
            offset: u64::from(e.offset),
            len: e.len,
        }
    }

    /// The location of an entry just taken out (and out of the side table).
    fn take(&mut self, seq: u64, e: &Entry) -> Location {
        if e.segment == WIDE {
            if let Some(location) = self.wide.remove(&seq) {
                return location;
            }
        }
        self.location(seq, e)
    }

    /// Adds a live message without a tag; returns the location of the one it replaces.
    #[cfg(test)]
    pub(crate) fn insert(
        &mut self,
        seq: u64,
        location: Location,
        delivered: bool,
    ) -> Option<Location> {
        self.insert_tagged(seq, location, delivered, None)
    }

    /// Adds a live message, with its tag if it has one; returns the location of the one it
    /// replaces.
    pub(crate) fn insert_tagged(
        &mut self,
        seq: u64,
        location: Location,
        delivered: bool,
        tag: Option<u8>,
    ) -> Option<Location> {
        let packed = match (
            u32::try_from(location.segment),
            u32::try_from(location.offset),
        ) {
            (Ok(segment), Ok(offset)) if segment < HOLE => Some((segment, offset)),
            _ => None,
        };
        let (segment, offset) = packed.unwrap_or((WIDE, 0));
        let entry = Entry {
            segment,
            offset,
            len: location.len,
            delivered,
            tagged: tag.is_some(),
            tag: tag.unwrap_or(0),
        };
        let replaced = match self.slot(seq) {
            Some(i) => {
                let old = std::mem::replace(&mut self.dense[i], entry);
                if old.is_hole() {
                    self.dense_live += 1;
                    None
                } else {
                    Some(self.take(seq, &old))
                }
            }
            None => {
                let old = if self.sparse.is_empty() {
                    None
                } else {
                    self.sparse.remove(&seq).map(|old| self.take(seq, &old))
                };
                let holes = if self.dense.is_empty() {
                    self.base = seq;
                    Some(0)
                } else {
                    self.holes_before(seq)
                };
                match holes {
                    Some(holes) => {
                        if holes > 0 {
                            self.extend_with_holes(holes);
                        }
                        self.dense.push_back(entry);
                        self.dense_live += 1;
                    }
                    None => {
                        self.sparse.insert(seq, entry);
                    }
                }
                old
            }
        };
        if packed.is_none() {
            self.wide.insert(seq, location);
        }
        replaced
    }

    /// How many holes to add at the end of the (non-empty) window so that `seq` comes next,
    /// if it should go there rather than to the sparse tree: it is the next seq (0 holes), or
    /// the gap is small (at most [`MAX_GAP`] or a quarter of the window) and the window stays
    /// at least a quarter full, the bound compaction keeps (see `trim`).
    fn holes_before(&self, seq: u64) -> Option<usize> {
        let end = self.base.checked_add(self.dense.len() as u64)?;
        let holes = usize::try_from(seq.checked_sub(end)?).ok()?;
        if holes > MAX_GAP.max(self.dense.len() / 4) {
            return None;
        }
        let len = self.dense.len() + holes + 1;
        (holes == 0 || len <= MIN_COMPACT || (self.dense_live + 1) * 4 >= len).then_some(holes)
    }

    /// Adds `holes` slots at the end of the window, taking in the sparse entries they cover.
    fn extend_with_holes(&mut self, holes: usize) {
        let end = self.base + self.dense.len() as u64;
        self.dense.extend_with(holes, Entry::HOLE);
        let new_end = end + holes as u64;
        while let Some((&seq, _)) = self.sparse.range(end..new_end).next() {
            if let Some(e) = self.sparse.remove(&seq) {
                self.dense[(seq - self.base) as usize] = e;
                self.dense_live += 1;
            }
        }
    }

    /// Removes a live message; returns where it was.
    pub(crate) fn remove(&mut self, seq: u64) -> Option<Location> {
        let Some(i) = self.slot(seq) else {
            let e = self.sparse.remove(&seq)?;
            return Some(self.take(seq, &e));
        };
        let old = std::mem::replace(&mut self.dense[i], Entry::HOLE);
        if old.is_hole() {
            return None;
        }
        self.dense_live -= 1;
        let location = self.take(seq, &old);
        self.trim();
        Some(location)
    }

    /// Drops the holes at both ends of the window, and moves its front to the sparse tree
    /// while the window is mostly holes.
    fn trim(&mut self) {
        while self.dense.back().is_some_and(Entry::is_hole) {
            self.dense.pop_back();
        }
        loop {
            match self.dense.front() {
                Some(e) if e.is_hole() => {}
                Some(e)
                    if self.dense.len() > MIN_COMPACT && self.dense_live * 4 < self.dense.len() =>
                {
                    self.sparse.insert(self.base, *e);
                    self.dense_live -= 1;
                }
                _ => break,
            }
            self.dense.pop_front();
            self.base += 1;
        }
        if self.dense.is_empty() {
            self.base = 0;
        }
        // Memory goes back as a long queue drains: a chunk is freed as soon as it is empty.
    }

    /// The location and delivered flag of a live message.
    pub(crate) fn get(&self, seq: u64) -> Option<(Location, bool)> {
        let e = match self.slot(seq) {
            Some(i) => self.dense[i],
            None => *self.sparse.get(&seq)?,
        };
        if e.is_hole() {
            return None;
        }
        Some((self.location(seq, &e), e.delivered))
    }

    /// Flags a live message delivered; returns its location if it was not flagged yet.
    pub(crate) fn mark_delivered(&mut self, seq: u64) -> Option<Location> {
        let e = match self.slot(seq) {
            Some(i) => &mut self.dense[i],
            None => self.sparse.get_mut(&seq)?,
        };
        if e.is_hole() || e.delivered {
            return None;
        }
        e.delivered = true;
        let e = *e;
        Some(self.location(seq, &e))
    }

    /// The live messages with a seq of at least `from`, in seq order: (seq, location,
    /// delivered).
    pub(crate) fn from(&self, from: u64) -> impl Iterator<Item = (u64, Location, bool)> + '_ {
        self.tagged_from(from)
            .map(|(seq, location, delivered, _)| (seq, location, delivered))
    }

    /// [`LiveIndex::from`] with each message's tag.
    pub(crate) fn tagged_from(
        &self,
        from: u64,
    ) -> impl Iterator<Item = (u64, Location, bool, Option<u8>)> + '_ {
        let skip = usize::try_from(from.saturating_sub(self.base)).unwrap_or(usize::MAX);
        let dense = self
            .dense
            .iter_from(skip)
            .zip(skip..)
            .filter(|(e, _)| !e.is_hole())
            .map(|(e, i)| (self.base + i as u64, *e));
        let sparse = self.sparse.range(from..).map(|(&seq, e)| (seq, *e));
        Merge {
            a: dense.peekable(),
            b: sparse.peekable(),
        }
        .map(|(seq, e)| (seq, self.location(seq, &e), e.delivered, e.tag()))
    }

    /// The seqs of the live messages in `range`.
    pub(crate) fn seqs(&self, range: impl RangeBounds<u64>) -> Vec<u64> {
        let from = match range.start_bound() {
            Bound::Included(&s) => s,
            Bound::Excluded(&s) => s.saturating_add(1),
            Bound::Unbounded => 0,
        };
        self.from(from)
            .map(|(seq, _, _)| seq)
            .take_while(|seq| range.contains(seq))
            .collect()
    }

    pub(crate) fn clear(&mut self) {
        *self = LiveIndex::default();
    }
}

/// Two iterators sorted by seq, with no seq in both, merged in seq order.
struct Merge<A: Iterator, B: Iterator> {
    a: Peekable<A>,
    b: Peekable<B>,
}

impl<A, B> Iterator for Merge<A, B>
where
    A: Iterator<Item = (u64, Entry)>,
    B: Iterator<Item = (u64, Entry)>,
{
    type Item = (u64, Entry);

    fn next(&mut self) -> Option<(u64, Entry)> {
        match (self.a.peek(), self.b.peek()) {
            (Some(a), Some(b)) if b.0 < a.0 => self.b.next(),
            (Some(_), _) => self.a.next(),
            (None, _) => self.b.next(),
        }
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
