//! Queues: FIFO of ready messages, their consumers, and delivery.
//!
//! A queue's state has one owner at a time: a short-held mutex that is never held across an
//! `.await` (the broker has none). Publishers enqueue on their own task and, when a consumer has
//! credit, deliver straight away, so the common case never parks a message.
//!
//! Every message gets a sequence number when it is enqueued; the ready list is ordered by it, so
//! messages given back (`requeue`) return to their original place, as RabbitMQ does.

use crate::consumer::{ConnectionId, ConsumerEntry, Delivered};
use crate::error::{BrokerError, Result};
use crate::message::Message;
use crate::value::Table;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::Arc;

/// A message in a queue, or out for delivery from it.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// The message (shared with every other queue it was routed to).
    pub message: Message,
    /// Position in this queue, to put it back in order.
    pub seq: u64,
    /// It was delivered before and given back.
    pub redelivered: bool,
}

/// How a queue was declared.
#[derive(Debug, Clone, Default)]
pub struct QueueOptions {
    /// Survives a restart (recorded; disk durability lands with the store).
    pub durable: bool,
    /// Owned by one connection and deleted with it.
    pub exclusive_owner: Option<ConnectionId>,
    /// Deleted when its last consumer goes away.
    pub auto_delete: bool,
    /// Declare arguments.
    pub arguments: Table,
    /// Most ready messages kept; beyond it the oldest are dropped (drop-head).
    pub max_length: Option<usize>,
}

/// A queue.
pub struct Queue {
    name: Arc<str>,
    vhost: Arc<str>,
    options: QueueOptions,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    ready: VecDeque<QueuedMessage>,
    next_seq: u64,
    consumers: Vec<ConsumerEntry>,
    /// Round-robin position among `consumers`.
    cursor: usize,
    /// Messages delivered and not yet acked or given back.
    unacked: usize,
    had_consumer: bool,
    deleted: bool,
    /// Messages dropped by the length limit.
    dropped: u64,
}

/// What deleting a queue left behind.
pub struct Deleted {
    /// Ready messages dropped with it.
    pub messages: u32,
    /// Its consumers, to be told they were cancelled.
    pub consumers: Vec<ConsumerEntry>,
}

impl Queue {
    /// Creates an empty queue.
    pub fn new(name: &str, vhost: &str, options: QueueOptions) -> Queue {
        Queue {
            name: name.into(),
            vhost: vhost.into(),
            options,
            state: Mutex::new(State::default()),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How it was declared.
    pub fn options(&self) -> &QueueOptions {
        &self.options
    }

    /// Ready messages (not counting those out for delivery).
    pub fn message_count(&self) -> u32 {
        u32::try_from(self.state.lock().ready.len()).unwrap_or(u32::MAX)
    }

    /// Messages dropped so far because the queue was at its length limit.
    pub fn dropped_count(&self) -> u64 {
        self.state.lock().dropped
    }

    /// Registered consumers.
    pub fn consumer_count(&self) -> u32 {
        u32::try_from(self.state.lock().consumers.len()).unwrap_or(u32::MAX)
    }

    /// Checks that `connection` may use this queue (AMQP 405 RESOURCE_LOCKED otherwise).
    pub fn check_access(&self, connection: ConnectionId) -> Result<()> {
        match self.options.exclusive_owner {
            Some(owner) if owner != connection => Err(BrokerError::ResourceLocked(format!(
                "cannot obtain exclusive access to locked queue '{}' in vhost '{}'",
                self.name, self.vhost
            ))),
            _ => Ok(()),
        }
    }

    /// Appends a message and delivers what consumers have credit for.
    pub fn enqueue(self: &Arc<Self>, message: Message) {
        let mut st = self.state.lock();
        if st.deleted {
            return;
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.ready.push_back(QueuedMessage {
            message,
            seq,
            redelivered: false,
        });
        self.dispatch_locked(&mut st);
        if let Some(max) = self.options.max_length {
            while st.ready.len() > max {
                st.ready.pop_front();
                st.dropped += 1;
            }
        }
    }

    /// Delivers ready messages to consumers with credit, round-robin. Adapters call it when a
    /// consumer's credit comes back (ack, larger prefetch, drained socket).
    pub fn dispatch(self: &Arc<Self>) {
        let mut st = self.state.lock();
        self.dispatch_locked(&mut st);
    }

    fn dispatch_locked(self: &Arc<Self>, st: &mut State) {
        let n = st.consumers.len();
        while !st.ready.is_empty() && n > 0 {
            let Some(i) = (0..n)
                .map(|k| (st.cursor + k) % n)
                .find(|&i| st.consumers[i].sink.try_reserve())
            else {
                return;
            };
            st.cursor = (i + 1) % n;
            let Some(message) = st.ready.pop_front() else {
                return;
            };
            if st.consumers[i].sink.deliver(self, message) == Delivered::Pending {
                st.unacked += 1;
            }
        }
    }

    /// Takes the head message for `basic.get`; returns it with the number of messages left.
    pub fn get(&self, no_ack: bool) -> Option<(QueuedMessage, u32)> {
        let mut st = self.state.lock();
        let message = st.ready.pop_front()?;
        if !no_ack {
            st.unacked += 1;
        }
        let left = u32::try_from(st.ready.len()).unwrap_or(u32::MAX);
        Some((message, left))
    }

    /// Settles `count` delivered messages (acked, or rejected without requeue).
    pub fn settle(&self, count: usize) {
        let mut st = self.state.lock();
        st.unacked = st.unacked.saturating_sub(count);
    }

    /// Gives delivered messages back: each returns to its original place, marked redelivered.
    pub fn requeue(self: &Arc<Self>, messages: impl IntoIterator<Item = QueuedMessage>) {
        let mut st = self.state.lock();
        for mut m in messages {
            st.unacked = st.unacked.saturating_sub(1);
            if st.deleted {
                continue;
            }
            m.redelivered = true;
            let at = st.ready.partition_point(|r| r.seq < m.seq);
            st.ready.insert(at, m);
        }
        self.dispatch_locked(&mut st);
    }

    /// Registers a consumer and delivers to it what it has credit for. `on_added` runs once the
    /// consumer is accepted and before anything is delivered to it (AMQP sends `consume-ok`
    /// there, which must precede the first `basic.deliver`).
    pub fn add_consumer(
        self: &Arc<Self>,
        consumer: ConsumerEntry,
        on_added: impl FnOnce(),
    ) -> Result<()> {
        let mut st = self.state.lock();
        if st.deleted {
            return Err(BrokerError::NotFound(format!(
                "no queue '{}' in vhost '{}'",
                self.name, self.vhost
            )));
        }
        if st.consumers.iter().any(|c| c.exclusive)
            || (consumer.exclusive && !st.consumers.is_empty())
        {
            return Err(BrokerError::AccessRefused(format!(
                "queue '{}' in vhost '{}' in exclusive use",
                self.name, self.vhost
            )));
        }
        on_added();
        st.consumers.push(consumer);
        st.had_consumer = true;
        self.dispatch_locked(&mut st);
        Ok(())
    }

    /// Removes the consumer `tag` of `owner`. Returns `Some(unused)` if it existed, where
    /// `unused` says the queue is auto-delete and has now lost its last consumer.
    pub fn remove_consumer(&self, owner: u64, tag: &str) -> Option<bool> {
        let mut st = self.state.lock();
        let at = st
            .consumers
            .iter()
            .position(|c| c.owner == owner && &*c.tag == tag)?;
        st.consumers.remove(at);
        if st.cursor > at {
            st.cursor -= 1;
        }
        if st.cursor >= st.consumers.len() {
            st.cursor = 0;
        }
        Some(self.options.auto_delete && st.had_consumer && st.consumers.is_empty())
    }

    /// Drops every ready message; returns how many.
    pub fn purge(&self) -> u32 {
        let mut st = self.state.lock();
        let n = st.ready.len();
        st.ready.clear();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Whether the queue is deleted (a publisher may still hold it for a moment).
    pub fn is_deleted(&self) -> bool {
        self.state.lock().deleted
    }

    /// Marks the queue deleted, dropping its messages and handing back its consumers.
    pub(crate) fn delete(&self) -> Deleted {
        let mut st = self.state.lock();
        st.deleted = true;
        let messages = u32::try_from(st.ready.len()).unwrap_or(u32::MAX);
        st.ready.clear();
        Deleted {
            messages,
            consumers: std::mem::take(&mut st.consumers),
        }
    }
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("name", &self.name).finish()
    }
}
