//! No input makes a decoder panic: random bytes, random bytes behind a plausible frame header,
//! and valid encodings with bytes flipped or cut off.

use amqp_wire::*;
use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;

use crate::strategies::*;

/// Decodes frames until the buffer runs dry or an error; returns how many were decoded.
fn drain(buf: &mut BytesMut, frame_max: u32) -> usize {
    let mut n = 0;
    while let Ok(Some(_)) = decode_frame(buf, frame_max) {
        n += 1;
    }
    n
}

/// A valid encoding with some bytes overwritten and possibly cut short.
fn mutate(
    mut bytes: Vec<u8>,
    edits: &[(prop::sample::Index, u8)],
    cut: prop::sample::Index,
) -> Vec<u8> {
    if bytes.is_empty() {
        return bytes;
    }
    for (at, value) in edits {
        let i = at.index(bytes.len());
        bytes[i] = *value;
    }
    let keep = cut.index(bytes.len() + 1);
    bytes.truncate(keep.max(bytes.len() / 2));
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_frame_survives_any_bytes(bytes in vec(any::<u8>(), 0..512), frame_max in any::<u32>()) {
        drain(&mut BytesMut::from(&bytes[..]), frame_max);
    }

    #[test]
    fn decode_frame_survives_any_payload_behind_a_valid_header(
        frame_type in prop::sample::select(vec![1u8, 2, 3, 8]),
        channel in any::<u16>(),
        payload in vec(any::<u8>(), 0..512),
        end in prop_oneof![Just(0xCEu8), any::<u8>()],
    ) {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[frame_type]);
        buf.extend_from_slice(&channel.to_be_bytes());
        buf.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        buf.extend_from_slice(&payload);
        buf.extend_from_slice(&[end]);
        drain(&mut buf, 0);
    }

    /// Method frames whose class and method ids are real, so the argument decoders run.
    #[test]
    fn method_decode_survives_any_arguments(
        method in method(),
        args in vec(any::<u8>(), 0..256),
    ) {
        let _ = Method::decode(method.class_id(), method.method_id(), Bytes::from(args));
    }

    #[test]
    fn method_decode_survives_mutated_encodings(
        method in method(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut out = BytesMut::new();
        encode_method_frame(1, &method, &mut out);
        let mut buf = BytesMut::from(&mutate(out.to_vec(), &edits, cut)[..]);
        drain(&mut buf, 0);
    }

    #[test]
    fn method_decode_survives_unknown_ids(class_id in any::<u16>(), method_id in any::<u16>(), args in vec(any::<u8>(), 0..64)) {
        let _ = Method::decode(class_id, method_id, Bytes::from(args));
    }

    #[test]
    fn properties_decode_survives_any_bytes(bytes in vec(any::<u8>(), 0..256)) {
        let _ = BasicProperties::decode(&Bytes::from(bytes));
    }

    #[test]
    fn properties_decode_survives_mutated_encodings(
        props in basic_properties(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let raw = mutate(props.to_bytes().to_vec(), &edits, cut);
        let _ = BasicProperties::decode(&Bytes::from(raw));
    }

    #[test]
    fn table_decode_survives_mutated_encodings(
        table in field_table(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut out = BytesMut::new();
        table.encode(&mut out);
        let _ = FieldTable::decode(Bytes::from(mutate(out.to_vec(), &edits, cut)));
    }
}
