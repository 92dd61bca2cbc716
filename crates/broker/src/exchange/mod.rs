//! Exchanges and their bindings.
//!
//! An exchange keeps its bindings in a list plus an index built for its type (a hash map for
//! direct, a trie for topic). Bindings change rarely and publishes are constant, so the index
//! is rebuilt on every change and routing only takes the read side of the lock.

pub mod headers;
pub mod topic;

use crate::message::Message;
use crate::queue::Queue;
use crate::value::Table;
use parking_lot::RwLock;
use std::collections::HashMap;
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

#[derive(Debug, Default)]
struct Bindings {
    list: Vec<Binding>,
    direct: HashMap<Box<str>, Vec<usize>>,
    topic: TopicTrie,
}

/// An exchange: its declared properties and its bindings.
#[derive(Debug)]
pub struct Exchange {
    /// Its name (`""` is the default exchange).
    pub name: Arc<str>,
    /// The same name as bytes, for messages to share instead of copying it.
    pub name_bytes: bytes::Bytes,
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
            name_bytes: bytes::Bytes::copy_from_slice(name.as_bytes()),
            kind,
            durable,
            auto_delete,
            internal,
            arguments,
            policy_alternate: RwLock::new(None),
            bindings: RwLock::new(Bindings::default()),
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
        if b.list.iter().any(|x| x.same(&binding)) {
            return;
        }
        b.list.push(binding);
        self.reindex(&mut b);
    }

    /// Removes a binding; returns whether it existed.
    pub fn unbind(&self, binding: &Binding) -> bool {
        let mut b = self.bindings.write();
        let before = b.list.len();
        b.list.retain(|x| !x.same(binding));
        let removed = b.list.len() != before;
        if removed {
            self.reindex(&mut b);
        }
        removed
    }

    /// Removes every binding to `destination`; returns how many there were.
    pub fn unbind_destination(&self, destination: &Destination) -> usize {
        let mut b = self.bindings.write();
        let before = b.list.len();
        b.list.retain(|x| !x.destination.same(destination));
        let removed = before - b.list.len();
        if removed > 0 {
            self.reindex(&mut b);
        }
        removed
    }

    /// Whether a binding with these exact parameters exists.
    pub fn has_binding(&self, binding: &Binding) -> bool {
        self.bindings.read().list.iter().any(|x| x.same(binding))
    }

    /// Number of bindings with this exchange as source.
    pub fn binding_count(&self) -> usize {
        self.bindings.read().list.len()
    }

    /// A copy of the bindings (for listing and deletion bookkeeping).
    pub fn bindings(&self) -> Vec<Binding> {
        self.bindings.read().list.clone()
    }

    fn reindex(&self, b: &mut Bindings) {
        b.direct.clear();
        b.topic = TopicTrie::default();
        let Bindings {
            list,
            direct,
            topic,
        } = b;
        for (i, binding) in list.iter().enumerate() {
            match self.kind {
                ExchangeKind::Direct => direct
                    .entry(binding.routing_key.as_str().into())
                    .or_default()
                    .push(i),
                ExchangeKind::Topic => topic.insert(&binding.routing_key, i),
                ExchangeKind::Fanout | ExchangeKind::Headers => {}
            }
        }
    }

    /// Appends the destinations `message` (published with `routing_key`) goes to.
    pub fn route(&self, routing_key: &str, message: &Message, out: &mut Vec<Destination>) {
        let b = self.bindings.read();
        match self.kind {
            ExchangeKind::Fanout => out.extend(b.list.iter().map(|x| x.destination.clone())),
            ExchangeKind::Direct => {
                if let Some(ids) = b.direct.get(routing_key) {
                    out.extend(ids.iter().map(|&i| b.list[i].destination.clone()));
                }
            }
            ExchangeKind::Topic => {
                let mut ids = Vec::new();
                b.topic.matches(routing_key, &mut ids);
                out.extend(ids.iter().map(|&i| b.list[i].destination.clone()));
            }
            ExchangeKind::Headers => {
                let headers = message.view().headers.as_ref();
                out.extend(
                    b.list
                        .iter()
                        .filter(|x| headers::matches(&x.arguments, headers))
                        .map(|x| x.destination.clone()),
                );
            }
        }
    }
}
