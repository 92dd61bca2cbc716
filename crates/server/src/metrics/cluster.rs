//! The cluster's families (issue 13, item 6).
//!
//! `/metrics` stays per node, as rabbitmq_prometheus serves it: every node is a scrape target
//! and Prometheus aggregates across them, joining on `rabbitmq_identity_info`'s
//! `rabbitmq_node` and `rabbitmq_cluster` labels (RabbitMQ's Grafana dashboards sum by
//! `rabbitmq_cluster`). A node adding its peers' figures would count them twice once every
//! node is scraped, and a scrape would hang on a dead peer. What a node says about the cluster
//! is its own view of it:
//!
//! - `rabbitmq_unreachable_cluster_peers_count`: members that do not answer on the cluster link
//!   (`prometheus_rabbitmq_dynamic_collector.erl`, "Number of peers in the cluster the current
//!   node cannot reach."); 0 on a single node, as in RabbitMQ;
//! - the metadata group's Raft state under RabbitMQ 3.13's `ra_metrics` names
//!   (`prometheus_rabbitmq_core_metrics_collector.erl`): `rabbitmq_raft_term_total`,
//!   `rabbitmq_raft_log_snapshot_index`, `rabbitmq_raft_log_last_applied_index`,
//!   `rabbitmq_raft_log_last_written_index` (RabbitMQ sums its Ra servers in `/metrics`;
//!   openraft 0.9's metrics have no commit index, so `raft_log_commit_index` is not made up);
//! - Pigeon's `pigeon_cluster_members` (the members this node knows) and
//!   `pigeon_maintenance_being_drained` (1 while drained, `pigeon ctl drain`).

use super::exposition::{Exposition, Kind, Owner};
use crate::ServerState;
use std::time::Duration;

/// How long a scrape waits for a peer's answer before counting it unreachable.
const PROBE: Duration = Duration::from_millis(500);

/// The members that do not answer now (0 on a single node). Asked at once, before a scrape.
pub(crate) async fn unreachable_peers(state: &ServerState) -> u64 {
    let Some(cluster) = &state.cluster else {
        return 0;
    };
    let me = cluster.name().to_string();
    let members: Vec<_> = cluster
        .status()
        .members
        .into_iter()
        .filter(|m| m.name != me)
        .collect();
    let probes = members.iter().map(|m| cluster.probe(&m.addr, PROBE));
    let answers = futures_util::future::join_all(probes).await;
    answers.into_iter().filter(|up| !up).count() as u64
}

/// Writes the cluster's families; `unreachable`: [`unreachable_peers`], if it was asked.
pub(super) fn write(e: &mut Exposition, state: &ServerState, unreachable: Option<u64>) {
    e.single(
        Owner::RabbitMq,
        "unreachable_cluster_peers_count",
        Kind::Gauge,
        "Number of peers in the cluster the current node cannot reach.",
        unreachable.unwrap_or(0),
    );
    e.single(
        Owner::Pigeon,
        "maintenance_being_drained",
        Kind::Gauge,
        "1 while this node is in maintenance mode (pigeon ctl drain)",
        u64::from(state.maintenance.being_drained()),
    );
    let Some(cluster) = &state.cluster else {
        return;
    };
    let m = cluster.metrics().borrow().clone();
    e.single(
        Owner::Pigeon,
        "cluster_members",
        Kind::Gauge,
        "Members of the cluster this node knows of, itself included",
        m.membership_config.membership().nodes().count(),
    );
    let raft: [(&str, Kind, &str, u64); 4] = [
        (
            "raft_term_total",
            Kind::Counter,
            "Current Raft term number",
            m.current_term,
        ),
        (
            "raft_log_snapshot_index",
            Kind::Gauge,
            "Raft log snapshot index",
            m.snapshot.map_or(0, |l| l.index),
        ),
        (
            "raft_log_last_applied_index",
            Kind::Gauge,
            "Raft log last applied index",
            m.last_applied.map_or(0, |l| l.index),
        ),
        (
            "raft_log_last_written_index",
            Kind::Gauge,
            "Raft log last written index",
            m.last_log_index.unwrap_or(0),
        ),
    ];
    for (name, kind, help, v) in raft {
        e.single(Owner::RabbitMq, name, kind, help, v);
    }
}
