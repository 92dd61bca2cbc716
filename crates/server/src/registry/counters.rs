//! Broker-wide message counters per protocol, as RabbitMQ's `rabbit_global_counters`
//! (`rabbitmq_global_messages_*_total{protocol="amqp091"}`): relaxed atomics bumped where
//! the adapters already handle the message, read by the Prometheus endpoint.

use super::Protocol;
use std::sync::atomic::{AtomicU64, Ordering};

/// The counters of one protocol.
#[derive(Debug, Default)]
pub struct ProtocolCounters {
    /// Messages received from publishers.
    pub received: AtomicU64,
    /// Of those, routed to at least one queue.
    pub routed: AtomicU64,
    /// Of those, routed nowhere and dropped.
    pub unroutable_dropped: AtomicU64,
    /// Of those, routed nowhere and returned (AMQP mandatory).
    pub unroutable_returned: AtomicU64,
    /// Publisher confirms (AMQP) or PUBACK/PUBREC (MQTT QoS 1/2) sent.
    pub confirmed: AtomicU64,
    /// Messages delivered to consumers (AMQP deliver and get, MQTT PUBLISH).
    pub delivered: AtomicU64,
    /// Of those, redelivered.
    pub redelivered: AtomicU64,
    /// Of those delivered, taken by AMQP `basic.get` (the management API's `get`).
    pub got: AtomicU64,
    /// Of those delivered to consumers (not `basic.get`), with no acknowledgement to come:
    /// AMQP `no_ack` consumers and MQTT QoS 0 (`deliver_no_ack`).
    pub delivered_no_ack: AtomicU64,
    /// Of those taken by `basic.get`, with `no_ack` (`get_no_ack`).
    pub got_no_ack: AtomicU64,
    /// `basic.get`s that found the queue empty (`get_empty`).
    pub got_empty: AtomicU64,
    /// Messages acknowledged by consumers.
    pub acknowledged: AtomicU64,
    /// MQTT: PUBLISH received per QoS (0, 1, 2).
    pub received_qos: [AtomicU64; 3],
    /// MQTT: PUBLISH sent per QoS (0, 1, 2).
    pub sent_qos: [AtomicU64; 3],
    /// Messages dropped (MQTT: larger than the client's maximum packet size, or a full
    /// session queue).
    pub dropped: AtomicU64,
}

impl ProtocolCounters {
    /// A message was received; `queues` reached, `returned` if it came back unroutable.
    #[inline]
    pub fn on_publish(&self, queues: usize, returned: bool) {
        self.received.fetch_add(1, Ordering::Relaxed);
        if queues > 0 {
            self.routed.fetch_add(1, Ordering::Relaxed);
        } else if returned {
            self.unroutable_returned.fetch_add(1, Ordering::Relaxed);
        } else {
            self.unroutable_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A message was delivered.
    #[inline]
    pub fn on_deliver(&self, redelivered: bool) {
        self.delivered.fetch_add(1, Ordering::Relaxed);
        if redelivered {
            self.redelivered.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A message was delivered to a consumer (`get`: taken by `basic.get`; `no_ack`: no
    /// acknowledgement will come), for the management API's `deliver`, `deliver_no_ack`,
    /// `get` and `get_no_ack`.
    #[inline]
    pub fn on_delivery(&self, redelivered: bool, get: bool, no_ack: bool) {
        self.on_deliver(redelivered);
        match (get, no_ack) {
            (true, true) => {
                self.got.fetch_add(1, Ordering::Relaxed);
                self.got_no_ack.fetch_add(1, Ordering::Relaxed);
            }
            (true, false) => {
                self.got.fetch_add(1, Ordering::Relaxed);
            }
            (false, true) => {
                self.delivered_no_ack.fetch_add(1, Ordering::Relaxed);
            }
            (false, false) => {}
        }
    }

    /// Reads a counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

/// The counters of every protocol.
#[derive(Debug, Default)]
pub struct GlobalCounters {
    by_protocol: [ProtocolCounters; 4],
}

impl GlobalCounters {
    /// The counters of `protocol`.
    #[inline]
    pub fn of(&self, protocol: Protocol) -> &ProtocolCounters {
        &self.by_protocol[protocol as usize]
    }

    /// Every protocol with its counters.
    pub fn all(&self) -> impl Iterator<Item = (Protocol, &ProtocolCounters)> {
        Protocol::ALL.into_iter().map(move |p| (p, self.of(p)))
    }
}
