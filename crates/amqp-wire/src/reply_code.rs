//! AMQP reply codes: the `reply-code` of `connection.close`, `channel.close` and `basic.return`.
//!
//! The values and their soft/hard class come from the constants of the AMQP 0-9-1 specification
//! (section 1.2, "Constants"). A soft error closes the channel, a hard error closes the
//! connection.

use std::fmt;

/// An AMQP 0-9-1 reply code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyCode {
    /// 200: the method completed successfully (used by a clean `connection.close`).
    Success,
    /// 311 (soft): the message was too large for the server to accept.
    ContentTooLarge,
    /// 312 (soft): a mandatory message could not be routed to any queue (`basic.return`).
    NoRoute,
    /// 313 (soft): an immediate message had no consumer ready (`basic.return`).
    NoConsumers,
    /// 320 (hard): an operator closed the connection.
    ConnectionForced,
    /// 402 (hard): the virtual host name is not valid.
    InvalidPath,
    /// 403 (soft): the user may not access the resource.
    AccessRefused,
    /// 404 (soft): the exchange or queue does not exist.
    NotFound,
    /// 405 (soft): the resource is exclusively used by another connection.
    ResourceLocked,
    /// 406 (soft): a declaration does not match the existing entity, or a precondition failed.
    PreconditionFailed,
    /// 501 (hard): a frame could not be decoded.
    FrameError,
    /// 502 (hard): a frame had illegal values in its fields.
    SyntaxError,
    /// 503 (hard): an invalid sequence of frames or methods.
    CommandInvalid,
    /// 504 (hard): a method on a channel that is not open.
    ChannelError,
    /// 505 (hard): a frame arrived that was not expected here (e.g. a body without a header).
    UnexpectedFrame,
    /// 506 (hard): the server ran out of a resource (e.g. too many channels).
    ResourceError,
    /// 530 (hard): the operation is not allowed (e.g. redeclaring a reserved `amq.` exchange).
    NotAllowed,
    /// 540 (hard): the functionality is not implemented by the server.
    NotImplemented,
    /// 541 (hard): the server failed internally.
    InternalError,
}

impl ReplyCode {
    /// Every reply code, in numeric order.
    pub const ALL: [ReplyCode; 19] = [
        ReplyCode::Success,
        ReplyCode::ContentTooLarge,
        ReplyCode::NoRoute,
        ReplyCode::NoConsumers,
        ReplyCode::ConnectionForced,
        ReplyCode::InvalidPath,
        ReplyCode::AccessRefused,
        ReplyCode::NotFound,
        ReplyCode::ResourceLocked,
        ReplyCode::PreconditionFailed,
        ReplyCode::FrameError,
        ReplyCode::SyntaxError,
        ReplyCode::CommandInvalid,
        ReplyCode::ChannelError,
        ReplyCode::UnexpectedFrame,
        ReplyCode::ResourceError,
        ReplyCode::NotAllowed,
        ReplyCode::NotImplemented,
        ReplyCode::InternalError,
    ];

    /// The numeric code as it goes on the wire.
    pub fn code(self) -> u16 {
        match self {
            ReplyCode::Success => 200,
            ReplyCode::ContentTooLarge => 311,
            ReplyCode::NoRoute => 312,
            ReplyCode::NoConsumers => 313,
            ReplyCode::ConnectionForced => 320,
            ReplyCode::InvalidPath => 402,
            ReplyCode::AccessRefused => 403,
            ReplyCode::NotFound => 404,
            ReplyCode::ResourceLocked => 405,
            ReplyCode::PreconditionFailed => 406,
            ReplyCode::FrameError => 501,
            ReplyCode::SyntaxError => 502,
            ReplyCode::CommandInvalid => 503,
            ReplyCode::ChannelError => 504,
            ReplyCode::UnexpectedFrame => 505,
            ReplyCode::ResourceError => 506,
            ReplyCode::NotAllowed => 530,
            ReplyCode::NotImplemented => 540,
            ReplyCode::InternalError => 541,
        }
    }

    /// The reply code with this numeric value, if the spec defines one.
    pub fn from_code(c: u16) -> Option<ReplyCode> {
        ReplyCode::ALL.into_iter().find(|r| r.code() == c)
    }

    /// The spec's name with underscores, as RabbitMQ starts its reply texts (`"NOT_FOUND"`), so
    /// that clients which match on the text prefix behave the same against us.
    pub fn text(self) -> &'static str {
        match self {
            ReplyCode::Success => "REPLY_SUCCESS",
            ReplyCode::ContentTooLarge => "CONTENT_TOO_LARGE",
            ReplyCode::NoRoute => "NO_ROUTE",
            ReplyCode::NoConsumers => "NO_CONSUMERS",
            ReplyCode::ConnectionForced => "CONNECTION_FORCED",
            ReplyCode::InvalidPath => "INVALID_PATH",
            ReplyCode::AccessRefused => "ACCESS_REFUSED",
            ReplyCode::NotFound => "NOT_FOUND",
            ReplyCode::ResourceLocked => "RESOURCE_LOCKED",
            ReplyCode::PreconditionFailed => "PRECONDITION_FAILED",
            ReplyCode::FrameError => "FRAME_ERROR",
            ReplyCode::SyntaxError => "SYNTAX_ERROR",
            ReplyCode::CommandInvalid => "COMMAND_INVALID",
            ReplyCode::ChannelError => "CHANNEL_ERROR",
            ReplyCode::UnexpectedFrame => "UNEXPECTED_FRAME",
            ReplyCode::ResourceError => "RESOURCE_ERROR",
            ReplyCode::NotAllowed => "NOT_ALLOWED",
            ReplyCode::NotImplemented => "NOT_IMPLEMENTED",
            ReplyCode::InternalError => "INTERNAL_ERROR",
        }
    }

    /// True for the spec's "hard-error" class: the whole connection must be closed
    /// (`connection.close`). Soft errors close only the channel; `Success` is neither.
    pub fn is_hard_error(self) -> bool {
        matches!(
            self,
            ReplyCode::ConnectionForced
                | ReplyCode::InvalidPath
                | ReplyCode::FrameError
                | ReplyCode::SyntaxError
                | ReplyCode::CommandInvalid
                | ReplyCode::ChannelError
                | ReplyCode::UnexpectedFrame
                | ReplyCode::ResourceError
                | ReplyCode::NotAllowed
                | ReplyCode::NotImplemented
                | ReplyCode::InternalError
        )
    }

    /// True for the spec's "soft-error" class: only the channel is closed (`channel.close`).
    pub fn is_soft_error(self) -> bool {
        self != ReplyCode::Success && !self.is_hard_error()
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

impl From<ReplyCode> for u16 {
    fn from(r: ReplyCode) -> u16 {
        r.code()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for r in ReplyCode::ALL {
            assert_eq!(ReplyCode::from_code(r.code()), Some(r));
        }
        assert_eq!(ReplyCode::from_code(0), None);
        assert_eq!(ReplyCode::from_code(201), None);
    }

    #[test]
    fn all_is_sorted_and_complete() {
        let codes: Vec<u16> = ReplyCode::ALL.iter().map(|r| r.code()).collect();
        let mut sorted = codes.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(codes, sorted);
    }

    #[test]
    fn classes_follow_the_spec_constants() {
        // AMQP 0-9-1 section 1.2: 3xx/4xx codes except 320 and 402 are soft.
        assert!(ReplyCode::NotFound.is_soft_error());
        assert!(ReplyCode::PreconditionFailed.is_soft_error());
        assert!(ReplyCode::AccessRefused.is_soft_error());
        assert!(ReplyCode::ConnectionForced.is_hard_error());
        assert!(ReplyCode::InvalidPath.is_hard_error());
        assert!(ReplyCode::FrameError.is_hard_error());
        assert!(!ReplyCode::Success.is_hard_error());
        assert!(!ReplyCode::Success.is_soft_error());
        for r in ReplyCode::ALL {
            if r.code() >= 500 {
                assert!(r.is_hard_error(), "{r}");
            }
        }
    }

    #[test]
    fn text_is_the_constant_name() {
        assert_eq!(ReplyCode::NotFound.text(), "NOT_FOUND");
        assert_eq!(ReplyCode::NotFound.to_string(), "NOT_FOUND");
        assert_eq!(u16::from(ReplyCode::NoRoute), 312);
    }
}
