//! Everything encoded decodes to itself, frame by frame and as a stream of frames.

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use stream_wire::*;

use crate::commands::*;
use crate::strategies::*;

/// Encodes, decodes with a limit exactly the frame's size, and compares value and bytes.
fn check(command: &Command) {
    let bytes = command.to_bytes();
    let size = (bytes.len() - SIZE_PREFIX) as u32;
    let mut buf = BytesMut::from(&bytes[..]);
    let back = decode(&mut buf, size).unwrap().unwrap();
    assert!(buf.is_empty());
    assert_eq!(&back, command);
    assert_eq!(back.to_bytes(), bytes);
    assert_eq!(back.key(), command.key());
    assert_eq!(back.version(), command.version());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn every_command_round_trips(command in command()) {
        check(&command);
    }

    #[test]
    fn a_stream_of_frames_fed_in_pieces_decodes_in_order(
        commands in vec(command(), 1..8),
        piece in 1usize..64,
    ) {
        let mut wire = BytesMut::new();
        for c in &commands {
            c.encode(&mut wire);
        }
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for part in wire.chunks(piece) {
            buf.extend_from_slice(part);
            while let Some(c) = decode(&mut buf, 0).unwrap() {
                got.push(c);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got, commands);
    }

    #[test]
    fn publish_messages_come_back(
        id in any::<u8>(),
        filtered in any::<bool>(),
        messages in vec(published_message(), 0..8),
    ) {
        let publish = Publish::with_version(id, filtered, &messages);
        let mut buf = BytesMut::from(&Command::from(publish).to_bytes()[..]);
        let Command::Publish(back) = decode(&mut buf, 0).unwrap().unwrap() else {
            panic!("not a publish");
        };
        prop_assert_eq!(back.len() as usize, messages.len());
        prop_assert_eq!(back.is_filtered(), filtered);
        let expected: Vec<PublishedMessage> = messages
            .into_iter()
            .map(|mut m| {
                if !filtered {
                    m.filter_value = None;
                }
                m
            })
            .collect();
        prop_assert_eq!(back.messages().collect::<Vec<_>>(), expected);
    }

    #[test]
    fn chunk_entries_come_back((entries, chunk) in chunk_of_entries()) {
        prop_assert!(chunk.header.crc_matches(&chunk.data));
        prop_assert_eq!(usize::from(chunk.header.num_entries), entries.len());
        let back: Vec<Entry> = chunk.entries().collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(back, entries);
        let header = ChunkHeader::parse(&chunk.header.to_bytes()).unwrap();
        prop_assert_eq!(header, chunk.header);
    }

    #[test]
    fn offset_specs_round_trip_in_subscribe(offset in offset_spec()) {
        check(&Subscribe {
            correlation_id: 1,
            subscription_id: 1,
            stream: "s".into(),
            offset,
            credit: 1,
            properties: Properties::new(),
        }.into());
    }
}
