//! MQTT across the cluster: a persistent session surviving the loss of its node (issue 13
//! item 5, docs/clustering.md "MQTT in a cluster").
//!
//! - **The session moved: the other nodes forget where it was.** A session queue announced by
//!   node B ([`QueueSubs`] with bindings) is that session's queue on B now: a client id has
//!   one session in the cluster. What this node kept for the same queue on another node (a
//!   proxy, or the bindings of its own copy of a replicated queue) is stale and goes
//!   ([`Forwarder::forget_moved`]). Without this, a session taken over from a lost node A
//!   (its client reconnected to B, which installed the subscriptions the metadata group has)
//!   kept A's proxy on every other node: a publish matching it was refused there while A was
//!   down (a persistent session's proxy refuses when its node is down), so a 3.1.1 publisher
//!   got no PUBACK at all and an MQTT 5 one a 0x80.
//! - **A replicated session queue is declared through the metadata group.** With
//!   `mqtt_durable_queue_type = quorum` (RabbitMQ's `mqtt.durable_queue_type`), a new
//!   persistent session's queue is a quorum queue: on a clustered node it is a replicated
//!   `DeclareQueue` (as an AMQP declare of one), so that every node has it and its group
//!   forms ([`declare_session_queue`]); the CONNECT waits for its commit.

use super::forward::Forwarder;
use super::mqtt::{KnownQueues, QueueSubs};
use crate::ServerState;
use pigeon_broker::{Table, Value};
use pigeon_cluster::MetaCommand;
use std::collections::HashMap;

impl Forwarder {
    /// `from` announced `subs`: if it has bindings, the session queue lives on `from`, and
    /// what this node knew of the same queue on any other node goes (its proxy removed, or
    /// the bindings of a replicated queue's copy undone before `from`'s are made).
    pub(super) fn forget_moved(
        &self,
        known: &mut HashMap<String, KnownQueues>,
        from: &str,
        subs: &QueueSubs,
    ) {
        if subs.patterns.is_empty() {
            return;
        }
        let key = (subs.vhost.clone(), subs.queue.clone());
        for (node, queues) in known.iter_mut() {
            if node == from {
                continue;
            }
            if let Some(k) = queues.remove(&key) {
                tracing::info!(queue = %subs.queue, %node, to = %from, "cluster: an MQTT session moved; its queue on the other node is no longer routed to");
                self.unbind_known(&key.0, &key.1, k);
            }
        }
    }
}

/// Why a replicated session queue could not be declared.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionQueueError {
    /// Not committed (no majority) or refused by the group.
    #[error("the session's quorum queue was not declared through the cluster: {0}")]
    NotDeclared(#[from] super::WriteError),
}

/// Declares the quorum queue `name` (a persistent session's, `arguments` with its
/// `x-queue-type: quorum`) through the metadata group, unless the node has it: every node
/// applies the declare and the members chosen here (`x-quorum-initial-group-size`, 3 by
/// default, this node first) form its group. Returns once this node has applied it. Nothing
/// to do without `[cluster]` (a single node's quorum queues are `quorum/single.rs`').
pub(crate) async fn declare_session_queue(
    server: &ServerState,
    vhost: &str,
    name: &str,
    arguments: &Table,
) -> Result<(), SessionQueueError> {
    let Some(cluster) = &server.cluster else {
        return Ok(());
    };
    let exists = server
        .broker
        .vhost(vhost)
        .is_some_and(|v| v.queue(name).is_ok());
    if exists {
        return Ok(());
    }
    let node = super::quorum::place(cluster, vhost, name, super::quorum::DEFAULT_GROUP_SIZE);
    let command = MetaCommand::DeclareQueue {
        vhost: vhost.to_string(),
        name: name.to_string(),
        kind: "quorum".to_string(),
        auto_delete: false,
        arguments: super::commands::to_json(arguments),
        node: node.join(","),
    };
    super::write(cluster, command).await?;
    Ok(())
}

/// At the CONNECT of a `persistent` session on a clustered node with `mqtt_durable_queue_type
/// = quorum`: its queue (`mqtt-session-<client id>`) declared through the metadata group
/// unless the node has it ([`declare_session_queue`]), with the arguments the SUBSCRIBE's
/// declare of it gives (`mqtt/handlers.rs`, `subscription_queue`: they must be equivalent).
pub(crate) async fn session_queue_at_connect(
    server: &ServerState,
    vhost: &str,
    client_id: &str,
    persistent: bool,
) -> Result<(), SessionQueueError> {
    let config = &server.config;
    if !persistent
        || server.cluster.is_none()
        || server.store.is_none()
        || config.mqtt_durable_queue_type.as_deref() != Some("quorum")
    {
        return Ok(());
    }
    let limit = i64::try_from(config.mqtt_max_queued_messages).unwrap_or(i64::MAX);
    let arguments = Table(vec![
        ("x-max-length".to_string(), Value::Int(limit)),
        (
            "x-queue-type".to_string(),
            Value::Str(bytes::Bytes::from_static(b"quorum")),
        ),
    ]);
    let name = format!("mqtt-session-{client_id}");
    declare_session_queue(server, vhost, &name, &arguments).await
}
