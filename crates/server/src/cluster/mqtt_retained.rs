//! Retained messages across the cluster with versions and tombstones (issue 13 item 5,
//! docs/clustering.md "MQTT in a cluster", "Retained messages").
//!
//! Every node keeps every retained message (a subscriber gets them at SUBSCRIBE from its own
//! node's store). Each change of a topic's retained message, a clearing included, gets a
//! *version*: the wall clock of the node where the retained PUBLISH arrived, in milliseconds
//! (never below its previous version of that topic plus one), and that node's name to break
//! ties. A node applies a change from a peer only when its version is newer than the one it has
//! for the topic, so the last retain per topic wins identically on every node whatever order
//! the changes arrive in (last-writer-wins registers, as Cassandra's cells or Riak's LWW). A
//! clearing is kept as a *tombstone*: the version with no message. A node that was down during
//! a clearing still has the old message; when it is back, the Sync of every peer sends it their
//! versions, and the tombstone, newer, clears it there, while its old message, older than the
//! tombstone, is ignored by the others.
//!
//! The versions (tombstones included) are kept in the metadata store (table
//! `mqtt_retained_versions`), so that a restart keeps them. A QoS 0 retained message is not
//! kept across a restart (as on one node): its version comes back without it, and a peer's
//! copy of the same version fills it in.
//!
//! EMQX replicates retained messages through its database (Mnesia), a transaction per retain;
//! a version per topic costs no consensus round and gives the same outcome once the nodes
//! have exchanged their changes. The limit is the clocks': a node whose clock is behind loses
//! to an earlier retain made on a node whose clock is ahead (by the skew at most).

use super::forward::{Forwarder, Item, Then};
use super::mqtt::{decode_message, encode_message, MqttItem};
use parking_lot::Mutex;
use pigeon_broker::Message;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The metadata store's table: `vhost NUL key` -> the version (`at` big-endian, then node).
const TABLE: &str = "mqtt_retained_versions";

/// When and where a topic's retained message was last set or cleared. Ordered by time, then
/// node name: the greatest wins. `Version::default()` is older than any change (a message
/// retained before the node was clustered).
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct Version {
    /// Milliseconds since the Unix epoch on the node that made the change.
    pub at: u64,
    /// That node.
    pub node: String,
}

/// One topic's retained message at a version (`MqttItem::RetainedVersion`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Retained {
    pub vhost: String,
    /// The routing key.
    pub key: String,
    pub version: Version,
    /// A message record; empty: cleared (a tombstone).
    #[serde(with = "serde_bytes")]
    pub record: Vec<u8>,
}

/// By (vhost, routing key): the version of what this node has for the topic.
pub(crate) type Versions = Mutex<HashMap<(String, String), Version>>;

fn store_key(vhost: &str, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(vhost.len() + key.len() + 1);
    k.extend_from_slice(vhost.as_bytes());
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Forwarder {
    fn keep_version(&self, vhost: &str, key: &str, version: &Version) {
        let mut value = version.at.to_be_bytes().to_vec();
        value.extend_from_slice(version.node.as_bytes());
        if let Err(e) = self.store.meta_put(TABLE, &store_key(vhost, key), &value) {
            tracing::error!("cluster: cannot record a retained message's version: {e}");
        }
    }

    /// A retained message set (`Some`) or cleared here: versioned, and sent to every peer
    /// that is up (one that is not gets it with the next Sync).
    pub(crate) fn retained_changed(&self, vhost: &str, key: &str, message: Option<&Message>) {
        let version = {
            let mut versions = self.mqtt.retained_versions.lock();
            let k = (vhost.to_string(), key.to_string());
            let at = versions
                .get(&k)
                .map_or(0, |v| v.at.saturating_add(1))
                .max(now_ms());
            let version = Version {
                at,
                node: self.me().to_string(),
            };
            versions.insert(k, version.clone());
            version
        };
        self.keep_version(vhost, key, &version);
        let record = message.map(|m| encode_message(m, "")).unwrap_or_default();
        for node in self.up_peers() {
            let item = Item::Mqtt(MqttItem::RetainedVersion(Retained {
                vhost: vhost.to_string(),
                key: key.to_string(),
                version: version.clone(),
                record: record.clone(),
            }));
            self.push(&node, item, Then::Nothing);
        }
    }

    /// A peer's retained message: applied if newer than what this node has for the topic (or
    /// the same change, which this node lost with a restart).
    pub(crate) fn retained_item(&self, r: Retained) -> bool {
        let Some(v) = self.broker.vhost(&r.vhost) else {
            return false;
        };
        let mut versions = self.mqtt.retained_versions.lock();
        let k = (r.vhost.clone(), r.key.clone());
        let local = versions.get(&k).cloned().unwrap_or_default();
        let newer = r.version > local
            || (r.version == local && !r.record.is_empty() && v.retained.get(&r.key).is_none());
        if !newer {
            return true;
        }
        if r.record.is_empty() {
            v.retained.set(&r.key, None);
        } else {
            let Some(m) = decode_message(r.record) else {
                return false;
            };
            v.retained.set(&r.key, Some(m));
        }
        self.keep_version(&r.vhost, &r.key, &r.version);
        versions.insert(k, r.version);
        true
    }

    /// Sends `node` every retained message of this node and every tombstone, with their
    /// versions (after a Sync): it keeps what is newer.
    pub(crate) fn retained_sync_to(&self, node: &str) {
        let versions = self.mqtt.retained_versions.lock().clone();
        let mut sent = std::collections::HashSet::new();
        for v in self.broker.vhosts() {
            for (key, m) in v.retained.entries() {
                let k = (v.name().to_string(), key);
                let version = versions.get(&k).cloned().unwrap_or_default();
                let item = Item::Mqtt(MqttItem::RetainedVersion(Retained {
                    vhost: k.0.clone(),
                    key: k.1.clone(),
                    version,
                    record: encode_message(&m, ""),
                }));
                self.push(node, item, Then::Nothing);
                sent.insert(k);
            }
        }
        for (k, version) in versions {
            if sent.contains(&k) {
                continue;
            }
            let item = Item::Mqtt(MqttItem::RetainedVersion(Retained {
                vhost: k.0,
                key: k.1,
                version,
                record: Vec::new(),
            }));
            self.push(node, item, Then::Nothing);
        }
    }

    /// At start: the versions kept in the store.
    pub(crate) fn retained_recover(&self) {
        let entries = match self.store.meta_scan(TABLE) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("cluster: cannot read the retained messages' versions: {e}");
                return;
            }
        };
        let mut versions = self.mqtt.retained_versions.lock();
        for (k, value) in entries {
            let mut parts = k.splitn(2, |b| *b == 0);
            let (Some(vhost), Some(key)) = (parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(vhost), Ok(key)) = (std::str::from_utf8(vhost), std::str::from_utf8(key))
            else {
                continue;
            };
            let Some((at, node)) = value.split_first_chunk::<8>() else {
                continue;
            };
            let Ok(node) = std::str::from_utf8(node) else {
                continue;
            };
            let version = Version {
                at: u64::from_be_bytes(*at),
                node: node.to_string(),
            };
            versions.insert((vhost.to_string(), key.to_string()), version);
        }
    }
}

/// How often the collector looks for tombstones past the bound: a quarter of it, within
/// these limits.
const COLLECT_EVERY_MIN: Duration = Duration::from_millis(100);
const COLLECT_EVERY_MAX: Duration = Duration::from_secs(60);

/// Starts collecting tombstones older than `grace_ms` (`mqtt_retained_tombstone_grace_ms`;
/// 0: never), every quarter of it.
pub(super) fn start_collector(f: &Arc<Forwarder>, grace_ms: u64) {
    if grace_ms == 0 {
        return;
    }
    let every = (Duration::from_millis(grace_ms) / 4).clamp(COLLECT_EVERY_MIN, COLLECT_EVERY_MAX);
    let weak = Arc::downgrade(f);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(f) = weak.upgrade() else { return };
            f.collect_tombstones(now_ms().saturating_sub(grace_ms));
        }
    });
}

impl Forwarder {
    /// Forgets the tombstones made before `horizon` (ms since the epoch): a topic's version
    /// with no retained message here. A node up all along has had them for the whole bound
    /// (sent to every node up when made, and at every Sync); see docs/clustering.md for a node
    /// away longer than the bound. A version without its message after a restart (a QoS 0
    /// retained message) looks the same: collected too, and a peer's copy, which comes with
    /// the next Sync, is taken as new.
    pub(super) fn collect_tombstones(&self, horizon: u64) {
        let mut gone = Vec::new();
        {
            let mut versions = self.mqtt.retained_versions.lock();
            versions.retain(|(vhost, key), version| {
                let tombstone = self
                    .broker
                    .vhost(vhost)
                    .is_none_or(|v| v.retained.get(key).is_none());
                let keep = version.at >= horizon || !tombstone;
                if !keep {
                    gone.push(store_key(vhost, key));
                }
                keep
            });
        }
        if gone.is_empty() {
            return;
        }
        tracing::debug!(
            count = gone.len(),
            "cluster: retained messages' tombstones collected"
        );
        for k in gone {
            if let Err(e) = self.store.meta_delete(TABLE, &k) {
                tracing::error!("cluster: cannot forget a retained message's tombstone: {e}");
            }
        }
    }

    /// How many tombstones this node keeps (`pigeon_mqtt_retained_tombstones`).
    pub(crate) fn retained_tombstones(&self) -> usize {
        let versions = self.mqtt.retained_versions.lock();
        versions
            .keys()
            .filter(|(vhost, key)| {
                self.broker
                    .vhost(vhost)
                    .is_none_or(|v| v.retained.get(key).is_none())
            })
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::Version;

    #[test]
    fn a_later_change_wins_and_the_node_name_breaks_ties() {
        let v = |at: u64, node: &str| Version {
            at,
            node: node.to_string(),
        };
        assert!(v(2, "a") > v(1, "b"));
        assert!(v(1, "b") > v(1, "a"));
        assert!(v(1, "a") > Version::default());
    }
}
