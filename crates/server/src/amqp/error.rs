//! How a protocol violation or refusal ends: the channel or the whole connection, with a code.

use super::convert;
use amqp_wire::{Method, ReplyCode};
use pigeon_broker::BrokerError;

/// An AMQP exception (AMQP 0-9-1 section 1.4.2.6 / 1.5.2.5): the reply code, the text, and the
/// method that caused it. Whether it closes the channel or the connection follows the code.
#[derive(Debug, Clone)]
pub struct AmqpError {
    /// The reply code.
    pub code: ReplyCode,
    /// The reply text (`NOT_FOUND - no queue 'q' in vhost '/'`).
    pub text: String,
    /// Class id of the failing method (0 when none).
    pub class_id: u16,
    /// Method id of the failing method (0 when none).
    pub method_id: u16,
    /// Close the connection even though the code is a channel-level one.
    pub force_connection: bool,
    /// Its cause was logged already (an access refusal): the close is not logged again.
    pub logged: bool,
}

impl AmqpError {
    /// An error with `code`; the text gets the code's name in front, as RabbitMQ writes it.
    pub fn new(code: ReplyCode, text: impl std::fmt::Display) -> AmqpError {
        AmqpError {
            code,
            text: format!("{} - {}", code.text(), text),
            class_id: 0,
            method_id: 0,
            force_connection: false,
            logged: false,
        }
    }

    /// An access refusal (403 ACCESS_REFUSED, closing the channel), already logged by
    /// `authz.rs`.
    pub fn refused(r: crate::authz::Refused) -> AmqpError {
        AmqpError {
            logged: true,
            ..AmqpError::new(ReplyCode::AccessRefused, r)
        }
    }

    /// A limit that refuses an operation, with `code` (logged here, once).
    pub fn limit(code: ReplyCode, e: crate::limits::LimitError) -> AmqpError {
        tracing::warn!(reason = %e, "limit reached, operation refused");
        AmqpError {
            logged: true,
            ..AmqpError::new(code, e)
        }
    }

    /// Names the method that caused it.
    pub fn on(mut self, method: &Method) -> AmqpError {
        self.class_id = method.class_id();
        self.method_id = method.method_id();
        self
    }

    /// Whether it closes the whole connection.
    pub fn is_connection_error(&self) -> bool {
        self.force_connection || self.code.is_hard_error()
    }
}

impl From<BrokerError> for AmqpError {
    fn from(e: BrokerError) -> AmqpError {
        AmqpError {
            code: convert::reply_code(&e),
            text: e.to_string(),
            class_id: 0,
            method_id: 0,
            force_connection: false,
            logged: false,
        }
    }
}

impl From<crate::authz::Refused> for AmqpError {
    fn from(r: crate::authz::Refused) -> AmqpError {
        AmqpError::refused(r)
    }
}

/// Shorthand for handler results.
pub type AmqpResult<T = ()> = Result<T, AmqpError>;
