//! The RabbitMQ Stream protocol (port 5552, 5551 with TLS): the adapter between a stream
//! client's connection and the broker's stream queues (`x-queue-type: stream`), whose
//! [`pigeon_store::StreamLog`]s it appends to and reads from directly.
//!
//! A stream created here is the same object as one declared over AMQP 0-9-1: a queue of the
//! vhost, declared with the same checks and stored the same way, so that it is listed in
//! `/api/queues` and consumable from both protocols.
//!
//! # Layout
//!
//! - `connection.rs`: the connection task (read loop, frame dispatch, close, heartbeats,
//!   wake-ups for confirms and deliveries). Its writer is a second task draining an
//!   [`crate::outbound::Outbound`], as an AMQP connection's.
//! - `handshake.rs`: `PeerProperties`, `SaslHandshake`, `SaslAuthenticate`, `Tune`, `Open`.
//! - `streams.rs`: `Create`, `Delete`, `Metadata`, `StreamStats`, super-stream commands.
//! - `offsets.rs`: `StoreOffset`, `QueryOffset`, `QueryPublisherSequence`,
//!   `ResolveOffsetSpec`, `ExchangeCommandVersions`.
//! - `publish.rs`: publishers, `Publish` (one chunk per frame), confirms after the sync.
//! - `subscribe.rs`: subscriptions, `Deliver` of whole chunks read from the log's files,
//!   credit.
//! - `sac.rs`: single active consumer groups and `ConsumerUpdate`.
//! - `view.rs`: publishers and subscriptions as the management API reads them.
//!
//! The wire format is `stream-wire`'s; the broker and the store know nothing of it.

mod connection;
mod handshake;
mod offsets;
mod publish;
mod sac;
mod streams;
mod subscribe;
mod view;

pub(crate) use sac::Groups;
pub(crate) use view::{ConnectionRef, ConsumerInfo, PublisherInfo, Views};

use crate::transport::{PeerInfo, Transport};
use crate::ServerState;
use std::sync::Arc;

/// Serves one accepted stream-protocol connection until it closes.
pub(crate) async fn serve(transport: Transport, peer: PeerInfo, state: Arc<ServerState>) {
    connection::run(transport, peer, state).await;
}
