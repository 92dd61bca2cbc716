//! openraft's network traits over [`Peers`], for any group, and the receiving side's dispatch.

use super::frame::{Request, Response, RpcKind, WireError};
use super::{BoxFuture, Peers};
use crate::types::{GroupId, Member, NodeId};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{Raft, RaftTypeConfig};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::marker::PhantomData;
use std::sync::Arc;

/// Told of every refused vote a group's candidate gets back, with the candidate's own last log
/// id: how the liveness-driven failover of every group (failover.rs) learns which survivor has
/// the longest log without a message of its own.
pub(crate) trait VoteObserver: Send + Sync {
    /// A vote request of `group` carrying `mine` as the candidate's last log id was answered
    /// `response`.
    fn answered(
        &self,
        group: GroupId,
        mine: Option<&openraft::LogId<NodeId>>,
        response: &VoteResponse<NodeId>,
    );
}

/// Builds the connections of one group's Raft to the other members: openraft's
/// `RaftNetworkFactory`. Every group shares the node's [`Peers`].
pub struct GroupNetwork<C> {
    group: GroupId,
    peers: Peers,
    votes: Option<Arc<dyn VoteObserver>>,
    _types: PhantomData<fn() -> C>,
}

impl<C> GroupNetwork<C> {
    /// The network of `group`.
    pub fn new(group: GroupId, peers: Peers) -> Self {
        GroupNetwork {
            group,
            peers,
            votes: None,
            _types: PhantomData,
        }
    }

    /// The network of `group`, its vote answers told to `votes`.
    pub(crate) fn observed(group: GroupId, peers: Peers, votes: Arc<dyn VoteObserver>) -> Self {
        GroupNetwork {
            votes: Some(votes),
            ..GroupNetwork::new(group, peers)
        }
    }
}

/// One group's link to one member.
pub struct GroupClient<C> {
    group: GroupId,
    target: NodeId,
    member: Member,
    peers: Peers,
    votes: Option<Arc<dyn VoteObserver>>,
    _types: PhantomData<fn() -> C>,
}

impl<C> RaftNetworkFactory<C> for GroupNetwork<C>
where
    C: RaftTypeConfig<NodeId = NodeId, Node = Member>,
    C::Entry: Serialize + DeserializeOwned,
{
    type Network = GroupClient<C>;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> GroupClient<C> {
        GroupClient {
            group: self.group,
            target,
            member: node.clone(),
            peers: self.peers.clone(),
            votes: self.votes.clone(),
            _types: PhantomData,
        }
    }
}

type RpcResult<T, E> = Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl<C> GroupClient<C> {
    /// Sends one Raft message and decodes the remote's `Result`.
    async fn send<Req, Resp, E>(
        &self,
        kind: RpcKind,
        rpc: &Req,
        option: &RPCOption,
    ) -> RpcResult<Resp, E>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let body =
            postcard::to_stdvec(rpc).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let request = Request::Raft {
            group: self.group.0,
            kind,
            body,
        };
        // openraft 0.9 bounds every Raft RPC by `hard_ttl` itself (an AppendEntries by the
        // heartbeat interval) and retries a timed-out one at once; this wait is a little longer,
        // so that a slow answer ends as openraft's `Timeout`, not as `Unreachable`, which
        // would add its 200 ms backoff (`Self::backoff`) to a follower that is only busy.
        let wait = option.hard_ttl().saturating_add(option.hard_ttl() / 4);
        let response = self
            .peers
            .call(&self.member.addr, request, wait)
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        match response {
            Response::Raft(bytes) => {
                let result: Result<Resp, RaftError<NodeId, E>> = postcard::from_bytes(&bytes)
                    .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
                result.map_err(|e| {
                    RPCError::RemoteError(RemoteError::new_with_node(
                        self.target,
                        self.member.clone(),
                        e,
                    ))
                })
            }
            Response::Error(e) => {
                let e = crate::ClusterError::Remote {
                    addr: self.member.addr.clone(),
                    message: format!("{e:?}"),
                };
                Err(RPCError::Unreachable(Unreachable::new(&e)))
            }
            other => {
                let e = crate::ClusterError::Remote {
                    addr: self.member.addr.clone(),
                    message: format!("unexpected answer {other:?}"),
                };
                Err(RPCError::Network(NetworkError::new(&e)))
            }
        }
    }
}

impl<C> RaftNetwork<C> for GroupClient<C>
where
    C: RaftTypeConfig<NodeId = NodeId, Node = Member>,
    C::Entry: Serialize + DeserializeOwned,
{
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<C>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.send(RpcKind::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<C>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.send(RpcKind::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        let result = self.send(RpcKind::Vote, &rpc, &option).await;
        if let (Ok(response), Some(votes)) = (&result, &self.votes) {
            votes.answered(self.group, rpc.last_log_id.as_ref(), response);
        }
        result
    }

    fn backoff(&self) -> openraft::network::Backoff {
        // A peer that is down is retried every 200 ms (openraft's default is 500 ms): a restarted
        // node catches up sooner; a connection attempt to a dead port costs next to nothing.
        openraft::network::Backoff::new(std::iter::repeat(std::time::Duration::from_millis(200)))
    }
}

/// The receiving side of one group: decodes a Raft message, hands it to the group's `Raft`,
/// encodes its answer. Type-erased so that the node's dispatch holds groups of any type.
pub trait GroupEndpoint: Send + Sync + 'static {
    /// Handles one message.
    fn handle(&self, kind: RpcKind, body: Vec<u8>) -> BoxFuture<Response>;
}

fn encode_result<T: Serialize>(value: &T) -> Response {
    match postcard::to_stdvec(value) {
        Ok(bytes) => Response::Raft(bytes),
        Err(e) => Response::Error(WireError::Other(format!("cannot encode: {e}"))),
    }
}

impl<C> GroupEndpoint for Raft<C>
where
    C: RaftTypeConfig<NodeId = NodeId, Node = Member>,
    C::Entry: Serialize + DeserializeOwned,
{
    fn handle(&self, kind: RpcKind, body: Vec<u8>) -> BoxFuture<Response> {
        let raft = self.clone();
        Box::pin(async move {
            let bad = |e: postcard::Error| {
                Response::Error(WireError::Other(format!("undecodable Raft message: {e}")))
            };
            match kind {
                RpcKind::AppendEntries => {
                    match postcard::from_bytes::<AppendEntriesRequest<C>>(&body) {
                        Ok(rpc) => encode_result(&raft.append_entries(rpc).await),
                        Err(e) => bad(e),
                    }
                }
                RpcKind::Vote => match postcard::from_bytes::<VoteRequest<NodeId>>(&body) {
                    Ok(rpc) => encode_result(&raft.vote(rpc).await),
                    Err(e) => bad(e),
                },
                RpcKind::InstallSnapshot => {
                    match postcard::from_bytes::<InstallSnapshotRequest<C>>(&body) {
                        Ok(rpc) => encode_result(&raft.install_snapshot(rpc).await),
                        Err(e) => bad(e),
                    }
                }
            }
        })
    }
}
