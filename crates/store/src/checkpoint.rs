//! The checkpoint file format: a queue log's live index as of one position of its log.
//!
//! Recovery without a checkpoint reads every segment and acks file of a queue (a queue of 10
//! million 1 KiB messages is 10 GiB to read). A checkpoint holds what that reading rebuilds
//! (which messages are live, where each record is, whether it was delivered) together with the
//! log position it covers: for each segment, how much of its `.seg` and `.acks` files the
//! index reflects. A restart loads it and reads only what lies past those lengths
//! (`log/recovery.rs`); writing it is `log/checkpoint.rs`.
//!
//! ```text
//! magic     "PGNCKPT\n"                                     8 bytes
//! version   u32 = 2 (1 is read too: it has no tags)
//! active    u64        the segment appends went to when the checkpoint was taken
//! segments  u32        then that many of:
//!   number u64, seg_len u64, acks_len u64                   covered length of each file
//! entries   one per live message, in increasing seq order (below)
//! end       u8 = 0x80, count u64 (entries), crc u32         CRC-32 of every byte before it
//! ```
//!
//! An entry is a tag byte and the fields the tag says are not implied by the previous entry
//! (varints, LEB128). `next` starts at seq 0, segment 0, offset 0, len 0:
//!
//! ```text
//! tag bit 0  delivered
//! tag bit 1  seq = next seq + varint           (else seq = next seq: one after the previous)
//! tag bit 2  segment = varint, offset = varint (else the previous record's segment, and the
//!                                               offset right after the previous record)
//! tag bit 3  len = varint                      (else the previous entry's len)
//! tag bit 4  the message's tag = varint: 0 none, t + 1 tag t  (else the previous entry's;
//!                                               version 2 only)
//! ```
//!
//! A queue appended to in order and not yet consumed takes one byte per message (10 MB for
//! 10 million). All integers are little endian. A file with another magic or version, a bad
//! checksum, a short or long body, or entries that contradict its segment table is rejected
//! whole, and recovery falls back to reading every file.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// The file name of a queue's checkpoint, in its directory.
pub(crate) const FILE: &str = "checkpoint";
/// Where a checkpoint is written before it is renamed into place.
pub(crate) const TMP_FILE: &str = "checkpoint.tmp";

const MAGIC: &[u8; 8] = b"PGNCKPT\n";
/// The format version this build writes. It reads it and version 1, which had no tags (a
/// checkpoint taken by an older build still spares reading the log).
pub(crate) const VERSION: u32 = 2;
/// The oldest version this build reads.
const OLDEST_VERSION: u32 = 1;
const END: u8 = 0x80;
const DELIVERED: u8 = 1;
const SEQ: u8 = 2;
const POSITION: u8 = 4;
const LEN: u8 = 8;
const TAG: u8 = 16;

/// How much of one segment's two files a checkpoint reflects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Covered {
    pub(crate) seg_len: u64,
    pub(crate) acks_len: u64,
}

/// What precedes the entries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) active: u64,
    pub(crate) segments: BTreeMap<u64, Covered>,
}

/// One live message: seq, segment, offset, frame length, delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) segment: u64,
    pub(crate) offset: u64,
    pub(crate) len: u32,
    pub(crate) delivered: bool,
    /// The caller's tag (`QueueLog::append_tagged`).
    pub(crate) tag: Option<u8>,
}

/// What the previous entry implies for the next.
#[derive(Default)]
struct Next {
    seq: u64,
    segment: u64,
    offset: u64,
    len: u32,
    tag: Option<u8>,
}

impl Next {
    fn advance(&mut self, e: &Entry) {
        self.seq = e.seq.wrapping_add(1);
        self.segment = e.segment;
        self.offset = e.offset.saturating_add(u64::from(e.len));
        self.len = e.len;
        self.tag = e.tag;
    }
}

/// Streams a checkpoint into `out`, checksumming as it goes.
pub(crate) struct Writer<W: Write> {
    out: W,
    crc: crc32fast::Hasher,
    next: Next,
    count: u64,
    /// The seq of the previous entry, to keep the order the reader checks.
    last: Option<u64>,
    buf: Vec<u8>,
}

impl<W: Write> Writer<W> {
    pub(crate) fn new(out: W, header: &Header) -> io::Result<Self> {
        let mut w = Writer {
            out,
            crc: crc32fast::Hasher::new(),
            next: Next::default(),
            count: 0,
            last: None,
            buf: Vec::with_capacity(64 * 1024),
        };
        w.buf.extend_from_slice(MAGIC);
        w.buf.extend_from_slice(&VERSION.to_le_bytes());
        w.buf.extend_from_slice(&header.active.to_le_bytes());
        let n = u32::try_from(header.segments.len()).map_err(io::Error::other)?;
        w.buf.extend_from_slice(&n.to_le_bytes());
        for (&number, c) in &header.segments {
            w.buf.extend_from_slice(&number.to_le_bytes());
            w.buf.extend_from_slice(&c.seg_len.to_le_bytes());
            w.buf.extend_from_slice(&c.acks_len.to_le_bytes());
        }
        Ok(w)
    }

    /// Adds an entry; seqs must increase.
    pub(crate) fn entry(&mut self, e: &Entry) -> io::Result<()> {
        if self.last.is_some_and(|last| e.seq <= last) {
            return Err(io::Error::other("checkpoint entries out of seq order"));
        }
        self.last = Some(e.seq);
        let mut tag = if e.delivered { DELIVERED } else { 0 };
        let seq_gap = e.seq.wrapping_sub(self.next.seq);
        if seq_gap != 0 {
            tag |= SEQ;
        }
        let same_place = e.segment == self.next.segment && e.offset == self.next.offset;
        if !same_place {
            tag |= POSITION;
        }
        if e.len != self.next.len {
            tag |= LEN;
        }
        if e.tag != self.next.tag {
            tag |= TAG;
        }
        self.buf.push(tag);
        if tag & SEQ != 0 {
            put_varint(&mut self.buf, seq_gap);
        }
        if tag & POSITION != 0 {
            put_varint(&mut self.buf, e.segment);
            put_varint(&mut self.buf, e.offset);
        }
        if tag & LEN != 0 {
            put_varint(&mut self.buf, u64::from(e.len));
        }
        if tag & TAG != 0 {
            put_varint(&mut self.buf, e.tag.map_or(0, |t| u64::from(t) + 1));
        }
        self.next.advance(e);
        self.count += 1;
        if self.buf.len() >= 60 * 1024 {
            self.drain()?;
        }
        Ok(())
    }

    /// Writes the end marker and checksum; returns the output and the number of entries.
    pub(crate) fn finish(mut self) -> io::Result<(W, u64)> {
        self.buf.push(END);
        self.buf.extend_from_slice(&self.count.to_le_bytes());
        self.drain()?;
        let crc = self.crc.clone().finalize();
        self.out.write_all(&crc.to_le_bytes())?;
        Ok((self.out, self.count))
    }

    fn drain(&mut self) -> io::Result<()> {
        self.crc.update(&self.buf);
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
}

/// Why a checkpoint file was not used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Not a checkpoint, or one of another version.
    Format(String),
    /// Its checksum or its length is wrong: damaged, or cut short.
    Damaged(String),
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Format(s) | Invalid::Damaged(s) => f.write_str(s),
        }
    }
}

/// A checkpoint read whole and checked: its header, and its entries still encoded.
pub(crate) struct Parsed<'a> {
    pub(crate) header: Header,
    entries: &'a [u8],
    count: u64,
    version: u32,
}

/// Checks `bytes` (a whole checkpoint file) and reads its header.
pub(crate) fn parse(bytes: &[u8]) -> Result<Parsed<'_>, Invalid> {
    let damaged = |why: &str| Invalid::Damaged(why.to_owned());
    if bytes.len() < MAGIC.len() + 4 || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Invalid::Format("not a checkpoint file".into()));
    }
    let mut r = Reader {
        bytes,
        at: MAGIC.len(),
    };
    let version = r.u32().ok_or_else(|| damaged("cut short"))?;
    if !(OLDEST_VERSION..=VERSION).contains(&version) {
        return Err(Invalid::Format(format!(
            "checkpoint format version {version}, this build reads {OLDEST_VERSION} to {VERSION}"
        )));
    }
    // The checksum first, so that nothing below reads damaged data.
    let body_len = bytes
        .len()
        .checked_sub(4)
        .ok_or_else(|| damaged("cut short"))?;
    let (body, crc) = bytes.split_at(body_len);
    let mut crc_bytes = [0; 4];
    crc_bytes.copy_from_slice(crc);
    if crc32fast::hash(body) != u32::from_le_bytes(crc_bytes) {
        return Err(damaged("checksum mismatch"));
    }
    let trailer = 1 + 8;
    if body.len() < r.at + 8 + 4 + trailer || body[body.len() - trailer] != END {
        return Err(damaged("no end marker"));
    }
    let mut count = [0; 8];
    count.copy_from_slice(&body[body.len() - 8..]);
    let count = u64::from_le_bytes(count);
    let mut r = Reader {
        bytes: &body[..body.len() - trailer],
        at: r.at,
    };
    let active = r.u64().ok_or_else(|| damaged("cut short"))?;
    let n = r.u32().ok_or_else(|| damaged("cut short"))?;
    let mut segments = BTreeMap::new();
    for _ in 0..n {
        let number = r.u64().ok_or_else(|| damaged("cut short"))?;
        let seg_len = r.u64().ok_or_else(|| damaged("cut short"))?;
        let acks_len = r.u64().ok_or_else(|| damaged("cut short"))?;
        segments.insert(number, Covered { seg_len, acks_len });
    }
    Ok(Parsed {
        header: Header { active, segments },
        entries: &r.bytes[r.at..],
        count,
        version,
    })
}

impl Parsed<'_> {
    /// Decodes every entry, checking each against the segment table: a location that is not
    /// inside a covered part of a listed segment, or seqs out of order, reject the checkpoint.
    pub(crate) fn entries(&self, mut visit: impl FnMut(Entry)) -> Result<(), Invalid> {
        let bad = |why: &str| Invalid::Damaged(why.to_owned());
        let mut r = Reader {
            bytes: self.entries,
            at: 0,
        };
        let mut next = Next::default();
        let mut count = 0u64;
        let mut last: Option<u64> = None;
        // Runs of entries share a segment: look its cover up once per run.
        let mut cover: Option<(u64, Covered)> = None;
        let known = match self.version {
            1 => DELIVERED | SEQ | POSITION | LEN,
            _ => DELIVERED | SEQ | POSITION | LEN | TAG,
        };
        while r.at < r.bytes.len() {
            let tag = r.u8().ok_or_else(|| bad("cut short"))?;
            if tag & !known != 0 {
                return Err(bad("unknown entry tag"));
            }
            let mut e = Entry {
                seq: next.seq,
                segment: next.segment,
                offset: next.offset,
                len: next.len,
                delivered: tag & DELIVERED != 0,
                tag: next.tag,
            };
            if tag & SEQ != 0 {
                let gap = r.varint().ok_or_else(|| bad("bad seq"))?;
                e.seq = next.seq.wrapping_add(gap);
            }
            if tag & POSITION != 0 {
                e.segment = r.varint().ok_or_else(|| bad("bad segment"))?;
                e.offset = r.varint().ok_or_else(|| bad("bad offset"))?;
            }
            if tag & LEN != 0 {
                let len = r.varint().ok_or_else(|| bad("bad length"))?;
                e.len = u32::try_from(len).map_err(|_| bad("bad length"))?;
            }
            if tag & TAG != 0 {
                e.tag = match r.varint().ok_or_else(|| bad("bad tag"))? {
                    0 => None,
                    t => Some(u8::try_from(t - 1).map_err(|_| bad("bad tag"))?),
                };
            }
            if last.is_some_and(|l| e.seq <= l) {
                return Err(bad("entries out of seq order"));
            }
            let covered = match cover {
                Some((n, c)) if n == e.segment => c,
                _ => {
                    let c =
                        *self.header.segments.get(&e.segment).ok_or_else(|| {
                            bad("an entry in a segment the checkpoint does not list")
                        })?;
                    cover = Some((e.segment, c));
                    c
                }
            };
            let end = e.offset.checked_add(u64::from(e.len));
            if e.len == 0 || end.is_none_or(|end| end > covered.seg_len) {
                return Err(bad("an entry past the covered part of its segment"));
            }
            last = Some(e.seq);
            next.advance(&e);
            count += 1;
            visit(e);
        }
        if count != self.count {
            return Err(bad("entry count mismatch"));
        }
        Ok(())
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let slice = self.bytes.get(self.at..self.at.checked_add(N)?)?;
        self.at += N;
        let mut out = [0; N];
        out.copy_from_slice(slice);
        Some(out)
    }

    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    fn varint(&mut self) -> Option<u64> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if shift == 63 && bits > 1 {
                return None;
            }
            value |= bits << shift;
            if b & 0x80 == 0 {
                return Some(value);
            }
        }
        None
    }
}

fn put_varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn header() -> Header {
        let mut segments = BTreeMap::new();
        segments.insert(
            0,
            Covered {
                seg_len: 1 << 40,
                acks_len: 50,
            },
        );
        segments.insert(
            7,
            Covered {
                seg_len: 1000,
                acks_len: 0,
            },
        );
        Header {
            active: 7,
            segments,
        }
    }

    fn write(header: &Header, entries: &[Entry]) -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), header).unwrap();
        for e in entries {
            w.entry(e).unwrap();
        }
        w.finish().unwrap().0
    }

    fn read(bytes: &[u8]) -> Result<(Header, Vec<Entry>), Invalid> {
        let parsed = parse(bytes)?;
        let mut got = Vec::new();
        parsed.entries(|e| got.push(e))?;
        Ok((parsed.header, got))
    }

    fn run(first: u64, n: u64) -> Vec<Entry> {
        (0..n)
            .map(|i| Entry {
                seq: first + i,
                segment: 0,
                offset: i * 30,
                len: 30,
                delivered: i % 5 == 0,
                tag: None,
            })
            .collect()
    }

    #[test]
    fn a_queue_appended_in_order_costs_a_byte_per_message() {
        let entries = run(0, 10_000);
        let bytes = write(&header(), &entries);
        assert!(bytes.len() < 10_000 + 200, "{}", bytes.len());
        assert_eq!(read(&bytes).unwrap(), (header(), entries));
    }

    #[test]
    fn any_damage_or_truncation_is_detected() {
        let mut entries = run(5, 40);
        entries.push(Entry {
            seq: u64::MAX,
            segment: 7,
            offset: 900,
            len: 100,
            delivered: false,
            tag: Some(255),
        });
        let bytes = write(&header(), &entries);
        assert_eq!(read(&bytes).unwrap().1, entries);
        for cut in 0..bytes.len() {
            assert!(read(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(read(&bad).is_err(), "byte {i} flipped");
        }
        let mut other_version = bytes.clone();
        other_version[8] = 3;
        assert!(matches!(read(&other_version), Err(Invalid::Format(_))));
    }

    /// `bytes` rewritten as version `v`, its checksum recomputed.
    fn as_version(bytes: &[u8], v: u32) -> Vec<u8> {
        let mut out = bytes[..bytes.len() - 4].to_vec();
        out[8..12].copy_from_slice(&v.to_le_bytes());
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    #[test]
    fn tags_round_trip_and_version_1_is_read_without_them() {
        let mut entries = run(0, 100);
        for (i, e) in entries.iter_mut().enumerate() {
            e.tag = (i % 3 != 0).then_some((i % 7) as u8);
        }
        let bytes = write(&header(), &entries);
        assert_eq!(read(&bytes).unwrap().1, entries);
        // A version 1 file (an older build's) has no tags: read as untagged.
        let untagged = run(0, 100);
        let v1 = as_version(&write(&header(), &untagged), 1);
        assert_eq!(read(&v1).unwrap().1, untagged);
        // A tag in a version 1 file is damage.
        assert!(read(&as_version(&bytes, 1)).is_err());
    }

    #[test]
    fn entries_must_lie_inside_what_the_header_covers() {
        let past = Entry {
            seq: 1,
            segment: 7,
            offset: 990,
            len: 20,
            delivered: false,
            tag: None,
        };
        assert!(read(&write(&header(), &[past])).is_err());
        let unlisted = Entry { segment: 3, ..past };
        assert!(read(&write(&header(), &[unlisted])).is_err());
    }

    proptest! {
        #[test]
        fn round_trips(raw in prop::collection::vec(
            (1u64..1000, 0u64..3, 0u64..2000, 1u32..500, any::<bool>(), any::<Option<u8>>()), 0..300)
        ) {
            let mut seq = 0u64;
            let mut segments = BTreeMap::new();
            let mut entries = Vec::new();
            for (gap, segment, offset, len, delivered, tag) in raw {
                seq += gap - 1;
                entries.push(Entry { seq, segment, offset, len, delivered, tag });
                let c: &mut Covered = segments.entry(segment).or_default();
                c.seg_len = c.seg_len.max(offset + u64::from(len));
                seq += 1;
            }
            let header = Header { active: 2, segments };
            let bytes = write(&header, &entries);
            prop_assert_eq!(read(&bytes).unwrap(), (header, entries));
        }
    }
}
