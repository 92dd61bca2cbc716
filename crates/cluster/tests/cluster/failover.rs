//! Losing the leader, restarting a node, a node joining late, forgetting one, a cluster of one.

use crate::common;

use common::{bounded, vhost, within, TestCluster, WITHIN};
use pigeon_cluster::{ClusterError, MetaResponse, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_leader_stops_another_is_elected_and_the_old_one_catches_up_from_its_own_log() {
    let mut cluster = TestCluster::start(3).await;
    let old = cluster.leader().await;
    for i in 0..5 {
        cluster.nodes[old].cluster().write(vhost(i)).await.unwrap();
    }
    for (_, n) in cluster.running() {
        assert!(n.applier.wait_for(5, WITHIN).await);
    }
    let old_term = cluster.nodes[old].cluster().status().term;
    cluster.stop(old).await;

    let new = cluster.leader().await;
    assert_ne!(new, old);
    assert!(cluster.nodes[new].cluster().status().term > old_term);
    // Writes continue, through either survivor.
    for i in 5..10 {
        let via = if i % 2 == 0 { new } else { 3 - new - old };
        assert_eq!(
            cluster.nodes[via].cluster().write(vhost(i)).await.unwrap(),
            MetaResponse::Done
        );
    }

    // The old leader restarts with an empty applier: it replays its own log (5 commands) and
    // receives the 5 it missed.
    cluster.restart(old).await;
    let restarted = &cluster.nodes[old];
    assert!(
        restarted.applier.wait_for(10, WITHIN).await,
        "applied {}",
        restarted.applier.applied().len()
    );
    assert_eq!(
        restarted.applier.applied(),
        cluster.nodes[new].applier.applied()
    );
    assert_eq!(
        restarted.applier.restores(),
        0,
        "caught up from the log, not a snapshot"
    );
    let leader = cluster.leader().await;
    assert_eq!(cluster.nodes[leader].cluster().status().members.len(), 3);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_joins_late_catches_up_from_a_snapshot_and_becomes_a_voter() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    for i in 0..20 {
        cluster.nodes[leader]
            .cluster()
            .write(vhost(i))
            .await
            .unwrap();
    }
    for (_, n) in cluster.running() {
        assert!(n.applier.wait_for(20, WITHIN).await);
    }
    // Snapshot and purge on every node, so that whoever leads has only the snapshot to give.
    for (_, n) in cluster.running() {
        bounded("compaction", n.cluster().compact(WITHIN))
            .await
            .unwrap();
    }
    let d = cluster.add_lone_node("node-d").await;
    let seed = cluster.nodes[(leader + 1) % 3].addr.to_string();
    bounded("join", cluster.nodes[d].cluster().join(&seed))
        .await
        .unwrap();

    let joined = &cluster.nodes[d];
    assert!(joined.applier.wait_for(20, WITHIN).await);
    assert_eq!(
        joined.applier.restores(),
        1,
        "the new node was sent the snapshot"
    );
    assert_eq!(
        joined.applier.applied(),
        cluster.nodes[leader].applier.applied()
    );
    let status = joined.cluster().status();
    assert_eq!(status.members.len(), 4, "{status:?}");
    assert!(status.members.iter().all(|m| m.voter), "{status:?}");
    // It takes part in what follows.
    let leader = cluster.leader().await;
    cluster.nodes[leader]
        .cluster()
        .write(vhost(99))
        .await
        .unwrap();
    assert!(cluster.nodes[d].applier.wait_for(21, WITHIN).await);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_after_the_cluster_formed_joins_through_its_static_peers() {
    let mut cluster = TestCluster::start(2).await;
    let leader = cluster.leader().await;
    cluster.nodes[leader]
        .cluster()
        .write(vhost(1))
        .await
        .unwrap();
    // node-c's static peers are the two running nodes; they have state, so it joins them.
    let c = cluster.add_lone_node("node-c").await;
    let c_id = cluster.nodes[c].cluster().node_id();
    let mut metrics = cluster.nodes[c].cluster().metrics();
    bounded(
        "node-c to become a voter",
        metrics.wait_for(|m| {
            m.membership_config
                .membership()
                .voter_ids()
                .any(|v| v == c_id)
        }),
    )
    .await
    .unwrap();
    assert!(cluster.nodes[c].applier.wait_for(1, WITHIN).await);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_removes_a_node_and_the_rest_go_on() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let gone = (leader + 2) % 3;
    let gone_name = cluster.nodes[gone].name.clone();
    cluster.stop(gone).await;
    // Run on a follower: forwarded to the leader.
    let via = (leader + 1) % 3;
    bounded("forget", cluster.nodes[via].cluster().forget(&gone_name))
        .await
        .unwrap();
    within("the membership without the forgotten node", || {
        cluster.running().all(|(_, n)| {
            n.cluster()
                .status()
                .members
                .iter()
                .all(|m| m.name != gone_name)
        })
    })
    .await;
    assert_eq!(cluster.nodes[leader].cluster().status().members.len(), 2);
    cluster.nodes[via].cluster().write(vhost(1)).await.unwrap();
    match cluster.nodes[leader].cluster().forget("no-such-node").await {
        Err(ClusterError::Membership(text)) => assert!(text.contains("no-such-node"), "{text}"),
        other => panic!("{other:?}"),
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_node_is_a_cluster_of_one() {
    let mut cluster = TestCluster::start(1).await;
    let node = cluster.nodes[0].cluster().clone();
    assert_eq!(cluster.leader().await, 0);
    assert_eq!(node.status().role, Role::Leader);
    node.write(vhost(1)).await.unwrap();
    assert!(cluster.nodes[0].applier.wait_for(1, WITHIN).await);
    // Restarted, it is its own leader again and its metadata is back.
    cluster.stop(0).await;
    cluster.restart(0).await;
    assert_eq!(cluster.leader().await, 0);
    assert!(cluster.nodes[0].applier.wait_for(1, WITHIN).await);
    cluster.nodes[0].cluster().write(vhost(2)).await.unwrap();
    assert_eq!(
        cluster.nodes[0].applier.commands(),
        vec![vhost(1), vhost(2)]
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_after_a_torn_write_cuts_it_and_catches_up() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    for i in 0..5 {
        cluster.nodes[leader]
            .cluster()
            .write(vhost(i))
            .await
            .unwrap();
    }
    let victim = (leader + 1) % 3;
    assert!(cluster.nodes[victim].applier.wait_for(5, WITHIN).await);
    cluster.stop(victim).await;
    // The crash happened in the middle of writing a record: its header and part of its payload
    // are on disk, never fsynced, never acknowledged.
    let wal_dir = cluster
        .dir
        .path()
        .join(&cluster.nodes[victim].name)
        .join("cluster")
        .join("wal");
    let mut segments: Vec<_> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segments.sort();
    let last = segments.pop().unwrap();
    let mut torn = Vec::new();
    torn.extend_from_slice(&100u32.to_le_bytes());
    torn.extend_from_slice(&0xdead_beefu32.to_le_bytes());
    torn.extend_from_slice(&[7u8; 10]);
    let mut bytes = std::fs::read(&last).unwrap();
    bytes.extend_from_slice(&torn);
    std::fs::write(&last, bytes).unwrap();
    for i in 5..8 {
        cluster.nodes[leader]
            .cluster()
            .write(vhost(i))
            .await
            .unwrap();
    }

    cluster.restart(victim).await;
    let node = &cluster.nodes[victim];
    let cut = node
        .cluster()
        .wal()
        .stats()
        .torn_bytes_cut
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(cut, torn.len() as u64);
    assert!(
        node.applier.wait_for(8, WITHIN).await,
        "applied {}",
        node.applier.applied().len()
    );
    assert_eq!(
        node.applier.applied(),
        cluster.nodes[leader].applier.applied()
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_after_compaction_restores_its_snapshot_then_replays_the_rest() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let victim = (leader + 1) % 3;
    for i in 0..10 {
        cluster.nodes[leader]
            .cluster()
            .write(vhost(i))
            .await
            .unwrap();
    }
    assert!(cluster.nodes[victim].applier.wait_for(10, WITHIN).await);
    bounded(
        "compaction",
        cluster.nodes[victim].cluster().compact(WITHIN),
    )
    .await
    .unwrap();
    for i in 10..15 {
        cluster.nodes[leader]
            .cluster()
            .write(vhost(i))
            .await
            .unwrap();
    }
    assert!(cluster.nodes[victim].applier.wait_for(15, WITHIN).await);
    cluster.stop(victim).await;
    // Restarted with an empty (in-memory) applier: the snapshot file restores the first 10, the
    // log after it the other 5.
    cluster.restart(victim).await;
    let node = &cluster.nodes[victim];
    assert_eq!(node.applier.restores(), 1);
    assert!(node.applier.wait_for(15, WITHIN).await);
    assert_eq!(
        node.applier.applied(),
        cluster.nodes[leader].applier.applied()
    );
    cluster.shutdown().await;
}
