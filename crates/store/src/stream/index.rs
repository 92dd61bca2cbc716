//! Segment and index files, and the index record.
//!
//! A segment `NNNNNNNNNNNNNNNNNNNN.segment` (20 digits: the chunk id of its first chunk, as
//! osiris names them) is an 8-byte file header, `PGSS` and a big-endian version 1, then chunks
//! back to back. Its index `NNNNNNNNNNNNNNNNNNNN.index` is `PGSI` and version 1, then one
//! 56-byte record per chunk, in order (big endian):
//!
//! ```text
//!  0  8  chunk id            24  8  file position of the chunk   44  1  chunk type
//!  8  8  timestamp           32  4  number of records            45  1  bloom filter length
//! 16  8  epoch               36  4  data length                  46  2  number of entries
//!                            40  4  trailer length               48  4  CRC-32 of trailer+bloom
//!                                                                52  4  CRC-32 of bytes 0..52
//! ```
//!
//! Osiris' index record (chunk id, timestamp, epoch, file position, chunk type) is extended with
//! the rest of the chunk header so that recovery can check the last chunk against it, and
//! tracking recovery can find trailers without reading headers; and with two checksums, so that
//! a torn or zeroed record is recognised as such.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::chunk::{be_u32, be_u64, ChunkHeader, ChunkType};

/// Length of a segment or index file header.
pub(crate) const FILE_HEADER_LEN: u64 = 8;
pub(crate) const SEGMENT_MAGIC: [u8; 8] = *b"PGSS\0\0\0\x01";
pub(crate) const INDEX_MAGIC: [u8; 8] = *b"PGSI\0\0\0\x01";
/// Length of an index record.
pub(crate) const RECORD_LEN: u64 = 56;

pub(crate) fn segment_name(first_chunk_id: u64) -> String {
    format!("{first_chunk_id:020}.segment")
}

pub(crate) fn index_name(first_chunk_id: u64) -> String {
    format!("{first_chunk_id:020}.index")
}

/// Where record `i` of an index file starts.
pub(crate) fn record_pos(i: u64) -> u64 {
    FILE_HEADER_LEN + i * RECORD_LEN
}

/// One chunk as the index knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexRecord {
    pub(crate) chunk_id: u64,
    pub(crate) timestamp: i64,
    pub(crate) epoch: u64,
    pub(crate) position: u64,
    pub(crate) num_records: u32,
    pub(crate) data_len: u32,
    pub(crate) trailer_len: u32,
    pub(crate) chunk_type: ChunkType,
    pub(crate) bloom_len: u8,
    pub(crate) num_entries: u16,
    pub(crate) tail_crc: u32,
}

impl IndexRecord {
    pub(crate) fn new(h: &ChunkHeader, position: u64, tail_crc: u32) -> Self {
        IndexRecord {
            chunk_id: h.chunk_id,
            timestamp: h.timestamp,
            epoch: h.epoch,
            position,
            num_records: h.num_records,
            data_len: h.data_len,
            trailer_len: h.trailer_len,
            chunk_type: h.chunk_type,
            bloom_len: h.bloom_len,
            num_entries: h.num_entries,
            tail_crc,
        }
    }

    pub(crate) fn stored_len(&self) -> u64 {
        super::chunk::HEADER_LEN as u64
            + u64::from(self.data_len)
            + u64::from(self.trailer_len)
            + u64::from(self.bloom_len)
    }

    pub(crate) fn end(&self) -> u64 {
        self.position + self.stored_len()
    }

    pub(crate) fn next_offset(&self) -> u64 {
        self.chunk_id + u64::from(self.num_records)
    }

    /// Whether `h` is the header this record describes (the data CRC aside).
    pub(crate) fn describes(&self, h: &ChunkHeader) -> bool {
        self.chunk_id == h.chunk_id
            && self.timestamp == h.timestamp
            && self.epoch == h.epoch
            && self.num_records == h.num_records
            && self.data_len == h.data_len
            && self.trailer_len == h.trailer_len
            && self.chunk_type == h.chunk_type
            && self.bloom_len == h.bloom_len
            && self.num_entries == h.num_entries
    }

    pub(crate) fn encode(&self) -> [u8; RECORD_LEN as usize] {
        let mut b = [0u8; RECORD_LEN as usize];
        b[0..8].copy_from_slice(&self.chunk_id.to_be_bytes());
        b[8..16].copy_from_slice(&self.timestamp.to_be_bytes());
        b[16..24].copy_from_slice(&self.epoch.to_be_bytes());
        b[24..32].copy_from_slice(&self.position.to_be_bytes());
        b[32..36].copy_from_slice(&self.num_records.to_be_bytes());
        b[36..40].copy_from_slice(&self.data_len.to_be_bytes());
        b[40..44].copy_from_slice(&self.trailer_len.to_be_bytes());
        b[44] = self.chunk_type.to_byte();
        b[45] = self.bloom_len;
        b[46..48].copy_from_slice(&self.num_entries.to_be_bytes());
        b[48..52].copy_from_slice(&self.tail_crc.to_be_bytes());
        let crc = crc32fast::hash(&b[..52]);
        b[52..56].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Parses a record; `None` if it is damaged (checksum, type) or a tail of zeros.
    pub(crate) fn parse(b: &[u8]) -> Option<IndexRecord> {
        if b.len() < RECORD_LEN as usize || crc32fast::hash(&b[..52]) != be_u32(&b[52..56]) {
            return None;
        }
        Some(IndexRecord {
            chunk_id: be_u64(&b[0..8]),
            timestamp: be_u64(&b[8..16]) as i64,
            epoch: be_u64(&b[16..24]),
            position: be_u64(&b[24..32]),
            num_records: be_u32(&b[32..36]),
            data_len: be_u32(&b[36..40]),
            trailer_len: be_u32(&b[40..44]),
            chunk_type: ChunkType::from_byte(b[44])?,
            bloom_len: b[45],
            num_entries: u16::from_be_bytes([b[46], b[47]]),
            tail_crc: be_u32(&b[48..52]),
        })
    }
}

/// Reads record `i` of an index file, counting the read in `reads`.
pub(crate) fn read_record(file: &File, i: u64, reads: &mut u64) -> io::Result<Option<IndexRecord>> {
    let mut b = [0u8; RECORD_LEN as usize];
    *reads += 1;
    file.read_exact_at(&mut b, record_pos(i))?;
    Ok(IndexRecord::parse(&b))
}

/// Reads the records `from..to` of an index file in one read.
pub(crate) fn read_records(
    file: &File,
    from: u64,
    to: u64,
    reads: &mut u64,
) -> io::Result<Vec<Option<IndexRecord>>> {
    let n = to.saturating_sub(from);
    let mut buf = vec![0u8; (n * RECORD_LEN) as usize];
    *reads += 1;
    file.read_exact_at(&mut buf, record_pos(from))?;
    Ok(buf
        .chunks_exact(RECORD_LEN as usize)
        .map(IndexRecord::parse)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips_and_detects_damage() {
        let r = IndexRecord {
            chunk_id: 5,
            timestamp: -1,
            epoch: 3,
            position: 8,
            num_records: 2,
            data_len: 10,
            trailer_len: 0,
            chunk_type: ChunkType::User,
            bloom_len: 16,
            num_entries: 2,
            tail_crc: 77,
        };
        let mut b = r.encode();
        assert_eq!(IndexRecord::parse(&b), Some(r));
        b[3] ^= 1;
        assert_eq!(IndexRecord::parse(&b), None);
        assert_eq!(IndexRecord::parse(&[0u8; 56]), None);
        assert_eq!(r.stored_len(), 48 + 10 + 16);
    }
}
