//! Which counters each object has, in the order its ring keeps them, read live from the
//! object. The same functions feed the sampler and the live counts of a response.
//!
//! Pigeon's counters count every delivery under `deliver` / `get` and the `no_ack` ones again
//! apart; RabbitMQ's `deliver` and `get` are the acknowledged ones only, so the split is made
//! here (`rabbit_mgmt_stats:format_rate`, `channel_stats_deliver_stats`).

use crate::registry::{ChannelInfo, ConnectionInfo, Registry};
use pigeon_broker::{Exchange, QueueStats, VHost};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

// The message counters (overview, channels, and the first fields of vhosts and queues).
pub(crate) const PUBLISH: usize = 0;
pub(crate) const CONFIRM: usize = 1;
pub(crate) const RETURN_UNROUTABLE: usize = 2;
pub(crate) const DROP_UNROUTABLE: usize = 3;
pub(crate) const DELIVER: usize = 4;
pub(crate) const DELIVER_NO_ACK: usize = 5;
pub(crate) const GET: usize = 6;
pub(crate) const GET_NO_ACK: usize = 7;
pub(crate) const REDELIVER: usize = 8;
pub(crate) const ACK: usize = 9;
pub(crate) const GET_EMPTY: usize = 10;
/// Message counters.
pub(crate) const MSG: usize = 11;
/// `deliver_get`: every way a message left for a consumer.
pub(crate) const DELIVER_GET: [usize; 4] = [DELIVER, DELIVER_NO_ACK, GET, GET_NO_ACK];

// Queue lengths (queues: after the message counters; overview `queue_totals`: alone).
pub(crate) const MESSAGES: usize = MSG;
pub(crate) const READY: usize = MSG + 1;
pub(crate) const UNACKED: usize = MSG + 2;
/// Message counters and lengths.
pub(crate) const QUEUE: usize = MSG + 3;
/// Where the lengths are in a vhost's (and a queue's) values.
pub(crate) const LENGTHS_IN_VHOST: [usize; 3] = [MESSAGES, READY, UNACKED];
/// `queue_totals`: messages, ready, unacked.
pub(crate) const TOTALS: usize = 3;

// Vhosts: message counters, lengths, then the bytes of their connections.
pub(crate) const RECV_OCT_IN_VHOST: usize = QUEUE;
pub(crate) const SEND_OCT_IN_VHOST: usize = QUEUE + 1;
pub(crate) const VHOST: usize = QUEUE + 2;

// Exchanges.
pub(crate) const PUBLISH_IN: usize = 0;
pub(crate) const PUBLISH_OUT: usize = 1;
pub(crate) const EXCHANGE: usize = 2;

// Connections.
pub(crate) const RECV_OCT: usize = 0;
pub(crate) const SEND_OCT: usize = 1;
pub(crate) const CONNECTION: usize = 2;

/// Channels have the message counters.
pub(crate) const CHANNEL: usize = MSG;

/// `churn_rates`: connection_created, connection_closed, channel_created, channel_closed,
/// queue_declared, queue_created, queue_deleted.
pub(crate) const CHURN: usize = 7;

// The node (`node_coarse_stats`).
pub(crate) const MEM_USED: usize = 0;
pub(crate) const FD_USED: usize = 1;
pub(crate) const SOCKETS_USED: usize = 2;
pub(crate) const PROC_USED: usize = 3;
pub(crate) const DISK_FREE: usize = 4;
pub(crate) const NODE: usize = 5;

/// The message counters from totals that count `no_ack` deliveries twice.
#[allow(clippy::too_many_arguments)]
fn msg(
    publish: u64,
    confirm: u64,
    returned: u64,
    dropped: u64,
    deliver_all: u64,
    deliver_no_ack: u64,
    get_all: u64,
    get_no_ack: u64,
    redeliver: u64,
    ack: u64,
    get_empty: u64,
) -> [u64; MSG] {
    [
        publish,
        confirm,
        returned,
        dropped,
        deliver_all.saturating_sub(deliver_no_ack),
        deliver_no_ack,
        get_all.saturating_sub(get_no_ack),
        get_no_ack,
        redeliver,
        ack,
        get_empty,
    ]
}

/// The broker-wide counters, every protocol summed (live connections plus what closed ones
/// left behind: [`Registry::message_totals`]).
pub(crate) fn global(registry: &Registry) -> [u64; MSG] {
    let mut out = [0u64; MSG];
    for t in registry.message_totals() {
        let v = msg(
            t.received,
            t.confirmed,
            t.unroutable_returned,
            t.unroutable_dropped,
            t.delivered_consume_manual_ack + t.delivered_consume_auto_ack,
            t.delivered_consume_auto_ack,
            t.delivered_get_manual_ack + t.delivered_get_auto_ack,
            t.delivered_get_auto_ack,
            t.redelivered,
            t.acknowledged,
            t.get_empty,
        );
        for (o, x) in out.iter_mut().zip(v) {
            *o += x;
        }
    }
    out
}

/// A queue's counters and lengths (it counts no confirms nor unroutable messages).
pub(crate) fn queue(s: &QueueStats) -> [u64; QUEUE] {
    let c = &s.counters;
    let m = msg(
        c.publish,
        0,
        0,
        0,
        c.deliver,
        c.deliver_no_ack,
        c.get,
        c.get_no_ack,
        c.redeliver,
        c.ack,
        c.get_empty,
    );
    let mut out = [0u64; QUEUE];
    out[..MSG].copy_from_slice(&m);
    out[MESSAGES] = u64::from(s.ready) + u64::from(s.unacked);
    out[READY] = u64::from(s.ready);
    out[UNACKED] = u64::from(s.unacked);
    out
}

/// Adds a queue's deliveries and lengths to its vhost's values. (A vhost's `publish` comes
/// from its exchanges: a message published once to three queues is one publish.)
pub(crate) fn add_queue_to_vhost(vhost: &mut [u64; VHOST], queue: &[u64; QUEUE]) {
    for i in DELIVER..QUEUE {
        vhost[i] += queue[i];
    }
}

/// Adds the traffic of the vhost's connections.
pub(crate) fn add_connections_to_vhost(
    vhost: &mut [u64; VHOST],
    name: &str,
    connections: &[ConnectionInfo],
) {
    for c in connections.iter().filter(|c| c.vhost == name) {
        vhost[RECV_OCT_IN_VHOST] += c.recv_oct;
        vhost[SEND_OCT_IN_VHOST] += c.send_oct;
    }
}

/// Adds the bytes of a vhost's connections, from `Registry::traffic`.
pub(crate) fn add_traffic_to_vhost(
    vhost: &mut [u64; VHOST],
    name: &str,
    by_vhost: &HashMap<String, [u64; 2]>,
) {
    if let Some(t) = by_vhost.get(name) {
        vhost[RECV_OCT_IN_VHOST] += t[0];
        vhost[SEND_OCT_IN_VHOST] += t[1];
    }
}

/// A vhost's values now (its queues, exchanges and connections).
pub(crate) fn vhost(v: &VHost, connections: &[ConnectionInfo]) -> [u64; VHOST] {
    let mut out = [0u64; VHOST];
    for q in v.queues() {
        add_queue_to_vhost(&mut out, &queue(&q.stats()));
    }
    out[PUBLISH] += v.default_exchange().publish_in.load(Ordering::Relaxed);
    for x in v.exchanges() {
        out[PUBLISH] += x.publish_in.load(Ordering::Relaxed);
    }
    add_connections_to_vhost(&mut out, v.name(), connections);
    out
}

/// An exchange's counters.
pub(crate) fn exchange(x: &Exchange) -> [u64; EXCHANGE] {
    [
        x.publish_in.load(Ordering::Relaxed),
        x.publish_out.load(Ordering::Relaxed),
    ]
}

/// A connection's bytes.
pub(crate) fn connection(c: &ConnectionInfo) -> [u64; CONNECTION] {
    [c.recv_oct, c.send_oct]
}

/// A channel's counters.
pub(crate) fn channel(c: &ChannelInfo) -> [u64; CHANNEL] {
    msg(
        c.publish,
        c.confirmed,
        c.return_unroutable,
        c.drop_unroutable,
        c.deliver,
        c.deliver_no_ack,
        c.get,
        c.get_no_ack,
        c.redeliver,
        c.ack,
        c.get_empty,
    )
}

/// Queues declared, created and deleted in `v`.
pub(crate) fn queue_churn(v: &VHost) -> [u64; 3] {
    let t = &v.queue_totals;
    [
        t.declared.load(Ordering::Relaxed),
        t.created.load(Ordering::Relaxed),
        t.deleted.load(Ordering::Relaxed),
    ]
}

/// `churn_rates` values: the registry's connection and channel totals and the vhosts' queue
/// totals.
pub(crate) fn churn(registry: &Registry, queues: [u64; 3]) -> [u64; CHURN] {
    let r = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    [
        r(&registry.opened),
        r(&registry.closed),
        r(&registry.channels_opened),
        r(&registry.channels_closed),
        queues[0],
        queues[1],
        queues[2],
    ]
}
