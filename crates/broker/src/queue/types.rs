//! The values a queue hands out and takes in: messages as queued, declare options, what
//! enqueueing did, counters and statistics snapshots.

use super::Deadline;
use crate::consumer::{ConnectionId, ConsumerEntry};
use crate::message::Message;
use crate::value::Table;
use std::time::Instant;

/// A queue's backlog as publishers' flow control sees it ([`Queue::flow_view`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowView {
    /// Ready messages, paged out or not.
    pub ready: usize,
    /// Ready messages in memory.
    pub resident: usize,
    /// Body bytes of the ready messages in memory.
    pub resident_bytes: usize,
    /// The length limit (`x-max-length`), if any.
    pub max_length: Option<usize>,
    /// Someone other than the publisher consumes from the queue.
    pub other_consumers: bool,
}
/// A message in a queue, or out for delivery from it.
#[derive(Debug, Clone)]
pub struct QueuedMessage {
    /// The message (shared with every other queue it was routed to).
    pub message: Message,
    /// Position in this queue, to put it back in order.
    pub seq: u64,
    /// It was delivered before and given back.
    pub redelivered: bool,
    /// When its TTL (the queue's or its own, whichever is shorter) runs out (8 bytes, not an
    /// `Instant`'s 16: every ready and unacked message carries one).
    pub expires_at: Option<Deadline>,
    /// How many times it was given back after a delivery.
    pub delivery_count: u32,
    /// It is in the queue's log on disk (persistent message, or paged out, in a durable
    /// queue), so leaving the queue acknowledges it there.
    pub persisted: bool,
}

impl QueuedMessage {
    /// Whether its TTL ran out before `now`.
    pub fn expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| now > t.instant())
    }
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
    /// Declare arguments (`x-message-ttl`, `x-max-length`, ...).
    pub arguments: Table,
}

/// Whether a queue took a published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// Queued (or delivered).
    Accepted,
    /// Queued and written to the queue's log: confirm it once the store's current epoch is
    /// synced.
    Stored,
    /// Refused by the length limit (`x-overflow` reject-publish / reject-publish-dlx).
    Rejected,
}

/// Message counters of a queue since it was created (RabbitMQ's `message_stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Messages that reached the queue (`publish`), refused ones included.
    pub publish: u64,
    /// Messages delivered to consumers (`deliver` + `deliver_no_ack`).
    pub deliver: u64,
    /// Of those, to consumers that settle on delivery (AMQP `no_ack`, MQTT QoS 0).
    pub deliver_no_ack: u64,
    /// Messages taken by `basic.get` (`get` + `get_no_ack`).
    pub get: u64,
    /// Of those, with `no_ack`.
    pub get_no_ack: u64,
    /// `basic.get`s that found the queue empty (`get_empty`).
    pub get_empty: u64,
    /// Of those delivered or taken, redelivered (`redeliver`).
    pub redeliver: u64,
    /// Messages acknowledged (`ack`).
    pub ack: u64,
}

impl QueueCounters {
    pub(super) fn count_delivery(&mut self, m: &QueuedMessage, get: bool) {
        if get {
            self.get += 1;
        } else {
            self.deliver += 1;
        }
        if m.redelivered {
            self.redeliver += 1;
        }
    }
}

/// A snapshot of a queue's counts (see [`Queue::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Ready messages (`messages_ready`).
    pub ready: u32,
    /// Delivered, not yet settled (`messages_unacknowledged`).
    pub unacked: u32,
    /// Body bytes of the ready messages (`message_bytes_ready`).
    pub bytes: u64,
    /// Of the ready messages, those paged out to the queue's log.
    pub paged_out: u32,
    /// Consumers.
    pub consumers: u32,
    /// Messages dropped or refused by a length limit.
    pub dropped: u64,
    /// Message counters.
    pub counters: QueueCounters,
}

/// What deleting a queue left behind.
pub struct Deleted {
    /// Ready messages dropped with it.
    pub messages: u32,
    /// Its consumers, to be told they were cancelled.
    pub consumers: Vec<ConsumerEntry>,
}
