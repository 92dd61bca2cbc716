//! RabbitMQ's per-connection and per-channel families (`connection_coarse_metrics`,
//! `connection_metrics`, `channel_metrics`, `channel_exchange_metrics`,
//! `channel_queue_metrics` in rabbitmq_prometheus's `prometheus_rabbitmq_core_metrics_collector`):
//! one sample per connection or channel on `/metrics/per-object`, their sum without labels on
//! `/metrics`, as RabbitMQ aggregates them.
//!
//! RabbitMQ keys all of them by a process id and labels them `channel="<0.1234.0>"`, the
//! connections' families too. Pigeon keeps the label name, so that queries written for
//! RabbitMQ select the same series, and gives it the name the management API lists the object
//! under: `127.0.0.1:50000 -> 127.0.0.1:5672` for a connection, `... (1)` for its channel 1.
//!
//! RabbitMQ also splits the channels' message counters by exchange or queue (`vhost`,
//! `exchange` / `queue` labels); Pigeon's channels count them per channel only, so their
//! samples carry `channel` alone and `sum by (channel)` reads the same in both brokers. Only
//! what the registry counts is served: not `connection_pending_packets`,
//! `channel_messages_unconfirmed`, `channel_messages_uncommitted`, `channel_acks_uncommitted`
//! (the connection task keeps those to itself) nor the Erlang process reductions.

use super::exposition::{Exposition, Kind, Owner};
use crate::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};

const R: Owner = Owner::RabbitMq;

/// One connection as a scrape reads it.
pub(super) struct ConnectionRow {
    name: String,
    recv_oct: u64,
    send_oct: u64,
    recv_cnt: u64,
    send_cnt: u64,
    channels: u64,
}

/// One AMQP channel as a scrape reads it.
pub(super) struct ChannelRow {
    name: String,
    consumers: u64,
    unacked: u64,
    prefetch: u64,
    global_prefetch: u64,
    publish: u64,
    confirm: u64,
    return_unroutable: u64,
    drop_unroutable: u64,
    get: u64,
    get_no_ack: u64,
    deliver: u64,
    deliver_no_ack: u64,
    redeliver: u64,
    ack: u64,
    get_empty: u64,
}

/// Reads every connection and channel (one short lock each, for its channel list).
pub(super) fn read(registry: &Registry) -> (Vec<ConnectionRow>, Vec<ChannelRow>) {
    let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
    let mut entries = registry.entries();
    entries.sort_by_key(|e| e.id);
    let mut conns = Vec::with_capacity(entries.len());
    let mut chans = Vec::new();
    for e in entries {
        let channels = e.with_channels(|c| c.to_vec());
        conns.push(ConnectionRow {
            name: e.name(),
            recv_oct: load(&e.recv_oct),
            send_oct: e.out.sent_oct(),
            recv_cnt: load(&e.recv_cnt),
            send_cnt: e.out.sent_cnt(),
            channels: channels.len() as u64,
        });
        for ch in channels {
            let s = ch.stats();
            // The no-ack part first: a delivery bumps the total before it, so the difference
            // below cannot go negative.
            let get_no_ack = load(&s.get_no_ack);
            let deliver_no_ack = load(&s.deliver_no_ack);
            chans.push(ChannelRow {
                name: format!("{} ({})", e.name(), s.number),
                consumers: u64::from(s.consumer_count()),
                unacked: u64::from(ch.unacked()),
                prefetch: u64::from(s.prefetch.load(Ordering::Relaxed)),
                global_prefetch: u64::from(s.global_prefetch.load(Ordering::Relaxed)),
                publish: load(&s.publish),
                confirm: load(&s.confirm),
                return_unroutable: load(&s.return_unroutable),
                drop_unroutable: load(&s.drop_unroutable),
                get: load(&s.get),
                get_no_ack,
                deliver: load(&s.deliver),
                deliver_no_ack,
                redeliver: load(&s.redeliver),
                ack: load(&s.ack),
                get_empty: load(&s.get_empty),
            });
        }
    }
    (conns, chans)
}

type ConnGet = fn(&ConnectionRow) -> u64;
type ChanGet = fn(&ChannelRow) -> u64;

/// Writes the connection families.
pub(super) fn connections(e: &mut Exposition, rows: &[ConnectionRow], per_object: bool) {
    let families: [(&str, Kind, &str, ConnGet); 5] = [
        (
            "connection_incoming_bytes_total",
            Kind::Counter,
            "Total number of bytes received on a connection",
            |c| c.recv_oct,
        ),
        (
            "connection_outgoing_bytes_total",
            Kind::Counter,
            "Total number of bytes sent on a connection",
            |c| c.send_oct,
        ),
        // RabbitMQ counts socket reads and writes (`recv_cnt`, `send_cnt`); Pigeon counts
        // frames (AMQP) or packets (MQTT) read, and writes to its outbound buffer, as the
        // management API's `recv_cnt` / `send_cnt` do.
        (
            "connection_incoming_packets_total",
            Kind::Counter,
            "Total number of packets received on a connection",
            |c| c.recv_cnt,
        ),
        (
            "connection_outgoing_packets_total",
            Kind::Counter,
            "Total number of packets sent on a connection",
            |c| c.send_cnt,
        ),
        (
            "connection_channels",
            Kind::Gauge,
            "Channels on a connection",
            |c| c.channels,
        ),
    ];
    for (name, kind, help, get) in families {
        let n = e.family(R, name, kind, help);
        if per_object {
            for c in rows {
                if e.gone() {
                    return;
                }
                e.sample(&n, &[("channel", &c.name)], get(c));
            }
        } else {
            e.sample(&n, &[], rows.iter().map(get).sum::<u64>());
        }
    }
}

/// Writes the channel families.
pub(super) fn channels(e: &mut Exposition, rows: &[ChannelRow], per_object: bool) {
    let families: [(&str, Kind, &str, ChanGet); 15] = [
        (
            "channel_consumers",
            Kind::Gauge,
            "Consumers on a channel",
            |c| c.consumers,
        ),
        (
            "channel_messages_unacked",
            Kind::Gauge,
            "Delivered but not yet acknowledged messages",
            |c| c.unacked,
        ),
        (
            "consumer_prefetch",
            Kind::Gauge,
            "Limit of unacknowledged messages for each consumer",
            |c| c.prefetch,
        ),
        (
            "channel_prefetch",
            Kind::Gauge,
            "Total limit of unacknowledged messages for all consumers on a channel",
            |c| c.global_prefetch,
        ),
        (
            "channel_messages_published_total",
            Kind::Counter,
            "Total number of messages published into an exchange on a channel",
            |c| c.publish,
        ),
        (
            "channel_messages_confirmed_total",
            Kind::Counter,
            "Total number of messages published into an exchange and confirmed on the channel",
            |c| c.confirm,
        ),
        (
            "channel_messages_unroutable_returned_total",
            Kind::Counter,
            "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable",
            |c| c.return_unroutable,
        ),
        (
            "channel_messages_unroutable_dropped_total",
            Kind::Counter,
            "Total number of messages published as non-mandatory into an exchange and dropped as unroutable",
            |c| c.drop_unroutable,
        ),
        (
            "channel_get_ack_total",
            Kind::Counter,
            "Total number of messages fetched with basic.get in manual acknowledgement mode",
            |c| c.get.saturating_sub(c.get_no_ack),
        ),
        (
            "channel_get_total",
            Kind::Counter,
            "Total number of messages fetched with basic.get in automatic acknowledgement mode",
            |c| c.get_no_ack,
        ),
        (
            "channel_messages_delivered_ack_total",
            Kind::Counter,
            "Total number of messages delivered to consumers in manual acknowledgement mode",
            |c| c.deliver.saturating_sub(c.deliver_no_ack),
        ),
        (
            "channel_messages_delivered_total",
            Kind::Counter,
            "Total number of messages delivered to consumers in automatic acknowledgement mode",
            |c| c.deliver_no_ack,
        ),
        (
            "channel_messages_redelivered_total",
            Kind::Counter,
            "Total number of messages redelivered to consumers",
            |c| c.redeliver,
        ),
        (
            "channel_messages_acked_total",
            Kind::Counter,
            "Total number of messages acknowledged by consumers",
            |c| c.ack,
        ),
        (
            "channel_get_empty_total",
            Kind::Counter,
            "Total number of times basic.get operations fetched no message",
            |c| c.get_empty,
        ),
    ];
    for (name, kind, help, get) in families {
        let n = e.family(R, name, kind, help);
        if per_object {
            for c in rows {
                if e.gone() {
                    return;
                }
                e.sample(&n, &[("channel", &c.name)], get(c));
            }
        } else {
            e.sample(&n, &[], rows.iter().map(get).sum::<u64>());
        }
    }
}
