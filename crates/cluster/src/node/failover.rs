//! The metadata group and node liveness: an election at once when liveness loses the metadata
//! leader's node, and a heartbeat to a member that comes back.
//!
//! The metadata group runs its Raft timers all the time (it is one group, always in use), but
//! its followers hold openraft 0.9's leader lease: each refuses other candidates for
//! `election_max` after it last heard from its leader, and elects on its own timer only after
//! the lease plus an election timeout (4.5-6 s with the defaults). Declares, users, policies
//! would wait that long after the loss of the leader's node. So, as for quorum queues' groups,
//! every surviving voter stands for election as soon as liveness reports the leader's node
//! `Down` or `Restarted` (which for a killed process is within a round trip of the kill: its
//! cluster connections close and the reconnection is refused): the mechanism, and why it is
//! safe, is the crate's `failover` module. The retries stop after `election_min`, when the
//! group's own timers take over (a leader whose Raft stopped on a live node, a loss liveness
//! does not see).
//!
//! A node in maintenance (`Cluster::hand_over_leadership`) does not stand: openraft's
//! `trigger().elect()` ignores the runtime switch that keeps it from campaigning on its timer.
//!
//! When a member comes back (`Up` or `Restarted`), the leader sends it one heartbeat at once,
//! so that it learns who leads within a round trip rather than at the next heartbeat.

use super::{Cluster, NodeInner};
use crate::failover::down_nodes;
use crate::net::NodeEventKind;
use crate::types::GroupId;
use openraft::ServerState;
use std::sync::atomic::Ordering;
use std::sync::Weak;
use tokio::sync::broadcast::error::RecvError;

impl Cluster {
    /// How many elections of the metadata group this node started because node liveness
    /// reported its leader's node lost (rather than on its election timer): for tests and
    /// diagnostics.
    pub fn metadata_failover_elections(&self) -> u64 {
        self.inner.meta_failover.elections()
    }
}

/// The node's task: reacts to liveness's events for the metadata group until shutdown.
pub(super) async fn run(node: Weak<NodeInner>) {
    let (mut events, mut shutdown) = {
        let Some(inner) = node.upgrade() else { return };
        (
            inner.liveness.events.subscribe(),
            inner.shutdown.subscribe(),
        )
    };
    loop {
        let event = tokio::select! {
            event = events.recv() => match event {
                Ok(event) => event,
                // Missed events: the group's own timers are the fallback.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            },
            changed = shutdown.changed() => {
                if changed.is_err() || *shutdown.borrow() {
                    return;
                }
                continue;
            }
        };
        let Some(inner) = node.upgrade() else { return };
        // A node in maintenance stands aside (node/ops.rs): the other survivors elect, once
        // its lease has run out.
        let aside = inner.meta_aside.load(Ordering::Relaxed);
        if !aside && matches!(event.kind, NodeEventKind::Down | NodeEventKind::Restarted) {
            let mut down = down_nodes(&inner);
            down.insert(event.id);
            let timing = &inner.config.timing;
            let started = inner
                .meta_failover
                .elect(
                    vec![(GroupId::METADATA, inner.raft.clone())],
                    event.id,
                    &down,
                    inner.id,
                    timing,
                    timing.election_min,
                )
                .await;
            if started > 0 {
                tracing::info!(node = %event.name, "cluster: the metadata leader's node is lost: electing at once");
            }
        }
        if matches!(event.kind, NodeEventKind::Up | NodeEventKind::Restarted) {
            let leads_it = {
                let metrics = inner.raft.metrics();
                let m = metrics.borrow();
                m.state == ServerState::Leader
                    && m.membership_config
                        .membership()
                        .get_node(&event.id)
                        .is_some()
            };
            if leads_it {
                let _ = inner.raft.trigger().heartbeat().await;
            }
        }
    }
}
