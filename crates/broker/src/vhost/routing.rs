//! Publishing through a virtual host: routing a message from an exchange to the queues it
//! reaches (exchange-to-exchange bindings, alternate exchanges, the `CC`/`BCC` keys), each
//! queue once, and dead-lettering.

use super::VHost;
use crate::error::{BrokerError, Result};
use crate::exchange::{Destination, Exchange};
use crate::message::{Death, DeathReason, Message, Properties};
use crate::queue::quorum::ReplicaConfirm;
use crate::queue::remote::RemoteConfirm;
use crate::queue::{Enqueued, Queue, QueuedMessage};
use smallvec::SmallVec;
use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// The outcome of a publish.
#[derive(Clone, Default)]
pub struct Published {
    /// Queues the message reached.
    pub queues: usize,
    /// A queue refused it (length limit with reject-publish): publisher confirms nack it.
    pub rejected: bool,
    /// It was written to a queue log: confirm it once [`VHost::sync_epoch`] is synced.
    pub stored: bool,
    /// The queues it reached (publishers' flow control looks at their backlog). Inline up to
    /// four: no allocation for the usual publish.
    pub reached: Routed,
    /// Some queues it reached live on other nodes (a cluster): confirm it once they have it
    /// too (`queue/remote.rs`).
    pub remote: Option<Arc<RemoteConfirm>>,
    /// It reached quorum queues: confirm it once they all committed it (`queue/quorum.rs`).
    pub replicated: Option<Arc<ReplicaConfirm>>,
}

/// The queues a message is routed to, each once: inline up to four, so a publish reaching one
/// queue allocates nothing for routing.
pub type Routed = SmallVec<[Arc<Queue>; 4]>;

/// Collects routed queues, each once: a linear scan while there are few, a set of addresses
/// past [`Distinct::SCAN`] (a fan-out to many queues bound several times each).
#[derive(Default)]
struct Distinct {
    list: Routed,
    seen: Option<HashSet<usize, BuildHasherDefault<AddressHasher>>>,
}

/// Hashes an address with one multiplication (SipHash costs more than the linear scan it
/// replaces at a hundred queues).
#[derive(Default)]
struct AddressHasher(u64);

impl Hasher for AddressHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }
    fn write_usize(&mut self, n: usize) {
        let h = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

impl Distinct {
    const SCAN: usize = 16;

    fn add(&mut self, q: &Arc<Queue>) {
        let addr = |q: &Arc<Queue>| Arc::as_ptr(q) as usize;
        match &mut self.seen {
            Some(seen) => {
                if seen.insert(addr(q)) {
                    self.list.push(Arc::clone(q));
                }
            }
            None => {
                if self.list.iter().any(|have| Arc::ptr_eq(have, q)) {
                    return;
                }
                self.list.push(Arc::clone(q));
                if self.list.len() == Self::SCAN {
                    self.seen = Some(self.list.iter().map(addr).collect());
                }
            }
        }
    }
}

/// Whether `message` going to `queue` closes a dead-letter cycle: walking its deaths newest
/// first, it died in that queue before any rejection (as RabbitMQ decides).
fn is_cycle(message: &Message, queue: &str) -> bool {
    let view = message.view();
    let Some(crate::value::Value::Array(deaths)) =
        view.headers.as_ref().and_then(|h| h.get("x-death"))
    else {
        return false;
    };
    for d in deaths {
        let crate::value::Value::Table(t) = d else {
            continue;
        };
        if t.get_str("reason") == Some("rejected") {
            return false;
        }
        if t.get_str("queue") == Some(queue) {
            return true;
        }
    }
    false
}

/// Where [`VHost::dead_letter_confirmed`] sent a dead letter.
pub enum DeadLetterRoute {
    /// The dead-letter exchange does not exist.
    NoExchange,
    /// The exchange routed it to no queue.
    NoQueue,
    /// Every queue it reached is one it died in before (a cycle): dropped, as RabbitMQ drops it.
    Cycle,
    /// Handed to its target queues: done once their confirms are.
    Published(Published),
}

/// The copy of `m` dead-lettered from `from` through `x`: its death recorded in its
/// properties (rabbit_dead_letter:make_msg), with the routing key and the extra (`CC`) keys
/// to route it with.
fn dead_copy(
    from: &Queue,
    x: &Arc<Exchange>,
    routing_key: Option<&str>,
    m: &QueuedMessage,
    reason: DeathReason,
    time: u64,
) -> (Message, String, Vec<String>) {
    let old = &m.message;
    let codec = old.codec();
    let raw = old.properties_bytes();
    // rabbit_dead_letter:make_msg: `routing-keys` is the routing key and the `CC` keys;
    // without a dead-letter routing key the copy is routed with all of them.
    let cc = codec.cc_keys(&raw);
    let death = Death {
        queue: from.name().to_string(),
        reason,
        exchange: old.exchange().to_string(),
        routing_keys: std::iter::once(old.routing_key_in(from.name()).to_string())
            .chain(cc.iter().cloned())
            .collect(),
        remove_cc: routing_key.is_some(),
        time,
    };
    let raw = codec.dead_lettered(&raw, &death);
    let key = routing_key
        .unwrap_or(old.routing_key_in(from.name()))
        .to_string();
    let message = Message::new(
        &*x.name,
        &key,
        Properties::new(raw, codec),
        old.body_bytes(),
        old.origin(),
    );
    let extra = if routing_key.is_some() {
        Vec::new()
    } else {
        cc
    };
    (message, key, extra)
}

impl VHost {
    /// Looks up the exchange a client publishes to: it must exist and not be internal.
    pub fn exchange_for_publish(&self, name: &str) -> Result<Arc<Exchange>> {
        let x = self.exchange(name)?;
        if x.internal {
            return Err(BrokerError::AccessRefused(format!(
                "cannot publish to internal exchange '{name}' in vhost '{}'",
                self.name
            )));
        }
        Ok(x)
    }

    /// Routes `message`, which stores its routing key (`Message::new`), from `exchange` and
    /// enqueues it in every queue it reaches (each once). Returns the number of queues.
    pub fn publish(&self, exchange: &Arc<Exchange>, message: &Message) -> Published {
        debug_assert!(message.routing_key().is_some());
        let key = message.routing_key().unwrap_or_default();
        self.publish_cc(exchange, message, key, &[])
    }

    /// [`VHost::publish`] of a message published with `routing_key` (which a message made by
    /// `Message::to_named_queue` does not store: it must go only to the queue of that name,
    /// through the default exchange, without `extra_keys`), and with more routing keys than
    /// that one (AMQP's sender-selected distribution: the `CC` and `BCC` headers).
    pub fn publish_cc(
        &self,
        exchange: &Arc<Exchange>,
        message: &Message,
        routing_key: &str,
        extra_keys: &[String],
    ) -> Published {
        debug_assert!(
            message.routing_key().is_some() || (exchange.name.is_empty() && extra_keys.is_empty())
        );
        let queues = self.route_cc(exchange, message, routing_key, extra_keys);
        // Relaxed: statistics, read when asked, ordered with nothing.
        exchange
            .publish_in
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !queues.is_empty() {
            exchange
                .publish_out
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.enqueue_routed(queues, message)
    }

    /// Hands `message` to each of `queues` (routed already, each once) as a publish does:
    /// queues homed on other nodes through their home (confirmed by it), quorum queues through
    /// their group (confirmed once committed), the others here.
    pub fn enqueue_routed(&self, queues: Routed, message: &Message) -> Published {
        let (mut rejected, mut stored) = (false, false);
        let mut remote: Option<Arc<RemoteConfirm>> = None;
        let mut replicated: Option<Arc<ReplicaConfirm>> = None;
        for q in &queues {
            if let Some(home) = q.remote() {
                let confirm = remote.get_or_insert_with(Default::default);
                confirm.add();
                home.forward(q, message.clone(), Some(Arc::clone(confirm)));
                continue;
            }
            let enqueued = if q.is_quorum() {
                let confirm = replicated.get_or_insert_with(ReplicaConfirm::new);
                q.enqueue_replicated(message.clone(), confirm)
            } else {
                q.enqueue_here(message.clone())
            };
            match enqueued {
                Enqueued::Rejected => rejected = true,
                Enqueued::Stored => stored = true,
                Enqueued::Accepted => {}
            }
        }
        if let Some(confirm) = &replicated {
            // The router's own part: every queue has its part by now.
            confirm.finish(true);
        }
        Published {
            queues: queues.len(),
            rejected,
            stored,
            reached: queues,
            remote,
            replicated,
        }
    }

    /// Dead-letters `messages` that left `from`: each is republished to `exchange` with
    /// `routing_key` (or its own and its `CC` keys), its death recorded in its properties. A message that would
    /// come back to a queue it already died in without ever being rejected is dropped, so
    /// dead-letter cycles end (as in RabbitMQ).
    pub fn dead_letter(
        &self,
        from: &Queue,
        exchange: &str,
        routing_key: Option<&str>,
        messages: Vec<(QueuedMessage, DeathReason)>,
    ) {
        let Ok(x) = self.exchange(exchange) else {
            tracing::debug!(
                queue = from.name(),
                exchange,
                "dead-letter exchange missing, messages dropped"
            );
            return;
        };
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        for (m, reason) in messages {
            let (message, key, extra) = dead_copy(from, &x, routing_key, &m, reason, time);
            for q in self.route_cc(&x, &message, &key, &extra) {
                if !is_cycle(&message, q.name()) {
                    q.enqueue(message.clone());
                }
            }
        }
    }

    /// Dead-letters one message as [`VHost::dead_letter`] does, but with the publish path's
    /// confirms (quorum queues' at-least-once dead-lettering, RabbitMQ's
    /// rabbit_fifo_dlx_worker: the source keeps the message until its targets confirmed it).
    pub fn dead_letter_confirmed(
        &self,
        from: &Queue,
        exchange: &str,
        routing_key: Option<&str>,
        m: &QueuedMessage,
        reason: DeathReason,
    ) -> DeadLetterRoute {
        let Ok(x) = self.exchange(exchange) else {
            return DeadLetterRoute::NoExchange;
        };
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (message, key, extra) = dead_copy(from, &x, routing_key, m, reason, time);
        let routed = self.route_cc(&x, &message, &key, &extra);
        if routed.is_empty() {
            return DeadLetterRoute::NoQueue;
        }
        let targets: Routed = routed
            .into_iter()
            .filter(|q| !is_cycle(&message, q.name()))
            .collect();
        if targets.is_empty() {
            return DeadLetterRoute::Cycle;
        }
        DeadLetterRoute::Published(self.enqueue_routed(targets, &message))
    }

    /// The queues `message` published to `exchange` reaches, each once, following
    /// exchange-to-exchange bindings and alternate exchanges. Up to four queues, routing does
    /// not allocate (the usual publish reaches one).
    pub fn route(&self, exchange: &Arc<Exchange>, message: &Message) -> Routed {
        let key = message.routing_key().unwrap_or_default();
        self.route_cc(exchange, message, key, &[])
    }

    /// [`VHost::route`] of a message published with `routing_key`, with `extra_keys` used
    /// beside it at every exchange on the way (RabbitMQ's `CC`/`BCC` routing).
    pub fn route_cc(
        &self,
        exchange: &Arc<Exchange>,
        message: &Message,
        routing_key: &str,
        extra_keys: &[String],
    ) -> Routed {
        let mut queues = Distinct::default();
        let keys = std::iter::once(routing_key).chain(extra_keys.iter().map(String::as_str));
        if exchange.name.is_empty() {
            for key in keys {
                if let Ok(q) = self.queue(key) {
                    queues.add(&q);
                } else if let Some(q) = self.reply_queues.read().get(key) {
                    queues.add(q);
                }
            }
            return queues.list;
        }
        let mut visited: SmallVec<[*const Exchange; 4]> = SmallVec::new();
        let mut pending: SmallVec<[Arc<Exchange>; 2]> = SmallVec::new();
        pending.push(Arc::clone(exchange));
        while let Some(x) = pending.pop() {
            if visited.contains(&Arc::as_ptr(&x)) {
                continue;
            }
            visited.push(Arc::as_ptr(&x));
            let mut routed_here = false;
            for key in keys.clone() {
                x.route(key, message, |d| {
                    routed_here = true;
                    match d {
                        Destination::Queue(q) => queues.add(q),
                        Destination::Exchange(e) => pending.push(Arc::clone(e)),
                    }
                });
            }
            if !routed_here {
                if let Some(ae) = x.alternate_exchange().and_then(|n| self.exchange(&n).ok()) {
                    pending.push(ae);
                }
            }
        }
        queues.list
    }
}
