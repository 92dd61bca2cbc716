//! Response codes: PROTOCOL.adoc's table ("Stream Protocol Response Codes"), plus the two SASL
//! codes RabbitMQ added in `rabbit_stream.hrl` (0x14, 0x15) that the table does not list.
//!
//! The same codes travel in responses, in `PublishError` (per message), in `MetadataUpdate`
//! and as the closing code of `Close`.

use std::fmt;

/// A response code. Codes this crate does not know survive decoding as [`ResponseCode::Other`],
/// so a client keeps the number a newer server sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResponseCode {
    /// 0x01.
    Ok,
    /// 0x02.
    StreamDoesNotExist,
    /// 0x03.
    SubscriptionIdAlreadyExists,
    /// 0x04.
    SubscriptionIdDoesNotExist,
    /// 0x05.
    StreamAlreadyExists,
    /// 0x06.
    StreamNotAvailable,
    /// 0x07.
    SaslMechanismNotSupported,
    /// 0x08.
    AuthenticationFailure,
    /// 0x09.
    SaslError,
    /// 0x0a: the server has a challenge for the client (in the `SaslAuthenticate` response).
    SaslChallenge,
    /// 0x0b: the user may only connect from localhost (RabbitMQ's `loopback_users`).
    SaslAuthenticationFailureLoopback,
    /// 0x0c.
    VirtualHostAccessFailure,
    /// 0x0d: what RabbitMQ closes with after a command it cannot parse.
    UnknownFrame,
    /// 0x0e: what RabbitMQ closes with after a frame over the negotiated maximum.
    FrameTooLarge,
    /// 0x0f.
    InternalError,
    /// 0x10.
    AccessRefused,
    /// 0x11.
    PreconditionFailed,
    /// 0x12.
    PublisherDoesNotExist,
    /// 0x13: no offset stored for this reference (`QueryOffset`).
    NoOffset,
    /// 0x14: a re-authentication used another mechanism (`rabbit_stream.hrl` only).
    SaslCannotChangeMechanism,
    /// 0x15: a re-authentication used another user name (`rabbit_stream.hrl` only).
    SaslCannotChangeUsername,
    /// Any other value.
    Other(u16),
}

impl ResponseCode {
    /// The numeric value on the wire.
    pub fn code(self) -> u16 {
        match self {
            ResponseCode::Ok => 0x01,
            ResponseCode::StreamDoesNotExist => 0x02,
            ResponseCode::SubscriptionIdAlreadyExists => 0x03,
            ResponseCode::SubscriptionIdDoesNotExist => 0x04,
            ResponseCode::StreamAlreadyExists => 0x05,
            ResponseCode::StreamNotAvailable => 0x06,
            ResponseCode::SaslMechanismNotSupported => 0x07,
            ResponseCode::AuthenticationFailure => 0x08,
            ResponseCode::SaslError => 0x09,
            ResponseCode::SaslChallenge => 0x0a,
            ResponseCode::SaslAuthenticationFailureLoopback => 0x0b,
            ResponseCode::VirtualHostAccessFailure => 0x0c,
            ResponseCode::UnknownFrame => 0x0d,
            ResponseCode::FrameTooLarge => 0x0e,
            ResponseCode::InternalError => 0x0f,
            ResponseCode::AccessRefused => 0x10,
            ResponseCode::PreconditionFailed => 0x11,
            ResponseCode::PublisherDoesNotExist => 0x12,
            ResponseCode::NoOffset => 0x13,
            ResponseCode::SaslCannotChangeMechanism => 0x14,
            ResponseCode::SaslCannotChangeUsername => 0x15,
            ResponseCode::Other(code) => code,
        }
    }

    /// True for 0x01.
    pub fn is_ok(self) -> bool {
        self == ResponseCode::Ok
    }
}

impl From<u16> for ResponseCode {
    fn from(code: u16) -> Self {
        match code {
            0x01 => ResponseCode::Ok,
            0x02 => ResponseCode::StreamDoesNotExist,
            0x03 => ResponseCode::SubscriptionIdAlreadyExists,
            0x04 => ResponseCode::SubscriptionIdDoesNotExist,
            0x05 => ResponseCode::StreamAlreadyExists,
            0x06 => ResponseCode::StreamNotAvailable,
            0x07 => ResponseCode::SaslMechanismNotSupported,
            0x08 => ResponseCode::AuthenticationFailure,
            0x09 => ResponseCode::SaslError,
            0x0a => ResponseCode::SaslChallenge,
            0x0b => ResponseCode::SaslAuthenticationFailureLoopback,
            0x0c => ResponseCode::VirtualHostAccessFailure,
            0x0d => ResponseCode::UnknownFrame,
            0x0e => ResponseCode::FrameTooLarge,
            0x0f => ResponseCode::InternalError,
            0x10 => ResponseCode::AccessRefused,
            0x11 => ResponseCode::PreconditionFailed,
            0x12 => ResponseCode::PublisherDoesNotExist,
            0x13 => ResponseCode::NoOffset,
            0x14 => ResponseCode::SaslCannotChangeMechanism,
            0x15 => ResponseCode::SaslCannotChangeUsername,
            other => ResponseCode::Other(other),
        }
    }
}

impl From<ResponseCode> for u16 {
    fn from(code: ResponseCode) -> u16 {
        code.code()
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?} ({:#04x})", self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips() {
        for code in 0..=0x30u16 {
            assert_eq!(ResponseCode::from(code).code(), code);
        }
        assert_eq!(ResponseCode::from(0xffff), ResponseCode::Other(0xffff));
    }

    #[test]
    fn values_match_protocol_adoc() {
        assert_eq!(ResponseCode::Ok.code(), 0x01);
        assert_eq!(ResponseCode::SaslChallenge.code(), 0x0a);
        assert_eq!(ResponseCode::UnknownFrame.code(), 0x0d);
        assert_eq!(ResponseCode::FrameTooLarge.code(), 0x0e);
        assert_eq!(ResponseCode::NoOffset.code(), 0x13);
        assert!(ResponseCode::from(1).is_ok());
        assert_eq!(
            ResponseCode::AccessRefused.to_string(),
            "AccessRefused (0x10)"
        );
    }
}
