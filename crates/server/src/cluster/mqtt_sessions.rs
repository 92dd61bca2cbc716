//! MQTT persistent sessions' subscriptions through the metadata group (issue 13 item 2,
//! docs/clustering.md "MQTT in a cluster").
//!
//! A persistent session (clean session 0, or a session expiry) lives on the node of its
//! connection, and moves with its client (`mqtt.rs`, takeover). Its subscriptions are also
//! written through the Raft group: `MqttSubscribe` for each subscription made or changed,
//! `MqttUnsubscribe` for each removed, `MqttDropSession` when the session ends (a clean start,
//! its expiry, a discard; not when it moves to another node), so that every node knows them.
//! When the session's node is lost, its client reconnecting to another node finds its
//! subscriptions there (the takeover finds no node to hand the session over): with a
//! replicated session queue (a quorum queue, `mqtt_durable_queue_type = quorum`) the queued
//! QoS 1 messages too.
//!
//! Every node applies the commands to an in-memory map and to its metadata store (table
//! `mqtt_cluster_sessions`, in the applied batch's transaction); snapshots carry them. A
//! node's own proposals go through one task, in the order they are made; a SUBACK waits for
//! its subscriptions' commit (as RabbitMQ's waits for the session queue's binding in its
//! metadata store), an UNSUBACK or a session's end does not.

/// A proposal and what waits for it (a SUBACK's part, finished once written or failed).
type Proposal = (MetaCommand, Option<Arc<ReplicaConfirm>>);

/// Where this node's proposals wait for the task that writes them.
pub(crate) type Proposals = tokio::sync::mpsc::UnboundedSender<Proposal>;

use super::forward::Forwarder;
use super::mqtt::SubState;
use pigeon_broker::queue::quorum::ReplicaConfirm;
use pigeon_cluster::meta::Json;
use pigeon_cluster::{Cluster, MetaCommand, MetaResponse};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The metadata store's table: `vhost NUL client id NUL filter` -> the options (JSON).
const TABLE: &str = "mqtt_cluster_sessions";

/// By (vhost, client id), then filter (as the client wrote it): the options as JSON.
pub(crate) type Replicated = BTreeMap<(String, String), BTreeMap<String, String>>;

fn key(vhost: &str, client_id: &str, filter: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(vhost.len() + client_id.len() + filter.len() + 2);
    k.extend_from_slice(vhost.as_bytes());
    k.push(0);
    k.extend_from_slice(client_id.as_bytes());
    k.push(0);
    k.extend_from_slice(filter.as_bytes());
    k
}

/// A subscription's options as the command carries them.
pub(crate) fn options_json(s: &SubState) -> Json {
    Json(
        json!({
            "filter": s.filter,
            "pattern": s.pattern,
            "qos": s.qos,
            "no_local": s.no_local,
            "retain_as_published": s.retain_as_published,
            "retain_handling": s.retain_handling,
            "id": s.id,
        })
        .to_string(),
    )
}

fn sub_state(key: &str, options: &str) -> Option<SubState> {
    let v: serde_json::Value = serde_json::from_str(options).ok()?;
    Some(SubState {
        key: key.to_string(),
        filter: v["filter"].as_str()?.to_string(),
        pattern: v["pattern"].as_str()?.to_string(),
        qos: u8::try_from(v["qos"].as_u64()?).ok()?,
        no_local: v["no_local"].as_bool().unwrap_or(false),
        retain_as_published: v["retain_as_published"].as_bool().unwrap_or(false),
        retain_handling: v["retain_handling"]
            .as_u64()
            .and_then(|h| u8::try_from(h).ok())
            .unwrap_or(0),
        id: v["id"].as_u64().and_then(|i| u32::try_from(i).ok()),
    })
}

/// Starts the task that writes this node's proposals, in order.
pub(crate) fn start_proposer(f: &Forwarder, cluster: &Cluster) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Proposal>();
    if f.mqtt.proposals.set(tx).is_err() {
        return;
    }
    let cluster = cluster.clone();
    tokio::spawn(async move {
        while let Some((command, done)) = rx.recv().await {
            // A refusal or a timeout is logged by `write`; the session goes on here.
            let _ = super::write(&cluster, command).await;
            if let Some(d) = done {
                d.finish(true);
            }
        }
    });
}

impl Forwarder {
    /// Proposes `command` (in order after this node's earlier ones); `done` (a part opened
    /// for it) is finished once it is written, or failed.
    pub(crate) fn mqtt_propose(&self, command: MetaCommand, done: Option<Arc<ReplicaConfirm>>) {
        let sent = match self.mqtt.proposals.get() {
            Some(tx) => tx.send((command, done)).map_err(|e| e.0 .1),
            None => Err(done),
        };
        if let Err(Some(d)) = sent {
            d.finish(true);
        }
    }

    /// Whether the group knows a persistent session of `client_id`.
    pub(crate) fn mqtt_replicated_has(&self, vhost: &str, client_id: &str) -> bool {
        self.mqtt
            .replicated
            .lock()
            .contains_key(&(vhost.to_string(), client_id.to_string()))
    }

    /// The subscriptions the group knows of `client_id`'s persistent session.
    pub(crate) fn mqtt_replicated(&self, vhost: &str, client_id: &str) -> Vec<SubState> {
        let map = self.mqtt.replicated.lock();
        map.get(&(vhost.to_string(), client_id.to_string()))
            .map(|subs| {
                subs.iter()
                    .filter_map(|(filter, options)| sub_state(filter, options))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Applies a committed MQTT session command (every node, in log order).
    pub(crate) fn mqtt_apply(&self, command: &MetaCommand) -> MetaResponse {
        let mut map = self.mqtt.replicated.lock();
        let store = |r: Result<(), pigeon_store::StoreError>| {
            if let Err(e) = r {
                tracing::error!("cluster: cannot record an MQTT session's subscription: {e}");
            }
        };
        match command {
            MetaCommand::MqttSubscribe {
                vhost,
                client_id,
                filter,
                options,
            } => {
                map.entry((vhost.clone(), client_id.clone()))
                    .or_default()
                    .insert(filter.clone(), options.0.clone());
                store(self.store.meta_put(
                    TABLE,
                    &key(vhost, client_id, filter),
                    options.0.as_bytes(),
                ));
            }
            MetaCommand::MqttUnsubscribe {
                vhost,
                client_id,
                filter,
            } => {
                let k = (vhost.clone(), client_id.clone());
                if let Some(subs) = map.get_mut(&k) {
                    subs.remove(filter);
                    if subs.is_empty() {
                        map.remove(&k);
                    }
                }
                store(
                    self.store
                        .meta_delete(TABLE, &key(vhost, client_id, filter)),
                );
            }
            MetaCommand::MqttDropSession { vhost, client_id } => {
                let filters = map
                    .remove(&(vhost.clone(), client_id.clone()))
                    .unwrap_or_default();
                for filter in filters.keys() {
                    store(
                        self.store
                            .meta_delete(TABLE, &key(vhost, client_id, filter)),
                    );
                }
            }
            _ => {}
        }
        MetaResponse::Done
    }

    /// The commands that recreate the replicated sessions (for a snapshot).
    pub(crate) fn mqtt_snapshot(&self) -> Vec<MetaCommand> {
        let map = self.mqtt.replicated.lock();
        let mut out = Vec::new();
        for ((vhost, client_id), subs) in map.iter() {
            for (filter, options) in subs {
                out.push(MetaCommand::MqttSubscribe {
                    vhost: vhost.clone(),
                    client_id: client_id.clone(),
                    filter: filter.clone(),
                    options: Json(options.clone()),
                });
            }
        }
        out
    }

    /// Before a snapshot is restored: the sessions it names are applied again, those it does
    /// not name go.
    pub(crate) fn mqtt_restore_begin(&self) {
        let gone: Vec<MetaCommand> = self
            .mqtt
            .replicated
            .lock()
            .keys()
            .map(|(vhost, client_id)| MetaCommand::MqttDropSession {
                vhost: vhost.clone(),
                client_id: client_id.clone(),
            })
            .collect();
        for c in &gone {
            self.mqtt_apply(c);
        }
    }

    /// At start: the replicated sessions kept in the store.
    pub(crate) fn mqtt_recover(&self) {
        let entries = match self.store.meta_scan(TABLE) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("cluster: cannot read the MQTT sessions' subscriptions: {e}");
                return;
            }
        };
        let mut map = self.mqtt.replicated.lock();
        for (k, v) in entries {
            let mut parts = k.splitn(3, |b| *b == 0);
            let (Some(vhost), Some(client), Some(filter)) =
                (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            let (Ok(vhost), Ok(client), Ok(filter), Ok(options)) = (
                std::str::from_utf8(vhost),
                std::str::from_utf8(client),
                std::str::from_utf8(filter),
                String::from_utf8(v),
            ) else {
                continue;
            };
            map.entry((vhost.to_string(), client.to_string()))
                .or_default()
                .insert(filter.to_string(), options);
        }
    }
}
