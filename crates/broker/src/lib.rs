//! Pigeon's protocol-neutral core.
//!
//! The rooms: a [`Broker`] holds [`VHost`]s; a vhost holds [`Exchange`]s (routing, in
//! `exchange/`) and [`Queue`]s (FIFO, consumers, delivery credit). Protocol adapters in the
//! server crate turn AMQP methods and MQTT packets into calls here and implement
//! [`ConsumerSink`] to receive deliveries. Nothing here knows a socket or a wire format:
//! message properties stay encoded and are read through [`PropertiesView`].

#![cfg_attr(test, allow(clippy::unwrap_used))]
#![warn(missing_docs)]

pub mod access;
pub mod consumer;
pub mod durable;
pub mod error;
pub mod exchange;
pub mod message;
pub mod permission;
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
    Death, DeathReason, Message, MessageMeta, OpaqueProperties, Properties, PropertiesCodec,
    PropertiesView,
};
pub use policy::{ApplyTo, Policy};
pub use queue::settings::{Overflow, QueueSettings};
pub use queue::{Enqueued, FlowView, PagingLimits, Queue, QueueOptions, QueuedMessage};
pub use retained::RetainedStore;
pub use value::{Table, Value};
pub use vhost::{ExchangeDeclare, Published, QueueDeclared, VHost};

use parking_lot::RwLock;
use pigeon_store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// What [`Broker::open`] found in the store.
#[derive(Debug, Clone)]
pub struct Recovered {
    /// Durable exchanges recreated.
    pub exchanges: usize,
    /// Durable queues recreated.
    pub queues: usize,
    /// Durable bindings recreated.
    pub bindings: usize,
    /// Messages recovered into their queues (most of a long queue stays paged out).
    pub messages: usize,
    /// How long it took.
    pub duration: std::time::Duration,
}

/// The whole broker: its vhosts and the id source for connections and channels.
pub struct Broker {
    vhosts: RwLock<HashMap<String, Arc<VHost>>>,
    ids: AtomicU64,
    access: access::AccessControl,
}

impl Broker {
    /// A broker with the default vhost `/`, keeping everything in memory.
    pub fn new() -> Arc<Broker> {
        let mut vhosts = HashMap::new();
        vhosts.insert("/".to_string(), VHost::new("/"));
        Arc::new(Broker {
            vhosts: RwLock::new(vhosts),
            ids: AtomicU64::new(1),
            access: access::AccessControl::new(),
        })
    }

    /// A broker whose durable exchanges, queues, bindings and persistent messages live in
    /// `store`; what the store holds is recovered first. Messages are read back with `codec`
    /// (the encoding their properties were stored in). Each durable queue keeps at most
    /// `paging` of its messages in memory; the rest stay in its log until needed.
    pub fn open(
        store: Arc<Store>,
        codec: &'static dyn PropertiesCodec,
        paging: PagingLimits,
    ) -> std::result::Result<(Arc<Broker>, Recovered), pigeon_store::StoreError> {
        let started = std::time::Instant::now();
        let defs = durable::load(&store)?;
        let vhost = VHost::with_store("/", Some(Arc::clone(&store)), paging);
        let messages = vhost.recover(&defs, codec);
        let mut vhosts = HashMap::new();
        vhosts.insert("/".to_string(), vhost);
        let recovered = Recovered {
            exchanges: defs.exchanges.len(),
            queues: defs.queues.len(),
            bindings: defs.bindings.len(),
            messages,
            duration: started.elapsed(),
        };
        Ok((
            Arc::new(Broker {
                vhosts: RwLock::new(vhosts),
                ids: AtomicU64::new(1),
                access: access::AccessControl::new(),
            }),
            recovered,
        ))
    }

    /// Looks up a vhost.
    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }

    /// Every vhost.
    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        self.vhosts.read().values().cloned().collect()
    }

    /// Users' permissions, topic permissions and limits.
    pub fn access(&self) -> &access::AccessControl {
        &self.access
    }

    /// A broker-wide unique id (connections, channels, sessions).
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }
}
