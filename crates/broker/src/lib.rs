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
pub mod parameters;
pub mod permission;
pub mod policy;
pub mod queue;
pub mod record;
pub mod retained;
pub mod stream_sac;
pub mod value;
pub mod vhost;

pub use consumer::{ConnectionId, ConsumerEntry, ConsumerSink, Delivered};
pub use error::{BrokerError, Result};
pub use exchange::{Binding, Destination, Exchange, ExchangeKind};
pub use message::{
    Death, DeathReason, Message, MessageMeta, OpaqueProperties, Properties, PropertiesCodec,
    PropertiesView,
};
pub use parameters::{Parameter, Parameters};
pub use policy::{ApplyTo, Policy, PolicyError, PolicyKind};
pub use queue::remote::{Outcome, RemoteConfirm, RemoteHome};
pub use queue::settings::{Overflow, QueueSettings};
pub use queue::{
    Enqueued, FlowView, PagingLimits, Queue, QueueCounters, QueueOptions, QueueStats,
    QueuedMessage, StreamView,
};
pub use retained::RetainedStore;
pub use value::{Table, Value};
pub use vhost::{
    AppliedPolicies, AutoDeleteHook, AutoDeleted, DeadLetterRoute, ExchangeDeclare, Published,
    QueueDeclared, SuperStreamError, VHost,
};

use parking_lot::{Mutex, RwLock};
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
    /// Runtime and global parameters (`parameters.rs`).
    parameters: parameters::Parameters,
    /// Where new vhosts keep their durable entities (`None`: memory only).
    store: Option<Arc<Store>>,
    /// The paging limits of new vhosts.
    paging: PagingLimits,
    /// Serialises vhost creation and deletion (`access/vhosts.rs`).
    vhost_writes: Mutex<()>,
    /// Told of deleted vhosts and users (`access/vhosts.rs`).
    deleted_hooks: RwLock<Vec<access::vhosts::DeletedHook>>,
}

impl Broker {
    /// A broker with the default vhost `/`, keeping everything in memory. Nobody can log in
    /// until users exist: see [`Broker::bootstrap`].
    pub fn new() -> Arc<Broker> {
        let mut vhosts = HashMap::new();
        vhosts.insert("/".to_string(), VHost::new("/"));
        Arc::new(Broker {
            vhosts: RwLock::new(vhosts),
            ids: AtomicU64::new(1),
            access: access::AccessControl::new(),
            parameters: parameters::Parameters::new(),
            store: None,
            paging: PagingLimits::default(),
            vhost_writes: Mutex::new(()),
            deleted_hooks: RwLock::new(Vec::new()),
        })
    }

    /// A broker whose vhosts, users, permissions, durable exchanges, queues, bindings and
    /// persistent messages live in `store`; what the store holds is recovered first, each vhost
    /// with its own entities. Messages are read back with `codec` (the encoding their
    /// properties were stored in). Each durable queue keeps at most `paging` of its messages in
    /// memory; the rest stay in its log until needed.
    ///
    /// A store that was never bootstrapped has no vhost records yet (it is new, or was written
    /// before vhosts were recorded): the vhosts its definitions name are recorded then. In a
    /// bootstrapped store, definitions of a vhost without a record are what an interrupted
    /// `delete_vhost` left behind, and are deleted.
    pub fn open(
        store: Arc<Store>,
        codec: &'static dyn PropertiesCodec,
        paging: PagingLimits,
    ) -> std::result::Result<(Arc<Broker>, Recovered), pigeon_store::StoreError> {
        let started = std::time::Instant::now();
        let access = access::AccessControl::open(Arc::clone(&store))?;
        let parameters = parameters::Parameters::open(Arc::clone(&store))?;
        let defs = durable::load(&store)?;
        let mut known: HashMap<String, access::VHostInfo> =
            access::vhosts::load(&store)?.into_iter().collect();
        let retained = durable::retained_vhosts(&store)?;
        let named: std::collections::BTreeSet<&str> = defs
            .vhosts()
            .into_iter()
            .chain(retained.iter().map(String::as_str))
            .collect();
        for name in named {
            if known.contains_key(name) {
                continue;
            }
            if access.is_bootstrapped() {
                tracing::warn!(vhost = %name, "deleting what remains of a deleted vhost");
                durable::delete_vhost(&store, name);
            } else {
                access::vhosts::put(&store, name, &access::VHostInfo::default())?;
                known.insert(name.to_string(), access::VHostInfo::default());
            }
        }
        let stale: std::collections::BTreeSet<String> = access
            .all_permissions()
            .into_iter()
            .map(|(_, v, _)| v)
            .chain(
                access
                    .all_topic_permissions()
                    .into_iter()
                    .map(|(_, v, _)| v),
            )
            .filter(|v| !known.contains_key(v))
            .collect();
        for v in stale {
            if let Err(e) = access.forget_vhost(&v) {
                tracing::warn!(vhost = %v, error = %e, "cannot forget the permissions of a deleted vhost");
            }
        }
        // Policies and parameters of a vhost without a record: an interrupted delete_vhost.
        for v in policy::persist::vhosts(&store)?
            .into_iter()
            .filter(|v| !known.contains_key(v))
        {
            tracing::warn!(vhost = %v, "deleting the policies of a deleted vhost");
            policy::persist::delete_vhost(&store, &v)?;
        }
        for v in parameters
            .vhosts()
            .into_iter()
            .filter(|v| !known.contains_key(v))
        {
            tracing::warn!(vhost = %v, "deleting the parameters of a deleted vhost");
            parameters.forget_vhost(&v)?;
        }
        let mut policies = policy::persist::load_all(&store, policy::PolicyKind::Policy)?;
        let mut operator = policy::persist::load_all(&store, policy::PolicyKind::Operator)?;
        let mut vhosts = HashMap::new();
        let mut messages = 0;
        for (name, info) in known {
            let vhost = VHost::with_store(&name, Some(Arc::clone(&store)), paging);
            vhost.set_info(info);
            let mine =
                |all: &mut HashMap<String, Vec<Policy>>| all.remove(&name).unwrap_or_default();
            vhost.recover_policies(policy::PolicyKind::Policy, mine(&mut policies));
            vhost.recover_policies(policy::PolicyKind::Operator, mine(&mut operator));
            messages += vhost.recover(&defs, codec);
            // Recovered exchanges take their policies' alternate exchanges.
            vhost.apply_policies();
            vhosts.insert(name, vhost);
        }
        let recovered = Recovered {
            exchanges: defs
                .exchanges
                .iter()
                .filter(|d| vhosts.contains_key(&d.vhost))
                .count(),
            queues: defs
                .queues
                .iter()
                .filter(|d| vhosts.contains_key(&d.vhost))
                .count(),
            bindings: defs
                .bindings
                .iter()
                .filter(|d| vhosts.contains_key(&d.vhost))
                .count(),
            messages,
            duration: started.elapsed(),
        };
        Ok((
            Arc::new(Broker {
                vhosts: RwLock::new(vhosts),
                ids: AtomicU64::new(1),
                access,
                parameters,
                store: Some(store),
                paging,
                vhost_writes: Mutex::new(()),
                deleted_hooks: RwLock::new(Vec::new()),
            }),
            recovered,
        ))
    }

    /// Looks up a vhost.
    pub fn vhost(&self, name: &str) -> Option<Arc<VHost>> {
        self.vhosts.read().get(name).cloned()
    }

    /// Every vhost, by name.
    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        let mut all: Vec<Arc<VHost>> = self.vhosts.read().values().cloned().collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all
    }

    /// Users, their permissions, topic permissions and limits.
    pub fn access(&self) -> &access::AccessControl {
        &self.access
    }

    /// Runtime and global parameters.
    pub fn parameters(&self) -> &parameters::Parameters {
        &self.parameters
    }

    /// A broker-wide unique id (connections, channels, sessions).
    pub fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }
}
