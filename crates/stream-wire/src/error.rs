//! The one error type of this crate, and the response code a server answers each error with.
//!
//! RabbitMQ's parser (`rabbit_stream_core:parse_command/1`) does not tell a malformed command
//! from an unknown one: both come out as `{unknown, Binary}`. Its reader
//! (`rabbit_stream_reader`) then
//! - before a successful `Open`, closes the socket without a word
//!   (`handle_frame_pre_auth(..., {unknown, _})`);
//! - after it, sends a `Close` request with code 0x0d (unknown frame) and reason
//!   `"unknown frame"` (`send_close_and_increment/2`) and waits for the client's close response.
//!
//! A frame larger than the negotiated maximum is answered the same way with 0x0e (frame too
//! large) and reason `"frame too large"`. [`WireError::response_code`] gives those two codes.

use crate::response_code::ResponseCode;

/// Why bytes from the wire could not be decoded, or a value could not be built.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WireError {
    /// The frame's size prefix is larger than the limit the decoder was given (the negotiated
    /// `FrameMax`, or the 8 KiB pre-`Open` ceiling). Nothing of the frame was buffered.
    #[error("frame of {size} bytes exceeds the maximum {max}")]
    FrameTooLarge {
        /// The declared size (without the 4 bytes of the size prefix itself).
        size: u32,
        /// The limit it was checked against.
        max: u32,
    },
    /// A frame too short to hold its key and version (4 bytes).
    #[error("frame of {0} bytes is too short for a key and a version")]
    FrameTooShort(u32),
    /// A command ends before the field being read: a lying length, a count larger than the
    /// bytes that follow, a cut-off frame.
    #[error("command truncated")]
    Truncated,
    /// Bytes left over after the last field of a command.
    #[error("trailing bytes after command")]
    TrailingBytes,
    /// A string is not valid UTF-8 (PROTOCOL.adoc: "UTF8-encoded content").
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A length or count is negative where the protocol has no null (only a publish v2 filter
    /// value and the SASL opaque data may be null, -1).
    #[error("negative length or count {0}")]
    NegativeLength(i32),
    /// A string longer than 32,767 bytes: the wire format (int16 length) cannot carry it. Only
    /// when building a [`crate::Str`] or encoding a value that was built unchecked.
    #[error("string longer than 32767 bytes")]
    StringTooLong,
    /// An offset specification type that is not 1 (first) to 5 (timestamp), or 0 (none) where
    /// that is allowed.
    #[error("unknown offset specification type {0}")]
    InvalidOffsetType(u16),
    /// A boolean octet that is neither 0 nor 1 (`ConsumerUpdate`'s `Active`).
    #[error("boolean octet {0} is neither 0 nor 1")]
    InvalidBoolean(u8),
    /// A publish frame's message count does not match the messages it carries.
    #[error("publish announces {declared} messages but carries {found}")]
    CountMismatch {
        /// The count in the frame.
        declared: u32,
        /// The messages actually found.
        found: u32,
    },
    /// The first octet of an osiris chunk is not magic 5, version 0.
    #[error("chunk magic/version octet {0:#04x}, expected 0x50")]
    BadChunkMagic(u8),
    /// A chunk's lengths disagree with the bytes present (data length, trailer length).
    #[error("chunk lengths do not match its bytes")]
    ChunkLength,
}

impl WireError {
    /// The code a server closes the connection with, as RabbitMQ does: 0x0e for a frame over
    /// the limit, 0x0d (unknown frame) for everything else. Before `Open` RabbitMQ sends
    /// nothing and just closes the socket.
    pub fn response_code(&self) -> ResponseCode {
        match self {
            WireError::FrameTooLarge { .. } => ResponseCode::FrameTooLarge,
            _ => ResponseCode::UnknownFrame,
        }
    }

    /// The close reason RabbitMQ sends with [`WireError::response_code`].
    pub fn close_reason(&self) -> &'static str {
        match self {
            WireError::FrameTooLarge { .. } => "frame too large",
            _ => "unknown frame",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_large_is_0x0e_everything_else_0x0d() {
        let e = WireError::FrameTooLarge {
            size: 9000,
            max: 8192,
        };
        assert_eq!(e.response_code().code(), 0x0e);
        assert_eq!(e.close_reason(), "frame too large");
        for e in [
            WireError::Truncated,
            WireError::TrailingBytes,
            WireError::InvalidUtf8,
            WireError::NegativeLength(-2),
            WireError::InvalidOffsetType(9),
            WireError::BadChunkMagic(0),
        ] {
            assert_eq!(e.response_code(), ResponseCode::UnknownFrame, "{e}");
            assert_eq!(e.close_reason(), "unknown frame");
        }
    }
}
