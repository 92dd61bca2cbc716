//! Message counters per protocol, as RabbitMQ's `rabbit_global_counters`
//! (`rabbitmq_global_messages_*_total{protocol="amqp091"}`) and `rabbit_msg_size_metrics`
//! (`rabbitmq_message_size_bytes`), plus what Pigeon counts for MQTT (per QoS, dropped).
//!
//! Each connection owns its counters ([`ProtocolCounters`], in its registry entry): the
//! connection's task bumps them (publishes, acks), and so does a publisher's task delivering to
//! it, with relaxed atomics on a block aligned to its own cache lines. A broker-wide block
//! bumped by every connection made every core fight for one cache line per message; summing the
//! live connections when Prometheus asks costs a scrape a few loads per connection instead. A
//! closing connection folds its counts into the registry's retired totals ([`MessageTotals`]),
//! under the registry lock the scrape also takes, so no count is seen twice or lost by a scrape.
//! (A delivery that races with its connection's close may bump counters already folded: that
//! one message is not counted, and counters never go backwards.)

use std::sync::atomic::{AtomicU64, Ordering};

/// Upper bounds of RabbitMQ's message size histogram (`rabbit_msg_size_metrics`), bytes.
pub const SIZE_BUCKETS: [u64; 8] = [
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
];

/// The `le` labels of [`SIZE_BUCKETS`] and `+Inf`, spelt as RabbitMQ's Prometheus client
/// writes them: the Grafana dashboard selects `le="100.0"`, `le="1e+06"` literally.
pub const SIZE_BUCKET_LABELS: [&str; 9] = [
    "100.0", "1000.0", "10000.0", "100000.0", "1e+06", "1e+07", "5e+07", "1e+08", "+Inf",
];

/// The counters of one connection. Aligned so that two connections' counters never share a
/// cache line (128 bytes: adjacent-line prefetching pairs 64-byte lines on x86).
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct ProtocolCounters {
    /// Messages received from publishers.
    pub received: AtomicU64,
    /// Of those, published expecting a confirm (AMQP confirm mode, MQTT QoS 1/2).
    pub received_confirm: AtomicU64,
    /// Of those, routed to at least one queue.
    pub routed: AtomicU64,
    /// Of those, routed nowhere and dropped.
    pub unroutable_dropped: AtomicU64,
    /// Of those, routed nowhere and returned (AMQP mandatory).
    pub unroutable_returned: AtomicU64,
    /// Publisher confirms (AMQP) or PUBACK/PUBREC (MQTT QoS 1/2) sent.
    pub confirmed: AtomicU64,
    /// Deliveries to consumers awaiting an ack (`basic.consume`, MQTT QoS 1/2).
    pub delivered_consume_manual_ack: AtomicU64,
    /// Deliveries to consumers settled on sending (`no_ack`, MQTT QoS 0).
    pub delivered_consume_auto_ack: AtomicU64,
    /// Messages taken by `basic.get` awaiting an ack.
    pub delivered_get_manual_ack: AtomicU64,
    /// Messages taken by `basic.get` with `no_ack`.
    pub delivered_get_auto_ack: AtomicU64,
    /// `basic.get` that found the queue empty.
    pub get_empty: AtomicU64,
    /// Deliveries that were redeliveries.
    pub redelivered: AtomicU64,
    /// Messages acknowledged by consumers.
    pub acknowledged: AtomicU64,
    /// MQTT: PUBLISH received per QoS (0, 1, 2).
    pub received_qos: [AtomicU64; 3],
    /// MQTT: PUBLISH sent per QoS (0, 1, 2).
    pub sent_qos: [AtomicU64; 3],
    /// MQTT: messages dropped for this client (larger than its maximum packet size).
    pub dropped: AtomicU64,
    /// Received message sizes, one count per bucket of [`SIZE_BUCKETS`] then the rest.
    pub size_buckets: [AtomicU64; 9],
    /// Sum of the received message sizes.
    pub size_sum: AtomicU64,
}

#[inline]
fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl ProtocolCounters {
    /// A message of `size` body bytes was received; it reached `queues` queues, `returned`
    /// if it came back unroutable, `confirm` if the publisher awaits a confirm.
    #[inline]
    pub fn on_publish(&self, queues: usize, returned: bool, confirm: bool, size: usize) {
        bump(&self.received);
        if confirm {
            bump(&self.received_confirm);
        }
        if queues > 0 {
            bump(&self.routed);
        } else if returned {
            bump(&self.unroutable_returned);
        } else {
            bump(&self.unroutable_dropped);
        }
        let size = size as u64;
        let bucket = SIZE_BUCKETS
            .iter()
            .position(|&b| size <= b)
            .unwrap_or(SIZE_BUCKETS.len());
        bump(&self.size_buckets[bucket]);
        self.size_sum.fetch_add(size, Ordering::Relaxed);
    }

    /// A message was delivered: by `basic.get` or to a consumer, settled on sending
    /// (`auto_ack`) or not.
    #[inline]
    pub fn on_deliver(&self, get: bool, auto_ack: bool, redelivered: bool) {
        bump(match (get, auto_ack) {
            (false, false) => &self.delivered_consume_manual_ack,
            (false, true) => &self.delivered_consume_auto_ack,
            (true, false) => &self.delivered_get_manual_ack,
            (true, true) => &self.delivered_get_auto_ack,
        });
        if redelivered {
            bump(&self.redelivered);
        }
    }
}

/// A sum of counters, read when asked.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MessageTotals {
    /// Messages received from publishers.
    pub received: u64,
    /// Of those, expecting a confirm.
    pub received_confirm: u64,
    /// Routed to at least one queue.
    pub routed: u64,
    /// Unroutable, dropped.
    pub unroutable_dropped: u64,
    /// Unroutable, returned.
    pub unroutable_returned: u64,
    /// Confirms sent.
    pub confirmed: u64,
    /// Consumer deliveries awaiting an ack.
    pub delivered_consume_manual_ack: u64,
    /// Consumer deliveries settled on sending.
    pub delivered_consume_auto_ack: u64,
    /// `basic.get` awaiting an ack.
    pub delivered_get_manual_ack: u64,
    /// `basic.get` with `no_ack`.
    pub delivered_get_auto_ack: u64,
    /// Empty `basic.get`.
    pub get_empty: u64,
    /// Redeliveries.
    pub redelivered: u64,
    /// Acknowledgements.
    pub acknowledged: u64,
    /// MQTT PUBLISH received per QoS.
    pub received_qos: [u64; 3],
    /// MQTT PUBLISH sent per QoS.
    pub sent_qos: [u64; 3],
    /// MQTT messages dropped.
    pub dropped: u64,
    /// Message size histogram (not cumulative).
    pub size_buckets: [u64; 9],
    /// Sum of message sizes.
    pub size_sum: u64,
}

impl MessageTotals {
    /// Adds one connection's counters.
    pub fn add(&mut self, c: &ProtocolCounters) {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.received += r(&c.received);
        self.received_confirm += r(&c.received_confirm);
        self.routed += r(&c.routed);
        self.unroutable_dropped += r(&c.unroutable_dropped);
        self.unroutable_returned += r(&c.unroutable_returned);
        self.confirmed += r(&c.confirmed);
        self.delivered_consume_manual_ack += r(&c.delivered_consume_manual_ack);
        self.delivered_consume_auto_ack += r(&c.delivered_consume_auto_ack);
        self.delivered_get_manual_ack += r(&c.delivered_get_manual_ack);
        self.delivered_get_auto_ack += r(&c.delivered_get_auto_ack);
        self.get_empty += r(&c.get_empty);
        self.redelivered += r(&c.redelivered);
        self.acknowledged += r(&c.acknowledged);
        for i in 0..3 {
            self.received_qos[i] += r(&c.received_qos[i]);
            self.sent_qos[i] += r(&c.sent_qos[i]);
        }
        self.dropped += r(&c.dropped);
        for i in 0..9 {
            self.size_buckets[i] += r(&c.size_buckets[i]);
        }
        self.size_sum += r(&c.size_sum);
    }

    /// Adds another sum.
    pub fn merge(&mut self, o: &MessageTotals) {
        self.received += o.received;
        self.received_confirm += o.received_confirm;
        self.routed += o.routed;
        self.unroutable_dropped += o.unroutable_dropped;
        self.unroutable_returned += o.unroutable_returned;
        self.confirmed += o.confirmed;
        self.delivered_consume_manual_ack += o.delivered_consume_manual_ack;
        self.delivered_consume_auto_ack += o.delivered_consume_auto_ack;
        self.delivered_get_manual_ack += o.delivered_get_manual_ack;
        self.delivered_get_auto_ack += o.delivered_get_auto_ack;
        self.get_empty += o.get_empty;
        self.redelivered += o.redelivered;
        self.acknowledged += o.acknowledged;
        for i in 0..3 {
            self.received_qos[i] += o.received_qos[i];
            self.sent_qos[i] += o.sent_qos[i];
        }
        self.dropped += o.dropped;
        for i in 0..9 {
            self.size_buckets[i] += o.size_buckets[i];
        }
        self.size_sum += o.size_sum;
    }

    /// Every delivery (`rabbitmq_global_messages_delivered_total`).
    pub fn delivered(&self) -> u64 {
        self.delivered_consume_manual_ack
            + self.delivered_consume_auto_ack
            + self.delivered_get_manual_ack
            + self.delivered_get_auto_ack
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_have_cache_lines_of_their_own() {
        assert_eq!(std::mem::align_of::<ProtocolCounters>(), 128);
        assert_eq!(std::mem::size_of::<ProtocolCounters>() % 128, 0);
    }

    #[test]
    fn sizes_fall_in_rabbitmq_buckets() {
        let c = ProtocolCounters::default();
        for size in [0, 100, 101, 1_000_000, 200_000_000] {
            c.on_publish(1, false, false, size);
        }
        let mut t = MessageTotals::default();
        t.add(&c);
        assert_eq!(t.size_buckets, [2, 1, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(t.size_sum, 201_000_201);
        assert_eq!(t.routed, 5);
    }
}
