//! Quorum queues: each queue is a Raft group of its own on the node's shared log.
//!
//! - [`command`]: what the group replicates ([`QueueCommand`]) and what applying it yields
//!   ([`QueueResponse`]: a reply and [`Effect`]s).
//! - `machine` and `consumers`: [`QueueMachine`], the queue as a deterministic state machine,
//!   modelled on RabbitMQ's `rabbit_fifo` (deps/rabbit/src/rabbit_fifo.erl).
//! - `group`: the queue's Raft group ([`QuorumQueue`]): openraft's state machine over
//!   [`QueueMachine`], its snapshots, and a handle to write commands through the leader.
//!
//! - `forward`: writes from any node, forwarded to the group's leader over the cluster link.
//!
//! The broker's side is `crates/server/src/cluster/quorum/` (docs/clustering.md, "Quorum queues").

// Deliveries only once caught up with the leader's commit (soakdup).
mod catchup;
pub mod command;
mod consumers;
mod dequeue;
// At-least-once dead-lettering (helper dlxalo).
mod dlx;
// Consumer priorities and the last activity for x-expires (helper quorumrest).
mod extras;
mod priority;
// A deleted queue's member gone for good (helper quorumone).
pub(crate) mod destroy;
// Elections at once when liveness loses a group's leader (rafttiming).
mod failover;
pub(crate) mod forward;
mod group;
pub(crate) mod idle;
mod machine;
// Membership changes and leadership moves (quorummembers).
mod members;
#[cfg(test)]
mod model_tests;
#[cfg(test)]
mod scenario_tests;

pub use command::{
    ConsumerId, DeadLetterReason, DeadLetterStrategy, DeadLettered, Delivery, Effect, Message,
    Overflow, PublisherId, QueueCommand, QueueConfig, QueueOp, QueueResponse, Reply,
    DEFAULT_DELIVERY_LIMIT,
};
pub use dlx::WaitingDeadLetter;
pub use group::{Observer, QueueStateMachine, QueueTypes, QuorumQueue};
pub use machine::{QueueCounts, QueueMachine};

use crate::types::GroupId;
use sha2::{Digest, Sha256};

/// The Raft group of the queue `name` in `vhost`: the first 8 bytes of the SHA-256 of
/// `vhost NUL name`, so that every node computes it from the queue's identity alone (RabbitMQ
/// names a quorum queue's Ra cluster from its vhost and name likewise). Never the metadata
/// group's id (0); a collision of two queues would need about 2^32 of them.
pub fn queue_group(vhost: &str, name: &str) -> GroupId {
    let mut hash = Sha256::new();
    hash.update(vhost.as_bytes());
    hash.update([0u8]);
    hash.update(name.as_bytes());
    let digest = hash.finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    match u64::from_be_bytes(id) {
        0 => GroupId(1),
        n => GroupId(n),
    }
}
