//! Pigeon's protocol-neutral core.
//!
//! The rooms: a [`Broker`] holds [`VHost`]s; a vhost holds [`Exchange`]s (routing, in
//! `exchange/`) and [`Queue`]s (FIFO, consumers, delivery credit). Protocol adapters in the
//! server crate turn AMQP methods and MQTT packets into calls here and implement
//! [`ConsumerSink`] to receive deliveries. Nothing here knows a socket or a wire format:
//! message properties stay encoded and are read through [`PropertiesView`].

#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod consumer;
pub mod error;
pub mod exchange;
pub mod message;
pub mod policy;
pub mod queue;
pub mod record;
pub mod retained;
pub mod value;
pub mod vhost;

pub use consumer::{ConnectionId, ConsumerEntry, ConsumerSink, Delivered};
pub use error::{BrokerError, Result};
pub use exchange::{Binding, Destination, Exchange, ExchangeKind};
pub use message::{
    Death, DeathReason, Message, MessageMeta, Properties, PropertiesCodec, PropertiesView,
};
pub use policy::{ApplyTo, Policy};
pub use queue::settings::{Overflow, QueueSettings};
pub use queue::{Enqueued, Queue, QueueOptions, QueuedMessage};
pub use retained::RetainedStore;
pub use value::{Table, Value};
pub use vhost::{ExchangeDeclare, Published, QueueDeclared, VHost};

use parking_lot::RwLock;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The whole broker: its vhosts and the id source for connections and channels.
pub struct Broker {
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    ids: AtomicU64,
}

impl Broker {
    /// A broker with the default vhost `/`.
    pub fn new() -> Arc<Broker> {
        let mut vhosts = HashMap::new();
        vhosts.insert("/".to_string(), VHost::new("/"));
        Arc::new(Broker {
            vhosts: RwLock::new(vhosts),
            ids: AtomicU64::new(1),
        })
    }

    /// Looks up a vhost.
    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }

    /// Every vhost.
    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        self.vhosts.read().values().cloned().collect()
    }

    /// A broker-wide unique id (connections, channels, sessions).
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }
}
