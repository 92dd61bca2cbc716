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
//! - **Awake after a command**, for `quorum_idle_after` (5 s): a write through a member, or a
//!   command applied by a member, keeps it awake, so a busy group is plain Raft. A member goes
//!   idle once it has been quiet that long; the leader waits a grace longer (the largest
//!   election timeout and two liveness intervals), so that its followers are idle before it
//!   stops heartbeating, and none of them times out into an election. Every member decides
//!   from what it applied, so no command is needed to agree on it.
//! - **Awake without a leader.** A candidate, a follower that knows no leader, whose leader is
//!   not a voter any more (a membership change removed it), or whose leader's node liveness
//!   reports down, keeps its timers on until a leader is known again: so it elects.
//! - **Woken when a node is lost.** When liveness declares a node down, or sees that it
//!   restarted, every member here whose leader was on that node is woken at once: the survivors
//!   elect a new leader within an election timeout (1.5-3 s) of the detection (4 s).
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

/// When a member last saw a command, shared by its handle and its state machine.
#[derive(Debug, Default)]
pub(crate) struct Activity {
    /// Milliseconds since [`epoch`] plus one; 0 = never.
    last: AtomicU64,
}

impl Activity {
    /// A command now.
    pub(crate) fn touch(&self) {
        self.last
            .fetch_max(since_epoch_ms().saturating_add(1), Ordering::Relaxed);
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
    fn settle(&self, down: &HashSet<NodeId>, idle_after: Duration, grace: Duration) {
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
    }
}

/// The quorum-queue members of a node.
#[derive(Default)]
pub(crate) struct IdleGroups {
    members: Mutex<HashMap<GroupId, Arc<IdleMember>>>,
}

impl IdleGroups {
    pub(crate) fn insert(&self, group: GroupId, member: Arc<IdleMember>) {
        self.members.lock().insert(group, member);
    }

    pub(crate) fn remove(&self, group: GroupId) {
        self.members.lock().remove(&group);
    }

    fn all(&self) -> Vec<Arc<IdleMember>> {
        self.members.lock().values().cloned().collect()
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
    let grace = timing.election_max + timing.node_heartbeat.saturating_mul(2);
    let period = (idle_after / 4).clamp(Duration::from_millis(10), Duration::from_millis(500));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let Some(inner) = node.upgrade() else { return };
                let down: HashSet<NodeId> = inner
                    .liveness
                    .states
                    .borrow()
                    .iter()
                    .filter(|(_, s)| **s == crate::net::NodeState::Down)
                    .map(|(name, _)| node_id(name))
                    .collect();
                for member in inner.quorum.all() {
                    member.settle(&down, idle_after, grace);
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
                let members = inner.quorum.all();
                drop(inner);
                if matches!(event.kind, NodeEventKind::Down | NodeEventKind::Restarted) {
                    let mut woken = 0usize;
                    for member in &members {
                        let leader = member.raft.metrics().borrow().current_leader;
                        if leader == Some(event.id) && event.id != me {
                            member.wake();
                            woken += 1;
                        }
                    }
                    if woken > 0 {
                        tracing::info!(node = %event.name, groups = woken, "quorum queues: waking the groups the lost node led");
                    }
                }
                if matches!(event.kind, NodeEventKind::Up | NodeEventKind::Restarted) {
                    for member in &members {
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
