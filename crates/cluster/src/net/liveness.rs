//! Node liveness: is each other member of the cluster up?
//!
//! One heartbeat per pair of nodes and direction, on the cluster link, whatever the number of
//! Raft groups: every `node_heartbeat` (500 ms by default) each node sends `Ping` to every other
//! member of the metadata group and waits up to one interval for its `Pong`. A member that has
//! not answered for `node_heartbeat x node_heartbeat_misses` (4 s by default) is declared
//! [`NodeState::Down`]; so is, at once, a member that answered before and whose cluster port
//! now refuses connections (its process is gone). Its next answer makes it
//! [`NodeState::Up`] again. A `Pong` carries the
//! node's incarnation, drawn at each start, so a node that restarted quicker than the down
//! timeout is still noticed ([`NodeEvent::Restarted`]): the groups it led must elect again all
//! the same.
//!
//! RabbitMQ's equivalent is Erlang distribution's `net_ticktime` (60 s by default, a node down
//! after 45-75 s), which is why its quorum queues do not rely on it but on Ra's own per-cluster
//! leader heartbeats and `aten`'s failure detector (deps/ra, `ra_server_proc`'s
//! `nodeup`/`nodedown` handling). Here the groups' own heartbeats are switched off when they are
//! idle (quorum/idle.rs), and this is what replaces them: seconds, not a minute, and not
//! multiplied by the number of groups.

use super::frame::{Request, Response};
use super::Peers;
use crate::types::{node_id, Member, NodeId};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// Whether a node answers on the cluster link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// It answered within the down timeout (or is this node).
    Up,
    /// It has not answered for the down timeout.
    Down,
}

/// Every member of the cluster (this node included, always up) and its state, by name.
pub type NodeStates = BTreeMap<String, NodeState>;

/// A change of a member's state, as [`crate::Cluster::node_events`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEvent {
    /// The node's name.
    pub name: String,
    /// Its Raft id.
    pub id: NodeId,
    /// What happened.
    pub kind: NodeEventKind,
}

/// What happened to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeEventKind {
    /// Declared down: no answer for the down timeout.
    Down,
    /// Answering again after being down.
    Up,
    /// Answered with another incarnation: it restarted (and is up). Whatever it held in memory
    /// (the groups it led, its consumers) is gone, as after `Down`.
    Restarted,
}

/// The liveness timers (from [`crate::Timing`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LivenessTiming {
    pub(crate) interval: Duration,
    pub(crate) misses: u32,
}

impl LivenessTiming {
    fn down_after(&self) -> Duration {
        self.interval.saturating_mul(self.misses.max(1))
    }
}

/// The node's view: a watch of the states and a broadcast of the changes.
pub(crate) struct Liveness {
    pub(crate) states: watch::Sender<NodeStates>,
    pub(crate) events: broadcast::Sender<NodeEvent>,
    /// This node's incarnation, answered in `Pong`.
    pub(crate) incarnation: u64,
}

impl Liveness {
    pub(crate) fn new(me: &str) -> Liveness {
        let mut states = NodeStates::new();
        states.insert(me.to_string(), NodeState::Up);
        // Unique per start of a node (even of nodes started in one process by the tests): the
        // clock's nanoseconds mixed with the process id and the name's id.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let incarnation = nanos ^ (u64::from(std::process::id()) << 32) ^ node_id(me);
        Liveness {
            states: watch::Sender::new(states),
            events: broadcast::channel(1024).0,
            incarnation,
        }
    }
}

struct Watched {
    member: Member,
    last_ok: Instant,
    state: NodeState,
    incarnation: Option<u64>,
}

/// Pings every member but `me` until `shutdown`; `members` gives the current membership.
pub(crate) async fn run(
    peers: Peers,
    me: Member,
    timing: LivenessTiming,
    liveness: std::sync::Arc<Liveness>,
    members: impl Fn() -> Vec<Member> + Send + 'static,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut watched: HashMap<String, Watched> = HashMap::new();
    let mut ticker = tokio::time::interval(timing.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            // A connection closed: probe now rather than at the next tick, so that a peer whose
            // process is gone (its port refuses the reconnection) is down within a round trip
            // of the kill, not up to an interval later. Cheap: links close rarely.
            () = peers.connection_lost() => {}
            changed = shutdown.changed() => if changed.is_err() || *shutdown.borrow() { return },
        }
        let now = Instant::now();
        // Follow the membership: a new member gets the down timeout's grace before it counts
        // as down (it is up until shown otherwise), a removed one is forgotten.
        let current: Vec<Member> = members()
            .into_iter()
            .filter(|m| m.name != me.name)
            .collect();
        watched.retain(|name, _| current.iter().any(|m| &m.name == name));
        for m in current {
            let entry = watched.entry(m.name.clone()).or_insert_with(|| Watched {
                member: m.clone(),
                last_ok: now,
                state: NodeState::Up,
                incarnation: None,
            });
            entry.member = m;
        }
        // One ping to each, concurrently, each waiting at most one interval.
        let mut pings = JoinSet::new();
        for w in watched.values() {
            let peers = peers.clone();
            let addr = w.member.addr.clone();
            let name = w.member.name.clone();
            let request = Request::Ping {
                from: me.name.clone(),
            };
            let wait = timing.interval;
            pings.spawn(async move {
                let answer = peers.call(&addr, request, wait).await;
                (name, answer)
            });
        }
        let mut events = Vec::new();
        while let Some(joined) = pings.join_next().await {
            let Ok((name, answer)) = joined else { continue };
            let Some(w) = watched.get_mut(&name) else {
                continue;
            };
            if let Ok(Response::Pong {
                name: answered,
                incarnation,
            }) = answer
            {
                if answered != name {
                    // Another node answers at that address: not the member we watch.
                    continue;
                }
                w.last_ok = Instant::now();
                let restarted = w.incarnation.is_some_and(|i| i != incarnation);
                w.incarnation = Some(incarnation);
                if w.state == NodeState::Down {
                    w.state = NodeState::Up;
                    tracing::info!(node = %name, "cluster: node is up again");
                    events.push((name.clone(), NodeEventKind::Up));
                } else if restarted {
                    tracing::info!(node = %name, "cluster: node restarted");
                    events.push((name.clone(), NodeEventKind::Restarted));
                }
            }
        }
        let now = Instant::now();
        for (name, w) in &mut watched {
            // A node that answered before and whose port now refuses connections is down at
            // once: its process is gone (a SIGKILL, a crash, a stop), which a closed
            // connection and a refused reconnection tell for sure, as the Erlang
            // distribution's closed connection makes RabbitMQ's `nodedown` immediate. Silent
            // failures (a hung process, a cut network) still wait for the down timeout.
            let refused = w.incarnation.is_some() && peers.refused(&w.member.addr);
            if refused && w.state == NodeState::Up {
                w.state = NodeState::Down;
                tracing::warn!(node = %name, "cluster: node is down (its cluster port refuses connections)");
                events.push((name.clone(), NodeEventKind::Down));
                continue;
            }
            if w.state == NodeState::Up && now.duration_since(w.last_ok) >= timing.down_after() {
                w.state = NodeState::Down;
                tracing::warn!(node = %name, after = ?timing.down_after(), "cluster: node is down (no answer on the cluster link)");
                events.push((name.clone(), NodeEventKind::Down));
            }
        }
        let mut states: NodeStates = watched
            .iter()
            .map(|(name, w)| (name.clone(), w.state))
            .collect();
        states.insert(me.name.clone(), NodeState::Up);
        liveness.states.send_if_modified(|old| {
            if *old == states {
                false
            } else {
                *old = states;
                true
            }
        });
        for (name, kind) in events {
            let id = node_id(&name);
            // No receiver is fine: nobody listens yet.
            let _ = liveness.events.send(NodeEvent { name, id, kind });
        }
    }
}
