//! Elections of quorum queues' groups when node liveness loses the leader's node: a new leader
//! about a round trip after the detection, instead of after the followers' leader lease. The
//! mechanism is the crate's `failover` module, shared with the metadata group
//! (node/failover.rs); what is particular to queue groups is that their members may be idle
//! (quorum/idle.rs), so each member whose leader was on the lost node is woken first.

use super::idle::IdleMember;
use crate::node::{Cluster, NodeInner};
use crate::types::{GroupId, NodeId};
use std::collections::HashSet;
use std::sync::{Arc, Weak};

pub(crate) use crate::failover::Failover;

impl Cluster {
    /// How many elections this node's quorum-queue members started because node liveness
    /// reported their leader's node lost (rather than on their election timer): for tests and
    /// diagnostics.
    pub fn quorum_failover_elections(&self) -> u64 {
        self.inner.quorum.failover.elections()
    }
}

/// Liveness lost node `lost`: every member here whose leader it was is woken and stands for
/// election at once; the retries run on a task of their own. Returns how many stood.
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
    if lost == me {
        return 0;
    }
    let mut orphans = Vec::new();
    for (group, member) in members {
        if member.raft.metrics().borrow().current_leader == Some(lost) {
            member.wake();
            orphans.push((group, member.raft.clone()));
        }
    }
    let woken = failover
        .elect(orphans, lost, down, me, &timing, timing.quorum_election_min)
        .await;
    if woken > 0 {
        tracing::info!(
            groups = woken,
            "quorum queues: electing at once in the groups the lost node led"
        );
    }
    woken
}
