//! The messages nodes exchange and how they are framed.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt};

/// The version of this protocol; a node refuses a peer that speaks another.
pub const PROTOCOL: u32 = 1;

/// The largest frame accepted: a snapshot chunk (openraft's default 3 MiB) with room to spare.
pub(crate) const MAX_FRAME: usize = 64 << 20;

/// What one node asks another.
#[derive(Debug, Serialize, Deserialize)]
pub enum Request {
    /// Who are you, and are you part of a cluster already? (bootstrap from static peers)
    Hello {
        /// The caller's protocol version.
        protocol: u32,
        /// The caller's name.
        name: String,
    },
    /// A Raft message for one group (openraft's request, encoded).
    Raft {
        /// The group.
        group: u64,
        /// Which message.
        kind: RpcKind,
        /// The message, postcard-encoded.
        body: Vec<u8>,
    },
    /// A client write forwarded to the leader (the group's command, encoded).
    Write {
        /// The group.
        group: u64,
        /// The command, postcard-encoded.
        command: Vec<u8>,
    },
    /// Add this node to the cluster: as a learner, then, caught up, as a voter.
    Join {
        /// The node's name.
        name: String,
        /// Its cluster address.
        addr: String,
    },
    /// Remove a node from the cluster.
    Forget {
        /// The node's name.
        name: String,
    },
    // --- Node liveness (clusternet): one heartbeat per pair of nodes, whatever the number of
    // groups (net/liveness.rs). ---
    /// Are you there? Sent to every member every `node_heartbeat`.
    Ping {
        /// The caller's name.
        from: String,
    },
    // --- Operations (issue 13 item 6, clusterops): the broker's own questions to a peer
    // (its statistics, connections, overview; closing a connection; maintenance), opaque here.
    /// A request for the peer's broker, answered by the [`OpsHandler`](crate::node::OpsHandler)
    /// it registered (`Response::Ops`).
    Ops {
        /// The broker's request, encoded by the broker (JSON in Pigeon).
        body: Vec<u8>,
    },
    // --- Classic queues across nodes (issue 13 item 3, helper "forward"): publishes forwarded
    // to a queue's home node, consumers on another node. The body is the broker's own
    // message (a batch), opaque to the cluster; see `net/forward.rs`.
    /// A broker message for the node's classic queues (a batch of forwarded publishes, a
    /// remote consumer's attach, deliveries, acks...).
    Forward {
        /// The calling node's name.
        from: String,
        /// The broker's message, encoded by the broker (as bytes: postcard would otherwise
        /// encode a `Vec<u8>` element by element).
        #[serde(with = "serde_bytes")]
        body: Vec<u8>,
    },
    // --- Read barrier (issue 13 item 2, helper readwrites): a node whose lookup missed asks
    // the metadata leader for its read index (node/read_index.rs).
    /// What is your committed index, once you have confirmed that you still lead?
    ReadIndex,
}

/// The Raft messages.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub enum RpcKind {
    /// AppendEntries (and heartbeats).
    AppendEntries,
    /// RequestVote.
    Vote,
    /// A snapshot chunk.
    InstallSnapshot,
}

/// The answers.
#[derive(Debug, Serialize, Deserialize)]
pub enum Response {
    /// To `Hello`.
    Hello {
        /// The answering node's name.
        name: String,
        /// Whether it belongs to a cluster already (has Raft state).
        initialized: bool,
    },
    /// To `Raft`: openraft's `Result`, encoded.
    Raft(Vec<u8>),
    /// To `Write`: the group's response and the entry's log index, encoded.
    Written(Vec<u8>),
    /// To `Join` and `Forget`.
    Done,
    // --- Classic queues across nodes (helper "forward").
    /// To `Forward`: the broker's answer, encoded by the broker.
    Forwarded(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The request failed.
    Error(WireError),
    // --- Node liveness (clusternet). ---
    /// To `Ping`.
    Pong {
        /// The answering node's name.
        name: String,
        /// A number drawn at each start of the node: a new one tells the caller that the node
        /// restarted, even quicker than it would have been declared down.
        incarnation: u64,
    },
    // --- Operations (issue 13 item 6, clusterops).
    /// To `Ops`: the peer broker's answer, encoded by it.
    Ops(Vec<u8>),
    // --- Read barrier (helper readwrites).
    /// To `ReadIndex`: the leader's read index (its commit index once its leadership was
    /// confirmed by a majority); the asking node applies up to it before it looks again.
    ReadIndex {
        /// The log index.
        index: u64,
    },
}

/// An error as it crosses the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum WireError {
    /// The node is not the leader.
    NotLeader {
        /// The leader it knows of.
        leader: Option<String>,
    },
    /// No leader known.
    NoLeader,
    /// Not committed in time.
    Timeout {
        /// Milliseconds waited.
        waited_ms: u64,
        /// The leader known.
        leader: Option<String>,
    },
    /// Anything else, as text.
    Other(String),
}

/// One frame's content.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Envelope {
    /// A request and the id its answer will carry.
    Request(u64, Request),
    /// The answer to request `id`.
    Response(u64, Response),
}

/// Encodes a frame: length prefix and envelope.
pub(crate) fn encode(envelope: &Envelope) -> Result<Vec<u8>, postcard::Error> {
    let mut out = vec![0u8; 4];
    let out = postcard::to_extend(envelope, std::mem::take(&mut out))?;
    let mut out = out;
    let len = (out.len() - 4) as u32;
    out[..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}

/// Why a connection's reading stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FrameError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("frame of {0} bytes is larger than the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("undecodable frame: {0}")]
    Decode(#[from] postcard::Error),
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
pub(crate) async fn read<R: AsyncRead + Unpin>(
    reader: &mut R,
) -> Result<Option<Envelope>, FrameError> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(Some(postcard::from_bytes(&body)?))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_frame_reads_back() {
        let env = Envelope::Request(7, Request::Forget { name: "b".into() });
        let bytes = encode(&env).unwrap();
        let mut reader = &bytes[..];
        match read(&mut reader).await.unwrap() {
            Some(Envelope::Request(7, Request::Forget { name })) => assert_eq!(name, "b"),
            other => panic!("{other:?}"),
        }
        assert!(read(&mut reader).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_allocating() {
        let bytes = u32::MAX.to_be_bytes();
        assert!(matches!(
            read(&mut &bytes[..]).await,
            Err(FrameError::TooLarge(_))
        ));
    }
}
