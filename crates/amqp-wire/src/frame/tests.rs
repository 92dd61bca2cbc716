//! Unit tests for framing: known frames, partial input, limits and malformed frames.

use super::*;
use crate::method::{BasicAck, BasicPublish};
use crate::properties::BasicProperties;

fn publish_frame_bytes() -> Vec<u8> {
    let mut v = vec![1, 0, 1, 0, 0, 0, 14]; // method frame, channel 1, 14-byte payload
    v.extend_from_slice(b"\x00\x3c\x00\x28\x00\x00\x00\x05hello\x01");
    v.push(0xCE);
    v
}

fn publish() -> Method {
    BasicPublish {
        routing_key: "hello".into(),
        mandatory: true,
        ..Default::default()
    }
    .into()
}

#[test]
fn hand_checked_basic_publish_frame() {
    let mut out = BytesMut::new();
    encode_method_frame(1, &publish(), &mut out);
    assert_eq!(&out[..], &publish_frame_bytes()[..]);

    let mut buf = BytesMut::from(&publish_frame_bytes()[..]);
    let frame = decode_frame(&mut buf, FRAME_MIN_SIZE).unwrap().unwrap();
    assert_eq!(
        frame,
        Frame::Method {
            channel: 1,
            method: publish()
        }
    );
    assert!(buf.is_empty());
}

#[test]
fn partial_frames_wait_and_consume_nothing() {
    let bytes = publish_frame_bytes();
    for cut in 0..bytes.len() {
        let mut buf = BytesMut::from(&bytes[..cut]);
        assert_eq!(decode_frame(&mut buf, 0), Ok(None), "cut at {cut}");
        assert_eq!(buf.len(), cut);
    }
}

#[test]
fn byte_by_byte_arrival_decodes_once_complete() {
    let bytes = publish_frame_bytes();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for b in bytes {
        buf.extend_from_slice(&[b]);
        if let Some(f) = decode_frame(&mut buf, 0).unwrap() {
            frames.push(f);
        }
    }
    assert_eq!(
        frames,
        [Frame::Method {
            channel: 1,
            method: publish()
        }]
    );
}

#[test]
fn oversized_frame_is_refused_from_the_header_alone() {
    // Only the 7 header bytes, declaring a 1 MiB payload.
    let mut buf = BytesMut::from(&[3u8, 0, 1, 0, 0x10, 0, 0][..]);
    assert_eq!(
        decode_frame(&mut buf, 131_072),
        Err(WireError::FrameTooLarge {
            size: 0x10_0000 + 8,
            max: 131_072
        })
    );
    // Exactly frame_max is allowed.
    let mut buf = BytesMut::new();
    encode_body_frames(1, &[7; 4088], 0, &mut buf);
    assert!(matches!(
        decode_frame(&mut buf, 4096),
        Ok(Some(Frame::Body { .. }))
    ));
}

#[test]
fn accepted_size_reserves_room_for_the_whole_frame() {
    let mut buf = BytesMut::from(&[3u8, 0, 1, 0, 0, 0x10, 0][..]);
    assert_eq!(decode_frame(&mut buf, 0), Ok(None));
    assert!(buf.capacity() >= 0x1000 + 8);
}

#[test]
fn a_huge_declared_size_without_limit_reserves_little() {
    // Found by the fuzzer: 7 bytes declaring a 4 GiB frame must not allocate 4 GiB.
    let mut buf = BytesMut::from(&[1u8, 0x20, 0xff, 0xfc, 0xff, 0xff, 0xff][..]);
    assert_eq!(decode_frame(&mut buf, 0), Ok(None));
    assert!(buf.capacity() <= RESERVE_CAP + 64);
}

#[test]
fn bad_frame_end_unknown_type_and_malformed_payloads() {
    let mut bytes = publish_frame_bytes();
    *bytes.last_mut().unwrap() = 0;
    assert_eq!(
        decode_frame(&mut BytesMut::from(&bytes[..]), 0),
        Err(WireError::BadFrameEnd(0))
    );

    let mut buf = BytesMut::from(&[9u8, 0, 0, 0, 0, 0, 0, 0xCE][..]);
    assert_eq!(
        decode_frame(&mut buf, 0),
        Err(WireError::UnknownFrameType(9))
    );
    // The protocol header is not a frame.
    let mut buf = BytesMut::from(&PROTOCOL_HEADER[..]);
    assert_eq!(
        decode_frame(&mut buf, 0),
        Err(WireError::UnknownFrameType(b'A'))
    );

    let mut buf = BytesMut::from(&[1u8, 0, 1, 0, 0, 0, 2, 0, 60, 0xCE][..]);
    assert!(matches!(
        decode_frame(&mut buf, 0),
        Err(WireError::MalformedFrame(_))
    ));
    let mut buf = BytesMut::from(&[2u8, 0, 1, 0, 0, 0, 2, 0, 60, 0xCE][..]);
    assert!(matches!(
        decode_frame(&mut buf, 0),
        Err(WireError::MalformedFrame(_))
    ));
    let mut buf = BytesMut::from(&[8u8, 0, 0, 0, 0, 0, 1, 0, 0xCE][..]);
    assert!(matches!(
        decode_frame(&mut buf, 0),
        Err(WireError::MalformedFrame(_))
    ));
}

#[test]
fn heartbeat_bytes() {
    let mut out = BytesMut::new();
    encode_heartbeat(&mut out);
    assert_eq!(&out[..], &[8, 0, 0, 0, 0, 0, 0, 0xCE]);
    assert_eq!(
        decode_frame(&mut out, 0),
        Ok(Some(Frame::Heartbeat { channel: 0 }))
    );
    // A heartbeat on another channel is passed on for the server to reject.
    let mut buf = BytesMut::from(&[8u8, 0, 5, 0, 0, 0, 0, 0xCE][..]);
    assert_eq!(
        decode_frame(&mut buf, 0),
        Ok(Some(Frame::Heartbeat { channel: 5 }))
    );
}

#[test]
fn content_header_frame_known_bytes() {
    let props = BasicProperties {
        delivery_mode: Some(2),
        ..Default::default()
    }
    .to_bytes();
    let mut out = BytesMut::new();
    encode_header_frame(1, 60, 5, &props, &mut out);
    let expected: &[u8] = &[
        2, 0, 1, 0, 0, 0, 15, // header frame, channel 1, 15-byte payload
        0, 60, 0, 0, // class 60, weight 0
        0, 0, 0, 0, 0, 0, 0, 5, // body size 5
        0x10, 0x00, 2, // flags: delivery-mode; value 2
        0xCE,
    ];
    assert_eq!(&out[..], expected);
    let frame = decode_frame(&mut out, 0).unwrap().unwrap();
    assert_eq!(
        frame,
        Frame::Header {
            channel: 1,
            class_id: 60,
            body_size: 5,
            properties: props
        }
    );
}

#[test]
fn body_is_split_by_frame_max() {
    let body: Vec<u8> = (0..=255).cycle().take(10_000).collect();
    let mut out = BytesMut::new();
    encode_body_frames(3, &body, 4096, &mut out);
    let mut payloads = Vec::new();
    while let Some(frame) = decode_frame(&mut out, 4096).unwrap() {
        let Frame::Body {
            channel: 3,
            payload,
        } = frame
        else {
            panic!("unexpected {frame:?}");
        };
        payloads.push(payload);
    }
    let sizes: Vec<usize> = payloads.iter().map(|p| p.len()).collect();
    assert_eq!(sizes, [4088, 4088, 1824]);
    assert_eq!(payloads.concat(), body);
}

#[test]
fn empty_body_writes_nothing_and_frame_max_zero_writes_one_frame() {
    let mut out = BytesMut::new();
    encode_body_frames(1, &[], 4096, &mut out);
    assert!(out.is_empty());
    encode_body_frames(1, &[1; 10_000], 0, &mut out);
    assert_eq!(out.len(), 10_008);
}

#[test]
fn frames_round_trip_through_frame_encode() {
    let frames = [
        Frame::Method {
            channel: 0,
            method: BasicAck {
                delivery_tag: 7,
                multiple: true,
            }
            .into(),
        },
        Frame::Header {
            channel: 2,
            class_id: 60,
            body_size: 1,
            properties: BasicProperties::default().to_bytes(),
        },
        Frame::Body {
            channel: 2,
            payload: Bytes::from_static(b"x"),
        },
        Frame::Heartbeat { channel: 0 },
    ];
    let mut out = BytesMut::new();
    for f in &frames {
        f.encode(&mut out);
    }
    for f in &frames {
        assert_eq!(decode_frame(&mut out, 0).unwrap().as_ref(), Some(f));
        assert_eq!(f.channel(), f.channel());
    }
    assert!(out.is_empty());
}

#[test]
fn body_payload_is_a_slice_of_the_read_buffer() {
    let mut buf = BytesMut::new();
    encode_body_frames(1, b"payload", 0, &mut buf);
    let start = buf.as_ptr();
    let Some(Frame::Body { payload, .. }) = decode_frame(&mut buf, 0).unwrap() else {
        panic!("not a body frame");
    };
    assert_eq!(payload.as_ptr(), start.wrapping_add(FRAME_HEADER_SIZE));
}
