//! The read barrier (issue 13 item 2): a node whose lookup missed catches up with the metadata
//! leader before it answers "not found".
//!
//! Every node answers reads from its own applied state. A follower learns that an entry is
//! committed from the leader's next AppendEntries (a heartbeat, up to `heartbeat` later), so
//! an entity declared through node A, acknowledged to its client once a majority had it, can
//! be missing on node B for a few hundred milliseconds. [`Cluster::read_barrier`] closes that
//! gap with Raft's read-index protocol (Raft thesis, section 6.4; openraft's
//! `Raft::get_read_log_id`): the leader confirms with a majority that it still leads and
//! answers its commit index (the heartbeats of that confirmation carry the index to the
//! followers), and this node waits until it has applied up to it. Whatever was acknowledged to
//! any client before the barrier started is then applied here.
//!
//! Barriers are coalesced per node: at most one round is in flight, and the callers that come
//! while it runs share the next one (a round that started before a caller's miss cannot answer
//! for it). A flood of misses therefore costs the leader at most one request per node at a
//! time.

use super::{Cluster, NodeInner};
use crate::net::{NodeState, Request, Response, WireError};
use openraft::error::{CheckIsLeaderError, RaftError};
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// Why a read barrier did not complete: the caller answers from what it has (as without a
/// barrier).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BarrierError {
    /// No leader is known: an election, or this node is cut off in a minority.
    #[error("no metadata leader is known")]
    NoLeader,
    /// The leader did not confirm its read index (deposed, cut off from its majority,
    /// unreachable, or down).
    #[error("the metadata leader {leader} gave no read index: {reason}")]
    Leader {
        /// The leader's name.
        leader: String,
        /// Why.
        reason: String,
    },
    /// Not caught up within the bound (the cluster's write timeout).
    #[error("not caught up with the metadata leader within {0:?}")]
    Timeout(Duration),
    /// The node is stopping.
    #[error("the cluster node is stopping")]
    Stopped,
}

/// The rounds of one node.
pub(crate) struct ReadIndex {
    rounds: Mutex<Rounds>,
    /// The last round finished and its outcome.
    finished: watch::Sender<Finished>,
    /// Whether this node holds metadata entries it has not applied (`Cluster::metadata_pending`),
    /// kept by a task that watches the metrics, started at the first question.
    pending: OnceLock<Arc<AtomicBool>>,
}

impl Default for ReadIndex {
    fn default() -> Self {
        ReadIndex {
            rounds: Mutex::new(Rounds::default()),
            finished: watch::channel(Finished::default()).0,
            pending: OnceLock::new(),
        }
    }
}

#[derive(Default)]
struct Rounds {
    /// The number of the last round started.
    started: u64,
    /// The highest round a caller waits for.
    wanted: u64,
    /// Whether a task runs rounds.
    running: bool,
}

#[derive(Clone)]
struct Finished {
    round: u64,
    result: Result<(), BarrierError>,
}

impl Default for Finished {
    fn default() -> Self {
        Finished {
            round: 0,
            result: Err(BarrierError::Stopped),
        }
    }
}

impl Cluster {
    /// Catches up with the metadata leader: returns once this node has applied every metadata
    /// change committed before the call (so a lookup made afterwards sees every change
    /// acknowledged to any client before it). Call it after a lookup missed, then look again;
    /// never on a hit. Bounded by the write timeout; fails at once when no leader is known.
    pub async fn read_barrier(&self) -> Result<(), BarrierError> {
        let inner = &self.inner;
        let state = &inner.read_index;
        let mut finished = state.finished.subscribe();
        let (need, start) = {
            let mut r = state.rounds.lock();
            // A round in flight may have read its index before our miss: the next one.
            let need = r.started + 1;
            r.wanted = r.wanted.max(need);
            let start = !r.running;
            r.running = true;
            (need, start)
        };
        if start {
            tokio::spawn(run(Arc::clone(inner)));
        }
        // A round ends within the write timeout; a little more for the one ahead of ours.
        let bound = inner.config.timing.write_timeout * 2;
        let waited = tokio::time::timeout(bound, finished.wait_for(|f| f.round >= need))
            .await
            .map(|r| r.map(|f| f.result.clone()));
        match waited {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(BarrierError::Stopped),
            Err(_) => Err(BarrierError::Timeout(bound)),
        }
    }

    /// Whether this node holds metadata entries that it has not applied yet: received from the
    /// leader, their commit not known here yet (a change in flight). A cheap load: the broker
    /// asks it on paths where a stale hit would lose a message silently (a publish to an
    /// exchange with no bindings here), to take the read barrier only then.
    pub fn metadata_pending(&self) -> bool {
        let state = &self.inner.read_index;
        let flag = state.pending.get_or_init(|| {
            let flag = Arc::new(AtomicBool::new(false));
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(watch_pending(
                    self.inner.raft.metrics(),
                    self.inner.shutdown.subscribe(),
                    Arc::clone(&flag),
                ));
            }
            flag
        });
        flag.load(Ordering::Relaxed)
    }
}

/// Runs rounds while callers wait for one not started yet.
async fn run(inner: Arc<NodeInner>) {
    loop {
        let round = {
            let mut r = inner.read_index.rounds.lock();
            if r.wanted <= r.started {
                r.running = false;
                return;
            }
            r.started += 1;
            r.started
        };
        let result = round_once(&inner).await;
        if let Err(e) = &result {
            tracing::debug!(error = %e, "cluster: read barrier incomplete");
        }
        inner
            .read_index
            .finished
            .send_replace(Finished { round, result });
    }
}

/// One round: the leader's read index, then this node's apply up to it.
async fn round_once(inner: &NodeInner) -> Result<(), BarrierError> {
    let bound = inner.config.timing.write_timeout;
    let deadline = Instant::now() + bound;
    let leader = inner.leader().ok_or(BarrierError::NoLeader)?;
    let refused = |reason: String| BarrierError::Leader {
        leader: leader.name.clone(),
        reason,
    };
    let index = if leader.name == inner.me.name {
        match tokio::time::timeout_at(deadline, read_index_here(inner)).await {
            Err(_) => return Err(BarrierError::Timeout(bound)),
            Ok(Ok(index)) => index,
            Ok(Err(e)) => return Err(refused(format!("{e:?}"))),
        }
    } else {
        // A leader that node liveness sees down would only make us wait for the timeout.
        let down = inner.liveness.states.borrow().get(&leader.name) == Some(&NodeState::Down);
        if down {
            return Err(refused("down".into()));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match inner
            .peers
            .call(&leader.addr, Request::ReadIndex, left)
            .await
        {
            Ok(Response::ReadIndex { index }) => index,
            Ok(Response::Error(e)) => return Err(refused(format!("{e:?}"))),
            Ok(other) => return Err(refused(format!("unexpected answer {other:?}"))),
            Err(e) => return Err(refused(e.to_string())),
        }
    };
    let mut metrics = inner.raft.metrics();
    let applied = |m: &openraft::RaftMetrics<crate::NodeId, crate::Member>| {
        m.last_applied.is_some_and(|l| l.index >= index) || index == 0
    };
    let waited = tokio::time::timeout_at(deadline, metrics.wait_for(applied))
        .await
        .map(|r| r.map(|_| ()));
    match waited {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(BarrierError::Stopped),
        Err(_) => Err(BarrierError::Timeout(bound)),
    }
}

/// The leader's read index: its commit index (at least its term's first entry) once a majority
/// confirmed that it still leads.
async fn read_index_here(inner: &NodeInner) -> Result<u64, WireError> {
    match inner.raft.get_read_log_id().await {
        Ok((read, _applied)) => Ok(read.map_or(0, |l| l.index)),
        Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f))) => {
            Err(WireError::NotLeader {
                leader: f.leader_node.map(|n| n.name),
            })
        }
        Err(e) => Err(WireError::Other(e.to_string())),
    }
}

/// Answers a peer's `ReadIndex` (this node should be the leader).
pub(super) async fn answer(inner: &NodeInner) -> Response {
    let bound = inner.config.timing.write_timeout;
    match tokio::time::timeout(bound, read_index_here(inner)).await {
        Ok(Ok(index)) => Response::ReadIndex { index },
        Ok(Err(e)) => Response::Error(e),
        Err(_) => Response::Error(WireError::Timeout {
            waited_ms: u64::try_from(bound.as_millis()).unwrap_or(u64::MAX),
            leader: inner.leader().map(|l| l.name),
        }),
    }
}

/// Keeps `flag` equal to "the log holds entries past the applied index" until the node stops.
async fn watch_pending(
    mut metrics: watch::Receiver<openraft::RaftMetrics<crate::NodeId, crate::Member>>,
    mut shutdown: watch::Receiver<bool>,
    flag: Arc<AtomicBool>,
) {
    loop {
        {
            let m = metrics.borrow_and_update();
            let applied = m.last_applied.map_or(0, |l| l.index);
            flag.store(m.last_log_index.unwrap_or(0) > applied, Ordering::Relaxed);
        }
        let more = tokio::select! {
            changed = metrics.changed() => changed.is_ok(),
            _ = shutdown.changed() => false,
        };
        if !more {
            return;
        }
    }
}
