//! Client writes to the metadata group: proposed on the leader, forwarded there from a follower.

use super::{Cluster, NodeInner};
use crate::meta::{MetaCommand, MetaResponse};
use crate::net::{Request, Response, WireError};
use crate::types::GroupId;
use crate::ClusterError;
use openraft::error::{ClientWriteError, RaftError};
use std::time::Duration;
use tokio::time::Instant;

const GROUP: GroupId = GroupId::METADATA;

impl NodeInner {
    /// The leader this node knows of, as a member.
    pub(crate) fn leader(&self) -> Option<crate::Member> {
        let m = self.raft.metrics().borrow().clone();
        m.current_leader
            .and_then(|id| m.membership_config.membership().get_node(&id).cloned())
    }

    /// Proposes `command` here, without forwarding: this node must be the leader. Returns the
    /// response and the log index of the entry.
    pub(crate) async fn write_here(
        &self,
        command: MetaCommand,
        wait: Duration,
    ) -> Result<(MetaResponse, u64), ClusterError> {
        match tokio::time::timeout(wait, self.raft.client_write(command)).await {
            Err(_) => Err(ClusterError::Timeout {
                group: GROUP,
                waited: wait,
                leader: self.leader().map(|l| l.name),
            }),
            Ok(Ok(response)) => Ok((response.data, response.log_id.index)),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                match f.leader_node {
                    Some(leader) => Err(ClusterError::NotLeader {
                        group: GROUP,
                        leader: Some(leader.name),
                    }),
                    None => Err(ClusterError::NoLeader { group: GROUP }),
                }
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(e)))) => {
                Err(ClusterError::Membership(e.to_string()))
            }
            Ok(Err(RaftError::Fatal(e))) => Err(ClusterError::Stopped(e.to_string())),
        }
    }
}

impl Cluster {
    /// Writes a metadata change and returns once a majority of the voters has it (it is then
    /// applied here too, or on its way). On a follower the write is forwarded to the leader;
    /// during an election it waits for the new leader. After `write_timeout` (config) without a
    /// commit it fails with [`ClusterError::Timeout`], the error of a node in a minority.
    ///
    /// A write that timed out may still commit later (it was proposed); one refused with
    /// `NotLeader`/`NoLeader` was not made. A forwarded write whose answer was lost may be
    /// retried by the caller and applied twice: metadata commands are idempotent declarations.
    ///
    /// When it returns `Ok`, this node has applied the entry too (a follower waits for its own
    /// state machine, up to the rest of `write_timeout`), so that the caller reads its own write
    /// here at once.
    pub async fn write(&self, command: MetaCommand) -> Result<MetaResponse, ClusterError> {
        let deadline = Instant::now() + self.inner.config.timing.write_timeout;
        let (response, index) = self.write_indexed(command).await?;
        self.wait_applied(index, deadline).await;
        Ok(response)
    }

    /// Waits until this node's state machine has applied the entry at `index`, or `deadline`
    /// passes (the entry is committed: it will be applied; a caller that reads at once may not
    /// see it yet, which is logged).
    async fn wait_applied(&self, index: u64, deadline: Instant) {
        let mut metrics = self.inner.raft.metrics();
        let applied = |m: &openraft::RaftMetrics<crate::NodeId, crate::Member>| {
            m.last_applied.is_some_and(|l| l.index >= index)
        };
        let waited = tokio::time::timeout_at(deadline, metrics.wait_for(applied)).await;
        if !matches!(waited, Ok(Ok(_))) {
            tracing::warn!(
                index,
                "cluster: a committed write is not applied on this node yet"
            );
        }
    }

    /// [`Self::write`] without waiting for this node's state machine: the response and the
    /// entry's log index.
    async fn write_indexed(
        &self,
        command: MetaCommand,
    ) -> Result<(MetaResponse, u64), ClusterError> {
        let inner = &self.inner;
        let total = inner.config.timing.write_timeout;
        let deadline = Instant::now() + total;
        let mut metrics = inner.raft.metrics();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ClusterError::Timeout {
                    group: GROUP,
                    waited: total,
                    leader: inner.leader().map(|l| l.name),
                });
            }
            let outcome = match inner.leader() {
                Some(leader) if leader.name != inner.me.name => {
                    forward(inner, &leader, &command, left).await
                }
                _ => inner.write_here(command.clone(), left).await,
            };
            match outcome {
                // Not proposed anywhere: wait for a (new) leader, then try again.
                Err(
                    ClusterError::NotLeader { .. }
                    | ClusterError::NoLeader { .. }
                    | ClusterError::Unreachable { .. },
                ) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    // Woken by any change of Raft's state (a leader elected, a term begun);
                    // at most every 100 ms, in case the change is only the leader coming back.
                    let _ = tokio::time::timeout(
                        left.min(Duration::from_millis(100)),
                        metrics.changed(),
                    )
                    .await;
                }
                Err(ClusterError::Timeout { leader, .. }) => {
                    return Err(ClusterError::Timeout {
                        group: GROUP,
                        waited: total,
                        leader,
                    })
                }
                other => return other,
            }
        }
    }

    /// Writes here only, never forwarding: [`ClusterError::NotLeader`] names the leader on a
    /// follower.
    pub async fn write_local(&self, command: MetaCommand) -> Result<MetaResponse, ClusterError> {
        self.inner
            .write_here(command, self.inner.config.timing.write_timeout)
            .await
            .map(|(response, _)| response)
    }
}

/// Sends a write to the leader: its response and log index.
async fn forward(
    inner: &NodeInner,
    leader: &crate::Member,
    command: &MetaCommand,
    wait: Duration,
) -> Result<(MetaResponse, u64), ClusterError> {
    let bytes = postcard::to_stdvec(command)
        .map_err(|e| ClusterError::Stopped(format!("cannot encode a command: {e}")))?;
    let request = Request::Write {
        group: GROUP.0,
        command: bytes,
    };
    // The leader waits up to its own write timeout; give the answer a little longer to arrive.
    let response = inner
        .peers
        .call(&leader.addr, request, wait + Duration::from_millis(500))
        .await?;
    let remote = |message: String| ClusterError::Remote {
        addr: leader.addr.clone(),
        message,
    };
    match response {
        Response::Written(bytes) => {
            postcard::from_bytes(&bytes).map_err(|e| remote(format!("undecodable answer: {e}")))
        }
        Response::Error(e) => Err(from_wire(e, leader)),
        other => Err(remote(format!("unexpected answer {other:?}"))),
    }
}

/// An error received from a peer, as the local error.
pub(crate) fn from_wire(e: WireError, from: &crate::Member) -> ClusterError {
    match e {
        WireError::NotLeader { leader } => ClusterError::NotLeader {
            group: GROUP,
            leader,
        },
        WireError::NoLeader => ClusterError::NoLeader { group: GROUP },
        WireError::Timeout { waited_ms, leader } => ClusterError::Timeout {
            group: GROUP,
            waited: Duration::from_millis(waited_ms),
            leader,
        },
        WireError::Other(message) => ClusterError::Remote {
            addr: from.addr.clone(),
            message,
        },
    }
}

/// A local error, for a peer.
pub(crate) fn to_wire(e: ClusterError) -> WireError {
    match e {
        ClusterError::NotLeader { leader, .. } => WireError::NotLeader { leader },
        ClusterError::NoLeader { .. } => WireError::NoLeader,
        ClusterError::Timeout { waited, leader, .. } => WireError::Timeout {
            waited_ms: u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
            leader,
        },
        other => WireError::Other(other.to_string()),
    }
}
