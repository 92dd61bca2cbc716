//! Strategies for the values commands are made of: strings, properties, offset
//! specifications, entries, published messages, chunks.

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use stream_wire::*;

/// Any UTF-8 string of up to 24 characters.
pub fn string() -> impl Strategy<Value = Str> {
    "\\PC{0,24}".prop_map(|s| Str::new(&s).unwrap())
}

pub fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

pub fn code() -> impl Strategy<Value = ResponseCode> {
    any::<u16>().prop_map(ResponseCode::from)
}

pub fn properties() -> impl Strategy<Value = Properties> {
    vec((string(), string()), 0..5).prop_map(Properties)
}

pub fn strings() -> impl Strategy<Value = Vec<Str>> {
    vec(string(), 0..5)
}

pub fn offset_spec() -> impl Strategy<Value = OffsetSpec> {
    prop_oneof![
        Just(OffsetSpec::First),
        Just(OffsetSpec::Last),
        Just(OffsetSpec::Next),
        any::<u64>().prop_map(OffsetSpec::Offset),
        any::<i64>().prop_map(OffsetSpec::Timestamp),
    ]
}

pub fn entry() -> impl Strategy<Value = Entry> {
    prop_oneof![
        bytes(64).prop_map(Entry::Simple),
        (0u8..8, any::<u16>(), any::<u32>(), bytes(64)).prop_map(
            |(compression, records, uncompressed_len, body)| {
                Entry::SubBatch(SubBatch {
                    compression,
                    records,
                    uncompressed_len,
                    body,
                })
            }
        ),
    ]
}

pub fn published_message() -> impl Strategy<Value = PublishedMessage> {
    (any::<u64>(), of(string()), entry()).prop_map(|(publishing_id, filter_value, entry)| {
        PublishedMessage {
            publishing_id,
            filter_value,
            entry,
        }
    })
}

/// A chunk as delivered: arbitrary header fields, lengths that match the bytes.
pub fn chunk() -> impl Strategy<Value = Chunk> {
    (
        (any::<u8>(), any::<u16>(), any::<u32>(), any::<i64>()),
        (any::<u64>(), any::<u64>(), any::<u32>(), any::<u8>()),
        (0u32..0x0100_0000, bytes(128), bytes(16), any::<bool>()),
    )
        .prop_map(
            |(
                (chunk_type, num_entries, num_records, timestamp),
                (epoch, chunk_id, crc, bloom_size),
                (reserved, data, trailer, send_trailer),
            )| {
                let trailer_length = trailer.len() as u32;
                Chunk {
                    header: ChunkHeader {
                        chunk_type: ChunkType::from(chunk_type),
                        num_entries,
                        num_records,
                        timestamp,
                        epoch,
                        chunk_id,
                        crc,
                        data_length: data.len() as u32,
                        trailer_length,
                        bloom_size,
                        reserved,
                    },
                    data,
                    trailer: if send_trailer { trailer } else { Bytes::new() },
                }
            },
        )
}

/// A chunk built from real entries (so its entries can be read back).
pub fn chunk_of_entries() -> impl Strategy<Value = (Vec<Entry>, Chunk)> {
    (vec(entry(), 0..6), any::<i64>(), any::<u64>(), any::<u64>()).prop_map(
        |(entries, ts, epoch, id)| {
            let chunk = Chunk::from_entries(ts, epoch, id, &entries);
            (entries, chunk)
        },
    )
}
