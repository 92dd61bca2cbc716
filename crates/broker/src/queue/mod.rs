//! Queues: ready messages, their consumers, delivery, and the features around them (TTL,
//! dead-lettering, length limits, priorities, consumer priorities, single active consumer,
//! delivery limits, expiry of unused queues).
//!
//! A queue's state has one owner at a time: a short-held mutex that is never held across an
//! `.await` (the broker has none). Publishers enqueue on their own task and, when a consumer has
//! credit, deliver straight away, so the common case never parks a message.
//!
//! Every message gets a sequence number when it is enqueued; the ready list is ordered by it, so
//! messages given back (`requeue`) return to their original place, as RabbitMQ does.
//!
//! A queue with a log (or a store to open one in) pages out past a resident limit
//! (`paging.rs`; priority queues per level, `prio_paging.rs`): its newest messages then live
//! only on disk and are read back as the head runs low.
//!
//! Dead letters are collected while the lock is held and routed after it is released, so a
//! dead-letter cycle between two queues can never take their locks in opposite orders.

mod consumers;
mod dead;
mod deadline;
mod level;
mod paging;
mod prio_paging;
pub mod quorum;
pub mod quorum_ops;
mod ready;
pub mod remote;
pub mod settings;
pub mod stream;
mod stream_args;
mod typed;
mod types;
mod views;
mod volatile;

use crate::consumer::{ConnectionId, ConsumerEntry, Delivered};
use crate::error::{BrokerError, Result};
use crate::message::{DeathReason, Message, PropertiesCodec};
use crate::record::QueueExtras;
use crate::vhost::VHost;
use dead::Dead;
pub use deadline::Deadline;
pub use paging::PagingLimits;
pub use types::{
    Deleted, Enqueued, FlowView, QueueCounters, QueueOptions, QueueStats, QueuedMessage,
};
pub use views::StreamView;

use parking_lot::Mutex;
use pigeon_store::QueueLog;
use ready::Ready;
use settings::{Overflow, QueueSettings};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use volatile::VolatileLog;

/// A queue.
pub struct Queue {
    name: Arc<str>,
    vhost_name: Arc<str>,
    vhost: Weak<VHost>,
    options: QueueOptions,
    /// Mirrors `settings.delivery_limit.is_some()` for consumers, which run under the lock.
    counts_deliveries: AtomicBool,
    /// The message log: a durable queue's from the start (persistent messages and what pages
    /// out), a transient queue's once it first pages out (`volatile`).
    log: OnceLock<Arc<QueueLog>>,
    /// Set for a queue without a durable log in a broker with a store: where to open a log of
    /// its own when it first pages out (`paging.rs`).
    volatile: Option<VolatileLog>,
    /// Set for a stream queue (`stream.rs`): messages go to its log, not to `state.ready`.
    stream: Option<stream::StreamQueue>,
    /// Set on a node that is not the queue's home in a cluster (`remote.rs`): what reaches the
    /// queue here is forwarded to its home node.
    remote: OnceLock<Arc<dyn remote::RemoteHome>>,
    /// A quorum queue (`quorum.rs`): declared with `x-queue-type: quorum`.
    quorum_declared: bool,
    /// A quorum queue's replicated half, attached by the server.
    quorum: OnceLock<Arc<dyn quorum::QuorumBackend>>,
    state: Mutex<State>,
}

struct State {
    settings: QueueSettings,
    ready: Ready,
    next_seq: u64,
    /// Highest consumer priority first; registration order within a priority.
    consumers: Vec<ConsumerEntry>,
    /// Round-robin position among `consumers`.
    cursor: usize,
    /// Messages delivered and not yet acked or given back.
    unacked: usize,
    had_consumer: bool,
    deleted: bool,
    /// Messages dropped by a length limit.
    dropped: u64,
    /// Message counters (plain integers: they change under the lock the change takes anyway).
    counters: QueueCounters,
    /// Single active consumer: the active one was cancelled while holding unacked messages;
    /// the next one takes over only once they are settled or given back (as RabbitMQ does), so
    /// it gets them first, in order.
    sac_handover: bool,
    /// Last time a consumer, `basic.get` or a declaration used the queue (`x-expires`).
    last_used: Instant,
    /// How paged-out records are decoded (known once something was paged out or restored).
    codec: Option<&'static dyn PropertiesCodec>,
    /// The last seq written before the last start (seqs up to it were restored).
    restored_through: Option<u64>,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Pages read back at most per expiry tick, to bound how long the timer holds the lock.
const EXPIRY_PAGE_INS: usize = 16;

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Queue {
    /// Creates an empty queue of `vhost` with resolved `settings`.
    pub fn new(
        name: &str,
        vhost: &Arc<VHost>,
        options: QueueOptions,
        settings: QueueSettings,
        log: Option<Arc<QueueLog>>,
    ) -> Queue {
        // A queue with no durable log pages out to a log of its own, opened when first needed,
        // if there is a store to put it in; with no store, it keeps everything in memory.
        let volatile = match (&log, vhost.store()) {
            (None, Some(store)) => Some(VolatileLog {
                store: Arc::clone(store),
                id: crate::durable::volatile_log_id(vhost.name(), name),
            }),
            _ => None,
        };
        let limits = (log.is_some() || volatile.is_some()).then(|| vhost.paging());
        let log = log.map_or_else(OnceLock::new, OnceLock::from);
        // A quorum queue needs the store's data directory (its Raft log is kept there): in a
        // broker without one, a queue recovered with that type is a classic queue.
        let quorum_declared =
            quorum::is_quorum_declaration(&options.arguments) && vhost.store().is_some();
        Queue {
            name: name.into(),
            vhost_name: vhost.name().into(),
            vhost: Arc::downgrade(vhost),
            options,
            counts_deliveries: AtomicBool::new(settings.delivery_limit.is_some()),
            log,
            volatile,
            stream: None,
            remote: OnceLock::new(),
            quorum_declared,
            quorum: OnceLock::new(),
            state: Mutex::new(State {
                ready: Ready::new(settings.max_priority, limits),
                settings,
                next_seq: 0,
                consumers: Vec::new(),
                cursor: 0,
                unacked: 0,
                had_consumer: false,
                deleted: false,
                dropped: 0,
                counters: QueueCounters::default(),
                sac_handover: false,
                last_used: Instant::now(),
                codec: None,
                restored_through: None,
            }),
        }
    }

    /// Runs `f` under the lock, then routes whatever it dead-lettered.
    fn locked<R>(self: &Arc<Self>, f: impl FnOnce(&mut State, &mut Dead) -> R) -> R {
        let (r, dead) = {
            let mut st = self.state.lock();
            let mut dead = Dead::new(&st.settings);
            let r = f(&mut st, &mut dead);
            (r, dead)
        };
        if let Some(log) = self.log.get() {
            for seq in &dead.acks {
                log.ack(*seq);
            }
        }
        if !dead.messages.is_empty() {
            if let (Some(vhost), Some(exchange)) = (self.vhost.upgrade(), dead.exchange) {
                vhost.dead_letter(self, &exchange, dead.routing_key.as_deref(), dead.messages);
            }
        }
        r
    }

    /// Marks the queue as homed on another node: what reaches it here goes to `home` (once;
    /// a queue's home does not change).
    pub fn set_remote(&self, home: Arc<dyn remote::RemoteHome>) {
        let _ = self.remote.set(home);
    }

    /// The queue's home node, when it is not this one.
    pub fn remote(&self) -> Option<&Arc<dyn remote::RemoteHome>> {
        self.remote.get()
    }

    /// Appends a message and delivers what consumers have credit for. On a node that is not
    /// the queue's home, forwards it there instead (no confirm: `VHost::publish_cc` asks for
    /// one).
    pub fn enqueue(self: &Arc<Self>, message: Message) -> Enqueued {
        if let Some(home) = self.remote.get() {
            home.forward(self, message, None);
            return Enqueued::Accepted;
        }
        self.enqueue_here(message)
    }

    /// [`Queue::enqueue`] into this node's copy: what the home node does with a forwarded
    /// message.
    pub fn enqueue_here(self: &Arc<Self>, message: Message) -> Enqueued {
        if let Some(s) = &self.stream {
            self.state.lock().counters.publish += 1;
            // The stream's entry keeps the routing key (`Message::to_named_queue` leaves it out).
            return s.append(&message.with_routing_key(&self.name));
        }
        if self.is_quorum() {
            // Not through a publisher's confirm (dead-lettering, say): confirmed to nobody.
            let confirm = quorum::ReplicaConfirm::new();
            let r = self.enqueue_replicated(message, &confirm);
            confirm.finish(true);
            return r;
        }
        self.locked(|st, dead| {
            if st.deleted {
                return Enqueued::Accepted;
            }
            st.counters.publish += 1;
            let Some(next_seq) = st.next_seq.checked_add(1).filter(|&s| s < level::SEQ_LIMIT) else {
                // Only a log restored with a seq near `SEQ_LIMIT` (2^56) gets here: a seq is
                // never reused, and the ready list packs it into 56 bits.
                tracing::error!(queue = %self.name, "no sequence number left; message refused");
                return Enqueued::Rejected;
            };
            let now = Instant::now();
            let ttl = match (st.settings.message_ttl, message.meta().expiration_ms) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let mut m = QueuedMessage {
                // From this `now`, which the dispatch below also uses: a TTL of 0 has not run
                // out yet for a consumer that can take the message right away.
                expires_at: ttl.map(|ms| Deadline::at(now + Duration::from_millis(ms))),
                message,
                seq: st.next_seq,
                redelivered: false,
                delivery_count: 0,
                persisted: false,
            };
            st.next_seq = next_seq;
            let s = &st.settings;
            let full = s.max_length.is_some_and(|max| st.ready.len() >= max)
                || s.max_length_bytes
                    .is_some_and(|max| st.ready.bytes() + m.message.body_len() > max);
            if full && s.overflow != Overflow::DropHead {
                if s.overflow == Overflow::RejectPublishDlx {
                    dead.push(st, m, DeathReason::MaxLen);
                } else {
                    st.dropped += 1;
                }
                return Enqueued::Rejected;
            }
            let paged = if st.ready.pages_out(&m) {
                self.page_out(st, &m, now)
            } else {
                None
            };
            let stored = match paged {
                Some(stored) => stored,
                None if st.ready.behind_tail(&m) => {
                    // The log refused it (store failed or closed, disk full) and the tail (of
                    // its priority level) is not empty: in the head it would overtake the tail ("every head seq is
                    // below every tail seq"), so it is refused (AMQP nack, MQTT error) rather
                    // than delivered out of order. `page_out` logged why.
                    tracing::error!(queue = %self.name, "message refused: it cannot be queued behind the paged-out ones");
                    return Enqueued::Rejected;
                }
                None => {
                    let tag = st.ready.log_tag(&m);
                    let stored = self.persist(&mut m, now, tag);
                    st.ready.push(m);
                    stored
                }
            };
            self.dispatch_locked(st, now, dead);
            // Drop-head: the oldest messages make room [RabbitMQ: x-overflow drop-head].
            loop {
                let s = &st.settings;
                let over = s.max_length.is_some_and(|max| st.ready.len() > max)
                    || s.max_length_bytes.is_some_and(|max| st.ready.bytes() > max);
                if !over {
                    break;
                }
                match self.pop_head(st, now) {
                    Some(old) => dead.push(st, old, DeathReason::MaxLen),
                    None => break,
                }
            }
            // A TTL of 0 lets a message through only to a consumer ready right now.
            self.expire_heads(st, Instant::now(), dead);
            if stored {
                Enqueued::Stored
            } else {
                Enqueued::Accepted
            }
        })
    }

    /// Delivers ready messages to consumers with credit. Adapters call it when a consumer's
    /// credit comes back (ack, larger prefetch, drained socket).
    pub fn dispatch(self: &Arc<Self>) {
        if self.stream.is_some() {
            self.dispatch_stream();
            return;
        }
        if let Some(q) = self.quorum.get() {
            q.dispatch(self);
            return;
        }
        self.locked(|st, dead| self.dispatch_locked(st, Instant::now(), dead));
    }

    fn dispatch_locked(self: &Arc<Self>, st: &mut State, now: Instant, dead: &mut Dead) {
        loop {
            self.expire_heads(st, now, dead);
            if st.ready.head_len() == 0 {
                return;
            }
            let Some(i) = consumers::pick_consumer(st) else {
                return;
            };
            let Some(message) = st.ready.pop_front() else {
                return;
            };
            let (seq, persisted) = (message.seq, message.persisted);
            self.mark_delivered(&message);
            st.counters.count_delivery(&message, false);
            match st.consumers[i].sink.deliver(self, message) {
                Delivered::Pending => st.unacked += 1,
                Delivered::Settled => {
                    st.counters.deliver_no_ack += 1;
                    if persisted {
                        dead.acks.push(seq);
                    }
                }
            }
        }
    }

    /// Takes the head message for `basic.get`; returns it with the number of messages left.
    pub fn get(self: &Arc<Self>, no_ack: bool) -> Option<(QueuedMessage, u32)> {
        self.locked(|st, dead| {
            let now = Instant::now();
            st.last_used = now;
            self.expire_heads(st, now, dead);
            let Some(message) = self.pop_head(st, now) else {
                st.counters.get_empty += 1;
                return None;
            };
            self.mark_delivered(&message);
            st.counters.count_delivery(&message, true);
            if no_ack {
                st.counters.get_no_ack += 1;
            }
            if !no_ack {
                st.unacked += 1;
            } else if message.persisted {
                dead.acks.push(message.seq);
            }
            Some((message, count(st.ready.len())))
        })
    }

    /// Settles delivered messages (acked): they leave the queue, and its log.
    pub fn settle<'a>(self: &Arc<Self>, messages: impl IntoIterator<Item = &'a QueuedMessage>) {
        if let Some(home) = self.remote.get() {
            let seqs = messages.into_iter().map(|m| m.seq).collect();
            home.settle(self, seqs, remote::Outcome::Ack);
            return;
        }
        if self.stream.is_some() {
            // An ack only gives credit back (rabbit_stream_queue `settle`): the message stays.
            self.state.lock().counters.ack += messages.into_iter().count() as u64;
            self.dispatch_stream();
            return;
        }
        if let Some(q) = self.quorum.get() {
            let seqs: Vec<u64> = messages.into_iter().map(|m| m.seq).collect();
            self.state.lock().counters.ack += seqs.len() as u64;
            q.settle(&seqs);
            return;
        }
        let mut n = 0;
        for m in messages {
            n += 1;
            if let (true, Some(log)) = (m.persisted, self.log.get()) {
                log.ack(m.seq);
            }
        }
        self.locked(|st, dead| {
            st.unacked = st.unacked.saturating_sub(n);
            st.counters.ack += n as u64;
            self.end_handover(st, dead);
        });
    }

    /// Lets the next single active consumer take over once the previous one's messages are
    /// all settled or back.
    fn end_handover(self: &Arc<Self>, st: &mut State, dead: &mut Dead) {
        if st.sac_handover && st.unacked == 0 {
            st.sac_handover = false;
            self.dispatch_locked(st, Instant::now(), dead);
        }
    }

    /// Settles delivered messages that were rejected without requeue: they are dead-lettered
    /// when the queue has a dead-letter exchange, dropped otherwise.
    pub fn reject(self: &Arc<Self>, messages: impl IntoIterator<Item = QueuedMessage>) {
        if let Some(home) = self.remote.get() {
            let seqs = messages.into_iter().map(|m| m.seq).collect();
            home.settle(self, seqs, remote::Outcome::Reject);
            return;
        }
        if self.stream.is_some() {
            // Every settlement of a stream's delivery only returns credit.
            self.dispatch_stream();
            return;
        }
        if let Some(q) = self.quorum.get() {
            let seqs: Vec<u64> = messages.into_iter().map(|m| m.seq).collect();
            q.reject(&seqs);
            return;
        }
        self.locked(|st, dead| {
            for m in messages {
                st.unacked = st.unacked.saturating_sub(1);
                dead.push(st, m, DeathReason::Rejected);
            }
            self.end_handover(st, dead);
        });
    }

    /// Gives delivered messages back: each returns to its original place, marked redelivered,
    /// unless it has been returned more often than the delivery limit allows.
    pub fn requeue(self: &Arc<Self>, messages: impl IntoIterator<Item = QueuedMessage>) {
        if let Some(home) = self.remote.get() {
            let seqs = messages.into_iter().map(|m| m.seq).collect();
            home.settle(self, seqs, remote::Outcome::Requeue);
            return;
        }
        if self.stream.is_some() {
            self.dispatch_stream();
            return;
        }
        if let Some(q) = self.quorum.get() {
            let seqs: Vec<u64> = messages.into_iter().map(|m| m.seq).collect();
            q.requeue(&seqs);
            return;
        }
        self.locked(|st, dead| {
            for mut m in messages {
                st.unacked = st.unacked.saturating_sub(1);
                if st.deleted {
                    continue;
                }
                m.redelivered = true;
                m.delivery_count += 1;
                if st
                    .settings
                    .delivery_limit
                    .is_some_and(|l| m.delivery_count > l)
                {
                    dead.push(st, m, DeathReason::DeliveryLimit);
                    continue;
                }
                st.ready.insert(m);
            }
            if st.sac_handover && st.unacked == 0 {
                st.sac_handover = false;
            }
            self.dispatch_locked(st, Instant::now(), dead);
        });
    }

    /// Drops every ready message, paged out or not; returns how many.
    pub fn purge(&self) -> u32 {
        if let Some(q) = self.quorum.get() {
            return q.purge();
        }
        let (dropped, tail) = {
            let mut st = self.state.lock();
            let log = self.log.get();
            // A priority queue's tails are acknowledged seq by seq: their levels interleave
            // with each other's heads (and with messages out for delivery) in the log.
            let by_level = st.ready.pages_by_level();
            let tail = st.ready.take_tail(|seq| {
                if let Some(log) = log {
                    log.ack(seq);
                }
            });
            if let (true, false, Some(log)) = (tail.count > 0, by_level, log) {
                // Under the lock: a message paged out after it must not be caught.
                log.ack_range(tail.next..);
            }
            (st.ready.clear(), tail)
        };
        let (dropped, persisted) = dropped;
        if let Some(log) = self.log.get() {
            for seq in persisted {
                log.ack(seq);
            }
        }
        count(dropped + tail.count)
    }

    /// Writes a persistent message to the log of a durable queue. True when the publisher must
    /// wait for the store before its confirm (PUBACK): the message was written, or it should
    /// have been and the store refused it (failed, closed), in which case the confirm never
    /// comes rather than promising what is not on disk.
    /// `level_tag`: the message's priority level, for a priority queue's log
    /// ([`Ready::log_tag`]).
    fn persist(&self, m: &mut QueuedMessage, now: Instant, level_tag: Option<u8>) -> bool {
        let Some(log) = self.log.get() else {
            return false;
        };
        // A transient queue's log holds only what paged out, and is not kept over a restart.
        if !m.message.meta().persistent || self.volatile.is_some() {
            return false;
        }
        let extras = QueueExtras {
            transient: false,
            origin: m.message.origin(),
        };
        let record = self.record(m, now).encode_queued(extras);
        let appended = match level_tag {
            Some(level) => log.append_tagged(m.seq, level, &record),
            None => log.append(m.seq, &record),
        };
        match appended {
            Ok(_) => {
                m.persisted = true;
                true
            }
            Err(e) => {
                tracing::error!(queue = %self.name, error = %e, "cannot write a message to the queue log");
                true
            }
        }
    }

    /// Records the first delivery of a persisted message, so it comes back redelivered.
    fn mark_delivered(&self, m: &QueuedMessage) {
        // (A transient queue's log is never read after a restart: no flag to keep there.)
        if let (true, false, None, Some(log)) =
            (m.persisted, m.redelivered, &self.volatile, self.log.get())
        {
            log.delivered(m.seq);
        }
    }

    /// Dead-letters (or drops) every ready message whose TTL ran out, wherever it sits; the
    /// vhost's timer calls it.
    ///
    /// Paged-out messages are looked at once they are paged in (as RabbitMQ, which expires
    /// only at the head): when expiry empties the head, a few more pages are read.
    pub fn expire(self: &Arc<Self>, now: Instant) {
        self.locked(|st, dead| {
            for _ in 0..EXPIRY_PAGE_INS {
                let expired = if st.ready.uneven_expiry > 0 {
                    st.ready.take_expired(now)
                } else {
                    st.ready.take_expired_heads(now)
                };
                let more = !expired.is_empty() && st.ready.wants_page_in();
                for m in expired {
                    dead.push(st, m, DeathReason::Expired);
                }
                if !more {
                    break;
                }
                self.fill(st, now);
            }
        });
    }

    /// Whether the queue has been unused for longer than its `x-expires`.
    pub fn unused_for_too_long(&self, now: Instant) -> bool {
        // --- quorum queues: not here. Their consumers live in the group (on every node), and a
        // deletion must be decided once: the group's leader decides from the replicated last
        // activity and deletes through the cluster (server `cluster/quorum/expiry.rs`). Each
        // node deleting its copy on its own clock would delete a queue in use elsewhere and
        // let the nodes diverge.
        if self.quorum.get().is_some() {
            return false;
        }
        let st = self.state.lock();
        st.settings.expires.is_some_and(|ms| {
            st.consumers.is_empty() && now.duration_since(st.last_used) >= Duration::from_millis(ms)
        })
    }

    /// Applies new settings (a policy changed): limits are enforced at once.
    pub fn apply_settings(self: &Arc<Self>, settings: QueueSettings) {
        // --- quorum queues: a policy changes the group's configuration (`quorum_ops.rs`) ---
        if let Some(q) = self.quorum.get() {
            self.state.lock().settings = settings;
            q.settings_changed(self);
            return;
        }
        self.counts_deliveries
            .store(settings.delivery_limit.is_some(), Ordering::Relaxed);
        self.locked(|st, dead| {
            *dead = Dead::new(&settings);
            st.settings = settings;
            let now = Instant::now();
            loop {
                let s = &st.settings;
                let over = s.max_length.is_some_and(|max| st.ready.len() > max)
                    || s.max_length_bytes.is_some_and(|max| st.ready.bytes() > max);
                if !over || s.overflow != Overflow::DropHead {
                    break;
                }
                match self.pop_head(st, now) {
                    Some(old) => dead.push(st, old, DeathReason::MaxLen),
                    None => break,
                }
            }
            self.dispatch_locked(st, now, dead);
        });
    }

    /// Whether the queue is deleted (a publisher may still hold it for a moment).
    pub fn is_deleted(&self) -> bool {
        self.state.lock().deleted
    }

    /// Marks the queue deleted, dropping its messages and handing back its consumers.
    pub(crate) fn delete(&self) -> Deleted {
        let deleted = {
            let mut st = self.state.lock();
            st.deleted = true;
            let tail = st.ready.take_tail(|_| {});
            let messages = count(st.ready.clear().0 + tail.count);
            Deleted {
                messages,
                consumers: std::mem::take(&mut st.consumers),
            }
        };
        let deleted = match self.quorum.get() {
            Some(q) => {
                let messages = q.counts().ready;
                Deleted {
                    messages,
                    consumers: q.delete(),
                }
            }
            None => deleted,
        };
        // After the lock: deleting the files waits for a flush round writing them.
        self.delete_volatile_log();
        if let Some(s) = &self.stream {
            s.delete_files();
        }
        deleted
    }
}

impl Queue {
    /// Takes the next message to deliver, paging the tail in first if the head ran low.
    fn pop_head(&self, st: &mut State, now: Instant) -> Option<QueuedMessage> {
        self.fill(st, now);
        st.ready.pop_front()
    }

    /// Dead-letters expired messages at the head of the queue (the next ones to deliver),
    /// paging the tail in as the head runs low.
    fn expire_heads(&self, st: &mut State, now: Instant, dead: &mut Dead) {
        loop {
            self.fill(st, now);
            if !st.ready.front_expired(now) {
                return;
            }
            match st.ready.pop_front() {
                Some(m) => dead.push(st, m, DeathReason::Expired),
                None => return,
            }
        }
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("name", &self.name).finish()
    }
}
