//! The osiris chunk: the unit a stream is stored, replicated and delivered in.
//!
//! Layout (osiris `src/osiris_log.erl`, "Chunk format"; PROTOCOL.adoc, `Deliver`), all
//! integers big-endian, 48 bytes of header:
//!
//! | bytes | field | notes |
//! |---|---|---|
//! | 1 | magic (high 4 bits) = 5, version (low 4 bits) = 0 | octet 0x50 |
//! | 1 | chunk type | 0 user, 1 tracking delta, 2 tracking snapshot |
//! | 2 | number of entries | simple entries + sub-batches |
//! | 4 | number of records | messages: a sub-batch counts its records |
//! | 8 | timestamp | int64, milliseconds since the Unix epoch |
//! | 8 | epoch | uint64 |
//! | 8 | chunk id | the offset of the chunk's first record |
//! | 4 | CRC | CRC-32 (IEEE, `erlang:crc32/1`) of the entry data only |
//! | 4 | data length | bytes of entries |
//! | 4 | trailer length | bytes of tracking trailer |
//! | 1 | bloom size | bytes of bloom filter that follow the header *in the segment file* |
//! | 3 | reserved | zero |
//!
//! In a segment file the header is followed by the bloom filter (bloom size bytes), the entry
//! data and the trailer. **On the wire that is not so**: a `Deliver` carries the 48-byte header
//! unchanged (bloom size included) and then the entry data only, with no bloom filter bytes;
//! the trailer follows only when the server sends whole chunks (osiris
//! `select_amount_to_send/5`: consumers of user chunks get `{FilterSize, DataSize}`, i.e. the
//! bloom skipped and the trailer left out). A client therefore must not skip `bloom size` bytes
//! after the header of a delivered chunk. [`Chunk`] is the wire form; [`ChunkHeader::stored_len`]
//! gives the on-disk length for a store.
//!
//! The Pigeon store (`crates/store/src/stream/`) writes chunks in this layout so a delivery is
//! the header and the data bytes as stored; this module is its reference for the header.
//!
//! Entries ([`Entry`]) have the same format in a chunk's data and in a `Publish` frame: a simple
//! entry (top bit 0, 31-bit length, body) or a sub-batch (top bit 1, compression type, record
//! count, uncompressed and compressed lengths, body), whose body is passed through untouched.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::WireError;
use crate::types::Cursor;

/// Size of a chunk header.
pub const CHUNK_HEADER_SIZE: usize = 48;
/// The first octet of every chunk: magic 5 in the high nibble, format version 0 in the low one
/// (osiris.hrl `?MAGIC` and `?VERSION`; osiris_log.erl's comment says version 1, its code
/// writes and accepts 0).
pub const CHUNK_MAGIC_VERSION: u8 = 0x50;

/// What a chunk's entries are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChunkType {
    /// 0: messages.
    User,
    /// 1: tracking delta (writer sequences, consumer offsets stored since the last snapshot).
    TrackingDelta,
    /// 2: tracking snapshot.
    TrackingSnapshot,
    /// Any other value (osiris reads the type as a plain octet).
    Other(u8),
}

impl ChunkType {
    /// The octet on the wire.
    pub fn code(self) -> u8 {
        match self {
            ChunkType::User => 0,
            ChunkType::TrackingDelta => 1,
            ChunkType::TrackingSnapshot => 2,
            ChunkType::Other(t) => t,
        }
    }
}

impl From<u8> for ChunkType {
    fn from(t: u8) -> Self {
        match t {
            0 => ChunkType::User,
            1 => ChunkType::TrackingDelta,
            2 => ChunkType::TrackingSnapshot,
            t => ChunkType::Other(t),
        }
    }
}

/// The 48-byte header of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkHeader {
    /// What the entries are.
    pub chunk_type: ChunkType,
    /// Entries in the data: simple entries and sub-batches.
    pub num_entries: u16,
    /// Records (messages): a simple entry is one, a sub-batch its record count.
    pub num_records: u32,
    /// When the chunk was written, milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The writer's epoch.
    pub epoch: u64,
    /// The offset of the first record (osiris "chunk id").
    pub chunk_id: u64,
    /// CRC-32 (IEEE) of the entry data.
    pub crc: u32,
    /// Bytes of entry data.
    pub data_length: u32,
    /// Bytes of trailer.
    pub trailer_length: u32,
    /// Bytes of bloom filter after the header in the segment file (not sent to consumers).
    pub bloom_size: u8,
    /// The 24 reserved bits, kept as read.
    pub reserved: u32,
}

impl ChunkHeader {
    /// A header for `data` (already-encoded entries): CRC and data length computed, no trailer,
    /// no bloom filter.
    pub fn for_data(
        chunk_type: ChunkType,
        timestamp: i64,
        epoch: u64,
        chunk_id: u64,
        num_entries: u16,
        num_records: u32,
        data: &[u8],
    ) -> Self {
        ChunkHeader {
            chunk_type,
            num_entries,
            num_records,
            timestamp,
            epoch,
            chunk_id,
            crc: crc32(data),
            data_length: u32::try_from(data.len()).unwrap_or(u32::MAX),
            trailer_length: 0,
            bloom_size: 0,
            reserved: 0,
        }
    }

    /// Reads a header from the first 48 bytes of `buf` (the rest is ignored).
    pub fn parse(buf: &[u8]) -> Result<Self, WireError> {
        let head = buf.get(..CHUNK_HEADER_SIZE).ok_or(WireError::Truncated)?;
        let mut c = Cursor::new(Bytes::copy_from_slice(head));
        Self::decode(&mut c)
    }

    pub(crate) fn decode(c: &mut Cursor) -> Result<Self, WireError> {
        let magic = c.u8()?;
        if magic != CHUNK_MAGIC_VERSION {
            return Err(WireError::BadChunkMagic(magic));
        }
        let chunk_type = ChunkType::from(c.u8()?);
        let num_entries = c.u16()?;
        let num_records = c.u32()?;
        let timestamp = c.i64()?;
        let epoch = c.u64()?;
        let chunk_id = c.u64()?;
        let crc = c.u32()?;
        let data_length = c.u32()?;
        let trailer_length = c.u32()?;
        let bloom_and_reserved = c.u32()?;
        Ok(ChunkHeader {
            chunk_type,
            num_entries,
            num_records,
            timestamp,
            epoch,
            chunk_id,
            crc,
            data_length,
            trailer_length,
            bloom_size: (bloom_and_reserved >> 24) as u8,
            reserved: bloom_and_reserved & 0x00ff_ffff,
        })
    }

    /// Writes the 48 bytes.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(CHUNK_HEADER_SIZE);
        out.put_u8(CHUNK_MAGIC_VERSION);
        out.put_u8(self.chunk_type.code());
        out.put_u16(self.num_entries);
        out.put_u32(self.num_records);
        out.put_i64(self.timestamp);
        out.put_u64(self.epoch);
        out.put_u64(self.chunk_id);
        out.put_u32(self.crc);
        out.put_u32(self.data_length);
        out.put_u32(self.trailer_length);
        out.put_u32((u32::from(self.bloom_size) << 24) | (self.reserved & 0x00ff_ffff));
    }

    /// The 48 bytes as an array.
    pub fn to_bytes(&self) -> [u8; CHUNK_HEADER_SIZE] {
        let mut out = BytesMut::with_capacity(CHUNK_HEADER_SIZE);
        self.encode(&mut out);
        let mut bytes = [0; CHUNK_HEADER_SIZE];
        bytes.copy_from_slice(&out);
        bytes
    }

    /// The offset after the chunk's last record (the next chunk's id).
    pub fn next_offset(&self) -> u64 {
        self.chunk_id.saturating_add(u64::from(self.num_records))
    }

    /// Length of the whole chunk in a segment file: header, bloom filter, data, trailer.
    pub fn stored_len(&self) -> u64 {
        CHUNK_HEADER_SIZE as u64
            + u64::from(self.bloom_size)
            + u64::from(self.data_length)
            + u64::from(self.trailer_length)
    }

    /// True if `data` has the CRC this header records.
    pub fn crc_matches(&self, data: &[u8]) -> bool {
        crc32(data) == self.crc
    }
}

/// CRC-32 (IEEE 802.3, as `erlang:crc32/1`), the checksum of a chunk's entry data.
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// A chunk as a `Deliver` carries it: the header, the entry data, and the trailer when the
/// server sent it (empty otherwise). Never a bloom filter: see the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// The header, as stored (its `bloom_size` describes the file, not these bytes).
    pub header: ChunkHeader,
    /// `header.data_length` bytes of entries.
    pub data: Bytes,
    /// Either empty or `header.trailer_length` bytes of tracking trailer.
    pub trailer: Bytes,
}

impl Chunk {
    /// A user chunk holding `entries`, with header fields computed (no bloom, no trailer).
    pub fn from_entries(timestamp: i64, epoch: u64, chunk_id: u64, entries: &[Entry]) -> Self {
        let mut data = BytesMut::with_capacity(entries.iter().map(Entry::encoded_len).sum());
        let mut records = 0u32;
        for e in entries {
            e.encode(&mut data);
            records = records.saturating_add(e.records());
        }
        let num_entries = u16::try_from(entries.len()).unwrap_or(u16::MAX);
        let header = ChunkHeader::for_data(
            ChunkType::User,
            timestamp,
            epoch,
            chunk_id,
            num_entries,
            records,
            &data,
        );
        Chunk {
            header,
            data: data.freeze(),
            trailer: Bytes::new(),
        }
    }

    /// Reads a delivered chunk: header, `data_length` bytes, then nothing or exactly
    /// `trailer_length` bytes. Entries are not checked here; [`Chunk::entries`] reads them.
    pub(crate) fn decode(c: &mut Cursor) -> Result<Self, WireError> {
        let header = ChunkHeader::decode(c)?;
        let data_len = usize::try_from(header.data_length).map_err(|_| WireError::ChunkLength)?;
        if data_len > c.remaining() {
            return Err(WireError::ChunkLength);
        }
        let data = c.bytes(data_len)?;
        let rest = c.remaining();
        if rest != 0 && u32::try_from(rest).ok() != Some(header.trailer_length) {
            return Err(WireError::ChunkLength);
        }
        let trailer = c.rest();
        Ok(Chunk {
            header,
            data,
            trailer,
        })
    }

    /// Writes the header, the data and the trailer (if any), as a `Deliver` carries them.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(CHUNK_HEADER_SIZE + self.data.len() + self.trailer.len());
        self.header.encode(out);
        out.put_slice(&self.data);
        out.put_slice(&self.trailer);
    }

    /// Encoded size on the wire.
    pub fn encoded_len(&self) -> usize {
        CHUNK_HEADER_SIZE + self.data.len() + self.trailer.len()
    }

    /// The entries of a user chunk, read lazily from `data`.
    pub fn entries(&self) -> Entries {
        Entries::new(self.data.clone())
    }
}

/// Compression types of a sub-batch entry, as the RabbitMQ clients number them. The codec
/// does not compress or decompress: the body is passed through.
pub mod compression {
    /// No compression.
    pub const NONE: u8 = 0;
    /// gzip.
    pub const GZIP: u8 = 1;
    /// Snappy.
    pub const SNAPPY: u8 = 2;
    /// LZ4.
    pub const LZ4: u8 = 3;
    /// Zstandard.
    pub const ZSTD: u8 = 4;
}

/// A sub-batch entry: several records published as one entry, possibly compressed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubBatch {
    /// Compression type (3 bits, see [`compression`]).
    pub compression: u8,
    /// Records in the batch.
    pub records: u16,
    /// Size of the body once uncompressed.
    pub uncompressed_len: u32,
    /// The (possibly compressed) records, untouched.
    pub body: Bytes,
}

/// One data entry (osiris "Data Entry format").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// One record: for a publish, one AMQP 1.0 encoded message.
    Simple(Bytes),
    /// A batch of records.
    SubBatch(SubBatch),
}

impl Entry {
    /// Records this entry counts for.
    pub fn records(&self) -> u32 {
        match self {
            Entry::Simple(_) => 1,
            Entry::SubBatch(b) => u32::from(b.records),
        }
    }

    /// Encoded size.
    pub fn encoded_len(&self) -> usize {
        match self {
            Entry::Simple(body) => 4 + body.len(),
            Entry::SubBatch(b) => 1 + 2 + 4 + 4 + b.body.len(),
        }
    }

    pub(crate) fn decode(c: &mut Cursor) -> Result<Self, WireError> {
        let first = c.u32()?;
        if first & 0x8000_0000 == 0 {
            let len = usize::try_from(first).map_err(|_| WireError::Truncated)?;
            return Ok(Entry::Simple(c.bytes(len)?));
        }
        // 1 | compression:3 | reserved:4 | records:16 | uncompressed length:32 | length:32.
        // The first u32 read holds the flag octet, the record count and one octet of the
        // uncompressed length.
        let flags = (first >> 24) as u8;
        let records = (first >> 8) as u16;
        let rest = c.bytes(3)?;
        let uncompressed_len = u32::from_be_bytes([first as u8, rest[0], rest[1], rest[2]]);
        let len = c.u32()?;
        let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
        Ok(Entry::SubBatch(SubBatch {
            compression: (flags >> 4) & 0x07,
            records,
            uncompressed_len,
            body: c.bytes(len)?,
        }))
    }

    /// Writes the entry. A simple body over 2 GiB cannot be expressed (31-bit length); rather
    /// than corrupt the framing its first 2 GiB - 1 are written.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Entry::Simple(body) => {
                let len = body.len().min(0x7fff_ffff);
                out.put_u32(len as u32);
                out.put_slice(body.get(..len).unwrap_or(body));
            }
            Entry::SubBatch(b) => {
                out.put_u8(0x80 | ((b.compression & 0x07) << 4));
                out.put_u16(b.records);
                out.put_u32(b.uncompressed_len);
                let len = u32::try_from(b.body.len()).unwrap_or(u32::MAX);
                out.put_u32(len);
                out.put_slice(b.body.get(..len as usize).unwrap_or(&b.body));
            }
        }
    }
}

/// The entries of a chunk's data, read one at a time; the first malformed entry ends the
/// iteration with its error.
#[derive(Debug, Clone)]
pub struct Entries {
    cursor: Cursor,
    failed: bool,
}

impl Entries {
    /// Entries in `data` (a chunk's data section).
    pub fn new(data: Bytes) -> Self {
        Entries {
            cursor: Cursor::new(data),
            failed: false,
        }
    }
}

impl Iterator for Entries {
    type Item = Result<Entry, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.cursor.remaining() == 0 {
            return None;
        }
        let entry = Entry::decode(&mut self.cursor);
        self.failed = entry.is_err();
        Some(entry)
    }
}

#[cfg(test)]
#[path = "chunk_tests.rs"]
mod tests;
