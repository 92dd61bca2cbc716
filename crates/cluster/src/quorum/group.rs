//! A quorum queue's Raft group: openraft's state machine over [`QueueMachine`], and
//! [`QuorumQueue`], the handle a node holds for each queue it is a member of.
//!
//! The group shares the node's write-ahead log (its entries are group-committed with every other
//! group's) and its connections to the peers (`crate::net::GroupNetwork`). The queue's state is in
//! memory, as `rabbit_fifo`'s is; snapshots are the machine's postcard bytes, the last one kept
//! in `<data_dir>/cluster/quorum/<group>.snapshot` so that a restart starts from it and replays
//! only the log after it.

// openraft's traits return its `StorageError` (185 bytes); it is not ours to box.
#![allow(clippy::result_large_err)]

use super::command::{QueueCommand, QueueConfig, QueueOp, QueueResponse};
use super::idle::{Activity, IdleMember};
use super::machine::QueueMachine;
use crate::node::Cluster;
use crate::types::{node_id, GroupId, Member, NodeId};
use crate::ClusterError;
use openraft::error::{ClientWriteError, RaftError};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, LogId, Raft, RaftSnapshotBuilder, SnapshotMeta, SnapshotPolicy,
    StorageError, StorageIOError, StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

openraft::declare_raft_types!(
    /// A quorum queue's types: [`QueueCommand`]s in, [`QueueResponse`]s out.
    pub QueueTypes:
        D = QueueCommand,
        R = QueueResponse,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<QueueTypes>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

type SmResult<T> = Result<T, StorageError<NodeId>>;

fn sm_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

struct Applied {
    machine: QueueMachine,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
}

#[derive(Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    data: Vec<u8>,
}

/// Called on every member with each applied command's response (quorum queues in the broker:
/// each node carries out the effects for its own consumers from its own replica). Runs under
/// the state machine's lock: it must only hand the response on (to a channel, say).
pub type Observer = Arc<dyn Fn(&QueueResponse) + Send + Sync>;

struct Inner {
    applied: Mutex<Applied>,
    observer: Option<Observer>,
    current: Mutex<Option<StoredSnapshot>>,
    path: PathBuf,
    built: AtomicU64,
    /// The index of the last applied entry, to wait on.
    index: watch::Sender<u64>,
    /// When the member last applied a command (the idle policy, quorum/idle.rs).
    activity: Arc<Activity>,
    /// A command counts as activity when applied within this many milliseconds of its `at`
    /// (0: never): replaying an old log at a restart does not wake the group.
    activity_window_ms: AtomicU64,
}

/// The queue's Raft state machine. Clones share it.
#[derive(Clone)]
pub struct QueueStateMachine {
    inner: Arc<Inner>,
}

impl QueueStateMachine {
    /// Opens the state machine whose snapshot file is `path`: the queue as of that snapshot, or
    /// an empty queue with `config` if there is none.
    pub fn open(path: PathBuf, config: QueueConfig) -> Result<QueueStateMachine, ClusterError> {
        QueueStateMachine::open_observed(path, config, None)
    }

    /// [`Self::open`] with an [`Observer`] of every applied command's response.
    pub fn open_observed(
        path: PathBuf,
        config: QueueConfig,
        observer: Option<Observer>,
    ) -> Result<QueueStateMachine, ClusterError> {
        let stored: Option<StoredSnapshot> = match std::fs::read(&path) {
            Ok(bytes) => Some(postcard::from_bytes(&bytes).map_err(|e| {
                ClusterError::Stopped(format!("snapshot {} is unreadable: {e}", path.display()))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(ClusterError::Io {
                    context: format!("cannot read {}", path.display()),
                    source,
                })
            }
        };
        let applied = match &stored {
            Some(s) => Applied {
                machine: QueueMachine::restore(&s.data).map_err(|e| {
                    ClusterError::Stopped(format!("snapshot {} is unreadable: {e}", path.display()))
                })?,
                last_applied: s.meta.last_log_id,
                membership: s.meta.last_membership.clone(),
            },
            None => Applied {
                machine: QueueMachine::new(config),
                last_applied: None,
                membership: StoredMembership::default(),
            },
        };
        let index = applied.last_applied.map_or(0, |l| l.index);
        Ok(QueueStateMachine {
            inner: Arc::new(Inner {
                applied: Mutex::new(applied),
                observer,
                current: Mutex::new(stored),
                path,
                built: AtomicU64::new(0),
                index: watch::Sender::new(index),
                activity: Arc::default(),
                activity_window_ms: AtomicU64::new(0),
            }),
        })
    }

    /// Reads the queue.
    pub fn read<T>(&self, f: impl FnOnce(&QueueMachine) -> T) -> T {
        f(&self.inner.applied.lock().machine)
    }

    /// The index of the last applied entry (0 when none).
    pub fn applied_index(&self) -> u64 {
        *self.inner.index.borrow()
    }

    /// Waits until the entry at `index` is applied here; false if `timeout` passes first.
    pub async fn wait_applied(&self, index: u64, timeout: Duration) -> bool {
        let mut rx = self.inner.index.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|i| *i >= index))
            .await
            .is_ok_and(|r| r.is_ok());
        reached
    }
}

/// Writes the snapshot file: a temporary file, fsync, rename, fsync of the folder.
fn persist(path: &Path, snapshot: &StoredSnapshot) -> std::io::Result<()> {
    let bytes = postcard::to_stdvec(snapshot).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("snapshot.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

impl RaftSnapshotBuilder<QueueTypes> for QueueStateMachine {
    async fn build_snapshot(&mut self) -> SmResult<Snapshot<QueueTypes>> {
        let started = std::time::Instant::now();
        let stored = {
            let applied = self.inner.applied.lock();
            let data = applied.machine.snapshot().map_err(sm_err)?;
            let n = self.inner.built.fetch_add(1, Ordering::Relaxed);
            let snapshot_id = match applied.last_applied {
                Some(l) => format!("{}-{}-{n}", l.leader_id, l.index),
                None => format!("empty-{n}"),
            };
            StoredSnapshot {
                meta: SnapshotMeta {
                    last_log_id: applied.last_applied,
                    last_membership: applied.membership.clone(),
                    snapshot_id,
                },
                data,
            }
        };
        let encoded = started.elapsed();
        let inner = self.inner.clone();
        let to_write = stored.clone();
        tokio::task::spawn_blocking(move || persist(&inner.path, &to_write))
            .await
            .map_err(sm_err)?
            .map_err(|e| {
                StorageError::from(StorageIOError::write_snapshot(
                    Some(stored.meta.signature()),
                    AnyError::new(&e),
                ))
            })?;
        *self.inner.current.lock() = Some(stored.clone());
        tracing::debug!(
            snapshot = %stored.meta.snapshot_id,
            bytes = stored.data.len(),
            encode_ms = encoded.as_millis() as u64,
            total_ms = started.elapsed().as_millis() as u64,
            "quorum queue: snapshot built"
        );
        Ok(Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(stored.data)),
        })
    }
}

impl RaftStateMachine<QueueTypes> for QueueStateMachine {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> SmResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>)> {
        let applied = self.inner.applied.lock();
        Ok((applied.last_applied, applied.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> SmResult<Vec<QueueResponse>>
    where
        I: IntoIterator<Item = openraft::Entry<QueueTypes>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        // In memory and quick: applied on the calling task, under the lock.
        let mut out = Vec::new();
        let window = self.inner.activity_window_ms.load(Ordering::Relaxed);
        let now = now_millis();
        let last = {
            let mut applied = self.inner.applied.lock();
            for entry in entries {
                applied.last_applied = Some(entry.log_id);
                out.push(match entry.payload {
                    EntryPayload::Normal(command) => {
                        if now.saturating_sub(command.at) < window {
                            self.inner.activity.touch();
                        }
                        let response = applied.machine.apply(command);
                        if let Some(observe) = &self.inner.observer {
                            observe(&response);
                        }
                        response
                    }
                    EntryPayload::Membership(m) => {
                        applied.membership = StoredMembership::new(Some(entry.log_id), m);
                        self.inner.activity.changed();
                        QueueResponse::default()
                    }
                    EntryPayload::Blank => {
                        // A new leader's first entry: the idle policy looks at the member again.
                        self.inner.activity.changed();
                        QueueResponse::default()
                    }
                });
            }
            applied.last_applied.map_or(0, |l| l.index)
        };
        self.inner.index.send_replace(last);
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> SmResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> SmResult<()> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        let machine = QueueMachine::restore(&stored.data).map_err(sm_err)?;
        {
            let mut applied = self.inner.applied.lock();
            applied.machine = machine;
            applied.last_applied = stored.meta.last_log_id;
            applied.membership = stored.meta.last_membership.clone();
        }
        self.inner
            .index
            .send_replace(stored.meta.last_log_id.map_or(0, |l| l.index));
        let inner = self.inner.clone();
        let to_write = stored.clone();
        tokio::task::spawn_blocking(move || persist(&inner.path, &to_write))
            .await
            .map_err(sm_err)?
            .map_err(sm_err)?;
        *self.inner.current.lock() = Some(stored);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> SmResult<Option<Snapshot<QueueTypes>>> {
        let current = self.inner.current.lock().clone();
        Ok(current.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}

/// A node's handle on one quorum queue it is a member of. Cheap to clone.
#[derive(Clone)]
pub struct QuorumQueue {
    group: GroupId,
    raft: Raft<QueueTypes>,
    machine: QueueStateMachine,
    pub(super) cluster: Cluster,
    /// The member as the idle policy sees it (quorum/idle.rs).
    idle: Arc<IdleMember>,
    /// Whether the policy runs (`Timing::quorum_idle_after` set).
    policy: bool,
    /// The highest commit index a leader told this member of (soakdup, `catchup.rs`).
    pub(super) commit_seen: Arc<AtomicU64>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The wall clock in milliseconds since the epoch: the time a command carries.
fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, millis)
}

impl QuorumQueue {
    /// Starts this node's member of the queue's group `group` (see
    /// [`queue_group`](super::queue_group)) on `cluster`'s log and links, and routes the peers'
    /// messages for it. `config` is the queue's settings as declared; a member that has a
    /// snapshot starts from the snapshot's instead. The group has no members until one node calls
    /// [`Self::initialize`] (or a member adds this one).
    pub async fn start(
        cluster: &Cluster,
        group: GroupId,
        config: QueueConfig,
    ) -> Result<QuorumQueue, ClusterError> {
        QuorumQueue::start_observed(cluster, group, config, None).await
    }

    /// [`Self::start`] with an [`Observer`] of every command this member applies (the leader's
    /// and the followers' alike), and the member registered to take the writes that other
    /// nodes forward to it ([`Cluster::write_queue`]).
    pub async fn start_observed(
        cluster: &Cluster,
        group: GroupId,
        config: QueueConfig,
        observer: Option<Observer>,
    ) -> Result<QuorumQueue, ClusterError> {
        // A deleted queue of the same name still being emptied here (quorum/destroy.rs).
        super::destroy::wait(cluster, group).await;
        let node = &cluster.inner.config;
        let dir = node.cluster_dir().join("quorum");
        std::fs::create_dir_all(&dir).map_err(|source| ClusterError::Io {
            context: format!("cannot create {}", dir.display()),
            source,
        })?;
        let machine = QueueStateMachine::open_observed(
            dir.join(format!("{:016x}.snapshot", group.0)),
            config,
            observer,
        )?;
        let raft_config = openraft::Config {
            cluster_name: format!("pigeon-queue-{:016x}", group.0),
            // openraft 0.9 times an AppendEntries out after the heartbeat interval: the queue
            // groups' is long enough for a follower's fsync under load (`Timing`).
            heartbeat_interval: millis(node.timing.quorum_heartbeat),
            election_timeout_min: millis(node.timing.quorum_election_min),
            election_timeout_max: millis(node.timing.quorum_election_max),
            // A snapshot holds the queue's messages, so it costs what the queue holds: taken
            // every 4,096 entries, which bounds the log replayed at a restart.
            snapshot_policy: SnapshotPolicy::LogsSinceLast(4_096),
            max_in_snapshot_log_to_keep: 256,
            // An entry can carry a proposer's batch of up to 1,024 operations (about 1 MiB of
            // 1 KiB bodies), and openraft 0.9 gives an AppendEntries its heartbeat interval
            // to be answered (the follower's fsync included): its default of 300 entries per
            // message would make messages no follower can answer in time under load.
            max_payload_entries: 16,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Stopped(format!("invalid Raft timing: {e}")))?;
        let raft = Raft::new(
            cluster.node_id(),
            Arc::new(raft_config),
            // Its candidates' refused votes tell the liveness-driven failover who has the
            // longest log (quorum/failover.rs).
            crate::net::GroupNetwork::<QueueTypes>::observed(
                group,
                cluster.inner.peers.clone(),
                cluster.inner.quorum.failover.clone(),
            ),
            cluster.wal().group::<QueueTypes>(group),
            machine.clone(),
        )
        .await
        .map_err(|e| ClusterError::Stopped(e.to_string()))?;
        let idle = Arc::new(IdleMember::new(
            raft.clone(),
            machine.inner.activity.clone(),
        ));
        let policy = match node.timing.quorum_idle_after {
            Some(idle_after) => {
                // Idle from the start (quorum/idle.rs): `initialize` elects without a timer, and
                // the policy wakes a member that has no leader. An applied command wakes a
                // member only if it is at most an election timeout old: a follower that applies
                // it later than that (catching up) could outlast its leader's awake time.
                let window = idle_after.min(node.timing.quorum_election_max);
                machine
                    .inner
                    .activity_window_ms
                    .store(millis(window), Ordering::Relaxed);
                idle.set_idle(true);
                cluster.inner.quorum.insert(group, idle.clone());
                true
            }
            None => false,
        };
        // The receiving side notes the leaders' commit indexes (soakdup, `catchup.rs`).
        let commit_seen = Arc::new(AtomicU64::new(0));
        cluster.register_group(
            group,
            Arc::new(super::catchup::Tracked {
                raft: raft.clone(),
                seen: Arc::clone(&commit_seen),
            }),
        );
        let queue = QuorumQueue {
            commit_seen,
            group,
            raft,
            machine,
            cluster: cluster.clone(),
            idle,
            policy,
        };
        cluster
            .inner
            .queue_writers
            .lock()
            .insert(group, queue.clone());
        Ok(queue)
    }

    /// Forms the group with these members as voters (called on one node, once, when the queue
    /// is declared; the others' members join through its replication).
    pub async fn initialize(&self, members: &[Member]) -> Result<(), ClusterError> {
        let members: BTreeMap<NodeId, Member> = members
            .iter()
            .map(|m| (node_id(&m.name), m.clone()))
            .collect();
        self.raft
            .initialize(members)
            .await
            .map_err(|e| ClusterError::Membership(e.to_string()))
    }

    /// The queue's group.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// The group's Raft (metrics, triggers, runtime switches).
    pub fn raft(&self) -> &Raft<QueueTypes> {
        &self.raft
    }

    /// The queue's state machine on this node.
    pub fn machine(&self) -> &QueueStateMachine {
        &self.machine
    }

    /// The group's leader as this node knows it.
    pub fn leader(&self) -> Option<NodeId> {
        self.raft.metrics().borrow().current_leader
    }

    /// Whether this node leads the group.
    pub fn is_leader(&self) -> bool {
        self.leader() == Some(self.cluster.node_id())
    }

    /// The group's leader's name as this node knows it.
    pub fn leader_name(&self) -> Option<String> {
        let m = self.raft.metrics().borrow().clone();
        m.current_leader
            .and_then(|id| m.membership_config.membership().get_node(&id).cloned())
            .map(|n| n.name)
    }

    /// Proposes `op` here, stamped with this node's clock, and returns once a majority of the
    /// members has it and it is applied here: only then may a publisher be confirmed. This node
    /// must lead the group ([`ClusterError::NotLeader`] names the leader otherwise; forwarding
    /// publishes to a queue's leader is the broker's, next). Fails with
    /// [`ClusterError::Timeout`] after the cluster's `write_timeout` without a majority.
    pub async fn write(&self, op: QueueOp) -> Result<QueueResponse, ClusterError> {
        let wait = self.cluster.inner.config.timing.write_timeout;
        let command = QueueCommand {
            at: now_millis(),
            op,
        };
        if self.policy && (self.is_leader() || self.leader().is_none()) {
            // A write wakes the group's leader (it heartbeats, the followers wake as they apply)
            // until it has been quiet for `quorum_idle_after`. Not a follower: awake under an
            // idle leader, its election timer would fire.
            self.idle.wake();
        }
        match tokio::time::timeout(wait, self.raft.client_write(command)).await {
            Err(_) => Err(ClusterError::Timeout {
                group: self.group,
                waited: wait,
                leader: self.leader_name(),
            }),
            Ok(Ok(response)) => Ok(response.data),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                match f.leader_node {
                    Some(leader) => Err(ClusterError::NotLeader {
                        group: self.group,
                        leader: Some(leader.name),
                    }),
                    None => Err(ClusterError::NoLeader { group: self.group }),
                }
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(ClusterError::Membership(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(e))) => Err(ClusterError::Stopped(e.to_string())),
        }
    }

    /// Switches this member's timers off (`idle`) or on again. An idle group costs no wake-ups:
    /// the leader sends no heartbeats and a follower does not time out into an election
    /// (openraft 0.9's runtime switches `tick`, `heartbeat` and `elect`). Writes still replicate
    /// (openraft replicates on each append, not on the tick). Every member of an idle group must
    /// be idle, or a follower elects itself for want of heartbeats; and when a node is lost, the
    /// survivors' members of the groups it led must be woken (`set_idle(false)`) to elect a new
    /// leader.
    ///
    /// With the idle policy on (`Timing::quorum_idle_after`, the default) the node does all
    /// that on its own (quorum/idle.rs, docs/clustering.md "Idle groups") and may switch the
    /// timers again after this call; this is for a caller that runs the policy itself
    /// (`quorum_idle_after` `None`).
    pub fn set_idle(&self, idle: bool) {
        self.idle.set_idle(idle);
    }

    /// Whether this member's Raft timers are off now.
    pub fn is_idle(&self) -> bool {
        self.idle.is_idle()
    }

    /// Stops this node's member of the group (the node goes on).
    pub async fn shutdown(&self) {
        self.cluster.inner.quorum.remove(self.group);
        self.cluster.unregister_group(self.group);
        self.cluster.inner.queue_writers.lock().remove(&self.group);
        if let Err(e) = self.raft.shutdown().await {
            tracing::warn!(group = %self.group, "quorum queue: raft did not stop cleanly: {e}");
        }
    }
}
