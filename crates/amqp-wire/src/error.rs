//! The one error type of this crate, and the reply code each error closes the connection with.
//!
//! Every decoding error in AMQP 0-9-1 is a connection error: once a peer has sent bytes we cannot
//! parse we no longer know where the next frame starts, so the server answers with
//! `connection.close` (reply code from [`WireError::reply_code`], reply text from `Display`) and
//! stops reading (AMQP 0-9-1 section 4.2.3, "any error in the framing ... must close the connection").

use crate::reply_code::ReplyCode;

/// Why bytes from the wire could not be decoded (or a value could not be built).
///
/// The `Display` text is short on purpose: the server puts it into the `reply-text` of
/// `connection.close`, which is a short string.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum WireError {
    /// The frame header declares a frame larger than the negotiated `frame-max`. `size` is the
    /// whole frame including the 8 bytes of header and frame-end. Close with 501 FRAME_ERROR
    /// (AMQP 0-9-1 section 4.2.3 and connection.tune, "frame-max").
    #[error("frame of {size} bytes exceeds frame-max {max}")]
    FrameTooLarge {
        /// Declared size of the whole frame, header and frame-end included.
        size: u64,
        /// The limit it was checked against.
        max: u32,
    },
    /// The octet after the payload is not `FRAME_END` (0xCE): the peer lost framing.
    #[error("frame-end octet is {0:#04x}, expected 0xce")]
    BadFrameEnd(u8),
    /// The frame type octet is none of method (1), header (2), body (3), heartbeat (8).
    #[error("unknown frame type {0}")]
    UnknownFrameType(u8),
    /// The frame payload is too short or too long for its frame type (a method frame shorter
    /// than its 4-byte method id, a content header shorter than 14 bytes, a heartbeat with a
    /// payload). The text names which.
    #[error("malformed frame: {0}")]
    MalformedFrame(&'static str),
    /// No method with this class id and method id exists in AMQP 0-9-1 (with RabbitMQ's
    /// extensions).
    #[error("unknown method {class_id}/{method_id}")]
    UnknownMethod {
        /// The class id from the method frame.
        class_id: u16,
        /// The method id from the method frame.
        method_id: u16,
    },
    /// Arguments, properties or a field table end before the value being read.
    #[error("arguments truncated")]
    Truncated,
    /// Bytes are left over after the last argument, property or table entry.
    #[error("trailing bytes after arguments")]
    TrailingBytes,
    /// A short string is not valid UTF-8 (AMQP 0-9-1 section 4.2.5.3: short strings are UTF-8).
    #[error("short string is not valid UTF-8")]
    InvalidUtf8,
    /// A short string is longer than 255 bytes (only when building one with `ShortString::new` or
    /// `TryFrom<Bytes>`; the wire format cannot express a longer one).
    #[error("short string longer than 255 bytes")]
    StringTooLong,
    /// A field value has a type tag that is not in RabbitMQ's table of field types.
    #[error("invalid field value type {0:#04x}")]
    InvalidFieldType(u8),
    /// Field tables and arrays are nested deeper than [`crate::MAX_TABLE_DEPTH`].
    #[error("field table nested too deeply")]
    TooDeep,
    /// The property flags of a content header announce a property that does not exist (an unused
    /// flag bit, or a continuation word with bits set).
    #[error("invalid property flags")]
    BadPropertyFlags,
}

impl WireError {
    /// The reply code a server closes the connection with for this error.
    ///
    /// - Framing problems (size, frame-end, type, payload shape) are 501 FRAME_ERROR.
    /// - Malformed method arguments, content properties or field tables are 502 SYNTAX_ERROR
    ///   ("the sender sent a frame that contained illegal values for one or more fields").
    ///   RabbitMQ answers undecodable method arguments with 501 ("cannot decode"); we follow the
    ///   spec's finer split, which clients treat the same (both are hard errors).
    /// - An unknown class or method is 540 NOT_IMPLEMENTED ("the client tried to use
    ///   functionality that is not implemented"). RabbitMQ has no clean answer here: its framing
    ///   module exits with `{unknown_method_id, ...}` and the connection is torn down.
    pub fn reply_code(&self) -> ReplyCode {
        match self {
            WireError::FrameTooLarge { .. }
            | WireError::BadFrameEnd(_)
            | WireError::UnknownFrameType(_)
            | WireError::MalformedFrame(_) => ReplyCode::FrameError,
            WireError::UnknownMethod { .. } => ReplyCode::NotImplemented,
            WireError::Truncated
            | WireError::TrailingBytes
            | WireError::InvalidUtf8
            | WireError::StringTooLong
            | WireError::InvalidFieldType(_)
            | WireError::TooDeep
            | WireError::BadPropertyFlags => ReplyCode::SyntaxError,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_errors_are_frame_errors() {
        let e = WireError::FrameTooLarge {
            size: 10_000,
            max: 4096,
        };
        assert_eq!(e.reply_code(), ReplyCode::FrameError);
        assert_eq!(WireError::BadFrameEnd(0).reply_code().code(), 501);
        assert_eq!(WireError::UnknownFrameType(9).reply_code().code(), 501);
    }

    #[test]
    fn argument_errors_are_syntax_errors() {
        for e in [
            WireError::Truncated,
            WireError::TrailingBytes,
            WireError::InvalidUtf8,
            WireError::InvalidFieldType(b'Z'),
            WireError::TooDeep,
            WireError::BadPropertyFlags,
        ] {
            assert_eq!(e.reply_code(), ReplyCode::SyntaxError, "{e}");
        }
    }

    #[test]
    fn unknown_method_is_not_implemented() {
        let e = WireError::UnknownMethod {
            class_id: 99,
            method_id: 1,
        };
        assert_eq!(e.reply_code(), ReplyCode::NotImplemented);
        assert_eq!(e.to_string(), "unknown method 99/1");
    }

    #[test]
    fn messages_fit_in_a_short_string() {
        let e = WireError::FrameTooLarge {
            size: u64::MAX,
            max: u32::MAX,
        };
        assert!(e.to_string().len() < 255);
    }
}
