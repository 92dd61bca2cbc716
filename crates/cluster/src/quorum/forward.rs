//! Writes to a quorum queue from any node: proposed on the group's leader, forwarded to it over
//! the cluster link from a follower or from a node that holds no member of the group.
//!
//! The request is the metadata group's `Request::Write`, whose `group` names the queue's group
//! (the frame always carried one): the member that receives it proposes the operation only if
//! it leads, and otherwise answers `NotLeader` naming the leader, so a forwarded write never
//! bounces between nodes; the caller retries on the named leader, as metadata writes do
//! (`node/write.rs`).

use super::command::{QueueOp, QueueResponse};
use super::group::QuorumQueue;
use crate::net::{Request, Response, WireError};
use crate::node::{Cluster, NodeInner};
use crate::types::GroupId;
use crate::ClusterError;
use std::time::Duration;
use tokio::time::Instant;

/// Answers a write forwarded to this node's member of `group`.
pub(crate) async fn handle(inner: &NodeInner, group: GroupId, command: &[u8]) -> Response {
    let member = inner.queue_writers.lock().get(&group).cloned();
    let Some(member) = member else {
        return Response::Error(WireError::Other(format!(
            "no member of {group} on node {}",
            inner.me.name
        )));
    };
    let op: QueueOp = match postcard::from_bytes(command) {
        Ok(op) => op,
        Err(e) => return Response::Error(WireError::Other(format!("undecodable command: {e}"))),
    };
    match member.write(op).await {
        Ok(response) => match postcard::to_stdvec(&(response, 0u64)) {
            Ok(bytes) => Response::Written(bytes),
            Err(e) => Response::Error(WireError::Other(e.to_string())),
        },
        Err(e) => Response::Error(crate::node::to_wire(e)),
    }
}

impl Cluster {
    /// Writes `op` to the quorum queue group `group` and returns its response once a majority
    /// of the group has it: on `local` (this node's member) if it leads, otherwise on the leader
    /// it names, or, with no member here, on one of `members` (the group's node names), which
    /// name their leader in turn. Waits for an election meanwhile; fails with
    /// [`ClusterError::Timeout`] after the cluster's `write_timeout`.
    ///
    /// A write whose answer was lost (the leader died after committing it) may be retried by
    /// the caller and applied twice; publishes carry a publisher id and sequence number so
    /// that the queue answers a resend `Duplicate`.
    pub async fn write_queue(
        &self,
        group: GroupId,
        local: Option<&QuorumQueue>,
        members: &[String],
        op: &QueueOp,
    ) -> Result<QueueResponse, ClusterError> {
        let total = self.inner.config.timing.write_timeout;
        let deadline = Instant::now() + total;
        let mut hint: Option<String> = None;
        let mut next_member = 0usize;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClusterError::Timeout {
                    group,
                    waited: total,
                    leader: local.and_then(QuorumQueue::leader_name).or(hint),
                });
            }
            let leader = local
                .and_then(QuorumQueue::leader_name)
                .or_else(|| hint.take());
            let outcome = match (&leader, local) {
                (Some(name), Some(member)) if name == self.name() => member.write(op.clone()).await,
                (Some(name), _) => self.forward_queue_write(group, name, op, left).await,
                (None, Some(_)) => Err(ClusterError::NoLeader { group }),
                (None, None) if members.is_empty() => return Err(ClusterError::NoLeader { group }),
                (None, None) => {
                    let name = &members[next_member % members.len()];
                    next_member += 1;
                    self.forward_queue_write(group, name, op, left).await
                }
            };
            match outcome {
                Err(ClusterError::NotLeader {
                    leader: Some(name), ..
                }) if leader.as_deref() != Some(name.as_str()) => hint = Some(name),
                // Not proposed anywhere: wait a moment for an election, then try again.
                Err(
                    ClusterError::NotLeader { .. }
                    | ClusterError::NoLeader { .. }
                    | ClusterError::Unreachable { .. },
                ) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    tokio::time::sleep(left.min(Duration::from_millis(50))).await;
                }
                other => return other,
            }
        }
    }

    /// Sends `op` to the member of `group` on the node `name`.
    async fn forward_queue_write(
        &self,
        group: GroupId,
        name: &str,
        op: &QueueOp,
        wait: Duration,
    ) -> Result<QueueResponse, ClusterError> {
        let addr = self
            .status()
            .members
            .into_iter()
            .find(|m| m.name == name)
            .map(|m| m.addr)
            .ok_or_else(|| ClusterError::Unreachable {
                addr: name.to_string(),
                reason: "not a member of the cluster".into(),
            })?;
        let command = postcard::to_stdvec(op)
            .map_err(|e| ClusterError::Stopped(format!("cannot encode a command: {e}")))?;
        let request = Request::Write {
            group: group.0,
            command,
        };
        let response = self
            .inner
            .peers
            .call(&addr, request, wait + Duration::from_millis(500))
            .await?;
        let remote = |message: String| ClusterError::Remote {
            addr: addr.clone(),
            message,
        };
        match response {
            Response::Written(bytes) => postcard::from_bytes::<(QueueResponse, u64)>(&bytes)
                .map(|(r, _)| r)
                .map_err(|e| remote(format!("undecodable answer: {e}"))),
            Response::Error(WireError::NotLeader { leader }) => {
                Err(ClusterError::NotLeader { group, leader })
            }
            Response::Error(WireError::NoLeader) => Err(ClusterError::NoLeader { group }),
            Response::Error(WireError::Timeout { waited_ms, leader }) => {
                Err(ClusterError::Timeout {
                    group,
                    waited: Duration::from_millis(waited_ms),
                    leader,
                })
            }
            // A node without a member (not started yet, or deleted): try another.
            Response::Error(WireError::Other(message)) if message.starts_with("no member") => {
                Err(ClusterError::NoLeader { group })
            }
            Response::Error(WireError::Other(message)) => Err(remote(message)),
            other => Err(remote(format!("unexpected answer {other:?}"))),
        }
    }
}
