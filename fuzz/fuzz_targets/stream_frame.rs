//! Fuzzes the RabbitMQ Stream protocol decoder with arbitrary peer input.
//!
//! The input is read three ways: as a byte stream fed to `decode_frame` + `Command::decode` in
//! a loop, as a connection's read loop would (with no limit, the 8 KiB pre-`Open` ceiling and a
//! tiny limit); as the content of a frame whose key and version are the input's first four
//! bytes; and as an osiris chunk header and a chunk's data entries. Beyond "never panics",
//! every command that decodes must re-encode to bytes that decode to the same command and
//! re-encode to the same bytes, and no frame over the limit is ever returned.

#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use stream_wire::{
    decode_frame, ChunkHeader, Command, Entries, RawFrame, INITIAL_FRAME_MAX, SIZE_PREFIX,
};

fuzz_target!(|data: &[u8]| {
    for frame_max in [0, INITIAL_FRAME_MAX, 64] {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(frame)) = decode_frame(&mut buf, frame_max) {
            assert!(frame_max == 0 || frame.content.len() + SIZE_PREFIX <= frame_max as usize);
            if let Ok(command) = Command::decode(frame) {
                check(&command);
            }
        }
    }

    if let [k0, k1, v0, v1, content @ ..] = data {
        let frame = RawFrame {
            key: u16::from_be_bytes([*k0, *k1]),
            version: u16::from_be_bytes([*v0, *v1]),
            content: Bytes::copy_from_slice(content),
        };
        if let Ok(command) = Command::decode(frame) {
            check(&command);
        }
    }

    if let Ok(header) = ChunkHeader::parse(data) {
        assert_eq!(ChunkHeader::parse(&header.to_bytes()), Ok(header));
    }
    for entry in Entries::new(Bytes::copy_from_slice(data)) {
        let _ = entry;
    }
});

fn check(command: &Command) {
    let first = command.to_bytes();
    let mut buf = BytesMut::from(&first[..]);
    let again = stream_wire::decode(&mut buf, 0)
        .expect("a re-encoded command decodes")
        .expect("a re-encoded command is complete");
    assert!(buf.is_empty());
    assert_eq!(&again, command);
    assert_eq!(again.to_bytes(), first);
}
