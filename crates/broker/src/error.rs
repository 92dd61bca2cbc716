//! The broker's error type: what went wrong, in terms a protocol adapter can map to its own codes.

use thiserror::Error;

/// Everything a broker operation can refuse. Each variant says what the caller did wrong; the
/// protocol adapters turn the kind into a reply code (AMQP) or reason code (MQTT) in one place.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BrokerError {
    /// The named exchange, queue, vhost or consumer does not exist.
    #[error("NOT_FOUND - {0}")]
    NotFound(String),
    /// The entity exists but the caller may not use it this way (reserved name, internal exchange).
    #[error("ACCESS_REFUSED - {0}")]
    AccessRefused(String),
    /// The entity is locked by another connection (exclusive queue or consumer).
    #[error("RESOURCE_LOCKED - {0}")]
    ResourceLocked(String),
    /// The request contradicts the entity's state (redeclare with other properties, not empty).
    #[error("PRECONDITION_FAILED - {0}")]
    PreconditionFailed(String),
    /// The request is not allowed in general (the queue's log cannot be opened).
    #[error("NOT_ALLOWED - {0}")]
    NotAllowed(String),
    /// A command that is invalid in the current state.
    #[error("COMMAND_INVALID - {0}")]
    CommandInvalid(String),
    /// Something the entity's type does not do (`basic.get` on a stream, RabbitMQ's
    /// `not_implemented`).
    #[error("NOT_IMPLEMENTED - {0}")]
    NotImplemented(String),
}

/// Shorthand for broker results.
pub type Result<T, E = BrokerError> = std::result::Result<T, E>;
