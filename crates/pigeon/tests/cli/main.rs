//! The `pigeon` binary's tests (ctl, bench, kill -9 crashes) in one test binary (one link instead of one per file).

#![allow(clippy::unwrap_used)] // a failed step fails the test at its own line

mod bench_cluster;
mod bench_stream;
mod bench_tls;
mod cluster;
mod cluster_classic_ops;
mod cluster_defaults;
mod cluster_forward;
mod cluster_get;
mod cluster_heal;
mod cluster_join;
mod cluster_members;
mod cluster_meta;
mod cluster_mqtt;
mod cluster_mqtt_failover;
mod cluster_mqtt_retained;
mod cluster_mqtt_shared;
mod cluster_ops;
mod cluster_quorum;
mod cluster_quorum_more;
// At-least-once dead-lettering of quorum queues (helper dlxalo).
mod cluster_quorum_dlx;
// x-expires on quorum queues across nodes (helper quorumrest).
mod cluster_quorum_expires;
// Consumers carrying on through node failures (helper resume).
mod cluster_quorum_resume;
mod crash;
mod crash_quorum;
mod crash_stream;
mod ctl;
mod ctl_access;
mod ctl_node;
mod ctl_quorum;
mod ctl_streams;
mod ctl_support;
mod faults;
mod spawn;
