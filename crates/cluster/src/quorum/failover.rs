//! Elections of quorum queues' groups when node liveness loses the leader's node: a new leader
//! about a round trip after the detection, instead of after the followers' leader lease.
//!
//! openraft 0.9 gives every follower a *leader lease* (`EngineConfig::timer_config.leader_lease`,
//! set to `election_timeout_max` with no setting of its own): while its vote is committed to a
//! leader it heard from less than that long ago, it refuses every vote request
//! (`Engine::handle_vote_req`, "reject vote-request: leader lease has not yet expire"). So when
//! the leader's node dies under load, a survivor that liveness tells at once and that starts an
//! election (`trigger().elect()`) is refused by the other survivors until their lease runs out:
//! 3.2-4.0 s measured, against RabbitMQ's 0.3 s. The lease is a guard against disruptive
//! candidates, not part of Raft's safety: votes and the log check still decide who may lead, so
//! ending it early cannot elect two leaders of one term nor a leader without a committed entry.
//!
//! A follower's lease holds only while its vote is *committed*; a node that campaigns replaces
//! its vote with its own uncommitted one. So when liveness reports the leader's node `Down` (or
//! `Restarted`), **every** surviving voter of the groups it led starts an election at once:
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
//! - The retries stop after the groups' shortest election timeout: openraft's own timers take
//!   over then, as they do when liveness does not see the loss at all.

use super::idle::IdleMember;
use crate::net::raft::VoteObserver;
use crate::node::{Cluster, NodeInner};
use crate::types::{GroupId, NodeId};
use openraft::raft::VoteResponse;
use openraft::{LogId, ServerState};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
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

/// The node's liveness-driven elections (held by the idle policy's [`super::idle::IdleGroups`]).
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

impl Cluster {
    /// How many elections this node's quorum-queue members started because node liveness
    /// reported their leader's node lost (rather than on their election timer): for tests and
    /// diagnostics.
    pub fn quorum_failover_elections(&self) -> u64 {
        self.inner.quorum.failover.elections.load(Ordering::Relaxed)
    }
}

/// A member whose leader is gone: whether it is still without one.
fn leaderless(member: &IdleMember, lost: NodeId) -> bool {
    let metrics = member.raft.metrics();
    let m = metrics.borrow();
    m.state != ServerState::Leader && m.current_leader.is_none_or(|l| l == lost)
}

/// The voters of `member`'s group that are neither `lost` nor down, and whether this node is
/// the highest of them.
fn highest_survivor(member: &IdleMember, me: NodeId, lost: NodeId, down: &HashSet<NodeId>) -> bool {
    let metrics = member.raft.metrics();
    let m = metrics.borrow();
    m.membership_config
        .membership()
        .voter_ids()
        .filter(|v| *v != lost && !down.contains(v))
        .max()
        == Some(me)
}

/// Liveness lost node `lost`: every member here whose leader it was is woken and stands for
/// election at once; the retries run on a task of their own. Returns how many were woken.
pub(crate) async fn node_lost(
    node: &Weak<NodeInner>,
    members: Vec<(GroupId, Arc<IdleMember>)>,
    lost: NodeId,
    down: &HashSet<NodeId>,
    me: NodeId,
) -> usize {
    let Some(inner) = node.upgrade() else {
        return 0;
    };
    let failover = inner.quorum.failover.clone();
    let timing = inner.config.timing.clone();
    drop(inner);
    let mut round = Vec::new();
    for (group, member) in members {
        if lost == me || member.raft.metrics().borrow().current_leader != Some(lost) {
            continue;
        }
        member.wake();
        let voter = member
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == me);
        if !voter {
            continue;
        }
        let first = highest_survivor(&member, me, lost, down);
        failover.rounds.lock().insert(group, Seen::default());
        failover.elections.fetch_add(1, Ordering::Relaxed);
        let _ = member.raft.trigger().elect().await;
        round.push((group, member, first));
    }
    let woken = round.len();
    if woken > 0 {
        tracing::info!(
            groups = woken,
            "quorum queues: electing at once in the groups the lost node led"
        );
        let every = (timing.node_heartbeat / 10)
            .clamp(Duration::from_millis(10), Duration::from_millis(100));
        tokio::spawn(retry(
            failover,
            round,
            lost,
            every,
            timing.quorum_election_min,
        ));
    }
    woken
}

/// Tries again, every `every` until `within` has passed, in the groups of `round` still without
/// a leader, where this member is the one to retry (module documentation).
async fn retry(
    failover: Arc<Failover>,
    mut round: Vec<(GroupId, Arc<IdleMember>, bool)>,
    lost: NodeId,
    every: Duration,
    within: Duration,
) {
    let end = Instant::now() + within;
    while !round.is_empty() && Instant::now() + every < end {
        tokio::time::sleep(every).await;
        let mut next = Vec::with_capacity(round.len());
        for (group, member, first) in round {
            if !leaderless(&member, lost) {
                failover.rounds.lock().remove(&group);
                continue;
            }
            let seen = failover
                .rounds
                .lock()
                .get(&group)
                .copied()
                .unwrap_or_default();
            if !seen.greater && (first || seen.smaller) {
                failover.elections.fetch_add(1, Ordering::Relaxed);
                let _ = member.raft.trigger().elect().await;
            }
            next.push((group, member, first));
        }
        round = next;
    }
    let mut rounds = failover.rounds.lock();
    for (group, _, _) in round {
        rounds.remove(&group);
    }
}
