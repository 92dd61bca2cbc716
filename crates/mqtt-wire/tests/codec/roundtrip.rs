//! Property tests: every valid packet of every version survives encode -> decode, alone, in a
//! stream cut at arbitrary points, and when a 5.0 packet is sent to an older client.

use crate::strategies;

use bytes::BytesMut;
use mqtt_wire::*;
use proptest::collection::vec;
use proptest::prelude::*;
use strategies::*;

/// The version to decode with: `None` for the CONNECT that opens a connection.
fn connected(packet: &Packet, version: ProtocolVersion) -> Option<ProtocolVersion> {
    match packet {
        Packet::Connect(_) => None,
        _ => Some(version),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn every_packet_round_trips((version, packet) in versioned_packet()) {
        let mut buf = BytesMut::new();
        encode(&packet, version, &mut buf).unwrap();
        prop_assert_eq!(buf.len(), packet.encoded_len(version));
        let decoded = decode(&mut buf, connected(&packet, version), MAX_PACKET_SIZE)
            .unwrap()
            .unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoded, packet);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Packets written back to back and read in chunks of arbitrary sizes, as from a socket.
    #[test]
    fn a_stream_decodes_in_order_whatever_the_chunking(
        (version, packets) in version().prop_flat_map(|v| (Just(v), vec(packet(v), 1..8))),
        chunk in 1usize..40,
    ) {
        let packets: Vec<Packet> = packets
            .into_iter()
            .filter(|p| !matches!(p, Packet::Connect(_)))
            .collect();
        let mut wire = BytesMut::new();
        for p in &packets {
            encode(p, version, &mut wire).unwrap();
        }
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(p) = decode(&mut buf, Some(version), MAX_PACKET_SIZE).unwrap() {
                decoded.push(p);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoded, packets);
    }

    /// A 5.0 packet written for a 3.1.1 client loses its 5.0 fields and nothing else: it
    /// decodes as 3.1.1, and the result is what a 3.1.1 peer would have sent.
    #[test]
    fn five_packets_downgrade_to_3_1_1(packet in packet(ProtocolVersion::V5)) {
        let v4 = ProtocolVersion::V3_1_1;
        let mut buf = BytesMut::new();
        match (&packet, encode(&packet, v4, &mut buf)) {
            (Packet::Auth(_), Err(EncodeError::NotInVersion { .. })) => return Ok(()),
            (Packet::Connect(_), Err(EncodeError::VersionMismatch { .. })) => return Ok(()),
            (Packet::Publish(p), Err(EncodeError::MissingTopic)) => {
                prop_assert!(p.topic.is_none());
                return Ok(());
            }
            (_, result) => result.unwrap(),
        }
        prop_assert_eq!(buf.len(), packet.encoded_len(v4));
        let decoded = decode(&mut buf, Some(v4), MAX_PACKET_SIZE).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoded.packet_type(), packet.packet_type());
        // Re-encoding the 3.1.1 view for 3.1.1 gives the same bytes again.
        let mut first = BytesMut::new();
        encode(&packet, v4, &mut first).unwrap();
        let mut second = BytesMut::new();
        encode(&decoded, v4, &mut second).unwrap();
        prop_assert_eq!(first, second);
    }

    /// The limit is on the whole packet, and is checked with only the fixed header in.
    #[test]
    fn maximum_packet_size_is_enforced(
        (version, packet) in versioned_packet(),
        slack in -3isize..3,
    ) {
        prop_assume!(!matches!(packet, Packet::Connect(_)));
        let size = packet.encoded_len(version);
        let max = size.saturating_add_signed(slack);
        let mut buf = BytesMut::new();
        encode(&packet, version, &mut buf).unwrap();
        // Only the fixed header (at most 5 bytes) is needed to refuse.
        let header = buf.split_to(buf.len().min(5));
        let mut partial = header.clone();
        let result = decode(&mut partial, Some(version), max);
        if size > max {
            prop_assert_eq!(result, Err(DecodeError::PacketTooLarge { size, max }));
        } else {
            let mut whole = header;
            whole.unsplit(buf);
            prop_assert_eq!(decode(&mut whole, Some(version), max).unwrap(), Some(packet));
        }
    }

    #[test]
    fn filters_match_the_names_they_were_made_from(name in topic_name()) {
        let filter = TopicFilter::new(name.as_str()).unwrap();
        prop_assert!(filter.matches(&name));
        prop_assert!(TopicFilter::new("#").unwrap().matches(&name) != name.starts_with_dollar());
    }
}
