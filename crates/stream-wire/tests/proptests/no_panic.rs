//! No input makes a decoder panic: random bytes, random content behind a valid frame header
//! for every known key, and valid encodings with bytes overwritten or cut short. Whatever
//! decodes re-encodes to bytes that decode to the same value.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use stream_wire::*;

use crate::commands::*;

/// A decoded command survives encode -> decode unchanged.
fn check_reencode(command: &Command) {
    let bytes = command.to_bytes();
    let mut buf = BytesMut::from(&bytes[..]);
    let again = decode(&mut buf, 0)
        .expect("a re-encoded command decodes")
        .expect("a re-encoded command is complete");
    assert!(buf.is_empty());
    assert_eq!(&again, command);
}

/// Decodes frames until the buffer runs dry or fails, as a connection's read loop would.
fn drain(data: &[u8], frame_max: u32) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = decode_frame(&mut buf, frame_max) {
        assert!(frame_max == 0 || frame.content.len() + 4 <= frame_max as usize);
        if let Ok(command) = Command::decode(frame) {
            check_reencode(&command);
        }
    }
}

fn mutate(mut bytes: Vec<u8>, edits: &[(Index, u8)], cut: Index) -> Vec<u8> {
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
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_bytes(
        data in vec(any::<u8>(), 0..400),
        frame_max in prop_oneof![Just(0u32), Just(INITIAL_FRAME_MAX), 0u32..512],
    ) {
        drain(&data, frame_max);
    }

    #[test]
    fn arbitrary_content_behind_a_valid_header(
        (key, version) in known_key_and_version(),
        content in vec(any::<u8>(), 0..300),
    ) {
        let mut wire = BytesMut::new();
        encode_frame(key, version, &content, &mut wire);
        drain(&wire, 0);
    }

    #[test]
    fn mutated_valid_commands(
        command in command(),
        edits in vec((any::<Index>(), any::<u8>()), 1..4),
        cut in any::<Index>(),
    ) {
        let bytes = mutate(command.to_bytes().to_vec(), &edits, cut);
        drain(&bytes, 0);
        // The content alone, under the original key and version.
        if bytes.len() >= 8 {
            let frame = RawFrame {
                key: u16::from_be_bytes([bytes[4], bytes[5]]),
                version: u16::from_be_bytes([bytes[6], bytes[7]]),
                content: Bytes::copy_from_slice(&bytes[8..]),
            };
            if let Ok(c) = Command::decode(frame) {
                check_reencode(&c);
            }
        }
    }

    #[test]
    fn arbitrary_chunk_bytes(data in vec(any::<u8>(), 0..200)) {
        let _ = ChunkHeader::parse(&data);
        for entry in Entries::new(Bytes::from(data)) {
            let _ = entry;
        }
    }
}
