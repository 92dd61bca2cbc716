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
//! - **A node back after its session moved hands the session's messages over.** A persistent
//!   session this node recovered at its start, which no client took since, is stale once
//!   another node announces the same session queue (its client reconnected there while this
//!   node was down): it ends here and its queued messages are forwarded to the session's
//!   queue on that node ([`Forwarder::yield_dormant`]).
//! - **A session's end deletes its replicated queue through the metadata group.** When a
//!   persistent session whose queue is a quorum queue ends (a clean start, its expiry, a
//!   discard), not moving to another node, its node proposes a `DeleteQueue`
//!   ([`Forwarder::session_ended`]): every node forgets the queue and stops its member. A
//!   CONNECT of the same client id waits for it, on that node or (through the takeover) on
//!   another, and a clean start deletes a copy still here ([`session_queue_at_connect`]).

use super::forward::{Forwarded, Forwarder, Item, Then};
use super::mqtt::{KnownQueues, QueueSubs};
use crate::ServerState;
use parking_lot::Mutex;
use pigeon_broker::queue::quorum::ReplicaConfirm;
use pigeon_broker::{Destination, RemoteConfirm, Table, VHost, Value};
use pigeon_cluster::MetaCommand;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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
        self.yield_dormant(from, subs);
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

impl Forwarder {
    /// Makes again, on this node's copy of the replicated queue `key`, the bindings other
    /// nodes' entries for it name (besides `from`'s, just applied): removing one node's entry
    /// (its session ended or moved) unbinds its patterns from the one copy, which another
    /// node's entry may still need. Normally there is no other entry: a few lookups.
    pub(super) fn rebind_others(
        &self,
        known: &HashMap<String, KnownQueues>,
        from: &str,
        key: &(String, String),
    ) {
        for (node, queues) in known {
            if node == from {
                continue;
            }
            let Some(k) = queues.get(key).filter(|k| k.proxy.is_none()) else {
                continue;
            };
            let Some(v) = self.broker.vhost(&key.0) else {
                continue;
            };
            let Ok(q) = v.queue(&key.1) else {
                continue;
            };
            for pattern in &k.patterns {
                let dest = Destination::Queue(Arc::clone(&q));
                let _ = v.bind(&k.exchange, dest, pattern, Table::new());
            }
        }
    }

    /// `to` announced `subs`, a persistent session's queue: if the session is one this node
    /// recovered at its start and no client took since (its node was down while its client
    /// reconnected elsewhere), it is the stale copy: it ends here, as a takeover would end it,
    /// and its queued messages (those in flight first) are forwarded to the session's queue
    /// on `to`, where the client gets them. The metadata group keeps the subscriptions (the
    /// session goes on, on `to`).
    pub(super) fn yield_dormant(&self, to: &str, subs: &QueueSubs) {
        if subs.patterns.is_empty() || !subs.durable {
            return;
        }
        let Some(client_id) = subs.queue.strip_prefix("mqtt-session-") else {
            return;
        };
        let Some(server) = self.mqtt_server() else {
            return;
        };
        let key = (subs.vhost.clone(), client_id.to_string());
        let Some(session) = server.mqtt.registry.get(&key.0, &key.1) else {
            return;
        };
        {
            let mut dormant = self.mqtt.dormant.lock();
            let untouched = dormant.get(&key).is_some_and(|g| {
                *g == session.generation.load(Ordering::SeqCst)
                    && session.core.lock().attached.is_none()
            });
            if !untouched {
                return;
            }
            dormant.remove(&key);
        }
        let Some(f) = self.this.upgrade() else {
            return;
        };
        let (to, queue) = (to.to_string(), subs.queue.clone());
        tokio::spawn(async move {
            f.mqtt.handing_over.lock().insert(key.clone());
            let state = crate::mqtt::cluster::hand_over(&server, &key.0, &key.1, false).await;
            f.mqtt.handing_over.lock().remove(&key);
            let Some(state) = state else {
                return;
            };
            let count = state.messages.len();
            tracing::info!(client_id = %key.1, node = %to, count, "MQTT session moved while this node was down: its queued messages handed to its node");
            let done = Arc::new(RemoteConfirm::default());
            for record in state.messages {
                done.add();
                let item = Item::Publish(Forwarded {
                    vhost: key.0.clone(),
                    queue: queue.clone(),
                    record: record.into_vec(),
                });
                f.push(&to, item, Then::Confirm(Some(Arc::clone(&done))));
            }
            let check = Arc::clone(&done);
            let client_id = key.1;
            done.on_done(Arc::new(move || {
                if !check.ok() {
                    tracing::warn!(%client_id, "MQTT session's queued messages not all taken by its new node");
                }
            }));
        });
    }
}

/// At start, after the persistent sessions were recovered (`mqtt/persist.rs`): each with its
/// CONNECT count, so that one no client took since is known ([`Forwarder::yield_dormant`]).
pub(super) fn note_dormant(f: &Forwarder, server: &ServerState) {
    let mut dormant = f.mqtt.dormant.lock();
    for s in server.mqtt.registry.all(None) {
        let key = (s.vhost.name().to_string(), s.client_id.to_string());
        dormant.insert(key, s.generation.load(Ordering::SeqCst));
    }
}

/// Why a replicated session queue could not be declared.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionQueueError {
    /// Not committed (no majority) or refused by the group.
    #[error("the session's quorum queue was not declared through the cluster: {0}")]
    NotDeclared(#[from] super::WriteError),
    /// A clean start's deletion of the previous session's quorum queue was not committed.
    #[error("the previous session's quorum queue was not deleted through the cluster: {0}")]
    NotDeleted(super::WriteError),
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

/// At the CONNECT of a session on a clustered node, once the connection holds the session
/// (and a clean start discarded what this node had of it):
/// - a deletion of the client id's quorum session queue this node proposed (its previous
///   session ended here: [`session_ended`]) is waited for, so that the new session neither
///   finds the old queue nor loses its own to that deletion;
/// - a clean start: a quorum session queue of the client id still here (its session ended on
///   another node, whose deletion this node has not applied yet, or one not committed) is
///   deleted through the metadata group now, and the CONNACK waits for it (a clean session's
///   queue has the same name); refused without a majority, as a declare would be;
/// - a `persistent` session with `mqtt_durable_queue_type = quorum`: its queue
///   (`mqtt-session-<client id>`) declared through the metadata group unless the node has it
///   ([`declare_session_queue`]), with the arguments the SUBSCRIBE's declare of it gives
///   (`mqtt/handlers.rs`, `subscription_queue`: they must be equivalent).
pub(crate) async fn session_queue_at_connect(
    server: &ServerState,
    vhost: &str,
    client_id: &str,
    clean_start: bool,
    persistent: bool,
) -> Result<(), SessionQueueError> {
    let Some(cluster) = &server.cluster else {
        return Ok(());
    };
    if let Some(f) = Forwarder::of(cluster) {
        f.ending_settled(vhost, client_id).await;
    }
    let name = format!("mqtt-session-{client_id}");
    let replicated = || {
        server
            .broker
            .vhost(vhost)
            .and_then(|v| v.queue(&name).ok())
            .is_some_and(|q| q.is_quorum())
    };
    if clean_start && replicated() {
        let command = MetaCommand::DeleteQueue {
            vhost: vhost.to_string(),
            name: name.clone(),
        };
        match super::write(cluster, command).await {
            // 404: deleted by an earlier deletion (the session's node's), applied before it.
            Ok(()) | Err(super::WriteError::Refused { code: 404, .. }) => {}
            Err(e) => return Err(SessionQueueError::NotDeleted(e)),
        }
    }
    let config = &server.config;
    if !persistent
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

/// This node's deletions of ended sessions' quorum queues under way, by (vhost, client id):
/// true once written (committed and applied here, or failed).
pub(super) type Ending = Mutex<HashMap<(String, String), watch::Receiver<bool>>>;

/// How long a CONNECT (or a peer's takeover) waits for such a deletion: as long as a write
/// waits for its commit, after which it has failed anyway.
const ENDING_WAIT: Duration = Duration::from_secs(15);

impl Forwarder {
    /// `client_id`'s session ended here and is not moving to another node (a clean start, its
    /// expiry, a discard through the management API): its quorum queue, which every node has
    /// and `Session::discard` left in place on a clustered node, is deleted through the
    /// metadata group, in order after this node's earlier proposals (the session's
    /// subscriptions and their `MqttDropSession`), so that every node forgets it and stops its
    /// member of the queue's group. A CONNECT of the client id here
    /// ([`session_queue_at_connect`]), or a peer's takeover of it, waits for the deletion.
    pub(crate) fn session_ended(&self, vhost: &VHost, client_id: &str) {
        let name = format!("mqtt-session-{client_id}");
        if !vhost.queue(&name).is_ok_and(|q| q.is_quorum()) {
            return;
        }
        let key = (vhost.name().to_string(), client_id.to_string());
        let (tx, rx) = watch::channel(false);
        self.mqtt.ending.lock().insert(key.clone(), rx.clone());
        let done = ReplicaConfirm::new();
        let this = self.this.clone();
        done.on_done(Box::new(move || {
            let _ = tx.send(true);
            if let Some(f) = this.upgrade() {
                let mut ending = f.mqtt.ending.lock();
                if ending.get(&key).is_some_and(|r| r.same_channel(&rx)) {
                    ending.remove(&key);
                }
            }
        }));
        tracing::info!(queue = %name, "MQTT session ended: its quorum queue is deleted through the cluster");
        let command = MetaCommand::DeleteQueue {
            vhost: vhost.name().to_string(),
            name,
        };
        self.mqtt_propose(command, Some(done));
    }

    /// Waits until this node's deletion of `client_id`'s session queue, if one is under way,
    /// is written (or [`ENDING_WAIT`] passed).
    pub(crate) async fn ending_settled(&self, vhost: &str, client_id: &str) {
        let key = (vhost.to_string(), client_id.to_string());
        let pending = self.mqtt.ending.lock().get(&key).cloned();
        if let Some(mut rx) = pending {
            let _ = tokio::time::timeout(ENDING_WAIT, rx.wait_for(|written| *written)).await;
        }
    }

    /// A CONNECT through this node found no node holding `client_id`'s session: before it
    /// takes what the metadata group has of it (the subscriptions, the quorum queue), this
    /// node catches up with the group's leader if it has anything of it and no session of its
    /// own: the session may have ended on another node, which wrote its end through the group
    /// before it answered the takeover, and which this node may not have applied yet.
    pub(super) async fn catch_up_before_taking(
        &self,
        cluster: &pigeon_cluster::Cluster,
        vhost: &str,
        client_id: &str,
    ) {
        let Some(server) = self.mqtt_server() else {
            return;
        };
        if server.mqtt.registry.get(vhost, client_id).is_some() {
            return;
        }
        let name = format!("mqtt-session-{client_id}");
        let has_queue = self
            .broker
            .vhost(vhost)
            .is_some_and(|v| v.queue(&name).is_ok_and(|q| q.is_quorum()));
        if has_queue || self.mqtt_replicated_has(vhost, client_id) {
            super::barrier::catch_up(cluster).await;
        }
    }
}
