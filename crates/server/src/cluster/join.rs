//! `pigeon ctl join_cluster <host:port>` on a node that is a cluster of one: the node resets
//! itself and joins the other cluster (docs/clustering.md, "Membership").
//!
//! A clustered node started without peers initializes a cluster of one and writes its own
//! set-up (the default vhost and user) through it, so it has a Raft log, a vote and metadata of
//! its own. openraft 0.9 cannot make such a node a learner of another cluster: its log and its
//! vote (its own term, its own single-voter membership) conflict with the other cluster's, and
//! a running `Raft` cannot have its storage swapped. So `join_cluster` does what RabbitMQ 4's
//! does (rabbit_db_cluster.erl `join/2`: stop the node, `rabbit_db:reset()`, join, start again;
//! rabbit_khepri.erl `do_join`: "Joining a cluster includes a reset of the local Khepri
//! store"): after its checks ([`request`]) it writes a marker naming the member to join
//! ([`MARKER`], in the data directory), and the process restarts (`pigeon serve` stops the
//! server gracefully and executes itself again, same pid, same listeners). At the next start,
//! before anything is opened, [`reset_pending`] finds the marker, **deletes this node's data**
//! (its metadata store with every user, vhost, queue and message, its queue logs, streams,
//! quorum queue data and its Raft log and vote) and starts the node with the marker's member as
//! its only peer: the node, now without state, joins that cluster as a static peer does
//! (bootstrap's `Hello`, then `Join`: a learner, caught up from the leader's log or snapshot,
//! then a voter), and its users, vhosts and queues are the other cluster's. The marker is
//! removed once the node belongs to the cluster; a crash before that resets and joins again.
//!
//! Refused (nothing is deleted): a node whose cluster has other members (resetting a member of
//! a live cluster would take a voter away from its majority without telling it: forget it from
//! that cluster first, `forget_cluster_node`); a node holding messages in durable queues
//! unless `force` (they would be deleted); a member that does not answer or belongs to no
//! cluster. A node that is a member of that cluster already answers so and changes nothing.

use pigeon_cluster::Cluster;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The marker a join request leaves in the data directory for the next start.
pub(crate) const MARKER: &str = "cluster-join.json";

/// What Pigeon keeps in its data directory (store.rs, streams.rs, the cluster's folder,
/// `quorum/single.rs`): what a reset deletes. Anything else in the folder is left alone.
const NODE_DATA: [&str; 5] = ["meta.redb", "queues", "streams", "cluster", "quorum"];

/// How long the checks wait for the member to answer.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a join request was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JoinRefused {
    /// The node's cluster has other members.
    #[error("{node} is a member of a cluster of {count} nodes ({members}); it cannot be reset to join another cluster: run forget_cluster_node {node} on another member first, then join_cluster")]
    Clustered {
        node: String,
        count: usize,
        members: String,
    },
    /// Durable queues hold messages that a reset would delete.
    #[error("{node} holds {messages} messages in durable queues ({queues}); joining a cluster resets the node and deletes them: consume or purge them first, or pass --force to delete them")]
    Messages {
        node: String,
        messages: u64,
        queues: String,
    },
    /// The seed is this node.
    #[error("{0} is this node's own cluster address: give the address of a member of the cluster to join")]
    Itself(String),
    /// The seed did not answer or belongs to no cluster.
    #[error("{0}")]
    Seed(String),
    /// No data directory or no `[cluster]` table.
    #[error("{0}")]
    NotClustered(String),
    /// The marker could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What an accepted request does.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Accepted {
    /// The node resets and joins: the process restarts.
    Restarting,
    /// The member's cluster is this node's already.
    AlreadyMember,
}

/// The process restart a join asks for: `pigeon serve` waits on it (`ServerHandle`).
#[derive(Default, Clone)]
pub(crate) struct Restart(Arc<tokio::sync::Notify>);

impl Restart {
    pub(crate) fn request(&self) {
        self.0.notify_one();
    }

    pub(crate) async fn requested(&self) {
        self.0.notified().await;
    }
}

/// `POST /api/pigeon/cluster/join`: checks, leaves the marker and asks for the restart.
pub(crate) async fn request(
    state: &crate::ServerState,
    seed: &str,
    force: bool,
) -> Result<Accepted, JoinRefused> {
    let (Some(cluster), Some(dir)) = (&state.cluster, &state.config.data_dir) else {
        return Err(JoinRefused::NotClustered(
            "this node is not clustered (no [cluster] table)".into(),
        ));
    };
    let status = cluster.status();
    let me = status.node.clone();
    if status.members.iter().any(|m| m.addr == seed) {
        if status.members.len() > 1 {
            return Ok(Accepted::AlreadyMember);
        }
        return Err(JoinRefused::Itself(seed.to_string()));
    }
    let (name, initialized) = cluster
        .hello(seed, HELLO_TIMEOUT)
        .await
        .map_err(|e| JoinRefused::Seed(format!("the node at {seed} does not answer: {e}")))?;
    if name == me {
        return Err(JoinRefused::Itself(seed.to_string()));
    }
    if status.members.iter().any(|m| m.name == name) && status.members.len() > 1 {
        return Ok(Accepted::AlreadyMember);
    }
    if status.members.len() > 1 {
        return Err(JoinRefused::Clustered {
            node: me,
            count: status.members.len(),
            members: names(status.members.iter().map(|m| m.name.as_str())),
        });
    }
    if !initialized {
        return Err(JoinRefused::Seed(format!(
            "{name} at {seed} belongs to no cluster yet: start it first (with no peers it forms a cluster of one)"
        )));
    }
    let (messages, queues) = durable_messages(&state.broker);
    if messages > 0 && !force {
        return Err(JoinRefused::Messages {
            node: me,
            messages,
            queues: names(queues.iter().map(String::as_str)),
        });
    }
    let path = dir.join(MARKER);
    let marker = serde_json::json!({ "seed": seed, "member": name });
    std::fs::write(&path, marker.to_string()).map_err(|source| JoinRefused::Io {
        path: path.clone(),
        source,
    })?;
    tracing::warn!(
        node = %me, seed = %seed, member = %name, discarded_messages = messages,
        "join_cluster: this node restarts, DELETES ITS DATA (users, vhosts, queues, messages, Raft log) and joins the cluster of {name}"
    );
    state.restart.request();
    Ok(Accepted::Restarting)
}

fn names<'a>(all: impl Iterator<Item = &'a str>) -> String {
    let all: Vec<&str> = all.collect();
    let shown: Vec<&str> = all.iter().take(5).copied().collect();
    let more = all.len().saturating_sub(shown.len());
    if more > 0 {
        format!("{} and {more} more", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

/// Messages in durable queues homed here (a reset deletes them), and those queues' names.
fn durable_messages(broker: &pigeon_broker::Broker) -> (u64, Vec<String>) {
    let mut total = 0;
    let mut queues = Vec::new();
    for v in broker.vhosts() {
        for q in v.queues() {
            if !q.options().durable || q.remote().is_some() {
                continue;
            }
            let n = if let Some(view) = q.stream_view() {
                view.messages
            } else {
                u64::from(q.message_count()) + u64::from(q.unacked_count())
            };
            if n > 0 {
                total += n;
                queues.push(format!("'{}' in vhost '{}'", q.name(), q.vhost_name()));
            }
        }
    }
    (total, queues)
}

/// At start, before the store opens: a join requested before the restart resets the node
/// (deletes [`NODE_DATA`]) and makes the marker's member its only peer. The member's cluster
/// address, if a join is pending.
pub(crate) fn reset_pending(
    dir: &Path,
    cluster: &mut pigeon_cluster::ClusterConfig,
) -> Result<Option<String>, crate::ServerError> {
    let path = dir.join(MARKER);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(crate::ServerError::Config(format!(
                "cannot read {}: {e}",
                path.display()
            )))
        }
    };
    let seed = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v.get("seed").and_then(|s| s.as_str()).map(str::to_string))
        .ok_or_else(|| {
            crate::ServerError::Config(format!(
                "{} is not a join request ({{\"seed\": \"host:port\"}}): delete it",
                path.display()
            ))
        })?;
    tracing::warn!(
        dir = %dir.display(), seed = %seed,
        "join_cluster: resetting this node: deleting its metadata, messages and Raft state to join the cluster at {seed}"
    );
    for entry in NODE_DATA {
        let p = dir.join(entry);
        let removed = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        match removed {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(crate::ServerError::Config(format!(
                    "join_cluster: cannot delete {} to reset the node: {e}",
                    p.display()
                )))
            }
        }
    }
    cluster.peers = vec![seed.clone()];
    Ok(Some(seed))
}

/// Removes the marker once the node belongs to a cluster (its Raft log has a membership).
pub(crate) fn clear_when_joined(cluster: &Cluster, dir: PathBuf) {
    let mut metrics = cluster.metrics();
    tokio::spawn(async move {
        let joined = metrics
            .wait_for(|m| m.membership_config.membership().voter_ids().count() > 0)
            .await
            .is_ok();
        if joined {
            match std::fs::remove_file(dir.join(MARKER)) {
                Ok(()) => tracing::info!("join_cluster: this node belongs to the cluster now"),
                Err(e) => tracing::warn!("join_cluster: cannot remove {MARKER}: {e}"),
            }
        }
    });
}
