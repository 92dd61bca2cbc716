//! Property tests: `decode` never panics, whatever arrives, and whatever it accepts it can
//! write back (the bytes it writes decode to a packet that writes the same bytes).

use crate::strategies;

use bytes::{BufMut, BytesMut};
use mqtt_wire::*;
use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use proptest::sample::Index;
use strategies::*;

/// Decodes packets from `data` until it runs out or fails, as a connection's read loop would
/// (learning the version from a CONNECT), checking each packet re-encodes stably.
fn drive(data: &[u8], mut version: Option<ProtocolVersion>, max: usize) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(packet)) = decode(&mut buf, version, max) {
        let v = match &packet {
            Packet::Connect(c) => c.protocol,
            _ => version.unwrap(),
        };
        check_reencode(&packet, v);
        version = Some(v);
    }
}

/// encode -> decode -> encode gives the same bytes. (Bytes, not values, are compared: decoding
/// normalises a few things, like a 3.1 CONNECT's reserved bit, on the first trip.)
fn check_reencode(packet: &Packet, version: ProtocolVersion) {
    let mut first = BytesMut::new();
    encode(packet, version, &mut first).expect("a decoded packet encodes");
    assert_eq!(first.len(), packet.encoded_len(version));
    let connected = match packet {
        Packet::Connect(_) => None,
        _ => Some(version),
    };
    let mut buf = first.clone();
    let again = decode(&mut buf, connected, MAX_PACKET_SIZE)
        .expect("a re-encoded packet decodes")
        .expect("a re-encoded packet is complete");
    assert!(buf.is_empty());
    let mut second = BytesMut::new();
    encode(&again, version, &mut second).unwrap();
    assert_eq!(first, second);
}

fn header_for(first: u8, len: usize) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u8(first);
    let mut v = len;
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.put_u8(byte);
            break;
        }
        out.put_u8(byte | 0x80);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes(
        data in vec(any::<u8>(), 0..300),
        version in of(version()),
        max in prop_oneof![Just(MAX_PACKET_SIZE), 0usize..400],
    ) {
        drive(&data, version, max);
    }

    /// A fixed header that passes (type, flags, length matching the body), then noise.
    #[test]
    fn arbitrary_body_behind_a_valid_fixed_header(
        nibble in 1u8..=15,
        flags in 0u8..16,
        use_reserved in any::<bool>(),
        body in vec(any::<u8>(), 0..200),
        version in of(version()),
    ) {
        let packet_type = PacketType::from_nibble(nibble).unwrap();
        let flags = match packet_type.reserved_flags() {
            Some(reserved) if use_reserved => reserved,
            _ => flags,
        };
        let mut data = header_for((nibble << 4) | flags, body.len());
        data.extend_from_slice(&body);
        drive(&data, version, MAX_PACKET_SIZE);
    }

    /// Valid packets with a few bytes changed, or cut short, or with the length patched to the
    /// cut: close to valid, so the decoder gets deep before it finds the fault.
    #[test]
    fn mutated_valid_packets(
        (version, packet) in versioned_packet(),
        edits in vec((any::<Index>(), any::<u8>()), 0..4),
        cut in of(any::<Index>()),
    ) {
        let mut bytes = BytesMut::new();
        encode(&packet, version, &mut bytes).unwrap();
        let mut bytes = bytes.to_vec();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let connected = match packet {
            Packet::Connect(_) => None,
            _ => Some(version),
        };
        drive(&bytes, connected, MAX_PACKET_SIZE);
        if let Some(cut) = cut {
            // Re-frame a prefix of the body so the remaining length agrees with it.
            let length_end = (1..=4)
                .find(|n| bytes.get(*n).is_some_and(|b| b & 0x80 == 0))
                .unwrap_or(1);
            let body_start = length_end + 1;
            let body = bytes.get(body_start..).unwrap_or_default();
            let body = &body[..cut.index(body.len() + 1)];
            let mut reframed = header_for(bytes[0], body.len());
            reframed.extend_from_slice(body);
            drive(&reframed, connected, MAX_PACKET_SIZE);
        }
    }
}
