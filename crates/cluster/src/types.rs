//! The types every Raft group shares: node ids, members, group ids, and the metadata group's
//! openraft type configuration.

use crate::meta::{MetaCommand, MetaResponse};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::io::Cursor;

/// openraft's id of a node: derived from the node's name (see [`node_id`]), so that every node
/// computes every other node's id from its name alone, with nothing to allocate or agree on.
pub type NodeId = u64;

/// The id of a node from its name: the first 8 bytes of the name's SHA-256, big-endian. Two names
/// colliding would need 2^32 nodes (birthday bound); the cluster refuses a join whose id is
/// already a member under another name.
pub fn node_id(name: &str) -> NodeId {
    let digest = Sha256::digest(name.as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(id)
}

/// A member of the cluster as Raft's membership records it: its name and the address of its
/// cluster listener (`host:port`), which is how the others reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's name (`node_name` in its `[cluster]` table).
    pub name: String,
    /// The node's cluster address as the other nodes dial it.
    pub addr: String,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

/// Which Raft group a log record or a message belongs to. The metadata group is
/// [`GroupId::METADATA`]; quorum queues will each be a group of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct GroupId(pub u64);

impl GroupId {
    /// The one group that replicates the broker's metadata (vhosts, users, exchanges...).
    pub const METADATA: GroupId = GroupId(0);
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == GroupId::METADATA {
            f.write_str("metadata")
        } else {
            write!(f, "group {}", self.0)
        }
    }
}

openraft::declare_raft_types!(
    /// The metadata group's types: [`MetaCommand`]s in, [`MetaResponse`]s out, snapshots as bytes.
    pub MetaTypes:
        D = MetaCommand,
        R = MetaResponse,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<MetaTypes>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn node_ids_are_stable_and_distinct() {
        assert_eq!(node_id("rabbit@a"), node_id("rabbit@a"));
        assert_ne!(node_id("a"), node_id("b"));
    }
}
