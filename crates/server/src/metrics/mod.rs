//! Prometheus metrics, as RabbitMQ's rabbitmq_prometheus plugin serves them on port 15692:
//! `/metrics` (aggregated) and `/metrics/per-object` (a sample per queue, connection and
//! channel).
//!
//! - `endpoint.rs` serves them (axum) and streams the body;
//! - `exposition.rs` writes the text format in chunks;
//! - `rabbitmq.rs` has the families RabbitMQ has, with its names (prefix `rabbitmq` by
//!   default, `prometheus_prefix`), so that its Grafana dashboards work; `channels.rs` its
//!   per-connection and per-channel families;
//! - `pigeon.rs` has what RabbitMQ lacks, always named `pigeon_...`;
//! - `process.rs` reads the process's figures;
//! - `cluster.rs` has the cluster's families (this node's view of it: `/metrics` stays per
//!   node, as RabbitMQ's).
//!
//! Every value is read when scraped: gauges from the registry and the broker, counters from
//! the relaxed atomics the objects own (connections their message counters, queues theirs).
//! The queues, connections and channels are read once (one short lock each) into lists, then
//! each family is written from them: a scrape's memory is those lists and a few chunks of text.

mod channels;
mod cluster;
pub mod endpoint;
pub mod exposition;
mod pigeon;
mod process;
mod rabbitmq;

use crate::registry::MessageTotals;
use crate::ServerState;
use exposition::Exposition;
use pigeon_broker::{Queue, QueueStats, VHost};
use std::sync::Arc;

/// One queue as a scrape sees it.
struct QueueRow {
    /// Index into [`Scrape::vhosts`].
    vhost: usize,
    queue: Arc<Queue>,
    stats: QueueStats,
}

/// What one scrape reads before writing.
struct Scrape {
    per_object: bool,
    vhosts: Vec<Arc<VHost>>,
    rows: Vec<QueueRow>,
    /// Message counters per protocol, in `Protocol::ALL`'s order.
    totals: [MessageTotals; crate::registry::PROTOCOLS],
    connections: Vec<channels::ConnectionRow>,
    channels: Vec<channels::ChannelRow>,
}

impl Scrape {
    fn read(state: &ServerState, per_object: bool) -> Scrape {
        let vhosts = state.broker.vhosts();
        let mut rows = Vec::new();
        for (i, vhost) in vhosts.iter().enumerate() {
            for queue in vhost.queue_list() {
                let stats = queue.stats();
                rows.push(QueueRow {
                    vhost: i,
                    queue,
                    stats,
                });
            }
        }
        let (connections, channels) = channels::read(&state.registry);
        Scrape {
            per_object,
            vhosts,
            rows,
            totals: state.registry.message_totals(),
            connections,
            channels,
        }
    }
}

/// Writes every family into `e`; `per_object` labels queues instead of summing them.
pub(crate) fn write_all(e: &mut Exposition, state: &ServerState, per_object: bool) {
    write_with(e, state, per_object, None);
}

/// [`write_all`], with the count of unreachable peers probed before the scrape
/// (`cluster::unreachable_peers`).
pub(crate) fn write_with(
    e: &mut Exposition,
    state: &ServerState,
    per_object: bool,
    unreachable: Option<u64>,
) {
    let s = Scrape::read(state, per_object);
    rabbitmq::identity(e, state, per_object);
    rabbitmq::churn_and_totals(e, state, &s);
    rabbitmq::queues(e, &s);
    channels::connections(e, &s.connections, per_object);
    channels::channels(e, &s.channels, per_object);
    if e.gone() {
        return;
    }
    rabbitmq::global(e, state, &s);
    rabbitmq::node(e, state);
    pigeon::mqtt(e, state, &s);
    pigeon::queues(e, &s);
    pigeon::store(e, state);
    pigeon::alarms(e, state);
    cluster::write(e, state, unreachable);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_carry_the_prefix() {
        let state = crate::tests_support::state();
        let mut e = Exposition::new("rabbitmq");
        write_all(&mut e, &state, false);
        let text = e.into_string();
        assert!(text.contains("# TYPE rabbitmq_connections gauge\nrabbitmq_connections 0\n"));
        assert!(text.contains("rabbitmq_global_messages_received_total{protocol=\"amqp091\"} 0"));
        assert!(text.contains("rabbitmq_endpoint=\"aggregated\""));
        assert!(text
            .contains("rabbitmq_message_size_bytes_bucket{protocol=\"amqp091\",le=\"1e+06\"} 0"));
    }
}
