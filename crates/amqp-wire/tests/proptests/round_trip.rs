//! Everything encoded decodes to itself.

use amqp_wire::*;
use bytes::BytesMut;
use proptest::prelude::*;

use crate::strategies::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn every_method_round_trips(method in method()) {
        let mut out = BytesMut::new();
        method.encode(&mut out);
        prop_assert_eq!(out.len(), method.encoded_len());
        let class_id = u16::from_be_bytes([out[0], out[1]]);
        let method_id = u16::from_be_bytes([out[2], out[3]]);
        prop_assert_eq!((class_id, method_id), (method.class_id(), method.method_id()));
        let decoded = Method::decode(class_id, method_id, out.freeze().slice(4..)).unwrap();
        prop_assert_eq!(decoded, method);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn basic_properties_round_trip(props in basic_properties()) {
        let raw = props.to_bytes();
        prop_assert_eq!(raw.len(), props.encoded_len());
        prop_assert_eq!(BasicProperties::decode(&raw).unwrap(), props);
    }

    #[test]
    fn field_tables_round_trip(table in field_table()) {
        let mut out = BytesMut::new();
        table.encode(&mut out);
        prop_assert_eq!(out.len(), table.encoded_len());
        prop_assert_eq!(FieldTable::decode(out.freeze()).unwrap(), table);
    }

    /// A stream of frames, delivered in arbitrary pieces, decodes to the same frames.
    #[test]
    fn frame_streams_round_trip(
        frames in proptest::collection::vec(frame(), 1..6),
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..6),
    ) {
        let mut wire = BytesMut::new();
        for f in &frames {
            f.encode(&mut wire);
        }
        let wire = wire.freeze();
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
        points.push(wire.len());
        points.sort_unstable();

        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        let mut fed = 0;
        for p in points {
            buf.extend_from_slice(&wire[fed..p]);
            fed = p;
            while let Some(f) = decode_frame(&mut buf, 0).unwrap() {
                decoded.push(f);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoded, frames);
    }

    /// Splitting a body by frame-max and reassembling it gives the body back, and no frame
    /// exceeds frame-max.
    #[test]
    fn body_frames_respect_frame_max(
        body in proptest::collection::vec(any::<u8>(), 0..3000),
        frame_max in 9u32..600,
    ) {
        let mut wire = BytesMut::new();
        encode_body_frames(7, &body, frame_max, &mut wire);
        let mut joined = Vec::new();
        while let Some(f) = decode_frame(&mut wire, frame_max).unwrap() {
            let Frame::Body { channel: 7, payload } = f else {
                return Err(TestCaseError::fail("not a body frame"));
            };
            prop_assert!(!payload.is_empty());
            joined.extend_from_slice(&payload);
        }
        prop_assert!(wire.is_empty());
        prop_assert_eq!(joined, body);
    }
}
