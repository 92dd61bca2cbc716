//! A quorum queue's membership changes (`add_member`, `delete_member`, `grow`, `shrink`,
//! rabbitmq-queues' commands) and the moves of its leadership (maintenance, `rebalance`), on the
//! group's leader.
//!
//! A new member joins as RabbitMQ's `promotable` members do (`rabbit_quorum_queue:add_member`
//! with membership `promotable`): first a learner, which receives the group's snapshot or log
//! until it has caught up (openraft's `add_learner` with `blocking`), then a voter
//! (`change_membership`). A member removed is removed outright (not kept as a learner). Both are
//! made by the leader: the caller finds it (the broker forwards the request to the leader's node).
//!
//! The node that is added must run its member of the group (uninitialized) before: the broker
//! starts it when the queue's members change in the replicated metadata.

use super::group::QuorumQueue;
use crate::types::{node_id, Member, NodeId};
use crate::ClusterError;
use openraft::ChangeMembers;
use std::collections::BTreeSet;
use std::time::Duration;

impl QuorumQueue {
    /// The group's voters (names), as this member knows them.
    pub fn voter_names(&self) -> Vec<String> {
        let m = self.raft().metrics().borrow().clone();
        let membership = m.membership_config.membership();
        membership
            .voter_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| n.name.clone()))
            .collect()
    }

    fn not_leader(&self) -> ClusterError {
        match self.leader_name() {
            Some(leader) => ClusterError::NotLeader {
                group: self.group(),
                leader: Some(leader),
            },
            None => ClusterError::NoLeader {
                group: self.group(),
            },
        }
    }

    /// Adds `member` to the group: a learner until it has the group's state, then a voter.
    /// This node must lead the group ([`ClusterError::NotLeader`] names the leader otherwise).
    /// Idempotent: a voter already is left as it is. Fails after `timeout` (the learner could
    /// not catch up: its node is down, or its member is not running).
    pub async fn add_voter(&self, member: Member, timeout: Duration) -> Result<(), ClusterError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let id = node_id(&member.name);
        let (voters, learners): (BTreeSet<NodeId>, BTreeSet<NodeId>) = {
            let m = self.raft().metrics().borrow().clone();
            let membership = m.membership_config.membership();
            (
                membership.voter_ids().collect(),
                membership.learner_ids().collect(),
            )
        };
        if voters.contains(&id) {
            return Ok(());
        }
        let name = member.name.clone();
        if !learners.contains(&id) {
            tracing::info!(group = %self.group(), node = %name, "quorum queue: adding a member as a learner");
            self.changed(timeout, self.raft().add_learner(id, member, true))
                .await?;
        }
        tracing::info!(group = %self.group(), node = %name, "quorum queue: promoting the caught-up member to voter");
        self.changed(
            timeout,
            self.raft()
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false),
        )
        .await
    }

    /// Removes the member on node `name` from the group (a voter or a learner). This node must
    /// lead the group. Idempotent: a node that is no member is left alone. Refused for the last
    /// voter (a group cannot lose all its members: RabbitMQ's `last_node`).
    pub async fn remove_member(&self, name: &str, timeout: Duration) -> Result<(), ClusterError> {
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let id = node_id(name);
        let (voters, learners): (BTreeSet<NodeId>, BTreeSet<NodeId>) = {
            let m = self.raft().metrics().borrow().clone();
            let membership = m.membership_config.membership();
            (
                membership.voter_ids().collect(),
                membership.learner_ids().collect(),
            )
        };
        if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(ClusterError::Membership(format!(
                    "{name} is the queue's last member (last_node)"
                )));
            }
            tracing::info!(group = %self.group(), node = %name, "quorum queue: removing a member");
            self.changed(
                timeout,
                self.raft()
                    .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false),
            )
            .await
        } else if learners.contains(&id) {
            self.changed(
                timeout,
                self.raft()
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false),
            )
            .await
        } else {
            Ok(())
        }
    }

    /// Makes this member stand for election now (its timers on, an election started): how the
    /// leadership moves here on openraft 0.9, which has no leadership transfer (it came in 0.10).
    /// The old leader must stop heartbeating ([`Self::stop_leading`]) for the other voters to
    /// grant their votes once its lease has run out; until then the election fails and the
    /// member's own election timer tries again.
    pub async fn stand_for_election(&self) -> Result<(), ClusterError> {
        self.set_idle(false);
        self.raft()
            .trigger()
            .elect()
            .await
            .map_err(|e| ClusterError::Stopped(e.to_string()))
    }

    /// Stops this member from leading: no more heartbeats and no candidacy (maintenance), or
    /// both on again (`false`: revive). With the idle policy on, the policy switches the timers
    /// again when the member is a follower whose leader is lost.
    pub fn stop_leading(&self, stop: bool) {
        let runtime = self.raft().runtime_config();
        runtime.heartbeat(!stop);
        runtime.elect(!stop);
    }

    async fn changed<T, E: std::fmt::Display>(
        &self,
        timeout: Duration,
        change: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<(), ClusterError> {
        match tokio::time::timeout(timeout, change).await {
            Err(_) => Err(ClusterError::Timeout {
                group: self.group(),
                waited: timeout,
                leader: self.leader_name(),
            }),
            Ok(Err(e)) => Err(ClusterError::Membership(e.to_string())),
            Ok(Ok(_)) => Ok(()),
        }
    }
}
