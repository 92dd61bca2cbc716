//! AMQP channels and consumers as the registry lists them: counters the channel bumps (relaxed
//! atomics, one per publish, delivery or ack), and the consumer list, changed only by
//! `basic.consume` / `basic.cancel`.

use super::ProtocolCounters;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// What a channel lets the registry read (its unacked count lives with its deliveries).
pub(crate) trait ChannelView: Send + Sync {
    /// The channel's counters.
    fn stats(&self) -> &ChannelStats;
    /// Messages delivered and not yet acknowledged.
    fn unacked(&self) -> u32;
}

/// The counters and settings of one channel.
#[derive(Debug)]
pub struct ChannelStats {
    /// Channel number.
    pub number: u16,
    /// `basic.publish` received (`message_stats.publish`).
    pub publish: AtomicU64,
    /// Publisher confirms sent (`confirm`).
    pub confirm: AtomicU64,
    /// Messages delivered to consumers (`deliver` + `deliver_no_ack`).
    pub deliver: AtomicU64,
    /// Of those, to `no_ack` consumers (`deliver_no_ack`).
    pub deliver_no_ack: AtomicU64,
    /// Messages taken by `basic.get` (`get` + `get_no_ack`).
    pub get: AtomicU64,
    /// Of those, with `no_ack` (`get_no_ack`).
    pub get_no_ack: AtomicU64,
    /// `basic.get`s answered `get-empty` (`get_empty`).
    pub get_empty: AtomicU64,
    /// Of those, redelivered (`redeliver`).
    pub redeliver: AtomicU64,
    /// Messages acknowledged by the client (`ack`).
    pub ack: AtomicU64,
    /// Mandatory messages returned unroutable (`return_unroutable`).
    pub return_unroutable: AtomicU64,
    /// Messages routed nowhere and dropped (`drop_unroutable`).
    pub drop_unroutable: AtomicU64,
    /// `basic.qos` prefetch for new consumers (`prefetch_count`).
    pub prefetch: AtomicU32,
    /// `basic.qos global=true` (`global_prefetch_count`).
    pub global_prefetch: AtomicU32,
    /// `confirm.select` was sent.
    pub confirm_mode: AtomicBool,
    /// `tx.select` was sent.
    pub transactional: AtomicBool,
    consumers: Mutex<Vec<ConsumerEntry>>,
    /// The connection's message counters, bumped beside the channel's.
    counters: Arc<ProtocolCounters>,
}

#[derive(Debug, Clone)]
struct ConsumerEntry {
    tag: String,
    queue: String,
    ack_required: bool,
    exclusive: bool,
    prefetch: u32,
}

impl ChannelStats {
    /// Counters of a new channel.
    pub fn new(number: u16, counters: Arc<ProtocolCounters>) -> ChannelStats {
        ChannelStats {
            number,
            publish: AtomicU64::new(0),
            confirm: AtomicU64::new(0),
            deliver: AtomicU64::new(0),
            deliver_no_ack: AtomicU64::new(0),
            get: AtomicU64::new(0),
            get_no_ack: AtomicU64::new(0),
            get_empty: AtomicU64::new(0),
            redeliver: AtomicU64::new(0),
            ack: AtomicU64::new(0),
            return_unroutable: AtomicU64::new(0),
            drop_unroutable: AtomicU64::new(0),
            prefetch: AtomicU32::new(0),
            global_prefetch: AtomicU32::new(0),
            confirm_mode: AtomicBool::new(false),
            transactional: AtomicBool::new(false),
            consumers: Mutex::new(Vec::new()),
            counters,
        }
    }

    /// One more delivery (`get`: by `basic.get`; `no_ack`: no acknowledgement will come),
    /// and a redelivery if it is one.
    #[inline]
    pub fn count_delivery(&self, get: bool, no_ack: bool, redelivered: bool) {
        let (all, no_ack_counter) = if get {
            (&self.get, &self.get_no_ack)
        } else {
            (&self.deliver, &self.deliver_no_ack)
        };
        all.fetch_add(1, Ordering::Relaxed);
        if no_ack {
            no_ack_counter.fetch_add(1, Ordering::Relaxed);
        }
        if redelivered {
            self.redeliver.fetch_add(1, Ordering::Relaxed);
        }
        self.counters.on_deliver(get, no_ack, redelivered);
    }

    /// A `basic.get` found its queue empty.
    pub fn count_get_empty(&self) {
        self.get_empty.fetch_add(1, Ordering::Relaxed);
        self.counters.get_empty.fetch_add(1, Ordering::Relaxed);
    }

    /// A `basic.publish` of `size` body bytes reached `queues` queues (`returned`: it came
    /// back unroutable; `confirm`: the channel is in confirm mode).
    #[inline]
    pub fn count_publish(&self, queues: usize, returned: bool, confirm: bool, size: usize) {
        self.publish.fetch_add(1, Ordering::Relaxed);
        if returned {
            self.return_unroutable.fetch_add(1, Ordering::Relaxed);
        } else if queues == 0 {
            self.drop_unroutable.fetch_add(1, Ordering::Relaxed);
        }
        self.counters.on_publish(queues, returned, confirm, size);
    }

    /// `n` publishes were confirmed.
    #[inline]
    pub fn count_confirms(&self, n: u64) {
        self.confirm.fetch_add(n, Ordering::Relaxed);
        self.counters.confirmed.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` deliveries were acknowledged.
    #[inline]
    pub fn count_acks(&self, n: u64) {
        self.ack.fetch_add(n, Ordering::Relaxed);
        self.counters.acknowledged.fetch_add(n, Ordering::Relaxed);
    }

    /// `basic.consume` succeeded.
    pub fn add_consumer(
        &self,
        tag: &str,
        queue: &str,
        ack_required: bool,
        exclusive: bool,
        prefetch: u32,
    ) {
        self.consumers.lock().push(ConsumerEntry {
            tag: tag.to_string(),
            queue: queue.to_string(),
            ack_required,
            exclusive,
            prefetch,
        });
    }

    /// The consumer `tag` is gone.
    pub fn remove_consumer(&self, tag: &str) {
        self.consumers.lock().retain(|c| c.tag != tag);
    }

    /// How many consumers the channel has.
    pub fn consumer_count(&self) -> u32 {
        self.consumers.lock().len() as u32
    }

    pub(crate) fn consumers_into(
        &self,
        connection: &str,
        vhost: &str,
        out: &mut Vec<ConsumerInfo>,
    ) {
        for c in self.consumers.lock().iter() {
            out.push(ConsumerInfo {
                connection: connection.to_string(),
                channel: self.number,
                vhost: vhost.to_string(),
                queue: c.queue.clone(),
                consumer_tag: c.tag.clone(),
                ack_required: c.ack_required,
                exclusive: c.exclusive,
                prefetch_count: c.prefetch,
            });
        }
    }
}

/// A snapshot of one channel (`/api/channels`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChannelInfo {
    /// The connection's name.
    pub connection: String,
    /// Channel number.
    pub number: u16,
    /// `"<connection name> (<number>)"`, RabbitMQ's channel name.
    pub name: String,
    /// Who owns the connection.
    pub user: String,
    /// Its vhost.
    pub vhost: String,
    /// Consumers on the channel.
    pub consumer_count: u32,
    /// Unacknowledged deliveries.
    pub messages_unacknowledged: u32,
    /// Prefetch for new consumers.
    pub prefetch_count: u32,
    /// Channel-wide prefetch.
    pub global_prefetch_count: u32,
    /// In confirm mode.
    pub confirm: bool,
    /// In a transaction.
    pub transactional: bool,
    /// Messages published.
    pub publish: u64,
    /// Confirms sent.
    pub confirmed: u64,
    /// Deliveries to consumers.
    pub deliver: u64,
    /// Of those, to `no_ack` consumers.
    pub deliver_no_ack: u64,
    /// Messages fetched with `basic.get`.
    pub get: u64,
    /// Of those, with `no_ack`.
    pub get_no_ack: u64,
    /// `basic.get`s that found the queue empty.
    pub get_empty: u64,
    /// Redeliveries.
    pub redeliver: u64,
    /// Acknowledgements.
    pub ack: u64,
    /// Mandatory messages returned.
    pub return_unroutable: u64,
    /// Messages routed nowhere and dropped.
    pub drop_unroutable: u64,
}

/// A snapshot of one consumer (`/api/consumers`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConsumerInfo {
    /// The connection's name.
    pub connection: String,
    /// The channel number.
    pub channel: u16,
    /// The vhost.
    pub vhost: String,
    /// The queue consumed.
    pub queue: String,
    /// The consumer tag.
    pub consumer_tag: String,
    /// Not `no_ack`.
    pub ack_required: bool,
    /// Exclusive consumer.
    pub exclusive: bool,
    /// Its prefetch.
    pub prefetch_count: u32,
}

pub(crate) fn info(
    view: &dyn ChannelView,
    connection: &str,
    user: &str,
    vhost: &str,
) -> ChannelInfo {
    let s = view.stats();
    let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
    ChannelInfo {
        connection: connection.to_string(),
        number: s.number,
        name: format!("{connection} ({})", s.number),
        user: user.to_string(),
        vhost: vhost.to_string(),
        consumer_count: s.consumer_count(),
        messages_unacknowledged: view.unacked(),
        prefetch_count: s.prefetch.load(Ordering::Relaxed),
        global_prefetch_count: s.global_prefetch.load(Ordering::Relaxed),
        confirm: s.confirm_mode.load(Ordering::Relaxed),
        transactional: s.transactional.load(Ordering::Relaxed),
        publish: r(&s.publish),
        confirmed: r(&s.confirm),
        deliver: r(&s.deliver),
        deliver_no_ack: r(&s.deliver_no_ack),
        get: r(&s.get),
        get_no_ack: r(&s.get_no_ack),
        get_empty: r(&s.get_empty),
        redeliver: r(&s.redeliver),
        ack: r(&s.ack),
        return_unroutable: r(&s.return_unroutable),
        drop_unroutable: r(&s.drop_unroutable),
    }
}
