//! The idle policy of quorum queues' groups: a group without commands runs no Raft timers.
//!
//! A quorum queue is a Raft group, and Raft keeps a group alive with timers: the leader sends a
//! heartbeat to each follower every 250 ms, each follower starts an election when they stop. For
//! thousands of queues on three nodes that is tens of thousands of messages a second about
//! nothing (issue 13, item 4: "an idle group sends no heartbeats"). So each member of a group
//! switches openraft's `tick`, `heartbeat` and `elect` off ([`QuorumQueue::set_idle`]) unless
//! something needs them, and node liveness (net/liveness.rs, one ping per pair of nodes)
//! replaces the groups' heartbeats as the failure detector:
//!
//! - **Idle from the start.** A member starts with its timers off. `initialize` elects at once
//!   (openraft's `Engine::initialize` campaigns without waiting for a timer), and the first
//!   leader's appends tell the others who leads: forming 10,000 groups costs no heartbeats.
//! - **Awake after a command**, for `quorum_idle_after` (5 s): a write through the leader, or
//!   a recent command applied by a member, keeps it awake, so a busy group is plain Raft. A member goes
//!   idle once it has been quiet that long; the leader waits a grace longer (the largest
//!   election timeout and two liveness intervals), so that its followers are idle before it
//!   stops heartbeating, and none of them times out into an election. Every member decides
//!   from what it applied, so no command is needed to agree on it.
//! - **Awake without a leader.** A candidate, a follower that knows no leader, whose leader is
//!   not a voter any more (a membership change removed it), or whose leader's node liveness
//!   reports down, keeps its timers on until a leader is known again: so it elects.
//! - **Woken when a node is lost.** When liveness declares a node down, or sees that it
//!   restarted, every member here whose leader was on that node is woken at once and stands
//!   for election right away, past the followers' leader lease (quorum/failover.rs): a new
//!   leader a few round trips after the detection (at once for a killed process, 4 s for a
//!   silent one), the election timers as the fallback.
//! - **Announced when a node comes back.** When a node is up again (or restarted), each group
//!   this node leads with a member there sends one heartbeat (openraft's `trigger().heartbeat()`),
//!   so that the returning member learns its leader before its own election timer fires.
//!
//! Writes replicate without timers (openraft replicates on each append and sends the commit
//! index with its replication stream), so an idle leader commits a publish as quickly as an awake
//! one; the publish then wakes the group.

use super::group::QueueTypes;
use crate::net::NodeEventKind;
use crate::node::NodeInner;
use crate::types::{node_id, GroupId, NodeId};
use openraft::{Raft, ServerState};
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// The reference instant of [`Activity`]'s clock.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn since_epoch_ms() -> u64 {
    u64::try_from(Instant::now().duration_since(epoch()).as_millis()).unwrap_or(u64::MAX)
}

/// The groups a node's sweep looks at: those awake, or whose state may have changed.
type ActiveSet = Arc<Mutex<HashSet<GroupId>>>;

/// When a member last saw a command, shared by its handle and its state machine.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Milliseconds since [`epoch`] plus one; 0 = never.
    last: AtomicU64,
    /// Whether the member is in its node's active set (or about to be).
    listed: AtomicBool,
    /// The member's group and its node's active set, once registered.
    active: OnceLock<(GroupId, ActiveSet)>,
}

impl Activity {
    /// A command now.
    pub(crate) fn touch(&self) {
        self.last
            .fetch_max(since_epoch_ms().saturating_add(1), Ordering::Relaxed);
        self.changed();
    }

    /// Something that may change the policy's decision happened (a command, a membership
    /// change, a new leader's first entry): the next sweep looks at the member. Cheap when it
    /// is listed already (one atomic swap), as it is while commands flow.
    pub(crate) fn changed(&self) {
        if !self.listed.swap(true, Ordering::AcqRel) {
            if let Some((group, set)) = self.active.get() {
                set.lock().insert(*group);
            }
        }
    }

    /// How long since the last command; `None` if there was none.
    fn quiet(&self) -> Option<Duration> {
        match self.last.load(Ordering::Relaxed) {
            0 => None,
            at => Some(Duration::from_millis(
                since_epoch_ms().saturating_sub(at.saturating_sub(1)),
            )),
        }
    }
}

/// One member as the policy sees it.
pub(crate) struct IdleMember {
    pub(crate) raft: Raft<QueueTypes>,
    pub(crate) activity: Arc<Activity>,
    /// Whether its timers are off now.
    idle: AtomicBool,
}

impl IdleMember {
    pub(crate) fn new(raft: Raft<QueueTypes>, activity: Arc<Activity>) -> IdleMember {
        IdleMember {
            raft,
            activity,
            idle: AtomicBool::new(false),
        }
    }

    /// Switches the timers (openraft's runtime switches: atomics, no message to the core).
    pub(crate) fn set_idle(&self, idle: bool) {
        let runtime = self.raft.runtime_config();
        runtime.heartbeat(!idle);
        runtime.elect(!idle);
        runtime.tick(!idle);
        self.idle.store(idle, Ordering::Relaxed);
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.idle.load(Ordering::Relaxed)
    }

    /// Wakes the member now and counts it as activity (a write, a lost leader).
    pub(crate) fn wake(&self) {
        self.activity.touch();
        if self.idle.load(Ordering::Relaxed) {
            self.set_idle(false);
        }
    }

    /// Applies the policy's rules (module documentation) to this member.
    fn settle(&self, down: &HashSet<NodeId>, idle_after: Duration, grace: Duration) -> bool {
        let quiet = self.activity.quiet();
        let recent = |window: Duration| quiet.is_some_and(|q| q < window);
        let awake = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            match m.state {
                ServerState::Leader => recent(idle_after + grace),
                ServerState::Candidate => true,
                ServerState::Follower => match m.current_leader {
                    None => true,
                    Some(leader) => {
                        down.contains(&leader)
                            || !m
                                .membership_config
                                .membership()
                                .voter_ids()
                                .any(|v| v == leader)
                            || recent(idle_after)
                    }
                },
                ServerState::Learner | ServerState::Shutdown => false,
            }
        };
        if self.idle.load(Ordering::Relaxed) == awake {
            self.set_idle(!awake);
        }
        awake
    }
}

/// The quorum-queue members of a node, and those of them the sweep must look at: a node with
/// 10,000 idle groups does not look at 10,000 members twice a second, only at those awake or
/// touched (and at all of them every `FULL_SWEEP` sweeps, in case).
#[derive(Default)]
pub(crate) struct IdleGroups {
    members: Mutex<HashMap<GroupId, Arc<IdleMember>>>,
    active: ActiveSet,
    /// Liveness-driven elections (quorum/failover.rs).
    pub(crate) failover: Arc<super::failover::Failover>,
}

/// Every this many sweeps, all members are looked at.
const FULL_SWEEP: u32 = 20;

impl IdleGroups {
    pub(crate) fn insert(&self, group: GroupId, member: Arc<IdleMember>) {
        let _ = member.activity.active.set((group, self.active.clone()));
        self.members.lock().insert(group, member.clone());
        member.activity.listed.store(false, Ordering::Release);
        member.activity.changed();
    }

    pub(crate) fn remove(&self, group: GroupId) {
        self.members.lock().remove(&group);
        self.active.lock().remove(&group);
    }

    /// The members to look at: the active ones, or all.
    pub(super) fn to_sweep(&self, full: bool) -> Vec<(GroupId, Arc<IdleMember>)> {
        let members = self.members.lock();
        if full {
            return members.iter().map(|(g, m)| (*g, m.clone())).collect();
        }
        let active: Vec<GroupId> = self.active.lock().iter().copied().collect();
        active
            .into_iter()
            .filter_map(|g| members.get(&g).map(|m| (g, m.clone())))
            .collect()
    }

    /// Takes an idle member off the active set (until something touches it again).
    fn unlist(&self, group: GroupId, member: &IdleMember, idle_after: Duration) {
        member.activity.listed.store(false, Ordering::Release);
        self.active.lock().remove(&group);
        // A command applied between the decision and now: look again next time.
        if member.activity.quiet().is_some_and(|q| q < idle_after) {
            member.activity.changed();
        }
    }
}

/// The node's policy task: settles every member twice a second or so, and reacts to node
/// liveness's events at once. Returns at once when the policy is off (`quorum_idle_after`
/// `None`).
pub(crate) async fn run(node: Weak<NodeInner>) {
    let (mut events, mut shutdown, timing, me) = {
        let Some(inner) = node.upgrade() else { return };
        (
            inner.liveness.events.subscribe(),
            inner.shutdown.subscribe(),
            inner.config.timing.clone(),
            inner.id,
        )
    };
    let Some(idle_after) = timing.quorum_idle_after else {
        return;
    };
    let grace = timing.quorum_election_max + timing.node_heartbeat.saturating_mul(2);
    let period = (idle_after / 4).clamp(Duration::from_millis(10), Duration::from_millis(500));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sweeps = 0u32;
    let down_nodes = |inner: &NodeInner| -> HashSet<NodeId> {
        inner
            .liveness
            .states
            .borrow()
            .iter()
            .filter(|(_, s)| **s == crate::net::NodeState::Down)
            .map(|(name, _)| node_id(name))
            .collect()
    };
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let Some(inner) = node.upgrade() else { return };
                let down = down_nodes(&inner);
                // No `is_multiple_of`: it is newer than the workspace's rust-version (1.85).
                sweeps += 1;
                let full = sweeps >= FULL_SWEEP;
                if full {
                    sweeps = 0;
                }
                for (group, member) in inner.quorum.to_sweep(full) {
                    if !member.settle(&down, idle_after, grace) {
                        inner.quorum.unlist(group, &member, idle_after);
                    }
                }
            }
            event = events.recv() => {
                let event = match event {
                    Ok(event) => event,
                    // Missed events: the next sweep sees the states anyway.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                let Some(inner) = node.upgrade() else { return };
                let members = inner.quorum.to_sweep(true);
                let mut down = down_nodes(&inner);
                drop(inner);
                if matches!(event.kind, NodeEventKind::Down | NodeEventKind::Restarted) {
                    down.insert(event.id);
                    // Every survivor elects at once, past the followers' leader lease
                    // (quorum/failover.rs).
                    let woken = super::failover::node_lost(&node, members.clone(), event.id, &down, me).await;
                    if woken > 0 {
                        tracing::info!(node = %event.name, groups = woken, "quorum queues: waking the groups the lost node led");
                    }
                }
                if matches!(event.kind, NodeEventKind::Up | NodeEventKind::Restarted) {
                    for (_, member) in &members {
                        let leads_it = {
                            let metrics = member.raft.metrics();
                            let m = metrics.borrow();
                            m.state == ServerState::Leader
                                && m.membership_config.membership().get_node(&event.id).is_some()
                        };
                        if leads_it {
                            let _ = member.raft.trigger().heartbeat().await;
                        }
                    }
                }
            }
            changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { return },
        }
    }
}
