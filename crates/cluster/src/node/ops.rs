//! Operations (issue 13, item 6): what the broker asks its peers beyond Raft, and the
//! metadata group's leadership during maintenance.
//!
//! **Operations requests.** A node's management API shows the whole cluster (every node's
//! statistics in `/api/nodes`, every node's connections, cluster-wide totals), so it asks the
//! other nodes. The crate carries those questions without knowing them: a request is the
//! broker's bytes (`Request::Ops`), answered by the [`OpsHandler`] the broker registered on the
//! peer ([`Cluster::set_ops_handler`]) with its own bytes (`Response::Ops`). A node without a
//! handler (no management API) answers with an error, which the asker treats as "no answer".
//!
//! **Leadership during maintenance.** `rabbitmq-upgrade drain` moves the metadata store's
//! leadership away from the node (`rabbit_maintenance:transfer_leadership_of_metadata_store`).
//! openraft 0.9 has no leadership transfer (it came in 0.10: `Trigger::transfer_leader`), so
//! [`Cluster::hand_over_leadership`] does it with what 0.9 has: the node stops standing for
//! election (`runtime_config().elect(false)`) and, if it leads, stops sending heartbeats
//! (`runtime_config().heartbeat(false)`); the followers' leader lease and election timeout then
//! run out and they elect one of themselves, whose higher term makes this node a follower,
//! which it stays while drained. It costs one election timeout (plus the lease) rather than a
//! round trip, during which metadata changes wait. [`Cluster::resume_leadership`] undoes it.

use super::{Cluster, MemberStatus, NodeInner};
use crate::net::{BoxFuture, Request, Response};
use crate::ClusterError;
use parking_lot::RwLock;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// What answers the peers' operations requests on this node: the broker's.
pub trait OpsHandler: Send + Sync + 'static {
    /// Answers `request` (the asking broker's bytes) with this broker's bytes, or an error text.
    fn handle(&self, request: Vec<u8>) -> BoxFuture<Result<Vec<u8>, String>>;
}

/// The registered handler, if any.
#[derive(Default)]
pub(crate) struct OpsSlot(RwLock<Option<Arc<dyn OpsHandler>>>);

/// A peer's `Ops` request, answered by the handler.
pub(super) async fn answer(inner: &NodeInner, body: Vec<u8>) -> Response {
    let handler = inner.ops.0.read().clone();
    match handler {
        None => Response::Error(crate::net::WireError::Other(format!(
            "node {} answers no operations requests",
            inner.me.name
        ))),
        Some(handler) => match handler.handle(body).await {
            Ok(bytes) => Response::Ops(bytes),
            Err(e) => Response::Error(crate::net::WireError::Other(e)),
        },
    }
}

impl Cluster {
    /// Registers what answers the peers' operations requests (replacing any before).
    pub fn set_ops_handler(&self, handler: Arc<dyn OpsHandler>) {
        *self.inner.ops.0.write() = Some(handler);
    }

    /// Asks the member at `addr` its broker's answer to `body`, waiting up to `timeout` in
    /// all (connecting included).
    pub async fn ops_call(
        &self,
        addr: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, ClusterError> {
        let call = self.inner.peers.call(addr, Request::Ops { body }, timeout);
        let remote = |message: String| ClusterError::Remote {
            addr: addr.to_string(),
            message,
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(ClusterError::Unreachable {
                addr: addr.to_string(),
                reason: format!("no answer within {timeout:?}"),
            }),
            Ok(Err(e)) => Err(e),
            Ok(Ok(Response::Ops(bytes))) => Ok(bytes),
            Ok(Ok(Response::Error(e))) => Err(remote(format!("{e:?}"))),
            Ok(Ok(other)) => Err(remote(format!("unexpected answer {other:?}"))),
        }
    }

    /// Asks every other member the same question, all at once, each bounded by `timeout`;
    /// their answers in the order of [`Cluster::status`]'s members.
    pub async fn ops_others(
        &self,
        body: &[u8],
        timeout: Duration,
    ) -> Vec<(MemberStatus, Result<Vec<u8>, ClusterError>)> {
        let others: Vec<MemberStatus> = self
            .status()
            .members
            .into_iter()
            .filter(|m| m.name != self.inner.me.name)
            .collect();
        // One task per member (the crate has no `join_all`): they run at once.
        let mut calls = tokio::task::JoinSet::new();
        for (i, m) in others.iter().enumerate() {
            let (me, addr, body) = (self.clone(), m.addr.clone(), body.to_vec());
            calls.spawn(async move { (i, me.ops_call(&addr, body, timeout).await) });
        }
        let mut answers: Vec<Option<Result<Vec<u8>, ClusterError>>> =
            others.iter().map(|_| None).collect();
        while let Some(done) = calls.join_next().await {
            if let Ok((i, answer)) = done {
                if let Some(slot) = answers.get_mut(i) {
                    *slot = Some(answer);
                }
            }
        }
        others
            .into_iter()
            .zip(answers)
            .map(|(m, answer)| {
                let answer = answer
                    .unwrap_or_else(|| Err(ClusterError::Stopped("the call's task failed".into())));
                (m, answer)
            })
            .collect()
    }

    /// Moves the metadata group's leadership away from this node and keeps it away until
    /// [`Cluster::resume_leadership`] (see the module's doc for how, on openraft 0.9). Waits
    /// up to `timeout` for another node to lead; returns its name, `None` when this node did
    /// not lead. An error when no other voter took over in time (this node stays a
    /// non-candidate; the leadership moves once the others can elect).
    pub async fn hand_over_leadership(
        &self,
        timeout: Duration,
    ) -> Result<Option<String>, ClusterError> {
        let raft = &self.inner.raft;
        self.inner.meta_aside.store(true, Ordering::Relaxed);
        raft.runtime_config().elect(false);
        let me = self.inner.id;
        if raft.metrics().borrow().current_leader != Some(me) {
            return Ok(None);
        }
        let others = self.status().members.iter().filter(|m| m.voter).count() > 1;
        if !others {
            return Err(ClusterError::Membership(
                "no other voter to hand the metadata group's leadership to".into(),
            ));
        }
        raft.runtime_config().heartbeat(false);
        tracing::info!(node = %self.inner.me, "cluster: handing the metadata group's leadership over (heartbeats stopped)");
        let mut rx = self.metrics();
        let moved = tokio::time::timeout(
            timeout,
            rx.wait_for(|m| m.current_leader.is_some_and(|l| l != me)),
        )
        .await;
        match moved {
            Ok(Ok(_)) => {
                let leader = self.status().leader;
                tracing::info!(node = %self.inner.me, new_leader = ?leader, "cluster: metadata group's leadership handed over");
                Ok(leader)
            }
            _ => Err(ClusterError::Stopped(format!(
                "no other node took the metadata group's leadership within {timeout:?}"
            ))),
        }
    }

    /// This node stands for election again, and sends heartbeats when it leads (revive).
    pub fn resume_leadership(&self) {
        let raft = &self.inner.raft;
        raft.runtime_config().heartbeat(true);
        raft.runtime_config().elect(true);
        self.inner.meta_aside.store(false, Ordering::Relaxed);
    }
}
