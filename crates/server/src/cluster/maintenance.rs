//! Maintenance mode (issue 13, item 6): `pigeon ctl drain` / `revive`, RabbitMQ's
//! `rabbitmq-upgrade drain` / `revive` (`rabbit_maintenance:drain/0`, `revive/0`).
//!
//! Drain, in RabbitMQ's order: mark the node as being drained (`being_drained` in
//! `/api/nodes`, answered by the node itself); suspend the client listeners (AMQP, MQTT, their
//! TLS and WebSocket variants, streams: each accept loop closes its socket, so a new client
//! gets "connection refused" and goes to another node, as ranch's `suspend_listener` does; the
//! management API, Prometheus and the cluster link stay open); close every client connection
//! with RabbitMQ's reason, "Node was put into maintenance mode" (AMQP 320 CONNECTION_FORCED,
//! MQTT 5.0 DISCONNECT 0x98, others a closed socket); then move the leadership of Raft groups
//! away: quorum queues' ([`hand_over_quorum_queues`], quorum/membership.rs) and the
//! metadata group's ([`pigeon_cluster::Cluster::hand_over_leadership`]).
//!
//! Revive reopens the listeners on the same addresses, lets the node stand for election again
//! and clears the mark. As in RabbitMQ, the state is not kept across a restart: RabbitMQ's boot
//! resets it ("Successful boot resets node maintenance state", `rabbit:do_run_postlaunch_phase`),
//! and so does a Pigeon start (the flag lives in memory only).

use crate::ServerState;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// RabbitMQ's close reason (`rabbit_maintenance:close_all_client_connections/0`).
pub(crate) const REASON: &str = "Node was put into maintenance mode";

/// How long drain waits for the accept loops to close their sockets.
const SUSPEND_WAIT: Duration = Duration::from_secs(5);

/// How long drain waits for another node to take the metadata group's leadership.
const HAND_OVER_WAIT: Duration = Duration::from_secs(30);

/// The node's maintenance state, shared by the accept loops.
pub(crate) struct Maintenance {
    /// True while drained: the client listeners keep their sockets closed.
    suspended: watch::Sender<bool>,
    /// `being_drained` in `/api/nodes`.
    draining: AtomicBool,
    /// Client accept loops with an open socket now.
    listening: AtomicUsize,
    /// Client accept loops running (open or suspended).
    loops: AtomicUsize,
    /// One drain or revive at a time.
    busy: tokio::sync::Mutex<()>,
}

impl Default for Maintenance {
    fn default() -> Maintenance {
        Maintenance {
            suspended: watch::channel(false).0,
            draining: AtomicBool::new(false),
            listening: AtomicUsize::new(0),
            loops: AtomicUsize::new(0),
            busy: tokio::sync::Mutex::new(()),
        }
    }
}

impl Maintenance {
    /// Whether the node is in maintenance mode.
    pub(crate) fn being_drained(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// What an accept loop watches: true while its socket must stay closed.
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.suspended.subscribe()
    }

    /// An accept loop started (`true`) or ended (`false`).
    pub(crate) fn accept_loop(&self, running: bool) {
        if running {
            self.loops.fetch_add(1, Ordering::Relaxed);
        } else {
            self.loops.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// An accept loop opened (`true`) or closed (`false`) its socket.
    pub(crate) fn listening(&self, open: bool) {
        if open {
            self.listening.fetch_add(1, Ordering::Relaxed);
        } else {
            self.listening.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl Maintenance {
    /// Waits (up to [`SUSPEND_WAIT`]) until `done(listening, loops)`; whether it came true.
    /// Polled at shutdown's pace: an accept loop closes or reopens its socket within a wake-up.
    async fn until(&self, done: impl Fn(usize, usize) -> bool) -> bool {
        let wait = async {
            loop {
                let listening = self.listening.load(Ordering::Relaxed);
                if done(listening, self.loops.load(Ordering::Relaxed)) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        tokio::time::timeout(SUSPEND_WAIT, wait).await.is_ok()
    }
}

/// What a drain or revive did.
pub(crate) struct Report {
    /// `being_drained` afterwards.
    pub being_drained: bool,
    /// Client connections closed.
    pub connections_closed: usize,
    /// The metadata group's leader after a hand-over from this node.
    pub new_leader: Option<String>,
    /// What could not be done (the node is in maintenance all the same).
    pub warnings: Vec<String>,
}

impl Report {
    /// As the API answers it.
    pub(crate) fn json(&self) -> Value {
        json!({
            "being_drained": self.being_drained,
            "connections_closed": self.connections_closed,
            "metadata_leader": self.new_leader,
            "warnings": self.warnings,
        })
    }
}

/// Puts the node in maintenance mode (idempotent: a second drain closes what connected since,
/// which is nothing, and tries the hand-over again).
pub(crate) async fn drain(state: &Arc<ServerState>) -> Report {
    let m = &state.maintenance;
    let _busy = m.busy.lock().await;
    tracing::warn!("this node is being put into maintenance (drain) mode");
    m.draining.store(true, Ordering::Relaxed);
    m.suspended.send_replace(true);
    let mut warnings = Vec::new();
    if !m.until(|listening, _| listening == 0).await {
        warnings.push("some client listeners did not close in time".to_string());
    }
    tracing::warn!("suspended all client listeners: no new client connections are accepted");
    let mut closed = 0;
    for c in state.registry.connections() {
        if state.close_connection(&c.name, REASON) {
            closed += 1;
        }
    }
    tracing::warn!(connections = closed, "closed the local client connections");
    warnings.extend(hand_over_quorum_queues(state).await);
    let mut new_leader = None;
    if let Some(cluster) = &state.cluster {
        match cluster.hand_over_leadership(HAND_OVER_WAIT).await {
            Ok(leader) => new_leader = leader,
            Err(e) => {
                tracing::warn!(error = %e, "skipping leadership transfer of the metadata group");
                warnings.push(e.to_string());
            }
        }
    }
    tracing::info!("node is ready to be shut down for maintenance or upgrade");
    Report {
        being_drained: true,
        connections_closed: closed,
        new_leader,
        warnings,
    }
}

/// Takes the node out of maintenance mode: listeners reopened (waits for them), standing for
/// election again.
pub(crate) async fn revive(state: &Arc<ServerState>) -> Report {
    let m = &state.maintenance;
    let _busy = m.busy.lock().await;
    tracing::info!("this node is being revived from maintenance (drain) mode");
    if let Some(cluster) = &state.cluster {
        cluster.resume_leadership();
        // Quorum queues' members stand for election again (quorum/membership.rs).
        super::quorum::membership::resume(cluster);
    }
    m.suspended.send_replace(false);
    let mut warnings = Vec::new();
    if !m.until(|listening, loops| listening >= loops).await {
        warnings.push("some client listeners could not be reopened yet (retrying)".to_string());
    }
    m.draining.store(false, Ordering::Relaxed);
    tracing::info!("resumed all listeners and will accept client connections again");
    Report {
        being_drained: false,
        connections_closed: 0,
        new_leader: None,
        warnings,
    }
}

/// Moves the leadership of the quorum queues led here to other members (RabbitMQ's
/// `rabbit_maintenance:transfer_leadership_of_quorum_queues`) and keeps this node's members
/// from standing for election until revive (quorum/membership.rs, `hand_over`); waits for
/// each, bounded. The warnings of those that did not move.
async fn hand_over_quorum_queues(state: &ServerState) -> Vec<String> {
    let Some(cluster) = &state.cluster else {
        return Vec::new();
    };
    let (moved, warnings) = super::quorum::membership::hand_over(cluster).await;
    tracing::warn!(
        queues = moved,
        "moved the leadership of the quorum queues led by this node"
    );
    warnings
}
