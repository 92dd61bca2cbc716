//! Fuzzes the AMQP 0-9-1 decoders with arbitrary peer input.
//!
//! The input is read three ways: as a byte stream fed to `decode_frame` in a loop (with and
//! without a frame-max), as a method payload for `Method::decode` with the ids from its first four
//! bytes, and as content properties for `BasicProperties::decode`. Beyond "never panics", every
//! value that decodes must re-encode to bytes that decode and re-encode to the same bytes (bytes,
//! not values, are compared because a decoded NaN float is not equal to itself).

#![no_main]

use amqp_wire::{decode_frame, BasicProperties, Frame, Method};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for frame_max in [0, 4096] {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(frame)) = decode_frame(&mut buf, frame_max) {
            if let Frame::Header { properties, .. } = &frame {
                if let Ok(props) = BasicProperties::decode(properties) {
                    check_properties(&props);
                }
            }
            check_frame(&frame);
        }
    }

    if let [c0, c1, m0, m1, args @ ..] = data {
        let class_id = u16::from_be_bytes([*c0, *c1]);
        let method_id = u16::from_be_bytes([*m0, *m1]);
        if let Ok(method) = Method::decode(class_id, method_id, Bytes::copy_from_slice(args)) {
            check_frame(&Frame::Method { channel: 1, method });
        }
    }

    if let Ok(props) = BasicProperties::decode(&Bytes::copy_from_slice(data)) {
        check_properties(&props);
    }
});

/// encode -> decode -> encode gives the same bytes.
fn check_frame(frame: &Frame) {
    let mut first = BytesMut::new();
    frame.encode(&mut first);
    let expected = first.clone();
    let again = decode_frame(&mut first, 0)
        .expect("a re-encoded frame decodes")
        .expect("a re-encoded frame is complete");
    assert!(first.is_empty(), "a re-encoded frame is consumed exactly");
    let mut second = BytesMut::new();
    again.encode(&mut second);
    assert_eq!(expected, second);
}

fn check_properties(props: &BasicProperties) {
    let first = props.to_bytes();
    let again = BasicProperties::decode(&first).expect("re-encoded properties decode");
    assert_eq!(first, again.to_bytes());
}
