//! The crate's error: what went wrong, and what the caller can do about it.

use std::time::Duration;

/// Errors of a cluster node's operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// This node is not the leader and the caller asked not to forward (or forwarding failed).
    /// The write was not made; retry it on the named leader.
    #[error("this node is not the leader of the {group}; the leader is {}", leader.as_deref().unwrap_or("unknown (an election is under way)"))]
    NotLeader {
        /// The group written to.
        group: crate::GroupId,
        /// The leader's name, when this node knows it.
        leader: Option<String>,
    },
    /// No leader is known: an election is under way, or this node is in a minority.
    #[error("no leader for the {group}: an election is under way or this node cannot reach a majority of the cluster")]
    NoLeader {
        /// The group written to.
        group: crate::GroupId,
    },
    /// The write was proposed but not committed in time: a majority of the voters did not
    /// acknowledge it (nodes down or partitioned away). It may still commit later.
    #[error("the write to the {group} was not committed within {waited:?}: a majority of the cluster's voters did not acknowledge it (leader: {})", leader.as_deref().unwrap_or("unknown"))]
    Timeout {
        /// The group written to.
        group: crate::GroupId,
        /// How long the write waited.
        waited: Duration,
        /// The leader this node knew of, if any.
        leader: Option<String>,
    },
    /// A peer could not be reached.
    #[error("cannot reach cluster node at {addr}: {reason}")]
    Unreachable {
        /// The peer's address.
        addr: String,
        /// Why.
        reason: String,
    },
    /// A peer answered with an error.
    #[error("cluster node at {addr} refused: {message}")]
    Remote {
        /// The peer's address.
        addr: String,
        /// Its error text.
        message: String,
    },
    /// A membership change was refused (unknown node, change in progress...).
    #[error("membership change refused: {0}")]
    Membership(String),
    /// Raft stopped on this node (fatal storage error or shutdown).
    #[error("raft stopped on this node: {0}")]
    Stopped(String),
    /// The write-ahead log failed; the node must stop.
    #[error("write-ahead log: {0}")]
    Wal(#[from] crate::wal::WalError),
    /// Binding the cluster listener or another local I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] crate::ConfigError),
}
