//! Pigeon's clustering: several nodes acting as one broker.
//!
//! Consensus is [openraft]'s (pinned exactly in Cargo.toml); this crate supplies what openraft
//! leaves to its user, and nothing on a single node's hot path:
//!
//! - [`wal`]: the node's one write-ahead log, shared by every Raft group on the node. Each record
//!   is tagged with its group; appends from all groups waiting at the same moment go to disk in one
//!   write and one fsync (group commit), as RabbitMQ's Ra shares its WAL. [`wal::GroupLog`] is one
//!   group's view of it, openraft's `RaftLogStorage`.
//! - [`meta`]: the metadata group's commands ([`MetaCommand`]) and its state machine, applied
//!   through the [`MetadataApply`] trait that the broker implements over its store.
//! - [`net`]: the node-to-node transport: TCP, length-prefixed postcard frames, requests and
//!   responses multiplexed over one connection per peer, reconnection with backoff. Raft messages
//!   carry their group id, so one connection serves every group.
//! - [`node`]: a running node ([`Cluster`]): its name, the metadata group, bootstrap from static
//!   peers, `join`, `forget`, `status`, and client writes forwarded to the leader.
//! - `failover`: every group's election at once when node liveness loses its leader's node,
//!   past openraft 0.9's leader lease (the metadata group and quorum queues' groups).
//! - Node liveness ([`net::liveness`]): one ping per pair of nodes every 500 ms, a node down
//!   after 8 unanswered. [`Cluster::node_states`] is the current view (name -> [`NodeState`]),
//!   [`Cluster::watch_node_states`] a watch of it, [`Cluster::node_events`] the changes
//!   ([`NodeEvent`]: down, up, restarted), for what must react to a lost node (quorum queues'
//!   `NodeDown`, forwarding to a queue's home node, `/api/nodes`' `running`).
//! - [`quorum`]: quorum queues, each a Raft group of its own: the queue as a deterministic state
//!   machine ([`quorum::QueueMachine`], after RabbitMQ's `rabbit_fifo`) and its group
//!   ([`quorum::QuorumQueue`]).
//! - [`config`]: the `[cluster]` table ([`ClusterConfig`]).
//!
//! docs/clustering.md explains the design and what comes next.

pub mod config;
mod error;
// Elections at once when liveness loses a group's leader, for every group (metaelect).
mod failover;
pub mod meta;
pub mod net;
pub mod node;
pub mod quorum;
mod types;
pub mod wal;

pub use config::{ClusterConfig, ConfigError, NodeName, Timing, TlsFiles};
pub use error::ClusterError;
pub use meta::{
    AppliedMarker, ApplyError, MemoryApplier, MetaCommand, MetaResponse, MetadataApply,
};
pub use net::{NodeEvent, NodeEventKind, NodeState, NodeStates};
pub use node::{Cluster, ClusterStatus, ForwardError, MemberStatus, OpsHandler, Role};
// Read barrier (helper readwrites).
pub use node::BarrierError;
pub use types::{node_id, GroupId, Member, MetaTypes, NodeId};
