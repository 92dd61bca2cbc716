//! Fuzzes the MQTT decoder with arbitrary peer input.
//!
//! The input is fed to `decode` in a loop as a connection's read loop would, once for each
//! state a connection can be in: before CONNECT (the version comes from the CONNECT, if one
//! decodes) and after a 3.1, 3.1.1 or 5.0 CONNECT; with no limit and with a small maximum
//! packet size. Beyond "never panics", every packet that decodes must re-encode for its version
//! to bytes that decode and re-encode to the same bytes, with `encoded_len` agreeing.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqtt_wire::{decode, encode, Packet, ProtocolVersion, MAX_PACKET_SIZE};

const STATES: [Option<ProtocolVersion>; 4] = [
    None,
    Some(ProtocolVersion::V3_1),
    Some(ProtocolVersion::V3_1_1),
    Some(ProtocolVersion::V5),
];

fuzz_target!(|data: &[u8]| {
    for start in STATES {
        for max in [MAX_PACKET_SIZE, 256] {
            let mut version = start;
            let mut buf = BytesMut::from(data);
            while let Ok(Some(packet)) = decode(&mut buf, version, max) {
                let v = match (&packet, version) {
                    (Packet::Connect(c), _) => c.protocol,
                    (_, Some(v)) => v,
                    (_, None) => unreachable!("only CONNECT decodes before CONNECT"),
                };
                check(&packet, v);
                version = Some(v);
            }
        }
    }
});

/// encode -> decode -> encode gives the same bytes.
fn check(packet: &Packet, version: ProtocolVersion) {
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
    assert!(buf.is_empty(), "a re-encoded packet is consumed exactly");
    let mut second = BytesMut::new();
    encode(&again, version, &mut second).expect("a decoded packet encodes");
    assert_eq!(first, second);
}
