//! Elections at once when node liveness loses a group's leader node, for every kind of group
//! (the metadata group: node/failover.rs; quorum queues' groups: quorum/failover.rs): a new
//! leader about a round trip after the detection, instead of after the followers' leader lease.
//!
//! openraft 0.9 gives every follower a *leader lease* (`EngineConfig::timer_config.leader_lease`,
//! set to `election_timeout_max` with no setting of its own): while its vote is committed to a
//! leader it heard from less than that long ago, it refuses every vote request
//! (`Engine::handle_vote_req`, "reject vote-request: leader lease has not yet expire"), and its
//! own election timer waits for the lease plus an election timeout (`handle_tick_election`). So
//! when the leader's node dies under load, a survivor that liveness tells at once and that
//! starts an election (`trigger().elect()`) is refused by the other survivors until their lease
//! runs out: 3.2-4.0 s measured for a quorum queue, against RabbitMQ's 0.3 s. The lease is a
//! guard against disruptive candidates, not part of Raft's safety: votes and the log check
//! still decide who may lead, so ending it early cannot elect two leaders of one term nor a
//! leader without a committed entry.
//!
//! A follower's lease holds only while its vote is *committed*; a node that campaigns replaces
//! its vote with its own uncommitted one. So when liveness reports the leader's node `Down` (or
//! `Restarted`), **every** surviving voter of the groups it led starts an election at once
//! ([`Failover::elect`]):
//!
//! - that gives up its lease, so that it can grant a better candidate's vote;
//! - with openraft 0.9's default leader ids (`leader_id_adv`: `(term, node id)`, totally
//!   ordered), at equal terms the candidate with the higher node id wins, so the first round
//!   often elects the highest-id survivor outright;
//! - when it does not (its request reached a survivor that had not heard of the loss yet, or a
//!   survivor has a longer log), one survivor tries again every `node_heartbeat / 10` (50 ms)
//!   until a leader is known: the one whose log is the longest, as learnt from the refusals'
//!   last log ids ([`VoteObserver`]), or, when nothing says so, the highest-id survivor. Only one
//!   survivor retries, so no two duel with ever higher terms.
//! - The retries stop after the group's shortest election timeout: openraft's own timers take
//!   over then, as they do when liveness does not see the loss at all.
//!
//! A node keeps one [`Failover`] per kind of group (it observes their vote answers and counts
//! their elections apart).

use crate::config::Timing;
use crate::net::raft::VoteObserver;
use crate::net::NodeState;
use crate::node::NodeInner;
use crate::types::{node_id, GroupId, Member, NodeId};
use openraft::raft::VoteResponse;
use openraft::{LogId, Raft, RaftTypeConfig, ServerState};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// What a failover's candidate learnt from the refusals of its vote requests.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    /// A survivor has a longer log: it must lead, not this one.
    greater: bool,
    /// A survivor has a shorter log: this one should lead.
    smaller: bool,
}

/// A node's liveness-driven elections in one kind of group.
#[derive(Debug, Default)]
pub(crate) struct Failover {
    /// The groups in a failover now, and what their candidate here learnt.
    rounds: Mutex<HashMap<GroupId, Seen>>,
    /// Elections started on this node because liveness lost a group's leader (retries too).
    elections: AtomicU64,
}

impl VoteObserver for Failover {
    fn answered(
        &self,
        group: GroupId,
        mine: Option<&LogId<NodeId>>,
        response: &VoteResponse<NodeId>,
    ) {
        if response.vote_granted {
            return;
        }
        if let Some(seen) = self.rounds.lock().get_mut(&group) {
            match response.last_log_id.as_ref().partial_cmp(&mine) {
                Some(std::cmp::Ordering::Greater) => seen.greater = true,
                Some(std::cmp::Ordering::Less) => seen.smaller = true,
                _ => {}
            }
        }
    }
}

/// The members of the cluster that node liveness sees down now.
pub(crate) fn down_nodes(inner: &NodeInner) -> HashSet<NodeId> {
    inner
        .liveness
        .states
        .borrow()
        .iter()
        .filter(|(_, s)| **s == NodeState::Down)
        .map(|(name, _)| node_id(name))
        .collect()
}

/// A member whose leader is gone: whether it is still without one.
fn leaderless<C>(raft: &Raft<C>, lost: NodeId) -> bool
where
    C: RaftTypeConfig<NodeId = NodeId, Node = Member>,
{
    let metrics = raft.metrics();
    let m = metrics.borrow();
    m.state != ServerState::Leader && m.current_leader.is_none_or(|l| l == lost)
}

/// Whether this node is a voter of `raft`'s group, and the highest of its voters that are
/// neither `lost` nor down.
fn voter_and_highest<C>(
    raft: &Raft<C>,
    me: NodeId,
    lost: NodeId,
    down: &HashSet<NodeId>,
) -> (bool, bool)
where
    C: RaftTypeConfig<NodeId = NodeId, Node = Member>,
{
    let metrics = raft.metrics();
    let m = metrics.borrow();
    let membership = m.membership_config.membership();
    let voter = membership.voter_ids().any(|v| v == me);
    let highest = membership
        .voter_ids()
        .filter(|v| *v != lost && !down.contains(v))
        .max()
        == Some(me);
    (voter, highest)
}

impl Failover {
    /// How many elections this node started because liveness lost a group's leader.
    pub(crate) fn elections(&self) -> u64 {
        self.elections.load(Ordering::Relaxed)
    }

    /// Liveness lost node `lost` (`down`: every node it sees down now, `lost` included): this
    /// node's member of each of `groups` whose leader was on `lost` stands for election at
    /// once if it votes, and one survivor per group retries every `node_heartbeat / 10` until
    /// a leader is known or `within` has passed (module documentation), on a task of its own.
    /// Returns how many elections it started.
    pub(crate) async fn elect<C>(
        self: &Arc<Self>,
        groups: Vec<(GroupId, Raft<C>)>,
        lost: NodeId,
        down: &HashSet<NodeId>,
        me: NodeId,
        timing: &Timing,
        within: Duration,
    ) -> usize
    where
        C: RaftTypeConfig<NodeId = NodeId, Node = Member>,
    {
        if lost == me {
            return 0;
        }
        let mut round = Vec::new();
        for (group, raft) in groups {
            if raft.metrics().borrow().current_leader != Some(lost) {
                continue;
            }
            let (voter, first) = voter_and_highest(&raft, me, lost, down);
            if !voter {
                continue;
            }
            self.rounds.lock().insert(group, Seen::default());
            self.elections.fetch_add(1, Ordering::Relaxed);
            let _ = raft.trigger().elect().await;
            round.push((group, raft, first));
        }
        let started = round.len();
        if started > 0 {
            let every = (timing.node_heartbeat / 10)
                .clamp(Duration::from_millis(10), Duration::from_millis(100));
            tokio::spawn(self.clone().retry(round, lost, every, within));
        }
        started
    }

    /// Tries again, every `every` until `within` has passed, in the groups of `round` still
    /// without a leader, where this member is the one to retry (module documentation).
    async fn retry<C>(
        self: Arc<Self>,
        mut round: Vec<(GroupId, Raft<C>, bool)>,
        lost: NodeId,
        every: Duration,
        within: Duration,
    ) where
        C: RaftTypeConfig<NodeId = NodeId, Node = Member>,
    {
        let end = Instant::now() + within;
        while !round.is_empty() && Instant::now() + every < end {
            tokio::time::sleep(every).await;
            let mut next = Vec::with_capacity(round.len());
            for (group, raft, first) in round {
                if !leaderless(&raft, lost) {
                    self.rounds.lock().remove(&group);
                    continue;
                }
                let seen = self.rounds.lock().get(&group).copied().unwrap_or_default();
                if !seen.greater && (first || seen.smaller) {
                    self.elections.fetch_add(1, Ordering::Relaxed);
                    let _ = raft.trigger().elect().await;
                }
                next.push((group, raft, first));
            }
            round = next;
        }
        let mut rounds = self.rounds.lock();
        for (group, _, _) in round {
            rounds.remove(&group);
        }
    }
}
