//! The broker in a cluster: its durable metadata through the cluster's Raft group
//! (`pigeon-cluster`, docs/clustering.md).
//!
//! Without a `[cluster]` table none of this runs and nothing changes. With one, [`start`] starts
//! the node with the broker as its state machine (`apply.rs`), and the paths that change
//! replicated metadata (AMQP topology methods on durable entities, the management API's users,
//! vhosts, permissions...) build a [`MetaCommand`] and [`write`] it instead of changing the broker
//! directly: the change is made on every node, this one included, from the committed log, and
//! acknowledged to the client once a majority has it. Exclusive and non-durable entities stay
//! on their connection's node and never enter the log.

mod apply;
#[cfg(test)]
mod apply_tests;
mod auto_delete;
// Read barrier (issue 13 item 2, helper readwrites): a missed lookup catches up first.
pub(crate) mod barrier;
pub(crate) mod commands;
pub(crate) mod forward;
pub(crate) mod homes;
pub(crate) mod join;
pub(crate) mod maintenance;
pub(crate) mod mqtt;
pub(crate) mod mqtt_failover;
pub(crate) mod mqtt_retained;
pub(crate) mod mqtt_sessions;
pub(crate) mod mqtt_shared;
// A share group moving to another owner (helper sharemove).
pub(crate) mod mqtt_shared_move;
pub(crate) mod quorum;
pub(crate) mod remote_consumer;
pub(crate) mod remote_queue;
pub(crate) mod seed;
#[cfg(test)]
mod seed_tests;
mod snapshot;

use pigeon_broker::Broker;
use pigeon_cluster::{Cluster, ClusterConfig, ClusterError, MetaCommand, MetaResponse};
use pigeon_store::Store;
use std::sync::Arc;

/// Starts this node of the cluster, with the broker as the metadata group's state machine.
pub(crate) async fn start(
    config: ClusterConfig,
    broker: &Arc<Broker>,
    store: Option<&Arc<Store>>,
) -> Result<Cluster, crate::ServerError> {
    let Some(store) = store else {
        return Err(crate::ServerError::Config(
            "[cluster] needs a data directory (data_dir): the metadata group keeps its log there"
                .into(),
        ));
    };
    let hooks = auto_delete::Hooks::default();
    let name = config.node_name.to_string();
    // Classic queues across nodes: the homes recorded before the restart first, so that the
    // log's replay and the first publishes find them.
    let forwarder = forward::Forwarder::new(name.clone(), Arc::clone(broker), Arc::clone(store));
    forwarder.recover();
    // MQTT persistent sessions' subscriptions as the group had them (cluster/mqtt_sessions.rs).
    forwarder.mqtt_recover();
    // Retained messages' versions and tombstones (cluster/mqtt_retained.rs).
    forwarder.retained_recover();
    let quorum = quorum::QuorumRegistry::new(broker);
    // The quorum queues' members are recorded in the store (quorum/membership.rs).
    quorum.set_store(store, &name);
    let applier = apply::BrokerApplier {
        broker: Arc::clone(broker),
        store: Arc::clone(store),
        auto_delete: hooks.clone(),
        forwarder: Arc::clone(&forwarder),
        quorum: Arc::clone(&quorum),
    };
    let cluster = Cluster::start(config, applier)
        .await
        .map_err(|e| crate::ServerError::Cluster(e.to_string()))?;
    hooks.start(&cluster, broker);
    forwarder.attach(&cluster);
    quorum.set_cluster(cluster.clone());
    // x-expires on quorum queues, decided by each group's leader (helper quorumrest).
    quorum::expiry::spawn(&quorum, quorum::expiry::Deleter::Cluster(cluster.clone()));
    tracing::info!(node = %name, "cluster node started: metadata changes go through the cluster");
    Ok(cluster)
}

/// Why a replicated change was not made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// Committed, and refused by the broker's rules on every node (an inequivalent redeclare,
    /// a missing vhost...), with the protocol's reply code.
    #[error("{text}")]
    Refused {
        /// AMQP reply code (404, 406...) or 400 for a management change.
        code: u16,
        /// The reason.
        text: String,
    },
    /// Not committed: this node cannot reach a majority (or no leader is elected yet).
    #[error(transparent)]
    Unavailable(#[from] ClusterError),
}

/// Proposes `command` and waits until a majority has committed it and this node has applied it.
pub(crate) async fn write(cluster: &Cluster, command: MetaCommand) -> Result<(), WriteError> {
    match cluster.write(command).await {
        Ok(MetaResponse::Done) => Ok(()),
        Ok(MetaResponse::Refused { code, text }) => Err(WriteError::Refused { code, text }),
        Err(e) => {
            tracing::warn!(error = %e, "cluster: a metadata change was not committed");
            Err(WriteError::Unavailable(e))
        }
    }
}
