//! Hostile content: lying lengths inside a frame, negative counts, truncated strings, unknown
//! keys and versions, bad enumerations, and what may come before `Open`. Each is refused with a
//! typed error (or kept as `Command::Unknown`), never a panic.

use bytes::{Bytes, BytesMut};

use super::tests::every_command;
use super::*;
use crate::frame::decode;
use crate::OffsetSpec;

fn frame(key: u16, version: u16, content: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    crate::frame::encode_frame(key, version, content, &mut out);
    out
}

fn decode_one(mut buf: BytesMut) -> Result<Command, WireError> {
    decode(&mut buf, 0).map(|c| c.expect("a whole frame"))
}

#[test]
fn unknown_keys_and_versions_are_kept_not_errors() {
    for (key, version) in [
        (0x0020, 1),
        (0x7fff, 1),
        (0x8020, 1),
        (0x0017, 2),
        (0x0002, 3),
        (0x8001, 2),
    ] {
        let got = decode_one(frame(key, version, b"xyz")).unwrap();
        assert_eq!(
            got,
            Command::Unknown {
                key,
                version,
                content: Bytes::from_static(b"xyz")
            }
        );
        assert!(!got.allowed_before_open());
    }
}

#[test]
fn lying_lengths_inside_a_frame_are_truncated_errors() {
    // Open whose vhost string claims 100 bytes.
    let mut content = vec![0, 0, 0, 1, 0, 100];
    content.extend_from_slice(b"/");
    assert_eq!(
        decode_one(frame(key::OPEN, 1, &content)),
        Err(WireError::Truncated)
    );
    // Metadata announcing 2^31-1 streams.
    let content = [0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff, 0, 1, b'a'];
    assert_eq!(
        decode_one(frame(key::METADATA, 1, &content)),
        Err(WireError::Truncated)
    );
    // A publish entry longer than the frame.
    let content = [
        1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 0xff, 0xff, 0xff,
    ];
    assert_eq!(
        decode_one(frame(key::PUBLISH, 1, &content)),
        Err(WireError::Truncated)
    );
    // A SASL response with a length beyond the frame.
    let content = [0, 0, 0, 1, 0, 1, b'P', 0, 0, 1, 0];
    assert_eq!(
        decode_one(frame(key::SASL_AUTHENTICATE, 1, &content)),
        Err(WireError::Truncated)
    );
}

#[test]
fn negative_counts_and_lengths_are_refused() {
    let content = [0, 0, 0, 1, 0xff, 0xff, 0xff, 0xfe];
    assert_eq!(
        decode_one(frame(key::PEER_PROPERTIES, 1, &content)),
        Err(WireError::NegativeLength(-2))
    );
    let content = [0, 0, 0, 1, 0xff, 0xff];
    assert_eq!(
        decode_one(frame(key::OPEN, 1, &content)),
        Err(WireError::NegativeLength(-1))
    );
    let content = [0, 0, 0, 1, 0, 1, b'P', 0xff, 0xff, 0xff, 0xfe];
    assert_eq!(
        decode_one(frame(key::SASL_AUTHENTICATE, 1, &content)),
        Err(WireError::NegativeLength(-2))
    );
}

#[test]
fn publish_count_must_match_its_messages() {
    let good = Command::from(Publish::new(
        1,
        &[PublishedMessage::simple(1, Bytes::new())],
    ))
    .to_bytes();
    let mut bad = BytesMut::from(&good[..]);
    bad[12] = 2; // count 1 -> 2
    assert_eq!(
        decode_one(bad),
        Err(WireError::CountMismatch {
            declared: 2,
            found: 1
        })
    );
    let mut bad = BytesMut::from(&good[..]);
    bad[9] = 0x80; // negative count
    assert_eq!(
        decode_one(bad),
        Err(WireError::NegativeLength(i32::MIN + 1))
    );
}

#[test]
fn truncated_strings_and_trailing_bytes() {
    // Route cut inside its second string.
    let content = [0, 0, 0, 1, 0, 1, b'k', 0, 5, b'a', b'b'];
    assert_eq!(
        decode_one(frame(key::ROUTE, 1, &content)),
        Err(WireError::Truncated)
    );
    // A heartbeat with content.
    assert_eq!(
        decode_one(frame(key::HEARTBEAT, 1, &[0])),
        Err(WireError::TrailingBytes)
    );
    // Not UTF-8.
    let content = [0, 0, 0, 1, 0, 1, 0xff];
    assert_eq!(
        decode_one(frame(key::OPEN, 1, &content)),
        Err(WireError::InvalidUtf8)
    );
    // A code-only response with an extra byte.
    let content = [0, 0, 0, 1, 0, 1, 0];
    assert_eq!(
        decode_one(frame(key::SUBSCRIBE | RESPONSE_FLAG, 1, &content)),
        Err(WireError::TrailingBytes)
    );
}

#[test]
fn consumer_update_response_ignores_what_follows_its_offset() {
    // rstream 1.1's answer: offset type `next` (3) followed by an 8-byte offset anyway.
    // RabbitMQ (rabbit_stream_core parse_response_body) reads the type and ignores the rest.
    let mut content = vec![0, 0, 0, 9, 0, 1, 0, 3];
    content.extend_from_slice(&[0; 8]);
    let key = key::CONSUMER_UPDATE | RESPONSE_FLAG;
    assert_eq!(
        decode_one(frame(key, 1, &content)),
        Ok(Command::ConsumerUpdateResponse(ConsumerUpdateResponse {
            correlation_id: 9,
            code: ResponseCode::Ok,
            offset: Some(OffsetSpec::Next),
        }))
    );
    // An `offset` (4) with its value and a tail.
    let mut content = vec![0, 0, 0, 9, 0, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 42, 7];
    assert_eq!(
        decode_one(frame(key, 1, &content)),
        Ok(Command::ConsumerUpdateResponse(ConsumerUpdateResponse {
            correlation_id: 9,
            code: ResponseCode::Ok,
            offset: Some(OffsetSpec::Offset(42)),
        }))
    );
    // The offset itself cut short is still an error.
    content.truncate(12);
    assert_eq!(
        decode_one(frame(key, 1, &content)),
        Err(WireError::Truncated)
    );
}

#[test]
fn bad_enumerations_are_refused() {
    let content = [0, 0, 0, 1, 3, 2];
    assert_eq!(
        decode_one(frame(key::CONSUMER_UPDATE, 1, &content)),
        Err(WireError::InvalidBoolean(2))
    );
    let content = [0, 0, 0, 1, 0, 0, 1, b's', 0, 9, 0, 1];
    assert_eq!(
        decode_one(frame(key::SUBSCRIBE, 1, &content)),
        Err(WireError::InvalidOffsetType(9))
    );
}

#[test]
fn handshake_commands_are_allowed_before_open() {
    let allowed: Vec<u16> = every_command()
        .iter()
        .filter(|c| c.allowed_before_open())
        .map(Command::key)
        .collect();
    assert_eq!(
        allowed,
        [
            key::PEER_PROPERTIES,
            key::SASL_HANDSHAKE,
            key::SASL_AUTHENTICATE,
            key::SASL_AUTHENTICATE,
            key::TUNE,
            key::TUNE | RESPONSE_FLAG,
            key::OPEN,
            key::HEARTBEAT,
        ]
    );
}
