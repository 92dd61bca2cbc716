//! Tracking data kept in the stream itself: consumer offsets (`StoreOffset` / `QueryOffset`) and
//! publisher sequences (de-duplication: the last publishing id of each named publisher).
//!
//! As in osiris (`src/osiris_tracking.erl`):
//!
//! - a publisher sequence is written in the trailer of the user chunk that holds its messages,
//!   so the messages and the sequence that de-duplicates them are durable together;
//! - a consumer offset is written as a tracking delta chunk of its own;
//! - every segment after the first starts with a tracking snapshot chunk holding all of them,
//!   so that recovery reads the last segment only, and retention can drop older segments.
//!
//! A snapshot keeps only the [`MAX_SEQUENCES`] publishers that wrote most recently (osiris'
//! `max_sequences`): a publisher silent for that long has long been reconnected or is gone.

use std::collections::HashMap;

use super::chunk::{be_u64, Entry};
use crate::StoreError;

const TYPE_SEQUENCE: u8 = 0;
const TYPE_OFFSET: u8 = 1;

/// How many publisher sequences a snapshot keeps, as osiris' default.
pub const MAX_SEQUENCES: usize = 255;

/// The longest reference or publisher name: its length is one byte.
pub const MAX_TRACKING_ID_LEN: usize = 255;

/// The tracking state of a stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Tracking {
    /// Consumer offsets by reference.
    pub(crate) offsets: HashMap<Vec<u8>, u64>,
    /// Publisher name -> (chunk id of the chunk that recorded it, sequence).
    pub(crate) sequences: HashMap<Vec<u8>, (u64, u64)>,
}

pub(crate) fn check_id(id: &[u8]) -> Result<(), StoreError> {
    if id.is_empty() || id.len() > MAX_TRACKING_ID_LEN {
        return Err(StoreError::InvalidChunk {
            reason: format!(
                "a tracking id must be 1 to {MAX_TRACKING_ID_LEN} bytes, not {}",
                id.len()
            ),
        });
    }
    Ok(())
}

fn block(buf: &mut Vec<u8>, kind: u8, id: &[u8]) {
    buf.push(kind);
    // Checked by `check_id` before anything is encoded.
    buf.push(id.len().min(MAX_TRACKING_ID_LEN) as u8);
    buf.extend_from_slice(&id[..id.len().min(MAX_TRACKING_ID_LEN)]);
}

/// Appends a publisher sequence block.
pub(crate) fn encode_sequence(buf: &mut Vec<u8>, id: &[u8], chunk_id: u64, seq: u64) {
    block(buf, TYPE_SEQUENCE, id);
    buf.extend_from_slice(&chunk_id.to_be_bytes());
    buf.extend_from_slice(&seq.to_be_bytes());
}

/// Appends a consumer offset block.
pub(crate) fn encode_offset(buf: &mut Vec<u8>, id: &[u8], offset: u64) {
    block(buf, TYPE_OFFSET, id);
    buf.extend_from_slice(&offset.to_be_bytes());
}

impl Tracking {
    pub(crate) fn is_empty(&self) -> bool {
        self.offsets.is_empty() && self.sequences.is_empty()
    }

    /// Applies tracking blocks (a trailer, or a tracking chunk's entry). `None` if malformed.
    pub(crate) fn apply(&mut self, mut b: &[u8]) -> Option<()> {
        while !b.is_empty() {
            let kind = b[0];
            let id_len = usize::from(*b.get(1)?);
            let id = b.get(2..2 + id_len)?.to_vec();
            b = &b[2 + id_len..];
            match kind {
                TYPE_SEQUENCE => {
                    let v = b.get(..16)?;
                    let chunk_id = be_u64(&v[..8]);
                    let seq = be_u64(&v[8..]);
                    self.sequences.insert(id, (chunk_id, seq));
                    b = &b[16..];
                }
                TYPE_OFFSET => {
                    let v = b.get(..8)?;
                    self.offsets.insert(id, be_u64(v));
                    b = &b[8..];
                }
                _ => return None,
            }
        }
        Some(())
    }

    /// Applies a tracking chunk's data section (entries holding tracking blocks).
    pub(crate) fn apply_chunk_data(&mut self, data: &[u8]) -> Option<()> {
        for e in super::chunk::parse_entries(data).ok()? {
            match e {
                Entry::Simple(body) => self.apply(body)?,
                Entry::SubBatch { .. } => return None,
            }
        }
        Some(())
    }

    /// The snapshot's tracking blocks: every offset, and the most recent sequences.
    pub(crate) fn snapshot(&mut self) -> Vec<u8> {
        if self.sequences.len() > MAX_SEQUENCES {
            let mut by_age: Vec<_> = self
                .sequences
                .iter()
                .map(|(k, v)| (v.0, k.clone()))
                .collect();
            by_age.sort();
            let drop = by_age.len() - MAX_SEQUENCES;
            for (_, k) in by_age.into_iter().take(drop) {
                self.sequences.remove(&k);
            }
        }
        let mut buf = Vec::new();
        let mut offsets: Vec<_> = self.offsets.iter().collect();
        offsets.sort();
        for (id, off) in offsets {
            encode_offset(&mut buf, id, *off);
        }
        let mut seqs: Vec<_> = self.sequences.iter().collect();
        seqs.sort();
        for (id, (chunk_id, seq)) in seqs {
            encode_sequence(&mut buf, id, *chunk_id, *seq);
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_round_trip() {
        let mut t = Tracking::default();
        t.offsets.insert(b"c1".to_vec(), 10);
        t.sequences.insert(b"p1".to_vec(), (3, 99));
        let snap = t.snapshot();
        let mut back = Tracking::default();
        back.apply(&snap).unwrap();
        assert_eq!(back, t);
        assert!(back.apply(&[1, 5, b'a']).is_none());
        assert!(back.apply(&[9, 0]).is_none());
    }

    #[test]
    fn snapshot_keeps_the_most_recent_publishers() {
        let mut t = Tracking::default();
        for i in 0..(MAX_SEQUENCES as u64 + 10) {
            t.sequences.insert(format!("p{i}").into_bytes(), (i, i));
        }
        t.snapshot();
        assert_eq!(t.sequences.len(), MAX_SEQUENCES);
        assert!(!t.sequences.contains_key(b"p0".as_slice()));
        assert!(t
            .sequences
            .contains_key(format!("p{}", MAX_SEQUENCES + 9).as_bytes()));
    }
}
