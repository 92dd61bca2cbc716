//! Deliveries: the part of a channel that publishers' tasks touch.
//!
//! When a queue hands a message to one of this channel's consumers it runs on the publisher's
//! task, under the queue's lock. [`ChannelShared`] is what that code needs: the delivery-tag
//! counter and the unacked list (one short mutex, which also keeps tags in the order their
//! frames are written), the prefetch counters (atomics) and the connection's outbound buffer.

use super::codec::with_delivery_count;
use crate::outbound::Outbound;
use crate::registry::{ChannelStats, ChannelView, ProtocolCounters};
use amqp_wire::{
    encode_body_frames, encode_header_frame, encode_method_frame, BasicCancel, BasicDeliver,
    BasicGetOk, Method, ShortString,
};
use bytes::Bytes;
use parking_lot::Mutex;
use pigeon_broker::{ConsumerSink, Delivered, Queue, QueuedMessage};
use pigeon_store::Chunked;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// Basic class id, for content headers.
const BASIC_CLASS: u16 = 60;

/// A broker name as a short string, sharing its bytes (no copy on the delivery path).
pub fn short(name: &bytes::Bytes) -> ShortString {
    ShortString::try_from(name.clone()).unwrap_or_default()
}

/// A delivered message waiting for its ack.
pub struct Unacked {
    /// Its delivery tag.
    pub tag: u64,
    /// The queue it came from (and returns to if rejected).
    pub queue: Arc<Queue>,
    /// The message.
    pub message: QueuedMessage,
    /// The unacked counter of the consumer whose prefetch it counts against (none for
    /// `basic.get`).
    pub credit: Option<Arc<AtomicU32>>,
}

#[derive(Default)]
pub struct Deliveries {
    next_tag: u64,
    /// Ordered by tag. Chunked: a consumer without a prefetch limit can hold millions, and a
    /// `VecDeque` would double (copy) them all in one push (`pigeon_store::chunked`).
    pub unacked: Chunked<Unacked>,
}

/// The state of a channel shared with the queues that deliver to it.
pub struct ChannelShared {
    /// Channel number.
    pub number: u16,
    /// Broker-wide id of this channel (owner of its consumers).
    pub uid: u64,
    /// The connection's outbound buffer.
    pub out: Arc<Outbound>,
    /// Negotiated frame_max, to split bodies.
    pub frame_max: u32,
    /// Tags and unacked messages.
    pub deliveries: Mutex<Deliveries>,
    /// Unacked messages delivered to consumers of this channel (for global prefetch).
    pub unacked: AtomicU32,
    /// `basic.qos` with global=true: limit across the channel's consumers (0 = none).
    pub global_prefetch: AtomicU32,
    /// `channel.flow`: false stops deliveries.
    pub active: AtomicBool,
    /// The channel is closing or closed: no more deliveries.
    pub closed: AtomicBool,
    /// Counters and settings the registry lists.
    pub stats: ChannelStats,
}

impl ChannelView for ChannelShared {
    fn stats(&self) -> &ChannelStats {
        &self.stats
    }

    fn unacked(&self) -> u32 {
        self.deliveries.lock().unacked.len() as u32
    }
}

impl ChannelShared {
    /// A new open channel.
    pub fn new(
        number: u16,
        uid: u64,
        out: Arc<Outbound>,
        frame_max: u32,
        counters: Arc<ProtocolCounters>,
    ) -> ChannelShared {
        ChannelShared {
            number,
            uid,
            out,
            frame_max,
            deliveries: Mutex::new(Deliveries {
                next_tag: 1,
                unacked: Chunked::new(),
            }),
            unacked: AtomicU32::new(0),
            global_prefetch: AtomicU32::new(0),
            active: AtomicBool::new(true),
            closed: AtomicBool::new(false),
            stats: ChannelStats::new(number, counters),
        }
    }

    /// Sends one method frame.
    pub fn send(&self, method: &Method) {
        self.out
            .send(|buf| encode_method_frame(self.number, method, buf));
    }

    /// Writes a method with content (deliver, get-ok, return) as method, header and body frames.
    /// `counted` adds the `x-delivery-count` header to a redelivery (queues with a delivery
    /// limit).
    pub fn send_with_content(&self, method: &Method, message: &QueuedMessage, counted: bool) {
        let m = &message.message;
        let recounted = (counted && message.delivery_count > 0)
            .then(|| with_delivery_count(m.properties.raw(), message.delivery_count));
        self.send_with_raw(method, message, recounted.as_ref());
    }

    /// [`ChannelShared::send_with_content`] with other properties than the message's own.
    pub fn send_with_raw(&self, method: &Method, message: &QueuedMessage, raw: Option<&Bytes>) {
        let m = &message.message;
        let recounted = raw;
        let raw = recounted.unwrap_or(m.properties.raw());
        self.out.send(|buf| {
            buf.reserve(m.body.len() + raw.len() + 128);
            encode_method_frame(self.number, method, buf);
            encode_header_frame(self.number, BASIC_CLASS, m.body.len() as u64, raw, buf);
            encode_body_frames(self.number, &m.body, self.frame_max, buf);
        });
    }

    /// Delivers a message taken by `basic.get`; records it unless `no_ack`.
    pub fn deliver_get(&self, queue: &Arc<Queue>, message: QueuedMessage, left: u32, no_ack: bool) {
        let mut d = self.deliveries.lock();
        let tag = d.next_tag;
        d.next_tag += 1;
        self.stats.count_delivery(true, no_ack, message.redelivered);
        let method = Method::BasicGetOk(BasicGetOk {
            delivery_tag: tag,
            redelivered: message.redelivered,
            exchange: short(&message.message.exchange),
            routing_key: short(&message.message.routing_key),
            message_count: left,
        });
        self.send_with_content(&method, &message, queue.counts_deliveries());
        if !no_ack {
            d.unacked.push_back(Unacked {
                tag,
                queue: Arc::clone(queue),
                message,
                credit: None,
            });
        }
    }

    /// Gives back the prefetch credit of a settled message.
    pub fn release(&self, credit: &Option<Arc<AtomicU32>>) {
        if let Some(c) = credit {
            c.fetch_sub(1, Ordering::Relaxed);
            self.unacked.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// One `basic.consume`: the broker's consumer sink for an AMQP channel.
pub struct AmqpConsumer {
    /// Consumer tag.
    pub tag: ShortString,
    /// The channel.
    pub channel: Arc<ChannelShared>,
    /// Auto-ack mode.
    pub no_ack: bool,
    /// Per-consumer prefetch (0 = unlimited).
    pub prefetch: u32,
    /// Its unacked deliveries (shared with their `Unacked` records).
    pub unacked: Arc<AtomicU32>,
    /// The client understands a server-sent `basic.cancel`.
    pub cancel_notify: bool,
    /// The queue was deleted under it: its tag is free again.
    pub cancelled: AtomicBool,
}

fn take_credit(counter: &AtomicU32, limit: u32) -> bool {
    if limit == 0 {
        counter.fetch_add(1, Ordering::Relaxed);
        return true;
    }
    let before = counter.fetch_add(1, Ordering::Relaxed);
    if before >= limit {
        counter.fetch_sub(1, Ordering::Relaxed);
        return false;
    }
    true
}

impl ConsumerSink for AmqpConsumer {
    fn try_reserve(&self) -> bool {
        let ch = &self.channel;
        if ch.closed.load(Ordering::Relaxed) || !ch.active.load(Ordering::Relaxed) {
            return false;
        }
        if !ch.out.has_room() {
            return false;
        }
        if self.no_ack {
            return true;
        }
        if !take_credit(&self.unacked, self.prefetch) {
            return false;
        }
        let global = ch.global_prefetch.load(Ordering::Relaxed);
        if !take_credit(&ch.unacked, global) {
            self.unacked.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn deliver(&self, queue: &Arc<Queue>, message: QueuedMessage) -> Delivered {
        let ch = &self.channel;
        let mut d = ch.deliveries.lock();
        let tag = d.next_tag;
        d.next_tag += 1;
        ch.stats
            .count_delivery(false, self.no_ack, message.redelivered);
        let method = Method::BasicDeliver(BasicDeliver {
            consumer_tag: self.tag.clone(),
            delivery_tag: tag,
            redelivered: message.redelivered,
            exchange: short(&message.message.exchange),
            routing_key: short(&message.message.routing_key),
        });
        if queue.is_stream() {
            // Every delivery from a stream says where it is (rabbit_stream_queue).
            let raw =
                super::streams::with_stream_offset(message.message.properties.raw(), message.seq);
            ch.send_with_raw(&method, &message, Some(&raw));
        } else {
            ch.send_with_content(&method, &message, queue.counts_deliveries());
        }
        if self.no_ack {
            return Delivered::Settled;
        }
        d.unacked.push_back(Unacked {
            tag,
            queue: Arc::clone(queue),
            message,
            credit: Some(Arc::clone(&self.unacked)),
        });
        Delivered::Pending
    }

    fn cancelled(&self) {
        self.cancelled.store(true, Ordering::Relaxed);
        if self.cancel_notify && !self.channel.closed.load(Ordering::Relaxed) {
            self.channel.send(&Method::BasicCancel(BasicCancel {
                consumer_tag: self.tag.clone(),
                no_wait: true,
            }));
        }
    }
}
