//! The cluster crate's integration tests in one test binary (one link instead of one per file).

#![allow(clippy::unwrap_used)] // a failed step fails the test at its own line

mod common;
mod failover;
mod forming;
mod groups;
mod idle_policy;
mod liveness;
// The metadata group's liveness-driven election (helper metaelect).
mod meta_failover;
mod ops;
mod quorum;
mod quorum_failover;
mod quorum_idle;
// Read barrier (helper readwrites).
mod read_index;
mod tls;
mod wal;
