//! Tests of [`crate::decode`] and [`crate::encode`] as a whole (framing, limits), and helpers
//! for the per-packet tests beside each packet.

use bytes::BytesMut;

use crate::{decode, encode, DecodeError, EncodeError, Packet, ProtocolVersion, MAX_PACKET_SIZE};

/// Decodes exactly one packet from `bytes`, which must hold it whole and nothing more.
pub(crate) fn decode_one(
    bytes: &[u8],
    version: Option<ProtocolVersion>,
) -> Result<Packet, DecodeError> {
    let mut buf = BytesMut::from(bytes);
    let packet = decode(&mut buf, version, MAX_PACKET_SIZE)?.expect("a whole packet");
    assert!(buf.is_empty(), "the packet is consumed exactly");
    Ok(packet)
}

/// Encodes `packet`, checking `encoded_len` agrees.
pub(crate) fn encode_v(packet: &Packet, version: ProtocolVersion) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode(packet, version, &mut out).unwrap();
    assert_eq!(out.len(), packet.encoded_len(version));
    out.to_vec()
}

/// The error encoding `packet` gives; checks nothing was written.
pub(crate) fn encode_err(packet: &Packet, version: ProtocolVersion) -> EncodeError {
    let mut out = BytesMut::from(&b"before"[..]);
    let err = encode(packet, version, &mut out).unwrap_err();
    assert_eq!(&out[..], b"before");
    err
}

/// encode -> decode gives the packet back.
pub(crate) fn roundtrip(packet: &Packet, version: ProtocolVersion) {
    let bytes = encode_v(packet, version);
    let connected = match packet {
        Packet::Connect(_) => None,
        _ => Some(version),
    };
    assert_eq!(&decode_one(&bytes, connected).unwrap(), packet);
}

const V4: Option<ProtocolVersion> = Some(ProtocolVersion::V3_1_1);

#[test]
fn incomplete_packets_consume_nothing() {
    let whole = b"\x30\x05\x00\x01ahi";
    for n in 0..whole.len() {
        let mut buf = BytesMut::from(&whole[..n]);
        assert_eq!(decode(&mut buf, V4, 1024), Ok(None), "{n} bytes");
        assert_eq!(&buf[..], &whole[..n]);
    }
}

#[test]
fn back_to_back_packets_decode_one_at_a_time() {
    let mut buf = BytesMut::from(&b"\xc0\x00\xd0\x00\xe0\x00\x30"[..]);
    assert_eq!(decode(&mut buf, V4, 1024), Ok(Some(Packet::PingReq)));
    assert_eq!(decode(&mut buf, V4, 1024), Ok(Some(Packet::PingResp)));
    assert!(matches!(
        decode(&mut buf, V4, 1024),
        Ok(Some(Packet::Disconnect(_)))
    ));
    assert_eq!(decode(&mut buf, V4, 1024), Ok(None));
    assert_eq!(&buf[..], b"\x30");
}

#[test]
fn too_large_is_refused_from_the_fixed_header() {
    // A PUBLISH announcing 2,097,152 bytes: refused with only 5 bytes in.
    let mut buf = BytesMut::from(&b"\x30\x80\x80\x80\x01"[..]);
    assert_eq!(
        decode(&mut buf, V4, 65_536),
        Err(DecodeError::PacketTooLarge {
            size: 2_097_157,
            max: 65_536
        })
    );
    // The limit counts the fixed header: a 10-byte packet fits in 10, not in 9.
    let packet = b"\x30\x08\x00\x01aabcde";
    assert!(decode(&mut BytesMut::from(&packet[..]), V4, 10).is_ok());
    assert_eq!(
        decode(&mut BytesMut::from(&packet[..]), V4, 9),
        Err(DecodeError::PacketTooLarge { size: 10, max: 9 })
    );
}

#[test]
fn accepted_size_is_reserved_for_the_next_read() {
    let mut buf = BytesMut::from(&b"\x30\xff\x7f"[..]);
    assert_eq!(decode(&mut buf, V4, MAX_PACKET_SIZE), Ok(None));
    assert!(buf.capacity() >= 3 + 16_383);
}

#[test]
fn remaining_length_longer_than_contents_is_trailing_garbage() {
    // In a SUBSCRIBE, an extra byte starts another filter that never ends.
    assert_eq!(
        decode_one(b"\x82\x07\x00\x01\x00\x01a\x00\xff", V4),
        Err(DecodeError::Truncated)
    );
    assert_eq!(
        decode_one(b"\x40\x03\x00\x01\xff", V4),
        Err(DecodeError::TrailingBytes)
    );
}

#[test]
fn encoded_len_counts_the_fixed_header() {
    let p = Packet::PingReq;
    assert_eq!(p.encoded_len(ProtocolVersion::V5), 2);
    let publish = crate::Publish::new(
        crate::TopicName::new("t").unwrap(),
        bytes::Bytes::from(vec![0u8; 200]),
    );
    // 1 type byte, 2 length bytes (203 > 127), 3 topic, 1 property length, 200 payload.
    assert_eq!(
        Packet::Publish(publish.clone()).encoded_len(ProtocolVersion::V5),
        207
    );
    assert_eq!(
        Packet::Publish(publish).encoded_len(ProtocolVersion::V3_1_1),
        206
    );
}
