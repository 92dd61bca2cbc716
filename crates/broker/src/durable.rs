//! Durable definitions: exchanges, queues and bindings written to the metadata store, and read
//! back when the broker starts.
//!
//! What is written follows RabbitMQ: a durable exchange; a durable, non-exclusive queue; a
//! binding whose two ends are durable. Keys are `vhost \0 name`; values are the layouts of
//! `record.rs`.

use crate::exchange::{Destination, Exchange, ExchangeKind};
use crate::queue::Queue;
use crate::record::{self, get_bytes, get_flag, get_table, put_bytes, put_table};
use crate::value::Table;
use bytes::{BufMut, Bytes, BytesMut};
use pigeon_store::{MetaOp, Store};

const EXCHANGES: &str = "exchanges";
const QUEUES: &str = "queues";
const BINDINGS: &str = "bindings";

/// The metadata key of an entity of `vhost`.
pub fn key(vhost: &str, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(vhost.len() + name.len() + 1);
    k.extend_from_slice(vhost.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

fn split_key(k: &[u8]) -> Option<(String, String)> {
    let at = k.iter().position(|&b| b == 0)?;
    let vhost = String::from_utf8(k[..at].to_vec()).ok()?;
    let name = String::from_utf8(k[at + 1..].to_vec()).ok()?;
    Some((vhost, name))
}

fn warn(what: &str, e: impl std::fmt::Display) {
    tracing::error!(error = %e, "cannot persist {what}");
}

/// A durable exchange's definition.
pub struct ExchangeDef {
    /// Vhost.
    pub vhost: String,
    /// Name.
    pub name: String,
    /// Type.
    pub kind: ExchangeKind,
    /// Deleted with its last binding.
    pub auto_delete: bool,
    /// Not publishable directly.
    pub internal: bool,
    /// Arguments.
    pub arguments: Table,
}

/// A durable queue's definition.
pub struct QueueDef {
    /// Vhost.
    pub vhost: String,
    /// Name.
    pub name: String,
    /// Deleted with its last consumer.
    pub auto_delete: bool,
    /// Arguments.
    pub arguments: Table,
}

/// A durable binding.
pub struct BindingDef {
    /// Vhost.
    pub vhost: String,
    /// Source exchange.
    pub source: String,
    /// Destination is an exchange (else a queue).
    pub to_exchange: bool,
    /// Destination name.
    pub destination: String,
    /// Binding key.
    pub routing_key: String,
    /// Arguments.
    pub arguments: Table,
}

/// Records a durable exchange.
pub fn put_exchange(store: &Store, vhost: &str, x: &Exchange) {
    let mut v = record::begin();
    v.put_u8(kind_byte(x.kind));
    v.put_u8(u8::from(x.auto_delete));
    v.put_u8(u8::from(x.internal));
    put_table(&mut v, &x.arguments);
    if let Err(e) = store.meta_put(EXCHANGES, &key(vhost, &x.name), &v) {
        warn("an exchange", e);
    }
}

/// Forgets an exchange.
pub fn delete_exchange(store: &Store, vhost: &str, name: &str) {
    if let Err(e) = store.meta_delete(EXCHANGES, &key(vhost, name)) {
        warn("an exchange deletion", e);
    }
}

/// Records a durable queue.
pub fn put_queue(store: &Store, vhost: &str, q: &Queue) {
    let mut v = record::begin();
    v.put_u8(u8::from(q.options().auto_delete));
    put_table(&mut v, &q.options().arguments);
    if let Err(e) = store.meta_put(QUEUES, &key(vhost, q.name()), &v) {
        warn("a queue", e);
    }
}

/// Forgets a queue and its message log.
pub fn delete_queue(store: &Store, vhost: &str, name: &str) {
    if let Err(e) = store.meta_delete(QUEUES, &key(vhost, name)) {
        warn("a queue deletion", e);
    }
    if let Err(e) = store.delete_queue_log(&log_id(vhost, name)) {
        warn("a queue log deletion", e);
    }
}

/// The id of a queue's message log in the store.
pub fn log_id(vhost: &str, name: &str) -> String {
    format!("{vhost}\u{0}{name}")
}

/// How the id of a transient queue's log begins (`queue/volatile.rs`). A durable queue's id
/// begins with its vhost's name, which is never empty, so none begins with NUL.
pub const VOLATILE_LOG_PREFIX: &str = "\u{0}transient\u{0}";

/// A new id for the log a transient queue pages out to: unique in this process, so that a
/// queue redeclared while the files of its predecessor are being deleted never shares them.
pub fn volatile_log_id(vhost: &str, name: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{VOLATILE_LOG_PREFIX}{n}\u{0}{vhost}\u{0}{name}")
}

fn binding_key(
    vhost: &str,
    source: &str,
    dest: &Destination,
    routing_key: &str,
    args: &Table,
) -> Vec<u8> {
    let (to_exchange, name) = match dest {
        Destination::Queue(q) => (false, q.name().to_string()),
        Destination::Exchange(x) => (true, x.name.to_string()),
    };
    let mut k = BytesMut::new();
    put_bytes(&mut k, vhost.as_bytes());
    put_bytes(&mut k, source.as_bytes());
    k.put_u8(u8::from(to_exchange));
    put_bytes(&mut k, name.as_bytes());
    put_bytes(&mut k, routing_key.as_bytes());
    put_table(&mut k, args);
    k.to_vec()
}

/// Whether a binding is durable: both ends are.
pub fn binding_is_durable(source: &Exchange, dest: &Destination) -> bool {
    source.durable
        && match dest {
            Destination::Queue(q) => q.options().durable && q.options().exclusive_owner.is_none(),
            Destination::Exchange(x) => x.durable,
        }
}

/// Records or forgets a durable binding.
pub fn put_binding(
    store: &Store,
    vhost: &str,
    source: &str,
    dest: &Destination,
    routing_key: &str,
    args: &Table,
    present: bool,
) {
    let k = binding_key(vhost, source, dest, routing_key, args);
    let op = if present {
        MetaOp::Put {
            table: BINDINGS,
            key: &k,
            value: &[],
        }
    } else {
        MetaOp::Delete {
            table: BINDINGS,
            key: &k,
        }
    };
    if let Err(e) = store.meta_batch(&[op]) {
        warn("a binding", e);
    }
}

/// Which kind of entity a name belongs to: exchanges and queues have separate namespaces, so
/// an exchange and a queue may share a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// An exchange: the source of its bindings, or the destination of exchange-to-exchange ones.
    Exchange,
    /// A queue: only ever a destination.
    Queue,
}

/// Forgets every binding from or to the exchange or queue `name`.
pub fn delete_bindings_of(store: &Store, vhost: &str, entity: Entity, name: &str) {
    let Ok(all) = store.meta_scan(BINDINGS) else {
        return;
    };
    let doomed: Vec<Vec<u8>> = all
        .into_iter()
        .filter_map(|e| {
            let b = decode_binding(&e.0)?;
            let involved = match entity {
                Entity::Exchange => b.source == name || (b.to_exchange && b.destination == name),
                Entity::Queue => !b.to_exchange && b.destination == name,
            };
            (b.vhost == vhost && involved).then_some(e.0)
        })
        .collect();
    let ops: Vec<MetaOp<'_>> = doomed
        .iter()
        .map(|k| MetaOp::Delete {
            table: BINDINGS,
            key: k,
        })
        .collect();
    if !ops.is_empty() {
        if let Err(e) = store.meta_batch(&ops) {
            warn("binding deletions", e);
        }
    }
}

/// Forgets everything of `vhost` in the store: exchanges, queues (and their message logs),
/// bindings and retained messages. Failures are logged; what is left behind belongs to a vhost
/// that no longer exists and is deleted again at the next start.
pub fn delete_vhost(store: &Store, vhost: &str) {
    let mut ops: Vec<(&str, Vec<u8>)> = Vec::new();
    let mut logs = Vec::new();
    for table in [EXCHANGES, QUEUES, crate::retained::RETAINED_TABLE] {
        match store.meta_scan(table) {
            Ok(rows) => {
                for (k, _) in rows {
                    if split_key(&k).is_some_and(|(v, _)| v == vhost) {
                        if table == QUEUES {
                            if let Some((v, name)) = split_key(&k) {
                                logs.push(log_id(&v, &name));
                            }
                        }
                        ops.push((table, k));
                    }
                }
            }
            Err(e) => warn("a vhost deletion", e),
        }
    }
    match store.meta_scan(BINDINGS) {
        Ok(rows) => {
            for (k, _) in rows {
                if decode_binding(&k).is_some_and(|b| b.vhost == vhost) {
                    ops.push((BINDINGS, k));
                }
            }
        }
        Err(e) => warn("a vhost deletion", e),
    }
    let batch: Vec<MetaOp<'_>> = ops
        .iter()
        .map(|(table, key)| MetaOp::Delete { table, key })
        .collect();
    if !batch.is_empty() {
        if let Err(e) = store.meta_batch(&batch) {
            warn("a vhost deletion", e);
        }
    }
    // Definitions first, logs second (as for one queue): a log without its definition is
    // deleted by `load` at the next start.
    for id in logs {
        if let Err(e) = store.delete_queue_log(&id) {
            warn("a queue log deletion", e);
        }
    }
}

/// The vhosts named by retained messages in the store (a retained message can outlive its
/// vhost's deletion when it was set while the vhost was being deleted).
pub fn retained_vhosts(
    store: &Store,
) -> Result<std::collections::BTreeSet<String>, pigeon_store::StoreError> {
    Ok(store
        .meta_scan(crate::retained::RETAINED_TABLE)?
        .into_iter()
        .filter_map(|(k, _)| split_key(&k).map(|(vhost, _)| vhost))
        .collect())
}

impl Definitions {
    /// The vhosts named by any definition.
    pub fn vhosts(&self) -> std::collections::BTreeSet<&str> {
        let mut all = std::collections::BTreeSet::new();
        all.extend(self.exchanges.iter().map(|d| d.vhost.as_str()));
        all.extend(self.queues.iter().map(|d| d.vhost.as_str()));
        all.extend(self.bindings.iter().map(|d| d.vhost.as_str()));
        all
    }
}

fn decode_binding(k: &[u8]) -> Option<BindingDef> {
    let mut b = Bytes::copy_from_slice(k);
    let text = |b: &mut Bytes| -> Option<String> { String::from_utf8(get_bytes(b)?.to_vec()).ok() };
    let vhost = text(&mut b)?;
    let source = text(&mut b)?;
    let to_exchange = get_flag(&mut b)?;
    let destination = text(&mut b)?;
    let routing_key = text(&mut b)?;
    let arguments = get_table(&mut b)?;
    Some(BindingDef {
        vhost,
        source,
        to_exchange,
        destination,
        routing_key,
        arguments,
    })
}

fn kind_byte(k: ExchangeKind) -> u8 {
    match k {
        ExchangeKind::Direct => 0,
        ExchangeKind::Fanout => 1,
        ExchangeKind::Topic => 2,
        ExchangeKind::Headers => 3,
    }
}

fn byte_kind(b: u8) -> Option<ExchangeKind> {
    Some(match b {
        0 => ExchangeKind::Direct,
        1 => ExchangeKind::Fanout,
        2 => ExchangeKind::Topic,
        3 => ExchangeKind::Headers,
        _ => return None,
    })
}

/// Everything recorded, for recovery. Records that cannot be decoded are skipped (logged).
pub struct Definitions {
    /// Exchanges.
    pub exchanges: Vec<ExchangeDef>,
    /// Queues.
    pub queues: Vec<QueueDef>,
    /// Bindings.
    pub bindings: Vec<BindingDef>,
}

/// Reads every recorded definition (at start, before any queue log is opened), and deletes
/// the message logs that no queue definition owns.
///
/// Such a log is what a crash leaves between the two steps of a queue's deletion (definition,
/// then log) or of its declaration (log, then definition). A durable queue declared later
/// under the same name would otherwise open it and inherit, then on the next restart bring
/// back, the messages of the queue that was deleted.
pub fn load(store: &Store) -> Result<Definitions, pigeon_store::StoreError> {
    let mut defs = Definitions {
        exchanges: Vec::new(),
        queues: Vec::new(),
        bindings: Vec::new(),
    };
    for e in store.meta_scan(EXCHANGES)? {
        let parsed = split_key(&e.0).and_then(|(vhost, name)| {
            let mut v = record::open(&e.1)?;
            let kind = byte_kind(record::get_u8(&mut v)?)?;
            Some(ExchangeDef {
                vhost,
                name,
                kind,
                auto_delete: get_flag(&mut v)?,
                internal: get_flag(&mut v)?,
                arguments: get_table(&mut v)?,
            })
        });
        match parsed {
            Some(d) => defs.exchanges.push(d),
            None => tracing::warn!("skipping an unreadable exchange definition"),
        }
    }
    let mut owned = std::collections::HashSet::new();
    for e in store.meta_scan(QUEUES)? {
        // A definition that cannot be read still owns its log: it is kept, not deleted.
        if let Some((vhost, name)) = split_key(&e.0) {
            owned.insert(log_id(&vhost, &name));
        }
        let parsed = split_key(&e.0).and_then(|(vhost, name)| {
            let mut v = record::open(&e.1)?;
            Some(QueueDef {
                vhost,
                name,
                auto_delete: get_flag(&mut v)?,
                arguments: get_table(&mut v)?,
            })
        });
        match parsed {
            Some(d) => defs.queues.push(d),
            None => tracing::warn!("skipping an unreadable queue definition"),
        }
    }
    for e in store.meta_scan(BINDINGS)? {
        match decode_binding(&e.0) {
            Some(d) => defs.bindings.push(d),
            None => tracing::warn!("skipping an unreadable binding definition"),
        }
    }
    for id in store.queue_log_ids() {
        if owned.contains(&id) {
            continue;
        }
        if id.starts_with(VOLATILE_LOG_PREFIX) {
            // A transient queue's log left by a crash: its messages died with the process.
            tracing::debug!("deleting the log of a transient queue");
            if let Err(e) = store.delete_queue_log(&id) {
                warn("the deletion of a transient queue's log", e);
            }
            continue;
        }
        let queue = id.replace('\0', "/");
        tracing::warn!(%queue, "deleting the message log of a queue that no longer exists");
        if let Err(e) = store.delete_queue_log(&id) {
            warn("the deletion of a message log no queue owns", e);
        }
    }
    Ok(defs)
}
