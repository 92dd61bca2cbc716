//! Forming the cluster and changing its members: bootstrap from static peers, `join`, `forget`.

use super::write::from_wire;
use super::{Cluster, NodeInner};
use crate::net::{Request, Response, PROTOCOL};
use crate::types::{node_id, Member, MetaTypes, NodeId};
use crate::ClusterError;
use openraft::error::{ClientWriteError, RaftError};
use openraft::ChangeMembers;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// How long a bootstrap hello waits for a peer's answer.
const HELLO_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs until the node belongs to a cluster. See the module documentation of `node`.
pub(crate) async fn bootstrap(inner: Arc<NodeInner>) {
    let peers = inner.config.peers.clone();
    let mut pause = Duration::from_millis(100);
    loop {
        if inner.raft.is_initialized().await.unwrap_or(true) {
            return;
        }
        if peers.is_empty() {
            // A node with no peers is a cluster of one.
            let members = BTreeMap::from([(inner.id, inner.me.clone())]);
            match inner.raft.initialize(members).await {
                Ok(()) => tracing::info!(node = %inner.me, "cluster: initialized a cluster of one"),
                Err(e) => tracing::warn!("cluster: cannot initialize a cluster of one: {e}"),
            }
            return;
        }
        let mut names: Vec<Member> = Vec::new();
        let mut formed: Option<String> = None;
        for addr in &peers {
            let hello = Request::Hello {
                protocol: PROTOCOL,
                name: inner.me.name.clone(),
            };
            if let Ok(Response::Hello { name, initialized }) =
                inner.peers.call(addr, hello, HELLO_TIMEOUT).await
            {
                if initialized && formed.is_none() {
                    formed = Some(addr.clone());
                }
                if name != inner.me.name {
                    names.push(Member {
                        name,
                        addr: addr.clone(),
                    });
                }
            }
        }
        if let Some(seed) = formed {
            // The peers formed a cluster already (this node started late, or was added to the
            // static list later): join it, as `pigeon ctl join_cluster` does.
            match join_via(&inner, &seed).await {
                Ok(()) => {
                    tracing::info!(node = %inner.me, via = %seed, "cluster: joined the cluster of the static peers");
                    return;
                }
                Err(e) => tracing::info!(via = %seed, "cluster: cannot join yet: {e}"),
            }
        } else if names.len() == peers.len() && names.iter().all(|m| inner.me.name < m.name) {
            // Every peer answered and none has state: the lowest name initializes, with all.
            let mut members: BTreeMap<NodeId, Member> = names
                .iter()
                .map(|m| (node_id(&m.name), m.clone()))
                .collect();
            members.insert(inner.id, inner.me.clone());
            match inner.raft.initialize(members).await {
                Ok(()) => {
                    tracing::info!(node = %inner.me, nodes = names.len() + 1, "cluster: initialized the cluster from the static peers");
                    return;
                }
                Err(e) => tracing::warn!("cluster: cannot initialize the cluster: {e}"),
            }
        }
        let mut shutdown = inner.shutdown.subscribe();
        if *shutdown.borrow_and_update() {
            return;
        }
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(2));
    }
}

/// Asks the node at `seed` to add this node; the seed forwards to its leader.
async fn join_via(inner: &NodeInner, seed: &str) -> Result<(), ClusterError> {
    let request = Request::Join {
        name: inner.me.name.clone(),
        addr: inner.me.addr.clone(),
    };
    let wait = inner.config.timing.join_timeout + Duration::from_secs(1);
    match inner.peers.call(seed, request, wait).await? {
        Response::Done => Ok(()),
        Response::Error(e) => Err(from_wire(
            e,
            &Member {
                name: String::new(),
                addr: seed.to_string(),
            },
        )),
        other => Err(ClusterError::Remote {
            addr: seed.to_string(),
            message: format!("unexpected answer {other:?}"),
        }),
    }
}

fn change_err(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> ClusterError {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => match f.leader_node {
            Some(l) => ClusterError::NotLeader {
                group: crate::GroupId::METADATA,
                leader: Some(l.name),
            },
            None => ClusterError::NoLeader {
                group: crate::GroupId::METADATA,
            },
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(e)) => {
            ClusterError::Membership(e.to_string())
        }
        RaftError::Fatal(e) => ClusterError::Stopped(e.to_string()),
    }
}

type Changed = Result<
    openraft::raft::ClientWriteResponse<MetaTypes>,
    RaftError<NodeId, ClientWriteError<NodeId, Member>>,
>;

impl NodeInner {
    fn is_leader(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// On a follower, sends `request` to the leader; `None` on the leader itself.
    async fn forward_admin(&self, request: Request) -> Option<Result<(), ClusterError>> {
        if self.is_leader() {
            return None;
        }
        let Some(leader) = self.leader().filter(|l| l.name != self.me.name) else {
            return Some(Err(ClusterError::NoLeader {
                group: crate::GroupId::METADATA,
            }));
        };
        let wait = self.config.timing.join_timeout + Duration::from_secs(1);
        Some(match self.peers.call(&leader.addr, request, wait).await {
            Ok(Response::Done) => Ok(()),
            Ok(Response::Error(e)) => Err(from_wire(e, &leader)),
            Ok(other) => Err(ClusterError::Remote {
                addr: leader.addr,
                message: format!("unexpected answer {other:?}"),
            }),
            Err(e) => Err(e),
        })
    }

    /// Waits until the last membership change is committed (applied here), so that the next
    /// one is not refused as "already undergoing a configuration change".
    async fn membership_settled(&self) -> Result<(), ClusterError> {
        let wait = self.config.timing.join_timeout;
        let mut rx = self.raft.metrics();
        tokio::time::timeout(
            wait,
            rx.wait_for(|m| m.last_applied >= *m.membership_config.log_id()),
        )
        .await
        .map_err(|_| {
            ClusterError::Membership(format!(
                "the last membership change did not commit within {wait:?}"
            ))
        })?
        .map_err(|_| ClusterError::Stopped("raft stopped".into()))?;
        Ok(())
    }

    /// Runs a membership change on the leader, bounded by the join timeout.
    async fn change(
        &self,
        what: &str,
        change: impl std::future::Future<Output = Changed>,
    ) -> Result<(), ClusterError> {
        let wait = self.config.timing.join_timeout;
        match tokio::time::timeout(wait, change).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(change_err(e)),
            Err(_) => Err(ClusterError::Membership(format!(
                "{what} did not finish within {wait:?}"
            ))),
        }
    }

    /// Adds a node: as a learner, waiting for it to catch up (from a snapshot if the log it
    /// needs is purged), then as a voter. Forwarded to the leader from a follower.
    pub(crate) async fn add_member(&self, name: String, addr: String) -> Result<(), ClusterError> {
        if let Some(forwarded) = self
            .forward_admin(Request::Join {
                name: name.clone(),
                addr: addr.clone(),
            })
            .await
        {
            return forwarded;
        }
        let _one_at_a_time = self.admin.lock().await;
        self.membership_settled().await?;
        let id = node_id(&name);
        let membership = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        if let Some(existing) = membership.get_node(&id) {
            if existing.name != name {
                return Err(ClusterError::Membership(format!(
                    "node {name} has the same id as member {} (a hash collision): rename one",
                    existing.name
                )));
            }
        }
        if membership.voter_ids().any(|v| v == id) {
            return Ok(());
        }
        if !membership.learner_ids().any(|l| l == id) {
            let member = Member {
                name: name.clone(),
                addr,
            };
            tracing::info!(node = %member, "cluster: adding a node as a learner");
            self.change(
                "catching up the new node",
                self.raft.add_learner(id, member, true),
            )
            .await?;
        }
        tracing::info!(node = %name, "cluster: promoting the caught-up node to voter");
        self.change(
            "promoting the new node",
            self.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false),
        )
        .await
    }

    /// Removes a node from the cluster (voter or learner). Forwarded to the leader.
    pub(crate) async fn remove_member(&self, name: &str) -> Result<(), ClusterError> {
        if let Some(forwarded) = self
            .forward_admin(Request::Forget {
                name: name.to_string(),
            })
            .await
        {
            return forwarded;
        }
        let _one_at_a_time = self.admin.lock().await;
        self.membership_settled().await?;
        let id = node_id(name);
        let membership = self
            .raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        if voters.contains(&id) {
            if voters.len() == 1 {
                return Err(ClusterError::Membership(format!(
                    "{name} is the last voter; a cluster cannot forget all its nodes"
                )));
            }
            tracing::info!(node = %name, "cluster: forgetting a voter");
            self.change(
                "forgetting the node",
                self.raft
                    .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false),
            )
            .await
        } else if membership.learner_ids().any(|l| l == id) {
            tracing::info!(node = %name, "cluster: forgetting a learner");
            self.change(
                "forgetting the node",
                self.raft
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false),
            )
            .await
        } else {
            Err(ClusterError::Membership(format!(
                "{name} is not a member of the cluster"
            )))
        }
    }
}

impl Cluster {
    /// `join_cluster`: makes this node a member of the cluster that the node at `seed` belongs
    /// to. Returns once this node is a voter (it caught up first, from a snapshot if needed).
    pub async fn join(&self, seed: &str) -> Result<(), ClusterError> {
        join_via(&self.inner, seed).await?;
        let id = self.inner.id;
        let wait = self.inner.config.timing.join_timeout;
        let mut rx = self.metrics();
        tokio::time::timeout(
            wait,
            rx.wait_for(|m| {
                m.membership_config
                    .membership()
                    .voter_ids()
                    .any(|v| v == id)
            }),
        )
        .await
        .map_err(|_| ClusterError::Membership(format!("not a voter {wait:?} after joining")))?
        .map_err(|_| ClusterError::Stopped("raft stopped while joining".into()))?;
        Ok(())
    }

    /// Says `Hello` to the node at `addr`: its name and whether it belongs to a cluster
    /// already (`join_cluster`'s checks before this node resets itself to join it).
    pub async fn hello(
        &self,
        addr: &str,
        timeout: Duration,
    ) -> Result<(String, bool), ClusterError> {
        let hello = Request::Hello {
            protocol: PROTOCOL,
            name: self.inner.me.name.clone(),
        };
        match self.inner.peers.call(addr, hello, timeout).await? {
            Response::Hello { name, initialized } => Ok((name, initialized)),
            Response::Error(e) => Err(from_wire(
                e,
                &Member {
                    name: String::new(),
                    addr: addr.to_string(),
                },
            )),
            other => Err(ClusterError::Remote {
                addr: addr.to_string(),
                message: format!("unexpected answer {other:?}"),
            }),
        }
    }

    /// `forget_cluster_node`: removes the named node from the cluster. Run on any member.
    pub async fn forget(&self, name: &str) -> Result<(), ClusterError> {
        self.inner.remove_member(name).await
    }
}
