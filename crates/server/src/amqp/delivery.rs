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
    encode_body_frames, encode_header_frame, encode_method_frame, BasicCancel, BasicGetOk, Method,
    ShortString, FRAME_END, FRAME_METHOD,
};
use bytes::{BufMut, BytesMut};
use parking_lot::Mutex;
use pigeon_broker::{ConsumerSink, Delivered, Queue, QueuedMessage};
use pigeon_store::Chunked;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// Basic class id, for content headers.
const BASIC_CLASS: u16 = 60;

/// A broker name as a short string (copied: for `basic.get-ok` and `basic.return`; a
/// `basic.deliver` is written by [`encode_deliver_frame`] without one). A name over 255 bytes
/// (an MQTT topic can be) is sent empty, as AMQP cannot carry it.
pub fn short(name: &str) -> ShortString {
    ShortString::new(name).unwrap_or_default()
}

/// Writes a `basic.deliver` method frame (AMQP 0-9-1 sections 2.3.5 and 4.2.3) straight from
/// the message's own bytes: the message keeps its exchange and routing key inside its single
/// allocation, so building a [`Method`] would copy both into new `ShortString`s for every
/// delivery. The bytes are those `encode_method_frame` writes (a test compares them).
pub fn encode_deliver_frame(
    channel: u16,
    consumer_tag: &ShortString,
    delivery_tag: u64,
    redelivered: bool,
    exchange: &str,
    routing_key: &str,
    out: &mut BytesMut,
) {
    fn shortstr(out: &mut BytesMut, s: &[u8]) {
        let s = if s.len() > ShortString::MAX_LEN {
            &[][..]
        } else {
            s
        };
        out.put_u8(s.len() as u8);
        out.put_slice(s);
    }
    out.reserve(32 + consumer_tag.len() + exchange.len() + routing_key.len());
    out.put_u8(FRAME_METHOD);
    out.put_u16(channel);
    let at = out.len();
    out.put_u32(0);
    out.put_u16(BASIC_CLASS);
    out.put_u16(BASIC_DELIVER);
    shortstr(out, consumer_tag.as_bytes());
    out.put_u64(delivery_tag);
    out.put_u8(u8::from(redelivered));
    shortstr(out, exchange.as_bytes());
    shortstr(out, routing_key.as_bytes());
    let len = (out.len() - at - 4) as u32;
    out[at..at + 4].copy_from_slice(&len.to_be_bytes());
    out.put_u8(FRAME_END);
}

/// `basic.deliver`'s method id in the basic class.
const BASIC_DELIVER: u16 = 60;

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
        self.send_content(
            |buf| encode_method_frame(self.number, method, buf),
            message,
            counted,
        );
    }

    /// [`ChannelShared::send_with_content`] with the method frame written by `method`.
    fn send_content(
        &self,
        method: impl FnOnce(&mut BytesMut),
        message: &QueuedMessage,
        counted: bool,
    ) {
        let m = &message.message;
        let recounted = (counted && message.delivery_count > 0)
            .then(|| with_delivery_count(&m.properties_bytes(), message.delivery_count));
        let raw = recounted.as_deref().unwrap_or(m.properties_raw());
        self.send_content_raw(method, message, raw);
    }

    /// Writes method, header and body frames with `raw` as the content header's properties
    /// (the message's own, or a rewritten copy of them).
    fn send_content_raw(
        &self,
        method: impl FnOnce(&mut BytesMut),
        message: &QueuedMessage,
        raw: &[u8],
    ) {
        let body = message.message.body();
        self.out.send(|buf| {
            buf.reserve(body.len() + raw.len() + 128);
            method(buf);
            encode_header_frame(self.number, BASIC_CLASS, body.len() as u64, raw, buf);
            encode_body_frames(self.number, body, self.frame_max, buf);
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
            exchange: short(message.message.exchange()),
            routing_key: short(message.message.routing_key_in(queue.name())),
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
        let m = &message.message;
        let deliver = |buf: &mut BytesMut| {
            encode_deliver_frame(
                ch.number,
                &self.tag,
                tag,
                message.redelivered,
                m.exchange(),
                m.routing_key_in(queue.name()),
                buf,
            )
        };
        if queue.is_stream() {
            // Every delivery from a stream says where it is (rabbit_stream_queue).
            let raw = super::streams::with_stream_offset(&m.properties_bytes(), message.seq);
            ch.send_content_raw(deliver, &message, &raw);
        } else {
            ch.send_content(deliver, &message, queue.counts_deliveries());
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

    fn prefetch(&self) -> u32 {
        if self.no_ack {
            0
        } else {
            self.prefetch
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use amqp_wire::BasicDeliver;

    /// The hand-written `basic.deliver` is byte for byte the generic encoder's, a name too
    /// long for a short string included (sent empty by both).
    #[test]
    fn a_deliver_frame_is_the_generic_encoding() {
        let long = "k".repeat(300);
        for (exchange, key, redelivered) in [
            ("", "pigeon-bench-0123456789abcdefg-0", false),
            ("amq.topic", "a.b.c", true),
            ("x", long.as_str(), false),
        ] {
            let tag = ShortString::from_static("amq.ctag-1");
            let mut direct = BytesMut::new();
            encode_deliver_frame(7, &tag, 42, redelivered, exchange, key, &mut direct);
            let method = Method::BasicDeliver(BasicDeliver {
                consumer_tag: tag,
                delivery_tag: 42,
                redelivered,
                exchange: short(exchange),
                routing_key: short(key),
            });
            let mut generic = BytesMut::new();
            encode_method_frame(7, &method, &mut generic);
            assert_eq!(direct, generic);
        }
    }
}
