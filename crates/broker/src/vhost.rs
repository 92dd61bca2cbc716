//! A virtual host: its exchanges, queues and bindings; publishing through them is in
//! `vhost/routing.rs`.
//!
//! Lock order (never take them the other way round): the vhost's `exchanges` / `queues` maps,
//! then an exchange's bindings, then a queue's state, then whatever a consumer sink locks.

use crate::consumer::ConnectionId;
use crate::durable;
use crate::error::{BrokerError, Result};
use crate::exchange::{Destination, Exchange, ExchangeKind};
use crate::policy::Policies;
use crate::queue::settings::{self, QueueSettings};
use crate::queue::stream;
use crate::queue::{PagingLimits, Queue, QueueOptions};
use crate::retained::RetainedStore;
use crate::value::Table;
use parking_lot::RwLock;
use pigeon_store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

mod auto_delete;
// `default_queue_type` (helper quorumone).
pub mod default_type;
mod equivalence;
mod exchanges;
mod lifecycle;
mod policies;
mod routing;
mod streams;
mod super_streams;
pub use auto_delete::{AutoDeleteHook, AutoDeleted};
pub use policies::AppliedPolicies;
pub use routing::{DeadLetterRoute, Published, Routed};
use std::time::Instant;
pub use super_streams::{
    correct_stream_name, split_binding_keys, stream_queue_arguments, super_stream_layout,
    SuperStreamError, MAX_SUPER_STREAM_PARTITIONS, PARTITION_ORDER_ARG, SUPER_STREAM_ARG,
};

/// What `exchange.declare` asks for.
#[derive(Debug, Clone)]
pub struct ExchangeDeclare<'a> {
    /// Exchange name.
    pub name: &'a str,
    /// Type name (`direct`, `fanout`, `topic`, `headers`).
    pub kind: &'a str,
    /// Only check that it exists.
    pub passive: bool,
    /// Survives a restart.
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Not publishable directly.
    pub internal: bool,
    /// Arguments (`alternate-exchange`, ...).
    pub arguments: Table,
}

/// The reply to a queue declaration.
#[derive(Debug, Clone)]
pub struct QueueDeclared {
    /// The queue (its name may have been generated).
    pub queue: Arc<Queue>,
    /// Ready messages.
    pub message_count: u32,
    /// Consumers.
    pub consumer_count: u32,
}

/// How many queues a vhost saw declared, created and deleted (RabbitMQ's
/// `rabbitmq_queues_declared_total`, `_created_total`, `_deleted_total`).
#[derive(Debug, Default)]
pub struct QueueTotals {
    /// Successful non-passive `queue.declare`s, new queue or not.
    pub declared: AtomicU64,
    /// Queues created.
    pub created: AtomicU64,
    /// Queues deleted (by a client, `x-expires`, auto-delete, exclusivity).
    pub deleted: AtomicU64,
}

/// A virtual host.
pub struct VHost {
    me: Weak<VHost>,
    name: Arc<str>,
    default_exchange: Arc<Exchange>,
    exchanges: RwLock<HashMap<Arc<str>, Arc<Exchange>>>,
    queues: RwLock<HashMap<Arc<str>, Arc<Queue>>>,
    generated: AtomicU64,
    /// Queues declared, created and deleted in this vhost (Prometheus totals).
    pub queue_totals: QueueTotals,
    /// Retained messages (MQTT).
    pub retained: RetainedStore,
    policies: RwLock<Policies>,
    /// Operator policies (`policies.rs`): caps on what policies and arguments set.
    operator_policies: RwLock<Policies>,
    /// Direct reply-to pseudo-queues (`amq.rabbitmq.reply-to.<token>`), reachable only through
    /// the default exchange and invisible to declarations.
    reply_queues: RwLock<HashMap<String, Arc<Queue>>>,
    /// Where durable definitions and persistent messages go (`None`: memory only).
    store: Option<Arc<Store>>,
    /// How much of each queue with a log stays in memory.
    paging: PagingLimits,
    /// Set once the vhost is deleted (`lifecycle.rs`): its connections are being closed.
    deleted: AtomicBool,
    /// Description and tags.
    info: RwLock<crate::access::VHostInfo>,
    /// Told of automatic deletions of durable entities (`auto_delete.rs`; a cluster's).
    auto_delete_hook: RwLock<Option<auto_delete::AutoDeleteHook>>,
}

fn not_found(kind: &str, name: &str, vhost: &str) -> BrokerError {
    BrokerError::NotFound(format!("no {kind} '{name}' in vhost '{vhost}'"))
}

/// RabbitMQ's text for a type name it has never heard of (it says "invalid exchange type"
/// instead when the name happens to be an atom of its VM that is no exchange type, like 'x').
fn unknown_exchange_type(kind: &str) -> BrokerError {
    BrokerError::PreconditionFailed(format!("unknown exchange type '{kind}'"))
}

fn default_exchange_refused() -> BrokerError {
    BrokerError::AccessRefused("operation not permitted on the default exchange".into())
}

fn inequivalent(
    arg: &str,
    kind: &str,
    name: &str,
    vhost: &str,
    got: &str,
    have: &str,
) -> BrokerError {
    BrokerError::PreconditionFailed(format!(
        "inequivalent arg '{arg}' for {kind} '{name}' in vhost '{vhost}': received '{got}' but current is '{have}'"
    ))
}

impl VHost {
    /// Creates a vhost with the standard exchanges (`amq.direct`, `amq.fanout`, `amq.topic`,
    /// `amq.headers`, `amq.match`) and the default exchange.
    pub fn new(name: &str) -> Arc<VHost> {
        VHost::with_store(name, None, PagingLimits::default())
    }

    /// A vhost whose durable entities and persistent messages go to `store`, keeping at most
    /// `paging` of each durable queue in memory.
    pub fn with_store(name: &str, store: Option<Arc<Store>>, paging: PagingLimits) -> Arc<VHost> {
        let mut exchanges = HashMap::new();
        for (n, kind) in [
            ("amq.direct", ExchangeKind::Direct),
            ("amq.fanout", ExchangeKind::Fanout),
            ("amq.topic", ExchangeKind::Topic),
            ("amq.headers", ExchangeKind::Headers),
            ("amq.match", ExchangeKind::Headers),
        ] {
            let x = Arc::new(Exchange::new(n, kind, true, false, false, Table::new()));
            exchanges.insert(Arc::clone(&x.name), x);
        }
        Arc::new_cyclic(|me| VHost {
            me: me.clone(),
            name: name.into(),
            default_exchange: Arc::new(Exchange::new(
                "",
                ExchangeKind::Direct,
                true,
                false,
                false,
                Table::new(),
            )),
            exchanges: RwLock::new(exchanges),
            queues: RwLock::new(HashMap::new()),
            queue_totals: QueueTotals::default(),
            generated: AtomicU64::new(0),
            retained: RetainedStore::with_store(store.clone(), name),
            policies: RwLock::new(Policies::default()),
            operator_policies: RwLock::new(Policies::default()),
            reply_queues: RwLock::new(HashMap::new()),
            store,
            paging,
            deleted: AtomicBool::new(false),
            info: RwLock::new(crate::access::VHostInfo::default()),
            auto_delete_hook: RwLock::new(None),
        })
    }

    /// How much of each queue with a log stays in memory.
    pub fn paging(&self) -> PagingLimits {
        self.paging
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store, if the vhost persists anything.
    pub fn store(&self) -> Option<&Arc<Store>> {
        self.store.as_ref()
    }

    /// Looks up an exchange (`""` is the default exchange).
    pub fn exchange(&self, name: &str) -> Result<Arc<Exchange>> {
        if name.is_empty() {
            return Ok(Arc::clone(&self.default_exchange));
        }
        self.exchanges
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| not_found("exchange", name, &self.name))
    }

    /// Looks up a queue.
    pub fn queue(&self, name: &str) -> Result<Arc<Queue>> {
        self.queues
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| not_found("queue", name, &self.name))
    }

    /// Looks up a queue that `connection` may use (405 for another connection's exclusive queue).
    pub fn queue_for(&self, name: &str, connection: ConnectionId) -> Result<Arc<Queue>> {
        let q = self.queue(name)?;
        q.check_access(connection)?;
        Ok(q)
    }

    /// How many queues the vhost has (what `max-queues` bounds).
    pub fn queue_count(&self) -> usize {
        self.queues.read().len()
    }

    /// `queue.declare`. An empty name gets a generated `amq.gen-...` one.
    pub fn declare_queue(
        &self,
        name: &str,
        passive: bool,
        options: QueueOptions,
        connection: ConnectionId,
    ) -> Result<QueueDeclared> {
        self.declare_queue_as(name, passive, false, options, connection, true)
    }

    /// `queue.declare` of a server-named queue whose name the adapter took from
    /// [`VHost::unique_name`] (`amq.gen-...`), so that it could check permissions on that
    /// name first (RabbitMQ checks configure on the generated name).
    pub fn declare_generated_queue(
        &self,
        name: &str,
        options: QueueOptions,
        connection: ConnectionId,
    ) -> Result<QueueDeclared> {
        self.declare_queue_as(name, false, true, options, connection, true)
    }

    /// [`VHost::declare_queue`]; `check_type` false lets recovery bring back the queues an
    /// earlier version accepted with another `x-queue-type` (as classic queues).
    fn declare_queue_as(
        &self,
        name: &str,
        passive: bool,
        generated: bool,
        options: QueueOptions,
        connection: ConnectionId,
        check_type: bool,
    ) -> Result<QueueDeclared> {
        let declared = |queue: Arc<Queue>| QueueDeclared {
            message_count: queue.message_count(),
            consumer_count: queue.consumer_count(),
            queue,
        };
        if passive {
            let q = self.queue_for(name, connection)?;
            q.touch();
            return Ok(declared(q));
        }
        self.refuse_if_deleted()?;
        if name.starts_with("amq.") && !generated {
            return Err(BrokerError::AccessRefused(format!(
                "queue name '{name}' contains reserved prefix 'amq.*'"
            )));
        }
        let name = if name.is_empty() {
            self.generate_name("amq.gen-")
        } else {
            name.to_string()
        };
        if check_type {
            settings::check_queue_type(&options.arguments, &name, &self.name)?;
        }
        self.queue_totals.declared.fetch_add(1, Ordering::Relaxed);
        let mut queues = self.queues.write();
        if let Some(q) = queues.get(name.as_str()) {
            q.check_access(connection)?;
            let have = q.options();
            let checks = [
                ("durable", options.durable, have.durable),
                (
                    "exclusive",
                    options.exclusive_owner.is_some(),
                    have.exclusive_owner.is_some(),
                ),
                ("auto_delete", options.auto_delete, have.auto_delete),
            ];
            for (arg, got, had) in checks {
                if got != had {
                    let (got, had) = (got.to_string(), had.to_string());
                    return Err(inequivalent(arg, "queue", &name, &self.name, &got, &had));
                }
            }
            equivalence::check(
                &have.arguments,
                &options.arguments,
                q.is_stream(),
                &name,
                &self.name,
            )?;
            q.touch();
            return Ok(declared(Arc::clone(q)));
        }
        if crate::queue::quorum::is_quorum_declaration(&options.arguments) {
            // A quorum queue's Raft log lives under the data directory (a node without
            // `[cluster]` runs it as a cluster of one): a broker with no store has none.
            if self.store.is_none() && check_type {
                return Err(crate::queue::quorum::needs_a_data_directory(
                    &name, &self.name,
                ));
            }
            crate::queue::quorum::check_declaration(
                &name,
                &self.name,
                options.durable,
                options.exclusive_owner.is_some(),
                options.auto_delete,
                &options.arguments,
            )?;
        }
        let settings = self.queue_settings(&name, &options.arguments)?;
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| not_found("vhost", &self.name, &self.name))?;
        if stream::is_stream_declaration(&options.arguments) {
            return self.declare_stream(queues, name, options, settings, &me);
        }
        let durable = options.durable && options.exclusive_owner.is_none();
        // A quorum queue's messages live in its Raft group's log, not in a queue log.
        let quorum =
            crate::queue::quorum::is_quorum_declaration(&options.arguments) && self.store.is_some();
        let log = match (&self.store, durable && !quorum) {
            (Some(store), true) => match store.queue_log(&durable::log_id(&self.name, &name)) {
                Ok(log) => Some(log),
                Err(e) => {
                    tracing::error!(queue = %name, error = %e, "cannot open the queue's log");
                    return Err(BrokerError::NotAllowed(format!(
                        "cannot store queue '{name}': {e}"
                    )));
                }
            },
            _ => None,
        };
        let q = Arc::new(Queue::new(&name, &me, options, settings, log));
        if let (true, Some(store)) = (durable, &self.store) {
            durable::put_queue(store, &self.name, &q);
        }
        queues.insert(name.into(), Arc::clone(&q));
        self.queue_totals.created.fetch_add(1, Ordering::Relaxed);
        Ok(declared(q))
    }

    /// `queue.delete`; returns the number of messages deleted with it. Deleting a queue that
    /// does not exist succeeds with 0 (as in RabbitMQ).
    pub fn delete_queue(
        &self,
        name: &str,
        if_unused: bool,
        if_empty: bool,
        connection: ConnectionId,
    ) -> Result<u32> {
        let Ok(q) = self.queue(name) else {
            return Ok(0);
        };
        q.check_access(connection)?;
        // rabbit_stream_queue `delete/4` ignores if-unused and if-empty.
        let (if_unused, if_empty) = (if_unused && !q.is_stream(), if_empty && !q.is_stream());
        if if_unused && q.consumer_count() > 0 {
            return Err(BrokerError::PreconditionFailed(format!(
                "queue '{name}' in vhost '{}' in use",
                self.name
            )));
        }
        if if_empty && q.message_count() > 0 {
            return Err(BrokerError::PreconditionFailed(format!(
                "queue '{name}' in vhost '{}' is not empty",
                self.name
            )));
        }
        Ok(self.remove_queue(&q))
    }

    /// Removes a queue: its bindings go, its consumers are told, its messages are dropped.
    pub fn remove_queue(&self, q: &Arc<Queue>) -> u32 {
        {
            let mut queues = self.queues.write();
            match queues.get(q.name()) {
                Some(current) if Arc::ptr_eq(current, q) => {
                    queues.remove(q.name());
                    self.queue_totals.deleted.fetch_add(1, Ordering::Relaxed);
                }
                _ => return 0,
            }
        }
        if let (true, Some(store)) = (q.options().durable, &self.store) {
            durable::delete_queue(store, &self.name, q.name());
            durable::delete_bindings_of(store, &self.name, durable::Entity::Queue, q.name());
        }
        let gone = Destination::Queue(Arc::clone(q));
        let emptied: Vec<Arc<Exchange>> = self
            .exchanges
            .read()
            .values()
            .filter(|x| x.unbind_destination(&gone) > 0 && x.auto_delete && x.binding_count() == 0)
            .cloned()
            .collect();
        for x in emptied {
            self.auto_delete_exchange(&x);
        }
        let deleted = q.delete();
        for c in deleted.consumers {
            c.sink.cancelled();
        }
        deleted.messages
    }

    /// Deletes every queue owned by `connection` (exclusive queues die with their connection).
    pub fn remove_exclusive_queues(&self, connection: ConnectionId) {
        let owned: Vec<Arc<Queue>> = self
            .queues
            .read()
            .values()
            .filter(|q| q.options().exclusive_owner == Some(connection))
            .cloned()
            .collect();
        for q in owned {
            self.remove_queue(&q);
        }
    }

    /// Removes a consumer from a queue, deleting the queue if it is auto-delete and that was its
    /// last consumer. Returns whether the consumer existed.
    pub fn remove_consumer(&self, q: &Arc<Queue>, owner: u64, tag: &str) -> bool {
        match q.remove_consumer(owner, tag) {
            Some(true) => {
                self.remove_queue(q);
                self.auto_deleted_queue(q);
                true
            }
            Some(false) => true,
            None => false,
        }
    }

    /// Every queue (a snapshot of the list; direct reply-to pseudo-queues excluded).
    pub fn queue_list(&self) -> Vec<Arc<Queue>> {
        self.queues.read().values().cloned().collect()
    }

    /// Every exchange, the default one included (a snapshot of the list).
    pub fn exchange_list(&self) -> Vec<Arc<Exchange>> {
        let mut all: Vec<Arc<Exchange>> = self.exchanges.read().values().cloned().collect();
        all.push(Arc::clone(&self.default_exchange));
        all
    }

    /// Body bytes of the ready messages of every queue (a message in several queues counts
    /// once per queue).
    pub fn queued_bytes(&self) -> usize {
        let queues: Vec<Arc<Queue>> = self.queues.read().values().cloned().collect();
        queues.iter().map(|q| q.queued_bytes()).sum()
    }

    /// Body bytes of the ready messages held in memory by every queue (paged-out messages
    /// excluded): what the memory alarm counts.
    pub fn resident_bytes(&self) -> usize {
        let queues: Vec<Arc<Queue>> = self.queues.read().values().cloned().collect();
        queues.iter().map(|q| q.resident_bytes()).sum()
    }

    /// Timers: expires messages whose TTL ran out and deletes queues unused for longer than
    /// their `x-expires`. The server calls it a few times a second.
    pub fn tick(&self, now: Instant) {
        let queues: Vec<Arc<Queue>> = self.queues.read().values().cloned().collect();
        for q in &queues {
            q.expire(now);
            if q.unused_for_too_long(now) {
                tracing::debug!(queue = q.name(), "queue expired (x-expires)");
                self.remove_queue(q);
            }
        }
    }

    /// Creates a direct reply-to pseudo-queue named `name` (RabbitMQ's `amq.rabbitmq.reply-to`):
    /// messages published to the default exchange with that routing key go straight to its
    /// consumer. It is not listed, declared or bound.
    pub fn add_reply_queue(&self, name: &str) -> Result<Arc<Queue>> {
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| not_found("vhost", &self.name, &self.name))?;
        let q = Arc::new(Queue::new(
            name,
            &me,
            QueueOptions::default(),
            QueueSettings::default(),
            None,
        ));
        self.reply_queues
            .write()
            .insert(name.to_string(), Arc::clone(&q));
        Ok(q)
    }

    /// Removes a direct reply-to pseudo-queue.
    pub fn remove_reply_queue(&self, name: &str) {
        if let Some(q) = self.reply_queues.write().remove(name) {
            q.delete();
        }
    }

    /// Every exchange but the default one, in no particular order (the management API).
    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        self.exchanges.read().values().cloned().collect()
    }

    /// The default exchange (`""`).
    pub fn default_exchange(&self) -> &Arc<Exchange> {
        &self.default_exchange
    }

    /// Every queue, in no particular order (the management API).
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues.read().values().cloned().collect()
    }

    fn generate_name(&self, prefix: &str) -> String {
        use std::hash::{BuildHasher, Hasher};
        let n = self.generated.fetch_add(1, Ordering::Relaxed);
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        format!("{prefix}{:016x}{:06x}", h.finish(), n & 0xff_ffff)
    }

    /// A fresh unique name with `prefix` (for server-generated consumer tags and queues).
    pub fn unique_name(&self, prefix: &str) -> String {
        self.generate_name(prefix)
    }
}
