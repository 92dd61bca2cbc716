//! The frame layer: `Size => uint32` (not counting itself), then the key (uint16, top bit set
//! for a response), the version (uint16) and the command's content (PROTOCOL.adoc, "Frame
//! Structure").
//!
//! The size is checked against the limit as soon as its 4 bytes are in, before any of the frame
//! is buffered, as RabbitMQ's `rabbit_stream_core:incoming_data/2` does (`Size =< FrameMax`,
//! the size prefix not counted; 0 is no limit).

use bytes::{BufMut, Bytes, BytesMut};

use crate::command::Command;
use crate::error::WireError;

/// The IANA-less port RabbitMQ's stream plugin listens on (5551 with TLS).
pub const DEFAULT_PORT: u16 = 5552;
/// The port with TLS.
pub const DEFAULT_TLS_PORT: u16 = 5551;
/// The ceiling on incoming frames until `Open` succeeds (PROTOCOL.adoc, "Authentication";
/// `?DEFAULT_INITIAL_FRAME_MAX` in `rabbit_stream.hrl`): large enough for a JWT as a SASL PLAIN
/// password, small enough that an unauthenticated peer cannot make us buffer much.
pub const INITIAL_FRAME_MAX: u32 = 8192;
/// RabbitMQ's default `FrameMax` proposed in `Tune` (`?DEFAULT_FRAME_MAX`, 1 MiB).
pub const DEFAULT_FRAME_MAX: u32 = 1_048_576;
/// RabbitMQ's default heartbeat in `Tune`, seconds (`?DEFAULT_HEARTBEAT`).
pub const DEFAULT_HEARTBEAT: u32 = 60;
/// The key bit that marks a response.
pub const RESPONSE_FLAG: u16 = 0x8000;
/// Bytes of the size prefix.
pub const SIZE_PREFIX: usize = 4;

/// Most that [`decode_frame`] reserves ahead for a frame it is waiting for, so memory follows
/// the bytes received rather than a size merely announced.
const RESERVE_CAP: usize = 128 * 1024;

/// One frame, its content not yet decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The key, response bit included.
    pub key: u16,
    /// The command version.
    pub version: u16,
    /// Everything after key and version: a slice of the read buffer.
    pub content: Bytes,
}

impl RawFrame {
    /// The command number without the response bit.
    pub fn command(&self) -> u16 {
        self.key & !RESPONSE_FLAG
    }

    /// True if the key's top bit is set.
    pub fn is_response(&self) -> bool {
        self.key & RESPONSE_FLAG != 0
    }
}

/// Takes one frame off the front of `buf`. `Ok(None)` when more bytes are needed (nothing is
/// consumed then).
///
/// `frame_max` is the limit on the size prefix (0 = none): [`INITIAL_FRAME_MAX`] until `Open`
/// succeeds, the negotiated `FrameMax` after. A frame over it fails with
/// [`WireError::FrameTooLarge`] before any of it is buffered; a connection cannot recover
/// framing after that (RabbitMQ ignores everything that follows and closes).
///
/// The content is a zero-copy slice of `buf`'s allocation: a consumer that keeps a payload for
/// long should copy it out so it does not pin the read buffer.
pub fn decode_frame(buf: &mut BytesMut, frame_max: u32) -> Result<Option<RawFrame>, WireError> {
    let Some(prefix) = buf.first_chunk::<SIZE_PREFIX>() else {
        return Ok(None);
    };
    let size = u32::from_be_bytes(*prefix);
    if frame_max != 0 && size > frame_max {
        return Err(WireError::FrameTooLarge {
            size,
            max: frame_max,
        });
    }
    if size < 4 {
        return Err(WireError::FrameTooShort(size));
    }
    let Ok(total) = usize::try_from(u64::from(size) + SIZE_PREFIX as u64) else {
        return Err(WireError::FrameTooLarge {
            size,
            max: frame_max,
        });
    };
    if buf.len() < total {
        buf.reserve((total - buf.len()).min(RESERVE_CAP));
        return Ok(None);
    }
    let frame = buf.split_to(total).freeze();
    let key = u16::from_be_bytes([frame[4], frame[5]]);
    let version = u16::from_be_bytes([frame[6], frame[7]]);
    Ok(Some(RawFrame {
        key,
        version,
        content: frame.slice(8..),
    }))
}

/// Takes one frame off `buf` and decodes its command: [`decode_frame`] then
/// [`Command::decode`].
pub fn decode(buf: &mut BytesMut, frame_max: u32) -> Result<Option<Command>, WireError> {
    match decode_frame(buf, frame_max)? {
        Some(frame) => Command::decode(frame).map(Some),
        None => Ok(None),
    }
}

/// Writes a frame around `content`: size, key, version, content.
pub fn encode_frame(key: u16, version: u16, content: &[u8], out: &mut BytesMut) {
    out.reserve(SIZE_PREFIX + 4 + content.len());
    out.put_u32(u32::try_from(4 + content.len()).unwrap_or(u32::MAX));
    out.put_u16(key);
    out.put_u16(version);
    out.put_slice(content);
}

/// Overwrites the size placeholder at `at` with the number of bytes written after it.
pub(crate) fn patch_size(out: &mut BytesMut, at: usize) {
    let len = out.len().saturating_sub(at + SIZE_PREFIX);
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    if let Some(slot) = out.get_mut(at..at + SIZE_PREFIX) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_for_the_whole_frame() {
        let mut buf = BytesMut::from(&[0, 0, 0, 6, 0, 0x17][..]);
        assert_eq!(decode_frame(&mut buf, 0), Ok(None));
        assert_eq!(buf.len(), 6);
        buf.extend_from_slice(&[0, 1, 9, 9]);
        let f = decode_frame(&mut buf, 0).unwrap().unwrap();
        assert_eq!((f.key, f.version, &f.content[..]), (0x17, 1, &[9u8, 9][..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn size_over_the_limit_fails_before_buffering() {
        let mut buf = BytesMut::from(&[0, 0, 0x20, 0x01][..]);
        assert_eq!(
            decode_frame(&mut buf, INITIAL_FRAME_MAX),
            Err(WireError::FrameTooLarge {
                size: 8193,
                max: 8192
            })
        );
        let mut buf = BytesMut::from(&[0, 0, 0x20, 0x00][..]);
        assert_eq!(decode_frame(&mut buf, INITIAL_FRAME_MAX), Ok(None));
    }

    #[test]
    fn huge_declared_size_without_limit_reserves_little() {
        let mut buf = BytesMut::from(&[0xff, 0xff, 0xff, 0xff, 0, 0x17, 0, 1][..]);
        assert_eq!(decode_frame(&mut buf, 0), Ok(None));
        assert!(buf.capacity() <= RESERVE_CAP + 64);
    }

    #[test]
    fn a_frame_without_key_and_version_is_refused() {
        for size in 0..4u8 {
            let mut buf = BytesMut::from(&[0, 0, 0, size, 0, 0, 0][..]);
            assert_eq!(
                decode_frame(&mut buf, 0),
                Err(WireError::FrameTooShort(size.into()))
            );
        }
    }

    #[test]
    fn response_bit() {
        let f = RawFrame {
            key: 0x8006,
            version: 1,
            content: Bytes::new(),
        };
        assert!(f.is_response());
        assert_eq!(f.command(), 6);
        let mut out = BytesMut::new();
        encode_frame(0x8006, 1, &[1, 2], &mut out);
        assert_eq!(&out[..], &[0, 0, 0, 6, 0x80, 0x06, 0, 1, 1, 2]);
    }
}
