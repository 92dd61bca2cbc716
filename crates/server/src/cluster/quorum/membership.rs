//! Quorum queue membership in the broker (issue 13, items 4 and 6): rabbitmq-queues'
//! `add_member`, `delete_member`, `grow`, `shrink` and `rebalance`, membership at restart, and
//! the leaderships moved away from a node being drained.
//!
//! **Where the members are.** The replicated metadata lists each quorum queue's members:
//! `DeclareQueue`'s `node` at declaration, then `SetQueueMembers` (comma-separated names), as
//! RabbitMQ keeps them in the queue record's `type_state` (`nodes`). Every node applies the
//! change: a node added starts its member of the group (an empty, uninitialized Raft member
//! that the leader then fills), a node removed stops its own, and every node records the list
//! in its store (table `quorum_members`), so that at a restart a listed node starts its member
//! whatever its log holds (a member chosen at declaration that crashed before the group
//! reached it catches up from the leader instead of staying out).
//!
//! **Adding a member** (`rabbit_quorum_queue:add_member`, membership `promotable`): the list is
//! changed first (the new node starts its member), then the group's leader adds it as a learner,
//! waits until it has caught up (snapshot or log), and makes it a voter. If the leader cannot,
//! the list is put back. **Removing one**: the leader removes it from the group first, then
//! the list is changed (the node stops its member). Both are idempotent, as RabbitMQ 3.13/4's
//! are (a member already there, or a node that is no member, is a success); removing the last
//! member is refused (`last_node`), adding a node that is not a running member of the cluster
//! too (`node_not_running`).
//!
//! **Moving a leadership** (drain, rebalance): `leadership.rs`.
//!
//! The requests between nodes travel as the management API's peer questions
//! (`http/peers.rs`, `Ask::Quorum`, over `Request::Ops`).

use super::leadership::transfer_here;
pub(crate) use super::leadership::{hand_over, rebalance, resume};
use super::{QuorumMember, QuorumRegistry};
use parking_lot::Mutex;
use pigeon_cluster::net::NodeState;
use pigeon_cluster::{Cluster, ClusterError, Member};
use pigeon_store::Store;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// The store's table of quorum queues' members: `vhost NUL name` -> `a,b,c`.
const TABLE: &str = "quorum_members";

/// How long a membership change waits for the group's leader (and a learner to catch up).
pub(crate) const CHANGE_WAIT: Duration = Duration::from_secs(30);

/// How long a peer's answer to a membership question may take.
const PEER_WAIT: Duration = Duration::from_secs(35);

/// How long a leadership move waits for the new leader.
pub(super) const MOVE_WAIT: Duration = Duration::from_secs(15);

fn key(vhost: &str, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(vhost.len() + name.len() + 1);
    k.extend_from_slice(vhost.as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

/// The node's registries by node name (tests run several nodes in one process): how the
/// management API finds this node's quorum queues.
fn registries() -> &'static Mutex<HashMap<String, Weak<QuorumRegistry>>> {
    static ALL: OnceLock<Mutex<HashMap<String, Weak<QuorumRegistry>>>> = OnceLock::new();
    ALL.get_or_init(Mutex::default)
}

/// The quorum queues' registry of the node `cluster` is.
pub(crate) fn registry(cluster: &Cluster) -> Option<Arc<QuorumRegistry>> {
    registries().lock().get(cluster.name())?.upgrade()
}

/// Parses a comma-separated member list.
pub(crate) fn parse(members: &str) -> Vec<String> {
    members
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect()
}

impl QuorumRegistry {
    /// Where the members are recorded; the registry is reachable from the management API.
    pub(crate) fn set_store(self: &Arc<Self>, store: &Arc<Store>, node: &str) {
        let _ = self.store.set(Arc::clone(store));
        registries()
            .lock()
            .insert(node.to_string(), Arc::downgrade(self));
    }

    /// Records `members` (on the metadata group's applying thread: in the applied batch's
    /// transaction). Nothing for an empty list.
    pub(super) fn record_members(&self, vhost: &str, name: &str, members: &[String]) {
        let Some(store) = self.store.get() else {
            return;
        };
        if members.is_empty() {
            return;
        }
        if let Err(e) = store.meta_put(TABLE, &key(vhost, name), members.join(",").as_bytes()) {
            tracing::error!(queue = name, "quorum queue: cannot record its members: {e}");
        }
    }

    pub(super) fn forget_members(&self, vhost: &str, name: &str) {
        if let Some(store) = self.store.get() {
            if let Err(e) = store.meta_delete(TABLE, &key(vhost, name)) {
                tracing::error!(queue = name, "quorum queue: cannot forget its members: {e}");
            }
        }
    }

    /// The members recorded before this start.
    pub(super) fn recorded_members(&self) -> HashMap<(String, String), Vec<String>> {
        let Some(store) = self.store.get() else {
            return HashMap::new();
        };
        let entries = match store.meta_scan(TABLE) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("quorum queue: cannot read the queues' members: {e}");
                return HashMap::new();
            }
        };
        let mut out = HashMap::new();
        for (k, v) in entries {
            let mut parts = k.splitn(2, |b| *b == 0);
            let (Some(vhost), Some(name)) = (parts.next(), parts.next()) else {
                continue;
            };
            let (Ok(vhost), Ok(name), Ok(v)) = (
                std::str::from_utf8(vhost),
                std::str::from_utf8(name),
                std::str::from_utf8(&v),
            ) else {
                continue;
            };
            out.insert((vhost.to_string(), name.to_string()), parse(v));
        }
        out
    }

    /// This node's side of a quorum queue.
    pub(crate) fn member(&self, vhost: &str, name: &str) -> Option<Arc<QuorumMember>> {
        self.queues
            .lock()
            .get(&(vhost.to_string(), name.to_string()))
            .cloned()
    }

    /// Every quorum queue of the node, with its vhost and name.
    pub(crate) fn list(&self) -> Vec<Arc<QuorumMember>> {
        self.all()
    }

    /// `SetQueueMembers` applied here: the list recorded, this node's member started or stopped.
    pub(crate) fn members_set(&self, vhost: &str, name: &str, members: &str) {
        let members = parse(members);
        self.record_members(vhost, name, &members);
        {
            let mut early = self.early.lock();
            if self.cluster.get().is_none() {
                // The log replayed at start: the placement waits for the node's handle.
                for e in early.iter_mut() {
                    if e.0 == vhost && e.1 == name {
                        e.2 = members.clone();
                    }
                }
                return;
            }
        }
        let Some(member) = self.member(vhost, name) else {
            return;
        };
        let _guard = self.runtime.enter();
        member.members_changed(members);
    }
}

impl QuorumMember {
    /// The members the metadata lists (in its order), or the group's as this node sees it.
    pub(crate) fn listed(&self) -> Vec<String> {
        let declared = self.declared.lock().clone();
        if declared.is_empty() {
            self.members()
        } else {
            declared
        }
    }

    /// The queue's vhost and name.
    pub(crate) fn id(&self) -> (&str, &str) {
        (&self.vhost, &self.name)
    }

    /// The metadata's list changed: this node's member starts (added) or stops (removed).
    fn members_changed(self: &Arc<Self>, members: Vec<String>) {
        let me = self.cluster_name();
        let listed = members.contains(&me);
        *self.declared.lock() = members;
        let running = self.local.read().is_some();
        if listed && !running {
            tracing::info!(queue = %self.name, vhost = %self.vhost, "quorum queue: this node is a new member; starting it");
            let Some(queue) = self.queue_arc() else {
                return;
            };
            let config = super::member::config_of(&queue);
            tokio::spawn(Arc::clone(self).start(config, false, false));
        } else if !listed && running {
            tracing::info!(queue = %self.name, vhost = %self.vhost, "quorum queue: this node is no member any more; stopping it");
            self.mark_outsider();
            if let Some(qq) = self.local.write().take() {
                tokio::spawn(async move { qq.shutdown().await });
            }
            // Its consumers are served by a member node now (`outsider.rs`).
            self.moved_out();
        }
    }
}

/// Why a membership change or a leadership move was not made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum MembersError {
    /// No such quorum queue (404).
    #[error("{0}")]
    NotFound(String),
    /// Refused by RabbitMQ's rules (400): `node_not_running`, `last_node`, not a quorum queue.
    #[error("{0}")]
    Refused(String),
    /// This node does not lead the group (answered to a peer; the leader's name if known).
    #[error("not the leader of the queue's group")]
    NotLeader(Option<String>),
    /// No leader, no majority, or the wait was over (503).
    #[error("{0}")]
    Unavailable(String),
}

impl MembersError {
    /// The HTTP status a peer answers it with.
    pub(crate) fn status(&self) -> u16 {
        match self {
            MembersError::NotFound(_) => 404,
            MembersError::Refused(_) => 400,
            MembersError::NotLeader(_) => 409,
            MembersError::Unavailable(_) => 503,
        }
    }

    /// The error back from a peer's status and reason.
    fn from_peer(status: u16, reason: String) -> MembersError {
        match status {
            404 => MembersError::NotFound(reason),
            400 => MembersError::Refused(reason),
            409 => MembersError::NotLeader(Some(reason).filter(|r| !r.is_empty())),
            _ => MembersError::Unavailable(reason),
        }
    }

    /// The reason a peer answers (for `NotLeader`: the leader's name).
    pub(crate) fn reason(&self) -> String {
        match self {
            MembersError::NotLeader(leader) => leader.clone().unwrap_or_default(),
            other => other.to_string(),
        }
    }
}

fn from_cluster(e: ClusterError) -> MembersError {
    match e {
        ClusterError::NotLeader { leader, .. } => MembersError::NotLeader(leader),
        ClusterError::NoLeader { .. } => MembersError::NotLeader(None),
        ClusterError::Membership(m) if m.contains("last_node") => MembersError::Refused(m),
        other => MembersError::Unavailable(other.to_string()),
    }
}

/// A question to a peer about its quorum queues (the body of the management API's
/// `Ask::Quorum`).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "q", rename_all = "snake_case")]
pub(crate) enum QuorumAsk {
    /// If you lead the queue's group: add (`add`) or remove the member on `node`.
    Members {
        vhost: String,
        name: String,
        node: String,
        add: bool,
    },
    /// If you lead the queue's group: hand the leadership to the member on `to`.
    Transfer {
        vhost: String,
        name: String,
        to: String,
    },
    /// Stand for election in the queue's group now.
    Elect { vhost: String, name: String },
}

/// A peer's answer as `http/peers.rs` encodes it.
#[derive(Deserialize)]
enum PeerAnswer {
    Ok(Value),
    Err { status: u16, reason: String },
}

/// Asks the member `node` a quorum question through the management API's peer channel.
pub(super) async fn ask_peer(
    cluster: &Cluster,
    node: &str,
    ask: &QuorumAsk,
) -> Result<Value, MembersError> {
    let Some(addr) = cluster.member_addr(node) else {
        return Err(MembersError::Refused(format!(
            "{node} is not a member of the cluster (node_not_running)"
        )));
    };
    let body = serde_json::to_vec(&serde_json::json!({ "op": "quorum", "ask": ask }))
        .map_err(|e| MembersError::Unavailable(e.to_string()))?;
    let bytes = cluster
        .ops_call(&addr, body, PEER_WAIT)
        .await
        .map_err(|e| MembersError::Unavailable(e.to_string()))?;
    match serde_json::from_slice::<PeerAnswer>(&bytes) {
        Ok(PeerAnswer::Ok(v)) => Ok(v),
        Ok(PeerAnswer::Err { status, reason }) => Err(MembersError::from_peer(status, reason)),
        Err(e) => Err(MembersError::Unavailable(format!(
            "undecodable answer from {node}: {e}"
        ))),
    }
}

/// Answers a peer's [`QuorumAsk`] on this node.
pub(crate) async fn answer(cluster: &Cluster, ask: QuorumAsk) -> Result<Value, MembersError> {
    let registry = registry(cluster).ok_or_else(|| {
        MembersError::Unavailable("this node has no quorum queues registry".into())
    })?;
    let member = |vhost: &str, name: &str| {
        registry.member(vhost, name).ok_or_else(|| {
            MembersError::NotFound(format!("no quorum queue '{name}' in vhost '{vhost}'"))
        })
    };
    match ask {
        QuorumAsk::Members {
            vhost,
            name,
            node,
            add,
        } => {
            let m = member(&vhost, &name)?;
            change_here(cluster, &m, &node, add).await?;
            Ok(Value::Null)
        }
        QuorumAsk::Transfer { vhost, name, to } => {
            let m = member(&vhost, &name)?;
            transfer_here(cluster, &m, &to, false).await?;
            Ok(Value::Null)
        }
        QuorumAsk::Elect { vhost, name } => {
            let m = member(&vhost, &name)?;
            let qq = m.local().ok_or_else(|| {
                MembersError::Refused("no member of the queue on this node".into())
            })?;
            qq.stand_for_election().await.map_err(from_cluster)?;
            Ok(Value::Null)
        }
    }
}

/// The change made here, where the group's leader must be.
async fn change_here(
    cluster: &Cluster,
    member: &QuorumMember,
    node: &str,
    add: bool,
) -> Result<(), MembersError> {
    let qq = member.local().ok_or(MembersError::NotLeader(None))?;
    if add {
        let addr = cluster.member_addr(node).ok_or_else(|| {
            MembersError::Refused(format!(
                "{node} is not a member of the cluster (node_not_running)"
            ))
        })?;
        qq.add_voter(
            Member {
                name: node.to_string(),
                addr,
            },
            CHANGE_WAIT,
        )
        .await
        .map_err(from_cluster)
    } else {
        qq.remove_member(node, CHANGE_WAIT)
            .await
            .map_err(from_cluster)
    }
}

/// Makes the group's leader, wherever it is, add or remove the member on `node`: this node's
/// leader view first, then each member in turn, following their hints; retried (elections)
/// until [`CHANGE_WAIT`].
async fn change_on_leader(
    cluster: &Cluster,
    member: &QuorumMember,
    node: &str,
    add: bool,
) -> Result<(), MembersError> {
    let deadline = Instant::now() + CHANGE_WAIT;
    let (vhost, name) = member.id();
    let mut hint = member.leader();
    loop {
        let mut order: Vec<String> = hint.take().into_iter().collect();
        order.extend(member.listed());
        let mut last = MembersError::Unavailable(format!(
            "no leader of queue '{name}' in vhost '{vhost}' answered"
        ));
        for target in order {
            let result = if target == cluster.name() {
                change_here(cluster, member, node, add).await
            } else {
                let ask = QuorumAsk::Members {
                    vhost: vhost.to_string(),
                    name: name.to_string(),
                    node: node.to_string(),
                    add,
                };
                ask_peer(cluster, &target, &ask).await.map(|_| ())
            };
            match result {
                Ok(()) => return Ok(()),
                Err(MembersError::NotLeader(Some(leader))) if leader != target => {
                    hint = Some(leader);
                    break;
                }
                Err(e @ (MembersError::Refused(_) | MembersError::NotFound(_))) => return Err(e),
                Err(e) => last = e,
            }
        }
        if Instant::now() >= deadline {
            return Err(match last {
                MembersError::NotLeader(_) => MembersError::Unavailable(format!(
                    "queue '{name}' in vhost '{vhost}' has no leader (no majority of its members?)"
                )),
                other => other,
            });
        }
        if hint.is_none() {
            // An election may be under way.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Whether `node` is a member of the cluster that node liveness does not find down (a member
/// it has not pinged yet counts as running, as in `/api/nodes`).
pub(crate) fn running(cluster: &Cluster, node: &str) -> bool {
    cluster.member_names().iter().any(|n| n == node)
        && cluster.node_states().get(node) != Some(&NodeState::Down)
}

/// Writes the queue's new member list through the metadata group.
async fn write_members(
    cluster: &Cluster,
    vhost: &str,
    name: &str,
    members: &[String],
) -> Result<(), MembersError> {
    crate::cluster::write(
        cluster,
        pigeon_cluster::MetaCommand::SetQueueMembers {
            vhost: vhost.to_string(),
            name: name.to_string(),
            members: members.join(","),
        },
    )
    .await
    .map_err(|e| MembersError::Unavailable(e.to_string()))
}

/// `add_member`: adds the member on `node` to the queue's group. `Ok(false)` when it was one.
pub(crate) async fn add_member(
    cluster: &Cluster,
    vhost: &str,
    name: &str,
    node: &str,
) -> Result<bool, MembersError> {
    let member = lookup(cluster, vhost, name)?;
    if !running(cluster, node) {
        return Err(MembersError::Refused(format!(
            "node {node} is not a running member of the cluster (node_not_running)"
        )));
    }
    let before = member.listed();
    if before.iter().any(|n| n == node) && member.members().iter().any(|n| n == node) {
        return Ok(false);
    }
    let mut after = before.clone();
    if !after.iter().any(|n| n == node) {
        after.push(node.to_string());
    }
    write_members(cluster, vhost, name, &after).await?;
    if let Err(e) = change_on_leader(cluster, &member, node, true).await {
        tracing::warn!(queue = %name, vhost = %vhost, %node, error = %e, "quorum queue: adding a member failed; its member list is put back");
        let _ = write_members(cluster, vhost, name, &before).await;
        return Err(e);
    }
    tracing::info!(queue = %name, vhost = %vhost, %node, "quorum queue: member added");
    Ok(true)
}

/// `delete_member`: removes the member on `node` from the queue's group. `Ok(false)` when it
/// was none.
pub(crate) async fn delete_member(
    cluster: &Cluster,
    vhost: &str,
    name: &str,
    node: &str,
) -> Result<bool, MembersError> {
    let member = lookup(cluster, vhost, name)?;
    let before = member.listed();
    if !before.iter().any(|n| n == node) {
        return Ok(false);
    }
    if before.len() == 1 {
        return Err(MembersError::Refused(format!(
            "{node} is the last member of queue '{name}' in vhost '{vhost}' (last_node)"
        )));
    }
    change_on_leader(cluster, &member, node, false).await?;
    let after: Vec<String> = before.into_iter().filter(|n| n != node).collect();
    write_members(cluster, vhost, name, &after).await?;
    tracing::info!(queue = %name, vhost = %vhost, %node, "quorum queue: member removed");
    Ok(true)
}

fn lookup(cluster: &Cluster, vhost: &str, name: &str) -> Result<Arc<QuorumMember>, MembersError> {
    registry(cluster)
        .and_then(|r| r.member(vhost, name))
        .ok_or_else(|| {
            MembersError::NotFound(format!("no quorum queue '{name}' in vhost '{vhost}'"))
        })
}

/// The node names of a new quorum queue's group: `size` of the cluster's members (at most all
/// of them, one member per node), the declaring node first (it forms the group and leads it
/// first), the others in an order that depends on the queue's name, so that queues spread over
/// the nodes.
pub(crate) fn place(cluster: &Cluster, vhost: &str, queue: &str, size: usize) -> Vec<String> {
    let me = cluster.name().to_string();
    let group = pigeon_cluster::quorum::queue_group(vhost, queue).0;
    let mut others: Vec<String> = cluster
        .status()
        .members
        .into_iter()
        // Learners too: a node joining the cluster is a learner until it caught up.
        .filter(|m| m.name != me)
        .map(|m| m.name)
        .collect();
    others.sort_by_key(|n| pigeon_cluster::node_id(n) ^ group);
    let mut members = vec![me];
    members.extend(others.into_iter().take(size.saturating_sub(1)));
    members
}
