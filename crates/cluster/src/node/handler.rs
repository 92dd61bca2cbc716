//! What a node answers to its peers.

use super::write::to_wire;
use super::NodeInner;
use crate::meta::MetaCommand;
use crate::net::{BoxFuture, Handler, Request, Response, WireError, PROTOCOL};
use crate::types::GroupId;
use std::sync::Arc;

/// The node as its listener's request handler.
pub(crate) struct NodeHandler(pub(crate) Arc<NodeInner>);

impl Handler for NodeHandler {
    fn handle(&self, request: Request) -> BoxFuture<Response> {
        let inner = self.0.clone();
        Box::pin(async move {
            match request {
                Request::Hello { protocol, name } => {
                    if protocol != PROTOCOL {
                        tracing::warn!(peer = %name, protocol, "cluster: refusing a peer that speaks another protocol version");
                        return Response::Error(WireError::Other(format!(
                            "node {} speaks cluster protocol {PROTOCOL}, not {protocol}",
                            inner.me.name
                        )));
                    }
                    let initialized = inner.raft.is_initialized().await.unwrap_or(false);
                    Response::Hello {
                        name: inner.me.name.clone(),
                        initialized,
                    }
                }
                Request::Raft { group, kind, body } => {
                    let endpoint = inner.groups.lock().get(&GroupId(group)).cloned();
                    match endpoint {
                        Some(endpoint) => endpoint.handle(kind, body).await,
                        None => Response::Error(WireError::Other(format!(
                            "no {} on node {}",
                            GroupId(group),
                            inner.me.name
                        ))),
                    }
                }
                Request::Write { group, command } => {
                    if GroupId(group) != GroupId::METADATA {
                        // Quorum queues in the broker: a write forwarded to a queue's member.
                        return crate::quorum::forward::handle(&inner, GroupId(group), &command)
                            .await;
                    }
                    let command: MetaCommand = match postcard::from_bytes(&command) {
                        Ok(c) => c,
                        Err(e) => {
                            return Response::Error(WireError::Other(format!(
                                "undecodable command: {e}"
                            )))
                        }
                    };
                    match inner
                        .write_here(command, inner.config.timing.write_timeout)
                        .await
                    {
                        // The index lets the forwarding node wait for its own apply.
                        Ok(written) => match postcard::to_stdvec(&written) {
                            Ok(bytes) => Response::Written(bytes),
                            Err(e) => Response::Error(WireError::Other(e.to_string())),
                        },
                        Err(e) => Response::Error(to_wire(e)),
                    }
                }
                Request::Join { name, addr } => match inner.add_member(name, addr).await {
                    Ok(()) => Response::Done,
                    Err(e) => Response::Error(to_wire(e)),
                },
                Request::Forget { name } => match inner.remove_member(&name).await {
                    Ok(()) => Response::Done,
                    Err(e) => Response::Error(to_wire(e)),
                },
                // --- Node liveness (clusternet): answered at once, without Raft. ---
                Request::Ping { from: _ } => Response::Pong {
                    name: inner.me.name.clone(),
                    incarnation: inner.liveness.incarnation,
                },
                // Operations (issue 13 item 6, clusterops): handed to the broker's handler.
                Request::Ops { body } => super::ops::answer(&inner, body).await,
                // Classic queues across nodes (helper "forward"): the broker answers.
                Request::Forward { from, body } => super::forward::handle(&inner, from, body).await,
                // Read barrier (helper readwrites): the leader's read index.
                Request::ReadIndex => super::read_index::answer(&inner).await,
            }
        })
    }
}
