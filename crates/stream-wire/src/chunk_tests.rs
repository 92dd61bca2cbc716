//! Unit tests for the osiris chunk header, chunks as delivered, and data entries.

use super::*;

fn header() -> ChunkHeader {
    ChunkHeader {
        chunk_type: ChunkType::User,
        num_entries: 2,
        num_records: 11,
        timestamp: 1_700_000_000_123,
        epoch: 3,
        chunk_id: 4096,
        crc: 0xdead_beef,
        data_length: 77,
        trailer_length: 12,
        bloom_size: 16,
        reserved: 0,
    }
}

#[test]
fn header_is_48_bytes_in_osiris_order() {
    let bytes = header().to_bytes();
    assert_eq!(bytes.len(), CHUNK_HEADER_SIZE);
    assert_eq!(bytes[0], 0x50, "magic 5, version 0");
    assert_eq!(bytes[1], 0, "chunk type user");
    assert_eq!(&bytes[2..4], &[0, 2], "entries");
    assert_eq!(&bytes[4..8], &[0, 0, 0, 11], "records");
    assert_eq!(
        &bytes[8..16],
        &1_700_000_000_123i64.to_be_bytes(),
        "timestamp"
    );
    assert_eq!(&bytes[16..24], &3u64.to_be_bytes(), "epoch");
    assert_eq!(&bytes[24..32], &4096u64.to_be_bytes(), "chunk id");
    assert_eq!(&bytes[32..36], &[0xde, 0xad, 0xbe, 0xef], "crc");
    assert_eq!(&bytes[36..40], &[0, 0, 0, 77], "data length");
    assert_eq!(&bytes[40..44], &[0, 0, 0, 12], "trailer length");
    assert_eq!(&bytes[44..48], &[16, 0, 0, 0], "bloom size, reserved");
    assert_eq!(ChunkHeader::parse(&bytes).unwrap(), header());
}

#[test]
fn header_parse_rejects_bad_magic_and_short_input() {
    let mut bytes = header().to_bytes();
    bytes[0] = 0x51;
    assert_eq!(
        ChunkHeader::parse(&bytes),
        Err(WireError::BadChunkMagic(0x51))
    );
    assert_eq!(ChunkHeader::parse(&bytes[..47]), Err(WireError::Truncated));
}

#[test]
fn header_keeps_unknown_type_and_reserved_bits() {
    let mut h = header();
    h.chunk_type = ChunkType::Other(9);
    h.reserved = 0x00ab_cdef;
    assert_eq!(ChunkHeader::parse(&h.to_bytes()).unwrap(), h);
    for t in 0..=255u8 {
        assert_eq!(ChunkType::from(t).code(), t);
    }
}

#[test]
fn offsets_and_lengths() {
    let h = header();
    assert_eq!(h.next_offset(), 4107);
    assert_eq!(h.stored_len(), 48 + 16 + 77 + 12);
}

#[test]
fn crc_is_ieee_crc32() {
    // The standard check value of CRC-32/ISO-HDLC, which erlang:crc32/1 computes.
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
}

#[test]
fn entries_encode_as_osiris_writes_them() {
    let mut out = BytesMut::new();
    Entry::Simple(Bytes::from_static(b"abc")).encode(&mut out);
    assert_eq!(&out[..], &[0, 0, 0, 3, b'a', b'b', b'c']);

    let mut out = BytesMut::new();
    Entry::SubBatch(SubBatch {
        compression: compression::GZIP,
        records: 300,
        uncompressed_len: 0x0102_0304,
        body: Bytes::from_static(b"zz"),
    })
    .encode(&mut out);
    assert_eq!(
        &out[..],
        &[0x90, 0x01, 0x2c, 1, 2, 3, 4, 0, 0, 0, 2, b'z', b'z']
    );
}

#[test]
fn chunk_from_entries_round_trips_and_counts_records() {
    let entries = vec![
        Entry::Simple(Bytes::from_static(b"one")),
        Entry::SubBatch(SubBatch {
            compression: compression::ZSTD,
            records: 5,
            uncompressed_len: 100,
            body: Bytes::from_static(b"compressed"),
        }),
        Entry::Simple(Bytes::new()),
    ];
    let chunk = Chunk::from_entries(42, 1, 10, &entries);
    assert_eq!(chunk.header.num_entries, 3);
    assert_eq!(chunk.header.num_records, 7);
    assert_eq!(chunk.header.next_offset(), 17);
    assert_eq!(chunk.header.data_length as usize, chunk.data.len());
    assert!(chunk.header.crc_matches(&chunk.data));
    let read: Vec<Entry> = chunk.entries().collect::<Result<_, _>>().unwrap();
    assert_eq!(read, entries);

    let mut out = BytesMut::new();
    chunk.encode(&mut out);
    assert_eq!(out.len(), chunk.encoded_len());
    let back = Chunk::decode(&mut Cursor::new(out.freeze())).unwrap();
    assert_eq!(back, chunk);
}

#[test]
fn delivered_chunk_may_carry_its_trailer_but_nothing_else() {
    let mut chunk = Chunk::from_entries(0, 0, 0, &[Entry::Simple(Bytes::from_static(b"x"))]);
    chunk.header.trailer_length = 4;
    chunk.header.bloom_size = 16; // describes the file; no bloom bytes on the wire

    let mut wire = BytesMut::new();
    chunk.encode(&mut wire);
    let without_trailer = wire.clone().freeze();
    assert_eq!(
        Chunk::decode(&mut Cursor::new(without_trailer)).unwrap(),
        chunk
    );

    wire.extend_from_slice(&[1, 2, 3, 4]);
    let with = Chunk::decode(&mut Cursor::new(wire.clone().freeze())).unwrap();
    assert_eq!(&with.trailer[..], &[1, 2, 3, 4]);

    wire.extend_from_slice(&[5]);
    assert_eq!(
        Chunk::decode(&mut Cursor::new(wire.freeze())),
        Err(WireError::ChunkLength)
    );
}

#[test]
fn data_length_beyond_the_frame_is_refused() {
    let mut h = header();
    h.data_length = u32::MAX;
    let mut wire = BytesMut::new();
    h.encode(&mut wire);
    wire.extend_from_slice(b"short");
    assert_eq!(
        Chunk::decode(&mut Cursor::new(wire.freeze())),
        Err(WireError::ChunkLength)
    );
}

#[test]
fn malformed_entry_ends_iteration_with_its_error() {
    // A simple entry claiming 100 bytes with 2 present, then nothing more is read.
    let mut entries = Entries::new(Bytes::from_static(&[0, 0, 0, 100, 1, 2]));
    assert_eq!(entries.next(), Some(Err(WireError::Truncated)));
    assert_eq!(entries.next(), None);
    // A sub-batch header cut short.
    let mut entries = Entries::new(Bytes::from_static(&[0x80, 0, 1]));
    assert_eq!(entries.next(), Some(Err(WireError::Truncated)));
}
