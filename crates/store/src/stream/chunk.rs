//! The chunk: the unit a stream is written, indexed, retained and delivered in.
//!
//! A chunk's first 48 bytes and its data section are exactly what the RabbitMQ Stream protocol's
//! `Deliver` command carries as its `OsirisChunk` (`deps/rabbitmq_stream/docs/PROTOCOL.adoc`,
//! "Deliver"), and the header layout is osiris' (`src/osiris_log.erl`, "Chunk format"); all
//! integers are big endian:
//!
//! ```text
//! offset size
//!  0     1   magic (0x5) << 4 | version (0)
//!  1     1   chunk type: 0 user, 1 tracking delta, 2 tracking snapshot
//!  2     2   number of entries
//!  4     4   number of records (a sub-batch entry holds several)
//!  8     8   timestamp, milliseconds since the Unix epoch (signed)
//! 16     8   epoch
//! 24     8   chunk id: the offset of the chunk's first record
//! 32     4   CRC-32 (IEEE) of the data section only, as clients check it
//! 36     4   data length
//! 40     4   trailer length
//! 44     1   bloom filter length (0: no filter values in the chunk)
//! 45     3   reserved, zero
//! 48         data: the entries, back to back
//!            trailer: publisher sequences (tracking blocks, below)
//!            bloom filter (`bloom.rs`)
//! ```
//!
//! Osiris stores the bloom filter between the header and the data and skips it when sending.
//! Pigeon stores it *after* the trailer, so that what a consumer is sent (header and data) is one
//! contiguous file range: a single `sendfile`. The header still says how long the filter is, as
//! osiris' does; clients read that byte as reserved. Like osiris' `user_data` chunk selector, the
//! trailer is not sent (clients size the messages by the entry count and data length).
//!
//! An entry is either simple, `0 | len:31 | body`, or a sub-batch written by a client that
//! batches (and maybe compresses) several messages,
//! `1 | compression:3 | reserved:4 | records:u16 | uncompressed length:u32 | length:u32 | body`.
//!
//! Tracking blocks (the trailer of a user chunk, the data of tracking chunks) are
//! `type:u8 | id length:u8 | id | value`, with type 0 a publisher sequence (value: chunk id u64,
//! sequence u64) and type 1 a consumer offset (value: offset u64), as osiris' "Tracking format".

use crate::StoreError;

/// Length of a chunk header.
pub const HEADER_LEN: usize = 48;
/// The first byte of every chunk: magic 0x5, version 0.
const MAGIC_VERSION: u8 = 0x50;

/// What a chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChunkType {
    /// Messages published to the stream.
    User,
    /// Consumer offsets stored since the last snapshot (`StoreOffset`).
    TrackingDelta,
    /// Every consumer offset and publisher sequence, written first in each new segment so that
    /// retention can drop older segments without losing them.
    TrackingSnapshot,
}

impl ChunkType {
    /// The header byte.
    pub fn to_byte(self) -> u8 {
        match self {
            ChunkType::User => 0,
            ChunkType::TrackingDelta => 1,
            ChunkType::TrackingSnapshot => 2,
        }
    }

    /// The type named by a header byte.
    pub fn from_byte(b: u8) -> Option<ChunkType> {
        match b {
            0 => Some(ChunkType::User),
            1 => Some(ChunkType::TrackingDelta),
            2 => Some(ChunkType::TrackingSnapshot),
            _ => None,
        }
    }
}

/// A parsed chunk header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkHeader {
    /// What the chunk holds.
    pub chunk_type: ChunkType,
    /// Entries in the data section.
    pub num_entries: u16,
    /// Records (offsets) the chunk covers.
    pub num_records: u32,
    /// Milliseconds since the Unix epoch, as given to the append.
    pub timestamp: i64,
    /// The epoch of the writer that wrote it.
    pub epoch: u64,
    /// The offset of its first record.
    pub chunk_id: u64,
    /// CRC-32 of the data section.
    pub data_crc: u32,
    /// Length of the data section.
    pub data_len: u32,
    /// Length of the trailer.
    pub trailer_len: u32,
    /// Length of the bloom filter.
    pub bloom_len: u8,
}

impl ChunkHeader {
    /// Bytes the chunk takes in its segment file: header, data, trailer and bloom filter.
    pub fn stored_len(&self) -> u64 {
        HEADER_LEN as u64
            + u64::from(self.data_len)
            + u64::from(self.trailer_len)
            + u64::from(self.bloom_len)
    }

    /// Bytes sent to a consumer: header and data.
    pub fn deliver_len(&self) -> u64 {
        HEADER_LEN as u64 + u64::from(self.data_len)
    }

    /// The offset after the chunk's last record.
    pub fn next_offset(&self) -> u64 {
        self.chunk_id + u64::from(self.num_records)
    }

    /// The 48 header bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = MAGIC_VERSION;
        b[1] = self.chunk_type.to_byte();
        b[2..4].copy_from_slice(&self.num_entries.to_be_bytes());
        b[4..8].copy_from_slice(&self.num_records.to_be_bytes());
        b[8..16].copy_from_slice(&self.timestamp.to_be_bytes());
        b[16..24].copy_from_slice(&self.epoch.to_be_bytes());
        b[24..32].copy_from_slice(&self.chunk_id.to_be_bytes());
        b[32..36].copy_from_slice(&self.data_crc.to_be_bytes());
        b[36..40].copy_from_slice(&self.data_len.to_be_bytes());
        b[40..44].copy_from_slice(&self.trailer_len.to_be_bytes());
        b[44] = self.bloom_len;
        b
    }

    /// Parses 48 header bytes; `None` if the magic, version or type is wrong.
    pub fn parse(b: &[u8; HEADER_LEN]) -> Option<ChunkHeader> {
        if b[0] != MAGIC_VERSION || b[45..48] != [0, 0, 0] {
            return None;
        }
        Some(ChunkHeader {
            chunk_type: ChunkType::from_byte(b[1])?,
            num_entries: u16::from_be_bytes([b[2], b[3]]),
            num_records: be_u32(&b[4..8]),
            timestamp: i64::from_be_bytes(be8(&b[8..16])),
            epoch: u64::from_be_bytes(be8(&b[16..24])),
            chunk_id: u64::from_be_bytes(be8(&b[24..32])),
            data_crc: be_u32(&b[32..36]),
            data_len: be_u32(&b[36..40]),
            trailer_len: be_u32(&b[40..44]),
            bloom_len: b[44],
        })
    }
}

fn be8(b: &[u8]) -> [u8; 8] {
    let mut a = [0; 8];
    a.copy_from_slice(&b[..8]);
    a
}

pub(crate) fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

pub(crate) fn be_u64(b: &[u8]) -> u64 {
    u64::from_be_bytes(be8(b))
}

/// One entry of a chunk's data section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Entry<'a> {
    /// One message (for the stream protocol, an AMQP 1.0 encoded message).
    Simple(&'a [u8]),
    /// Several messages a client batched into one sub-entry, as it sent them.
    SubBatch {
        /// Compression type (0 none, 1 gzip, ...), 3 bits.
        compression: u8,
        /// How many messages the batch holds: the offsets it takes.
        records: u16,
        /// Length of `data` once uncompressed.
        uncompressed_len: u32,
        /// The batch as the client sent it.
        data: &'a [u8],
    },
}

/// The largest simple entry body: its length is 31 bits.
pub const MAX_ENTRY_LEN: usize = 0x7fff_ffff;

impl Entry<'_> {
    /// Records (offsets) the entry takes.
    pub fn records(&self) -> u32 {
        match self {
            Entry::Simple(_) => 1,
            Entry::SubBatch { records, .. } => u32::from(*records),
        }
    }

    fn encoded_len(&self) -> usize {
        match self {
            Entry::Simple(body) => 4 + body.len(),
            Entry::SubBatch { data, .. } => 11 + data.len(),
        }
    }

    fn encode(&self, buf: &mut Vec<u8>) -> Result<(), StoreError> {
        match *self {
            Entry::Simple(body) => {
                let len = u32::try_from(body.len())
                    .ok()
                    .filter(|&l| l as usize <= MAX_ENTRY_LEN)
                    .ok_or(StoreError::TooLarge { len: body.len() })?;
                buf.extend_from_slice(&len.to_be_bytes());
                buf.extend_from_slice(body);
            }
            Entry::SubBatch {
                compression,
                records,
                uncompressed_len,
                data,
            } => {
                let len = u32::try_from(data.len())
                    .map_err(|_| StoreError::TooLarge { len: data.len() })?;
                buf.push(0x80 | ((compression & 0x7) << 4));
                buf.extend_from_slice(&records.to_be_bytes());
                buf.extend_from_slice(&uncompressed_len.to_be_bytes());
                buf.extend_from_slice(&len.to_be_bytes());
                buf.extend_from_slice(data);
            }
        }
        Ok(())
    }
}

/// Parses a chunk's data section into its entries. Fails on a malformed section (the chunk's CRC
/// matched, so this means a writer bug, not a torn write).
pub fn parse_entries(data: &[u8]) -> Result<Vec<Entry<'_>>, EntryError> {
    let mut entries = Vec::new();
    let mut rest = data;
    while let Some(&first) = rest.first() {
        if first & 0x80 == 0 {
            if rest.len() < 4 {
                return Err(EntryError);
            }
            let len = be_u32(rest) as usize;
            let body = rest.get(4..4 + len).ok_or(EntryError)?;
            entries.push(Entry::Simple(body));
            rest = &rest[4 + len..];
        } else {
            if rest.len() < 11 {
                return Err(EntryError);
            }
            let records = u16::from_be_bytes([rest[1], rest[2]]);
            let uncompressed_len = be_u32(&rest[3..7]);
            let len = be_u32(&rest[7..11]) as usize;
            let body = rest.get(11..11 + len).ok_or(EntryError)?;
            entries.push(Entry::SubBatch {
                compression: (first >> 4) & 0x7,
                records,
                uncompressed_len,
                data: body,
            });
            rest = &rest[11 + len..];
        }
    }
    Ok(entries)
}

/// A chunk's data section is not a sequence of entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed chunk entries")]
pub struct EntryError;

/// What a chunk about to be written holds, besides its header fields.
pub(crate) struct ChunkBody<'a> {
    pub(crate) chunk_type: ChunkType,
    pub(crate) entries: &'a [Entry<'a>],
    pub(crate) trailer: &'a [u8],
    pub(crate) bloom: &'a [u8],
}

/// Encodes a whole chunk (header, data, trailer, bloom filter) into `buf`, which is cleared
/// first, and returns its header.
pub(crate) fn build(
    buf: &mut Vec<u8>,
    body: &ChunkBody<'_>,
    chunk_id: u64,
    timestamp: i64,
    epoch: u64,
) -> Result<ChunkHeader, StoreError> {
    let num_entries = u16::try_from(body.entries.len()).map_err(|_| StoreError::InvalidChunk {
        reason: format!(
            "{} entries (a chunk holds at most 65535)",
            body.entries.len()
        ),
    })?;
    if body.entries.is_empty() {
        return Err(StoreError::InvalidChunk {
            reason: "a chunk needs at least one entry".into(),
        });
    }
    // One pass for both sums: a chunk of a Publish frame has thousands of small entries.
    let mut num_records = 0u32;
    let mut data_len = 0usize;
    for e in body.entries {
        num_records =
            num_records
                .checked_add(e.records())
                .ok_or_else(|| StoreError::InvalidChunk {
                    reason: "too many records".into(),
                })?;
        data_len += e.encoded_len();
    }
    let total = HEADER_LEN + data_len + body.trailer.len() + body.bloom.len();
    let too_large = || StoreError::TooLarge { len: total };
    let data_len32 = u32::try_from(data_len).map_err(|_| too_large())?;
    let trailer_len = u32::try_from(body.trailer.len()).map_err(|_| too_large())?;
    let bloom_len = u8::try_from(body.bloom.len()).map_err(|_| too_large())?;
    buf.clear();
    buf.reserve(total);
    buf.resize(HEADER_LEN, 0);
    for e in body.entries {
        e.encode(buf)?;
    }
    let data_crc = crc32fast::hash(&buf[HEADER_LEN..]);
    buf.extend_from_slice(body.trailer);
    buf.extend_from_slice(body.bloom);
    let header = ChunkHeader {
        chunk_type: body.chunk_type,
        num_entries,
        num_records,
        timestamp,
        epoch,
        chunk_id,
        data_crc,
        data_len: data_len32,
        trailer_len,
        bloom_len,
    };
    buf[..HEADER_LEN].copy_from_slice(&header.encode());
    Ok(header)
}

/// The checksum an index record keeps of what the chunk's own CRC does not cover: its trailer and
/// bloom filter (the header is compared field by field with the index record).
pub(crate) fn tail_crc(trailer_and_bloom: &[u8]) -> u32 {
    crc32fast::hash(trailer_and_bloom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips() {
        let h = ChunkHeader {
            chunk_type: ChunkType::TrackingDelta,
            num_entries: 3,
            num_records: 7,
            timestamp: -5,
            epoch: 2,
            chunk_id: 1 << 40,
            data_crc: 0xdead_beef,
            data_len: 100,
            trailer_len: 20,
            bloom_len: 16,
        };
        assert_eq!(ChunkHeader::parse(&h.encode()), Some(h));
        assert_eq!(h.encode()[0], 0x50);
        let mut bad = h.encode();
        bad[0] = 0x40;
        assert_eq!(ChunkHeader::parse(&bad), None);
    }

    #[test]
    fn entries_round_trip_and_crc_covers_data_only() {
        let entries = [
            Entry::Simple(b"hello"),
            Entry::SubBatch {
                compression: 1,
                records: 3,
                uncompressed_len: 40,
                data: b"zzz",
            },
            Entry::Simple(b""),
        ];
        let mut buf = Vec::new();
        let body = ChunkBody {
            chunk_type: ChunkType::User,
            entries: &entries,
            trailer: b"trl",
            bloom: &[],
        };
        let h = build(&mut buf, &body, 10, 99, 1).unwrap();
        assert_eq!(h.num_records, 5);
        assert_eq!(h.num_entries, 3);
        assert_eq!(buf.len() as u64, h.stored_len());
        let data = &buf[HEADER_LEN..HEADER_LEN + h.data_len as usize];
        assert_eq!(crc32fast::hash(data), h.data_crc);
        assert_eq!(parse_entries(data).unwrap(), entries);
        assert_eq!(&buf[h.deliver_len() as usize..], b"trl");
    }

    #[test]
    fn malformed_entries_are_refused() {
        assert_eq!(parse_entries(&[0, 0, 0, 9, 1]), Err(EntryError));
        assert_eq!(parse_entries(&[0x80, 0]), Err(EntryError));
    }
}
