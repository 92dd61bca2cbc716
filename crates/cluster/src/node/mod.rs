//! A running cluster node: the metadata group, the listener, bootstrap and membership.
//!
//! [`Cluster::start`] opens the node's log and state machine, starts the metadata group's Raft,
//! binds the cluster listener and, if the node has no Raft state yet, bootstraps: with no peers
//! the node is a cluster of one; with static peers, once every peer has answered, the node with
//! the lowest name initializes the cluster with all of them as voters (every node computes the
//! same choice, so exactly one initializes), and a node whose peers already form a cluster joins
//! it instead (as a learner, then, caught up, as a voter).

mod forward;
pub use forward::ForwardError;
// The metadata group's liveness-driven elections (helper metaelect).
mod failover;
mod handler;
mod membership;
mod ops;
mod write;
// Read barrier (issue 13 item 2, helper readwrites).
mod read_index;
pub use read_index::BarrierError;

pub use ops::OpsHandler;
pub(crate) use write::to_wire;

use crate::config::ClusterConfig;
use crate::meta::{MetaStateMachine, MetadataApply};
use crate::net::liveness::{self, Liveness, LivenessTiming};
use crate::net::{GroupEndpoint, GroupNetwork, NodeEvent, NodeStates, Peers};
use crate::types::{node_id, GroupId, Member, MetaTypes, NodeId};
use crate::wal::{Wal, WalOptions};
use crate::ClusterError;
use openraft::{Raft, RaftMetrics, ServerState, SnapshotPolicy};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the node's handles share.
pub(crate) struct NodeInner {
    pub(crate) config: ClusterConfig,
    pub(crate) me: Member,
    pub(crate) id: NodeId,
    pub(crate) raft: Raft<MetaTypes>,
    pub(crate) wal: Wal,
    pub(crate) peers: Peers,
    pub(crate) groups: Mutex<HashMap<GroupId, Arc<dyn GroupEndpoint>>>,
    /// Quorum queue members on this node, for the writes other nodes forward to them
    /// (quorum queues in the broker, `quorum/forward.rs`).
    pub(crate) queue_writers: Mutex<HashMap<GroupId, crate::quorum::QuorumQueue>>,
    /// Held by the leader while it changes the membership: one change at a time (openraft
    /// refuses a change while another is uncommitted, and two joins of one node race).
    pub(crate) admin: tokio::sync::Mutex<()>,
    /// Node liveness: the other members' states and their changes (net/liveness.rs).
    pub(crate) liveness: Arc<Liveness>,
    /// The quorum queues' members on this node, for the idle policy (quorum/idle.rs).
    pub(crate) quorum: crate::quorum::idle::IdleGroups,
    /// The metadata group's liveness-driven elections (node/failover.rs).
    pub(crate) meta_failover: Arc<crate::failover::Failover>,
    /// This node stands aside from the metadata group's elections (maintenance,
    /// [`Cluster::hand_over_leadership`]): liveness-driven ones included, which openraft's
    /// `trigger().elect()` would start whatever its runtime switch says.
    pub(crate) meta_aside: std::sync::atomic::AtomicBool,
    /// Classic queues across nodes (helper "forward"): the broker's answerer of
    /// `Request::Forward` (node/forward.rs), set once the broker is up.
    pub(crate) forward: std::sync::OnceLock<Arc<dyn crate::net::ForwardHandler>>,
    pub(crate) shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    local_addr: SocketAddr,
    /// Operations (issue 13 item 6): what answers the peers' `Ops` requests (the broker's).
    pub(crate) ops: ops::OpsSlot,
    /// Deleted quorum queues whose member is still being shut down and its log emptied
    /// (`QuorumQueue::destroy`): a member of the same group waits for it before it starts
    /// (helper quorumone).
    pub(crate) destroying: crate::quorum::destroy::Destroying,
    /// Read barrier (helper readwrites): the one read-index round in flight on this node and
    /// the callers waiting for the next (node/read_index.rs).
    pub(crate) read_index: read_index::ReadIndex,
}

/// A node of the cluster. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    pub(crate) inner: Arc<NodeInner>,
}

/// A node's role in the metadata group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Takes writes and replicates them.
    Leader,
    /// A voter following the leader.
    Follower,
    /// A voter asking for votes.
    Candidate,
    /// Receives the log but does not vote (joining, or not yet part of a cluster).
    Learner,
    /// Stopped.
    Shutdown,
}

/// One member as `cluster_status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberStatus {
    /// Its name.
    pub name: String,
    /// Its cluster address.
    pub addr: String,
    /// Whether it votes (false: a learner).
    pub voter: bool,
}

/// `cluster_status`: this node's view of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterStatus {
    /// This node's name.
    pub node: String,
    /// Its role.
    pub role: Role,
    /// The leader it knows of.
    pub leader: Option<String>,
    /// The current Raft term.
    pub term: u64,
    /// The index of the last entry in its log.
    pub last_log_index: u64,
    /// The index of the last entry applied to its metadata.
    pub last_applied: u64,
    /// The members, voters first, by name.
    pub members: Vec<MemberStatus>,
}

impl Cluster {
    /// Binds the cluster listener on `config.listen` and starts the node.
    pub async fn start<A: MetadataApply>(
        config: ClusterConfig,
        applier: A,
    ) -> Result<Cluster, ClusterError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ClusterError::Io {
                    context: format!("cannot bind the cluster listener on {}", config.listen),
                    source,
                })?;
        Cluster::start_with_listener(config, listener, applier).await
    }

    /// Starts the node on a listener bound already (tests bind port 0 first to learn the address
    /// that the other nodes' configurations name).
    pub async fn start_with_listener<A: MetadataApply>(
        config: ClusterConfig,
        listener: TcpListener,
        applier: A,
    ) -> Result<Cluster, ClusterError> {
        Cluster::start_inner(config, Some(listener), applier).await
    }

    // --- Quorum queues on a node without [cluster] (helper quorumone) ---
    /// Starts a node that is a cluster of one and stays one: no listener (nothing can reach it
    /// from outside the process), no peers. A plain broker (no `[cluster]` table) runs its
    /// quorum queues' groups on such a node (server `cluster/quorum/single.rs`): each queue a
    /// group of one member, sharing the node's write-ahead log and its fsyncs. `config.peers`
    /// must be empty; `config.listen` is only reported, never bound.
    pub async fn start_local<A: MetadataApply>(
        config: ClusterConfig,
        applier: A,
    ) -> Result<Cluster, ClusterError> {
        if !config.peers.is_empty() {
            return Err(ClusterError::Stopped(
                "a local node of one has no peers".into(),
            ));
        }
        Cluster::start_inner(config, None, applier).await
    }
    // --- end quorumone ---

    async fn start_inner<A: MetadataApply>(
        config: ClusterConfig,
        listener: Option<TcpListener>,
        applier: A,
    ) -> Result<Cluster, ClusterError> {
        let io = |context: String| move |source| ClusterError::Io { context, source };
        let dir = config.cluster_dir();
        std::fs::create_dir_all(&dir).map_err(io(format!("cannot create {}", dir.display())))?;
        let local_addr = match &listener {
            Some(listener) => listener
                .local_addr()
                .map_err(io("cannot read the listener's address".into()))?,
            None => config.listen,
        };
        let wal = Wal::open(&dir.join("wal"), WalOptions::default())?;
        let state_machine = MetaStateMachine::open(&dir, applier)
            .map_err(|e| ClusterError::Stopped(e.to_string()))?;
        let me = Member {
            name: config.node_name.to_string(),
            addr: config.advertise.clone(),
        };
        let id = node_id(&me.name);
        let tls = match &config.tls {
            Some(files) => Some(Arc::new(crate::net::ClusterTls::load(files)?)),
            // A local node (no listener) has no link to protect.
            None if listener.is_none() => None,
            None => {
                tracing::warn!(listen = %local_addr, "cluster: the cluster link is plain TCP, without authentication: anything that reaches the cluster port can act as a node; set tls_certfile, tls_keyfile and tls_cacertfile in [cluster], or keep the port on a private network");
                None
            }
        };
        let peers = Peers::with_tls(tls.clone());
        let raft_config = openraft::Config {
            cluster_name: "pigeon".into(),
            heartbeat_interval: millis(config.timing.heartbeat),
            election_timeout_min: millis(config.timing.election_min),
            election_timeout_max: millis(config.timing.election_max),
            // Metadata changes are few and small: a snapshot every 10,000 of them, keeping 1,000
            // entries after it for followers that are only a little behind.
            snapshot_policy: SnapshotPolicy::LogsSinceLast(10_000),
            max_in_snapshot_log_to_keep: 1_000,
            ..Default::default()
        }
        .validate()
        .map_err(|e| ClusterError::Stopped(format!("invalid Raft timing: {e}")))?;
        // Its candidates' refused votes tell the liveness-driven failover who has the longest
        // log (node/failover.rs).
        let meta_failover = Arc::new(crate::failover::Failover::default());
        let raft = Raft::new(
            id,
            Arc::new(raft_config),
            GroupNetwork::<MetaTypes>::observed(
                GroupId::METADATA,
                peers.clone(),
                meta_failover.clone(),
            ),
            wal.group::<MetaTypes>(GroupId::METADATA),
            state_machine,
        )
        .await
        .map_err(|e| ClusterError::Stopped(e.to_string()))?;
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut groups: HashMap<GroupId, Arc<dyn GroupEndpoint>> = HashMap::new();
        groups.insert(GroupId::METADATA, Arc::new(raft.clone()));
        let liveness = Arc::new(Liveness::new(&me.name));
        let inner = Arc::new(NodeInner {
            config,
            me,
            id,
            raft,
            wal,
            peers,
            groups: Mutex::new(groups),
            queue_writers: Mutex::new(HashMap::new()),
            admin: tokio::sync::Mutex::new(()),
            liveness,
            quorum: Default::default(),
            meta_failover,
            meta_aside: Default::default(),
            forward: std::sync::OnceLock::new(),
            shutdown,
            tasks: Mutex::new(Vec::new()),
            local_addr,
            ops: ops::OpsSlot::default(),
            destroying: Default::default(),
            read_index: Default::default(),
        });
        let handler: Arc<dyn crate::net::Handler> = Arc::new(handler::NodeHandler(inner.clone()));
        let serve = match listener {
            Some(listener) => tokio::spawn(crate::net::server::serve(
                listener,
                tls,
                handler,
                shutdown_rx,
            )),
            // A local node (`start_local`) takes no connections.
            None => tokio::spawn(async move { drop((tls, handler, shutdown_rx)) }),
        };
        let bootstrap = tokio::spawn(membership::bootstrap(inner.clone()));
        let metrics = inner.raft.metrics();
        let liveness = tokio::spawn(liveness::run(
            inner.peers.clone(),
            inner.me.clone(),
            LivenessTiming {
                interval: inner.config.timing.node_heartbeat,
                misses: inner.config.timing.node_heartbeat_misses,
            },
            inner.liveness.clone(),
            move || {
                metrics
                    .borrow()
                    .membership_config
                    .membership()
                    .nodes()
                    .map(|(_, m)| m.clone())
                    .collect()
            },
            inner.shutdown.subscribe(),
        ));
        let idle = tokio::spawn(crate::quorum::idle::run(Arc::downgrade(&inner)));
        let meta_failover = tokio::spawn(failover::run(Arc::downgrade(&inner)));
        inner
            .tasks
            .lock()
            .extend([serve, bootstrap, liveness, idle, meta_failover]);
        tracing::info!(node = %inner.me, listen = %local_addr, "cluster: node started");
        Ok(Cluster { inner })
    }

    /// This node's name.
    pub fn name(&self) -> &str {
        &self.inner.me.name
    }

    /// This node's Raft id.
    pub fn node_id(&self) -> NodeId {
        self.inner.id
    }

    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.local_addr
    }

    /// The node's write-ahead log (its counters).
    pub fn wal(&self) -> &Wal {
        &self.inner.wal
    }

    /// The network for another Raft group on this node (a quorum queue, next): it shares the
    /// node's connections to its peers. Give the group's `Raft` this, and
    /// [`Wal::group`](crate::wal::Wal::group) of [`Self::wal`] as its log, then
    /// [`register_group`](Self::register_group) it so that peers' messages reach it.
    pub fn group_network<C>(&self, group: GroupId) -> GroupNetwork<C> {
        GroupNetwork::new(group, self.inner.peers.clone())
    }

    /// Routes the peers' Raft messages for `group` to `endpoint` (a group's `Raft`).
    pub fn register_group(&self, group: GroupId, endpoint: Arc<dyn GroupEndpoint>) {
        self.inner.groups.lock().insert(group, endpoint);
    }

    /// Stops routing messages to `group` (deleted, or moved off this node).
    pub fn unregister_group(&self, group: GroupId) {
        self.inner.groups.lock().remove(&group);
    }

    /// The metadata group's Raft, for what this type does not wrap (metrics, triggers).
    pub fn raft(&self) -> &Raft<MetaTypes> {
        &self.inner.raft
    }

    /// The metadata group's metrics, to watch.
    pub fn metrics(&self) -> watch::Receiver<RaftMetrics<NodeId, Member>> {
        self.inner.raft.metrics()
    }

    /// This node's view of the cluster.
    pub fn status(&self) -> ClusterStatus {
        let m = self.inner.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let mut members: Vec<MemberStatus> = membership
            .nodes()
            .map(|(id, node)| MemberStatus {
                name: node.name.clone(),
                addr: node.addr.clone(),
                voter: voters.contains(id),
            })
            .collect();
        members.sort_by(|a, b| b.voter.cmp(&a.voter).then_with(|| a.name.cmp(&b.name)));
        let role = match m.state {
            ServerState::Leader => Role::Leader,
            ServerState::Follower => Role::Follower,
            ServerState::Candidate => Role::Candidate,
            ServerState::Learner => Role::Learner,
            ServerState::Shutdown => Role::Shutdown,
        };
        ClusterStatus {
            node: self.inner.me.name.clone(),
            role,
            leader: m
                .current_leader
                .and_then(|id| membership.get_node(&id))
                .map(|n| n.name.clone()),
            term: m.current_term,
            last_log_index: m.last_log_index.unwrap_or(0),
            last_applied: m.last_applied.map_or(0, |l| l.index),
            members,
        }
    }

    /// Whether the member at `addr` answers on the cluster link within `timeout` (what
    /// `/api/nodes` shows as `running`). This node answers for itself without a call.
    pub async fn probe(&self, addr: &str, timeout: Duration) -> bool {
        if addr == self.inner.me.addr {
            return true;
        }
        let hello = crate::net::Request::Hello {
            protocol: crate::net::PROTOCOL,
            name: self.inner.me.name.clone(),
        };
        matches!(
            self.inner.peers.call(addr, hello, timeout).await,
            Ok(crate::net::Response::Hello { .. })
        )
    }

    /// Every member of the cluster (this node included) and whether it answers on the cluster
    /// link (node liveness: docs/clustering.md, "Node liveness"). A member is up until it has
    /// missed `node_heartbeat_misses` pings in a row.
    pub fn node_states(&self) -> NodeStates {
        self.inner.liveness.states.borrow().clone()
    }

    /// A watch of [`Self::node_states`], changed when a member goes down, comes back, joins or
    /// leaves.
    pub fn watch_node_states(&self) -> watch::Receiver<NodeStates> {
        self.inner.liveness.states.subscribe()
    }

    /// The members' changes as they happen: down, up again, restarted (what a quorum queue's
    /// leader turns into `NodeDown`, for example). A receiver that falls more than 1,024 events
    /// behind loses the oldest ([`tokio::sync::broadcast`]); [`Self::node_states`] is the truth.
    pub fn node_events(&self) -> tokio::sync::broadcast::Receiver<NodeEvent> {
        self.inner.liveness.events.subscribe()
    }

    /// Waits until this node knows a leader; its name. `None` if `timeout` passes first.
    pub async fn wait_for_leader(&self, timeout: Duration) -> Option<String> {
        let mut rx = self.metrics();
        let found =
            tokio::time::timeout(timeout, rx.wait_for(|m| m.current_leader.is_some())).await;
        match found {
            Ok(Ok(_)) => self.status().leader,
            _ => None,
        }
    }

    /// Builds a snapshot of the metadata and drops the log it covers (what openraft does on its
    /// own every 10,000 entries), so that a node that falls behind or joins gets the snapshot.
    /// Waits for both, up to `timeout`.
    pub async fn compact(&self, timeout: Duration) -> Result<u64, ClusterError> {
        let raft = &self.inner.raft;
        let applied = raft.metrics().borrow().last_applied.map_or(0, |l| l.index);
        raft.trigger()
            .snapshot()
            .await
            .map_err(|e| ClusterError::Stopped(e.to_string()))?;
        let mut rx = self.metrics();
        let waited =
            |what: &str| ClusterError::Stopped(format!("{what} did not finish within {timeout:?}"));
        tokio::time::timeout(
            timeout,
            rx.wait_for(|m| m.snapshot.is_some_and(|s| s.index >= applied)),
        )
        .await
        .map_err(|_| waited("the snapshot"))?
        .map_err(|_| waited("the snapshot"))?;
        raft.trigger()
            .purge_log(applied)
            .await
            .map_err(|e| ClusterError::Stopped(e.to_string()))?;
        tokio::time::timeout(
            timeout,
            rx.wait_for(|m| m.purged.is_some_and(|p| p.index >= applied)),
        )
        .await
        .map_err(|_| waited("purging the log"))?
        .map_err(|_| waited("purging the log"))?;
        Ok(applied)
    }

    /// Stops the node: Raft, the listener and its connections, the outgoing connections, the log.
    /// When it returns, the listener's port and the data directory are free.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        let _ = inner.shutdown.send(true);
        if let Err(e) = inner.raft.shutdown().await {
            tracing::warn!("cluster: raft did not stop cleanly: {e}");
        }
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *inner.tasks.lock());
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
        inner.groups.lock().clear();
        inner.queue_writers.lock().clear();
        inner.peers.close_all();
        let wal = inner.wal.clone();
        let _ = tokio::task::spawn_blocking(move || wal.shutdown()).await;
        tracing::info!(node = %inner.me, "cluster: node stopped");
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
