//! The read barrier (helper readwrites; docs/clustering.md, "Writes and what a client sees"):
//! after `read_barrier` a follower has applied everything the leader committed before the
//! call; many concurrent barriers all complete; a node left without a majority fails its
//! barrier instead of waiting forever.

use crate::common;

use common::{bounded, vhost, TestCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_barrier_a_follower_has_applied_what_the_leader_committed() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    for round in 0..10 {
        // Written (committed and applied) through the leader; then, at once, the follower.
        cluster.nodes[leader]
            .cluster()
            .write(vhost(round))
            .await
            .unwrap();
        let committed = cluster.nodes[leader].cluster().status().last_applied;
        bounded(
            "a barrier",
            cluster.nodes[follower].cluster().read_barrier(),
        )
        .await
        .unwrap();
        let applied = cluster.nodes[follower].cluster().status().last_applied;
        assert!(
            applied >= committed,
            "round {round}: the follower applied {applied}, the leader had committed {committed}"
        );
        assert_eq!(cluster.nodes[follower].applier.applied().len(), round + 1);
    }
    // The leader's own barrier (a confirmation of its leadership) too.
    bounded(
        "the leader's barrier",
        cluster.nodes[leader].cluster().read_barrier(),
    )
    .await
    .unwrap();
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_barriers_share_rounds_and_all_complete() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = cluster.nodes[(leader + 1) % 3].cluster().clone();
    cluster.nodes[leader]
        .cluster()
        .write(vhost(0))
        .await
        .unwrap();
    let barriers: Vec<_> = (0..200)
        .map(|_| {
            let node = follower.clone();
            tokio::spawn(async move { node.read_barrier().await })
        })
        .collect();
    for b in barriers {
        bounded("200 concurrent barriers", b)
            .await
            .unwrap()
            .unwrap();
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_left_alone_fails_its_barrier() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let alone = (leader + 1) % 3;
    for i in (0..3).filter(|&i| i != alone) {
        cluster.stop(i).await;
    }
    // Whatever it believes of the leader, it gets no read index: bounded by the write timeout.
    let result = bounded(
        "a lone node's barrier",
        cluster.nodes[alone].cluster().read_barrier(),
    )
    .await;
    assert!(result.is_err(), "{result:?}");
    cluster.shutdown().await;
}
