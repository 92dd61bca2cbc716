//! The log's on-disk format: segment files of checksummed records, and how recovery reads them.
//!
//! A segment file (`{seq:020}.wal`) starts with the 8-byte magic `PGNWAL01`, then records:
//!
//! ```text
//! [len: u32 LE][crc32(payload): u32 LE][payload: postcard Record { group, op }]
//! ```
//!
//! The writer only ever appends to the newest segment and fsyncs after each batch, so a crash can
//! only leave a torn record at the end of the newest segment: recovery cuts it off there (the
//! caller was never told it was durable). A bad record anywhere else is corruption and stops the
//! node rather than silently dropping acknowledged writes.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The first bytes of every segment file.
pub(crate) const MAGIC: &[u8; 8] = b"PGNWAL01";
/// Length and checksum before each payload.
pub(crate) const HEADER: usize = 8;
/// A record larger than this is taken as garbage (a torn length field), not allocated.
pub(crate) const MAX_RECORD: usize = 256 << 20;

/// Everything one group has in the log, in bytes: openraft's types are encoded by
/// [`super::GroupLog`], so the log itself knows nothing of any group's type configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct GroupMem {
    /// The last vote (postcard of `Vote`).
    pub vote: Option<Arc<[u8]>>,
    /// The last committed log id (postcard of `Option<LogId>`).
    pub committed: Option<Arc<[u8]>>,
    /// The last purged index and its log id (postcard of `LogId`).
    pub purged: Option<(u64, Arc<[u8]>)>,
    /// Present entries by index (postcard of the group's entry type).
    pub entries: BTreeMap<u64, Arc<[u8]>>,
}

impl GroupMem {
    /// Nothing at all: a group never written or forgotten.
    pub fn is_empty(&self) -> bool {
        self.vote.is_none()
            && self.committed.is_none()
            && self.purged.is_none()
            && self.entries.is_empty()
    }

    /// The records that restate the group's vote, committed id and purge point (not its
    /// entries), written at the head of each new segment. Replayed after the older segments they
    /// change nothing; replayed without them they give back what those held besides entries.
    pub fn restated(&self) -> Vec<Op> {
        let mut ops = Vec::new();
        if let Some(vote) = &self.vote {
            ops.push(Op::Vote(vote.clone()));
        }
        if let Some(committed) = &self.committed {
            ops.push(Op::Committed(committed.clone()));
        }
        if let Some((upto, log_id)) = &self.purged {
            ops.push(Op::Purge {
                upto: *upto,
                log_id: log_id.clone(),
            });
        }
        ops
    }

    /// Applies one operation, as the writer does after writing it and recovery does on replay.
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Append(entries) => {
                for (index, bytes) in entries {
                    self.entries.insert(*index, bytes.clone());
                }
            }
            Op::Truncate(since) => {
                self.entries.split_off(since);
            }
            Op::Purge { upto, log_id } => {
                self.entries = self.entries.split_off(&(upto + 1));
                self.purged = Some((*upto, log_id.clone()));
            }
            Op::Vote(vote) => self.vote = Some(vote.clone()),
            Op::Committed(committed) => self.committed = Some(committed.clone()),
            Op::Checkpoint(state) => *self = state.clone(),
        }
    }
}

/// One change to one group's log.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) enum Op {
    /// Entries appended (an index already present is replaced: a follower overwriting).
    Append(Vec<(u64, Arc<[u8]>)>),
    /// Entries from this index on removed (a follower's conflicting suffix).
    Truncate(u64),
    /// Entries up to and including `upto` removed (covered by a snapshot).
    Purge {
        /// The last purged index.
        upto: u64,
        /// Its log id, encoded.
        log_id: Arc<[u8]>,
    },
    /// A vote granted or a term started.
    Vote(Arc<[u8]>),
    /// The committed log id.
    Committed(Arc<[u8]>),
    /// The group's whole state. Written empty by `Wal::forget_group`; before segments were kept
    /// (issue 13), also at the head of every new segment, so an older data directory's newest
    /// segment starts with one per group.
    Checkpoint(GroupMem),
}

/// A record: a group and a change to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    pub group: u64,
    pub op: Op,
}

/// Appends one framed record to `out`.
pub(crate) fn encode(record: &Record, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
    let payload = postcard::to_stdvec(record)?;
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// What reading a segment found.
pub(crate) struct Scan {
    /// The records, in order.
    pub records: Vec<Record>,
    /// The length of the valid prefix (header included).
    pub valid_len: usize,
    /// Why reading stopped before the end, if it did.
    pub problem: Option<&'static str>,
}

/// Reads the records of one segment's bytes, stopping at the first incomplete or bad one.
pub(crate) fn scan(bytes: &[u8]) -> Scan {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Scan {
            records: Vec::new(),
            valid_len: 0,
            problem: Some("missing segment header"),
        };
    }
    let mut records = Vec::new();
    let mut at = MAGIC.len();
    let problem = loop {
        let rest = &bytes[at..];
        if rest.is_empty() {
            break None;
        }
        if rest.len() < HEADER {
            break Some("incomplete record header");
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_RECORD {
            break Some("record length out of range");
        }
        if rest.len() < HEADER + len {
            break Some("incomplete record");
        }
        let payload = &rest[HEADER..HEADER + len];
        if crc32fast::hash(payload) != crc {
            break Some("checksum mismatch");
        }
        match postcard::from_bytes::<Record>(payload) {
            Ok(record) => records.push(record),
            Err(_) => break Some("undecodable record"),
        }
        at += HEADER + len;
    };
    Scan {
        records,
        valid_len: at,
        problem,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn sample() -> Vec<u8> {
        let mut out = MAGIC.to_vec();
        for i in 1..=3u64 {
            let op = Op::Append(vec![(i, Arc::from(vec![i as u8; 10]))]);
            encode(&Record { group: 7, op }, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn a_whole_segment_reads_back() {
        let bytes = sample();
        let scan = scan(&bytes);
        assert_eq!(scan.records.len(), 3);
        assert_eq!(scan.valid_len, bytes.len());
        assert!(scan.problem.is_none());
    }

    #[test]
    fn every_torn_tail_is_cut_at_the_last_whole_record() {
        let bytes = sample();
        let whole = scan(&bytes);
        let second_end = {
            let two = scan(&bytes[..bytes.len() - 1]);
            two.valid_len
        };
        for cut in second_end..bytes.len() {
            let s = scan(&bytes[..cut]);
            assert_eq!(s.records.len(), 2, "cut at {cut}");
            assert_eq!(s.valid_len, second_end);
        }
        assert_eq!(whole.records.len(), 3);
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let mut bytes = sample();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let s = scan(&bytes);
        assert_eq!(s.records.len(), 2);
        assert_eq!(s.problem, Some("checksum mismatch"));
    }
}
