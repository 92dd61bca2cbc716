//! The AMQP 0-9-1 adapter: connections and channels mapped onto the broker core.
//!
//! `connection.rs` runs the socket (handshake, frames, heartbeats, close); `channel.rs` is a
//! channel's state machine; `topology.rs` and `basic.rs` handle the exchange/queue and
//! basic/confirm/tx classes; `delivery.rs` is what publishers' tasks touch when they deliver to
//! our consumers; `auth.rs` SASL; `convert.rs` maps
//! wire types onto broker types and broker errors onto reply codes.

pub(crate) mod amqp10;
pub(crate) mod auth;
mod basic;
mod channel;
mod codec;
mod connection;
pub(crate) mod convert;
mod delivery;
mod error;
mod quorum_wait;
mod remote;
mod remote_queue;
// Quorum queues on a node without [cluster] (helper quorumone).
mod quorum_local;
mod replicated;
mod sender_selected;
mod streams;
mod topology;

pub(crate) use codec::AMQP_CODEC;
pub use connection::serve;
