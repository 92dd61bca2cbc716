//! Exchanges and their bindings.
//!
//! An exchange keeps its bindings in insertion order plus an index built for its type (a hash
//! map for direct, a trie for topic) whose entries carry the destination, so routing reads the
//! index alone and takes only the read side of the lock. Binding and unbinding update the index
//! in place: their cost does not grow with the number of bindings (an MQTT subscription is a
//! binding on `amq.topic`, and there can be 100,000 of them).

pub mod headers;
pub mod topic;

use crate::message::Message;
use crate::queue::Queue;
use crate::value::Table;
use parking_lot::RwLock;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use topic::TopicTrie;

/// The routing algorithm of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    /// Exact routing-key match.
    Direct,
    /// Every bound destination.
    Fanout,
    /// Dot-separated patterns with `*` and `#`.
    Topic,
    /// Match on message headers.
    Headers,
}

impl ExchangeKind {
    /// Parses the AMQP type name.
    pub fn parse(name: &str) -> Option<ExchangeKind> {
        match name {
            "direct" => Some(ExchangeKind::Direct),
            "fanout" => Some(ExchangeKind::Fanout),
            "topic" => Some(ExchangeKind::Topic),
            "headers" => Some(ExchangeKind::Headers),
            _ => None,
        }
    }

    /// The AMQP type name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
        }
    }
}

/// Where a binding sends messages.
#[derive(Clone)]
pub enum Destination {
    /// A queue.
    Queue(Arc<Queue>),
    /// Another exchange (exchange-to-exchange binding).
    Exchange(Arc<Exchange>),
}

impl Destination {
    /// The address of the queue or exchange: identifies the destination while it is bound (the
    /// binding holds an `Arc` to it, so the address cannot be reused meanwhile).
    fn key(&self) -> usize {
        match self {
            Destination::Queue(q) => Arc::as_ptr(q) as *const () as usize,
            Destination::Exchange(e) => Arc::as_ptr(e) as *const () as usize,
        }
    }

    fn same(&self, other: &Destination) -> bool {
        match (self, other) {
            (Destination::Queue(a), Destination::Queue(b)) => Arc::ptr_eq(a, b),
            (Destination::Exchange(a), Destination::Exchange(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl fmt::Debug for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Queue(q) => write!(f, "queue {:?}", q.name()),
            Destination::Exchange(e) => write!(f, "exchange {:?}", &*e.name),
        }
    }
}

/// One binding from an exchange to a destination.
#[derive(Debug, Clone)]
pub struct Binding {
    /// Where matching messages go.
    pub destination: Destination,
    /// The binding key (a pattern for topic exchanges).
    pub routing_key: String,
    /// Binding arguments (the match spec for headers exchanges).
    pub arguments: Table,
}

impl Binding {
    fn same(&self, other: &Binding) -> bool {
        self.destination.same(&other.destination)
            && self.routing_key == other.routing_key
            && self.arguments.equivalent(&other.arguments)
    }
}

/// A binding's number in its exchange, increasing with each bind: listing in id order is
/// listing in the order the bindings were made.
type BindingId = u64;

#[derive(Debug, Default)]
struct Bindings {
    /// Every binding, in the order they were made.
    list: BTreeMap<BindingId, Binding>,
    next_id: BindingId,
    /// The ids of each destination's bindings (by [`Destination::key`]): finds the binding to
    /// compare on bind and unbind, and a deleted queue's bindings, without a scan.
    by_destination: HashMap<usize, Vec<BindingId>>,
    /// Direct exchanges: routing key -> its bindings.
    direct: HashMap<Box<str>, Vec<(BindingId, Destination)>>,
    /// Topic exchanges: the patterns.
    topic: TopicTrie<(BindingId, Destination)>,
}

impl Bindings {
    fn find(&self, binding: &Binding) -> Option<BindingId> {
        self.by_destination
            .get(&binding.destination.key())?
            .iter()
            .copied()
            .find(|id| self.list.get(id).is_some_and(|b| b.same(binding)))
    }

    fn add(&mut self, kind: ExchangeKind, binding: Binding) {
        let id = self.next_id;
        self.next_id += 1;
        let destination = &binding.destination;
        match kind {
            ExchangeKind::Direct => self
                .direct
                .entry(binding.routing_key.as_str().into())
                .or_default()
                .push((id, destination.clone())),
            ExchangeKind::Topic => self
                .topic
                .insert(&binding.routing_key, (id, destination.clone())),
            ExchangeKind::Fanout | ExchangeKind::Headers => {}
        }
        self.by_destination
            .entry(destination.key())
            .or_default()
            .push(id);
        self.list.insert(id, binding);
    }

    /// Removes binding `id` from the list and the type's index (not from `by_destination`).
    fn remove(&mut self, kind: ExchangeKind, id: BindingId) -> Option<Binding> {
        let binding = self.list.remove(&id)?;
        let key = binding.routing_key.as_str();
        match kind {
            ExchangeKind::Direct => {
                if let Some(entries) = self.direct.get_mut(key) {
                    entries.retain(|(x, _)| *x != id);
                    if entries.is_empty() {
                        self.direct.remove(key);
                    }
                }
            }
            ExchangeKind::Topic => {
                self.topic.remove(key, |(x, _)| *x == id);
            }
            ExchangeKind::Fanout | ExchangeKind::Headers => {}
        }
        Some(binding)
    }
}

/// An exchange: its declared properties and its bindings.
#[derive(Debug)]
pub struct Exchange {
    /// Its name (`""` is the default exchange).
    pub name: Arc<str>,
    /// Its type.
    pub kind: ExchangeKind,
    /// Declared durable.
    pub durable: bool,
    /// Deleted when its last binding is removed.
    pub auto_delete: bool,
    /// Only reachable through exchange-to-exchange bindings, not by publishing.
    pub internal: bool,
    /// Declare arguments.
    pub arguments: Table,
    /// `alternate-exchange` from a policy (the declare argument wins over it).
    policy_alternate: RwLock<Option<String>>,
    bindings: RwLock<Bindings>,
    /// Messages published to it (`message_stats.publish_in`).
    pub publish_in: std::sync::atomic::AtomicU64,
    /// Of those, routed to at least one queue (`publish_out`).
    pub publish_out: std::sync::atomic::AtomicU64,
}

impl Exchange {
    /// Creates an exchange with no bindings.
    pub fn new(
        name: &str,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: Table,
    ) -> Exchange {
        Exchange {
            name: name.into(),
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
            policy_alternate: RwLock::new(None),
            bindings: RwLock::new(Bindings::default()),
            publish_in: Default::default(),
            publish_out: Default::default(),
        }
    }

    /// Where unroutable messages go: the `alternate-exchange` argument, else the policy's.
    pub fn alternate_exchange(&self) -> Option<String> {
        match self.arguments.get_str("alternate-exchange") {
            Some(ae) => Some(ae.to_string()),
            None => self.policy_alternate.read().clone(),
        }
    }

    /// Sets the policy's `alternate-exchange`.
    pub fn set_policy_alternate(&self, ae: Option<String>) {
        *self.policy_alternate.write() = ae;
    }

    /// Adds a binding; binding twice is a no-op (AMQP: bind is idempotent).
    pub fn bind(&self, binding: Binding) {
        let mut b = self.bindings.write();
        if b.find(&binding).is_none() {
            b.add(self.kind, binding);
        }
    }

    /// Removes a binding; returns whether it existed.
    pub fn unbind(&self, binding: &Binding) -> bool {
        let mut b = self.bindings.write();
        let Some(id) = b.find(binding) else {
            return false;
        };
        let key = binding.destination.key();
        if let Some(ids) = b.by_destination.get_mut(&key) {
            ids.retain(|&x| x != id);
            if ids.is_empty() {
                b.by_destination.remove(&key);
            }
        }
        b.remove(self.kind, id).is_some()
    }

    /// Removes every binding to `destination`; returns how many there were.
    pub fn unbind_destination(&self, destination: &Destination) -> usize {
        let mut b = self.bindings.write();
        let ids = b
            .by_destination
            .remove(&destination.key())
            .unwrap_or_default();
        ids.into_iter()
            .filter(|&id| b.remove(self.kind, id).is_some())
            .count()
    }

    /// Whether a binding with these exact parameters exists.
    pub fn has_binding(&self, binding: &Binding) -> bool {
        self.bindings.read().find(binding).is_some()
    }

    /// Number of bindings with this exchange as source.
    pub fn binding_count(&self) -> usize {
        self.bindings.read().list.len()
    }

    /// A copy of the bindings (for listing and deletion bookkeeping).
    pub fn bindings(&self) -> Vec<Binding> {
        self.bindings.read().list.values().cloned().collect()
    }

    /// Calls `each` with every destination `message` (published with `routing_key`) goes to,
    /// under the read lock of the bindings (so `each` must not touch this exchange). A
    /// destination can come more than once (several bindings to one queue); the caller
    /// deduplicates. Does not allocate.
    pub fn route(&self, routing_key: &str, message: &Message, mut each: impl FnMut(&Destination)) {
        let b = self.bindings.read();
        match self.kind {
            ExchangeKind::Fanout => b.list.values().for_each(|x| each(&x.destination)),
            ExchangeKind::Direct => {
                if let Some(entries) = b.direct.get(routing_key) {
                    entries.iter().for_each(|(_, d)| each(d));
                }
            }
            ExchangeKind::Topic => b.topic.for_each_match(routing_key, |(_, d)| each(d)),
            ExchangeKind::Headers => {
                // Decoded once for all the bindings (the message no longer caches it).
                let view = message.view();
                let headers = view.headers.as_ref();
                b.list
                    .values()
                    .filter(|x| headers::matches(&x.arguments, headers))
                    .for_each(|x| each(&x.destination));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{OpaqueProperties, Properties};
    use crate::queue::QueueOptions;
    use crate::vhost::VHost;
    use bytes::Bytes;

    static CODEC: OpaqueProperties = OpaqueProperties;

    fn queues(vhost: &VHost, n: usize) -> Vec<Arc<Queue>> {
        (0..n)
            .map(|i| {
                vhost
                    .declare_queue(&format!("q{i}"), false, QueueOptions::default(), 1)
                    .unwrap()
                    .queue
            })
            .collect()
    }

    fn binding(q: &Arc<Queue>, key: &str) -> Binding {
        Binding {
            destination: Destination::Queue(Arc::clone(q)),
            routing_key: key.into(),
            arguments: Table::new(),
        }
    }

    #[test]
    fn bindings_are_kept_in_order_and_updated_in_place() {
        let vhost = VHost::new("/");
        let q = queues(&vhost, 4);
        let x = Exchange::new("t", ExchangeKind::Topic, false, false, false, Table::new());
        for (i, key) in ["a.*", "a.#", "b", "a.*"].into_iter().enumerate() {
            x.bind(binding(&q[i], key));
        }
        x.bind(binding(&q[0], "a.*"));
        let listed: Vec<String> = x.bindings().into_iter().map(|b| b.routing_key).collect();
        assert_eq!(
            listed,
            ["a.*", "a.#", "b", "a.*"],
            "bind is idempotent, order kept"
        );
        assert!(x.has_binding(&binding(&q[1], "a.#")));
        assert!(!x.unbind(&binding(&q[1], "a.*")));
        assert!(x.unbind(&binding(&q[0], "a.*")));
        assert!(!x.has_binding(&binding(&q[0], "a.*")));
        let gone = |i: usize| Destination::Queue(Arc::clone(&q[i]));
        assert_eq!(x.unbind_destination(&gone(0)), 0);
        assert_eq!(x.unbind_destination(&gone(3)), 1);
        let listed: Vec<String> = x.bindings().into_iter().map(|b| b.routing_key).collect();
        assert_eq!(listed, ["a.#", "b"]);
        let mut hits = 0;
        let m = crate::message::Message::new(
            &*x.name,
            "a.x",
            Properties::new(Bytes::new(), &CODEC),
            Bytes::new(),
            0,
        );
        x.route("a.x", &m, |_| hits += 1);
        assert_eq!(hits, 1, "only a.# of q1 is left for a.x");
    }

    #[test]
    fn a_wide_fan_out_reaches_each_queue_once() {
        let vhost = VHost::new("/");
        let q = queues(&vhost, 40);
        let x = Arc::new(Exchange::new(
            "t",
            ExchangeKind::Topic,
            false,
            false,
            false,
            Table::new(),
        ));
        for queue in &q {
            x.bind(binding(queue, "news.#"));
            x.bind(binding(queue, "news.*"));
            x.bind(binding(queue, "#.sport"));
        }
        let m = crate::message::Message::new(
            &*x.name,
            "news.sport",
            Properties::new(Bytes::new(), &CODEC),
            Bytes::new(),
            0,
        );
        let routed = vhost.route(&x, &m);
        assert_eq!(routed.len(), 40);
        for queue in &q {
            assert_eq!(routed.iter().filter(|r| Arc::ptr_eq(r, queue)).count(), 1);
        }
    }
}
