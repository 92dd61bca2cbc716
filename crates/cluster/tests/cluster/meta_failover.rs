//! The metadata group whose leader's node is lost elects a new leader as soon as node liveness
//! reports the loss, past the followers' leader lease (node/failover.rs, failover.rs).

use crate::common::{self, vhost, TestCluster};
use pigeon_cluster::Timing;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metadata_group_elects_at_once_when_liveness_loses_its_leader_node() {
    // The metadata group's election timers (and so its followers' leader lease, openraft 0.9's
    // `election_timeout_max`) far beyond the test's bound: a leader elected in time can only
    // have been elected on liveness's word.
    let timing = Timing {
        election_min: Duration::from_secs(120),
        election_max: Duration::from_secs(240),
        ..common::timing()
    };
    let mut cluster = TestCluster::start_with(3, timing).await;
    let first = cluster.leader().await;
    for n in 0..5 {
        cluster.nodes[first]
            .cluster()
            .write(vhost(n))
            .await
            .unwrap();
    }
    // Every follower has applied the writes: it heard from the leader within its lease.
    let applied = cluster.nodes[first].cluster().status().last_applied;
    common::within("the followers to apply the writes", || {
        cluster
            .running()
            .all(|(_, n)| n.cluster().status().last_applied >= applied)
    })
    .await;
    let before: u64 = cluster
        .running()
        .map(|(_, n)| n.cluster().metadata_failover_elections())
        .sum();
    assert_eq!(
        before, 0,
        "an election on liveness's word with every node up"
    );
    cluster.stop(first).await;
    let second = cluster.leader().await;
    assert_ne!(second, first);
    assert!(
        cluster.nodes[second]
            .cluster()
            .metadata_failover_elections()
            > 0,
        "the new leader was not elected on liveness's word"
    );
    cluster.nodes[second]
        .cluster()
        .write(vhost(5))
        .await
        .unwrap();
    let third = (0..3).find(|i| *i != first && *i != second).unwrap();
    cluster.nodes[third]
        .cluster()
        .write(vhost(6))
        .await
        .unwrap();
    cluster.shutdown().await;
}
