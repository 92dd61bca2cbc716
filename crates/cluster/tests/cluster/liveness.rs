//! Node liveness: one ping per pair of nodes; a stopped node is reported down by the others,
//! and up again once it restarts.

use crate::common::{self, TestCluster, WITHIN};
use pigeon_cluster::{NodeEventKind, NodeState};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_node_is_reported_down_and_up_again_once_restarted() {
    let mut cluster = TestCluster::start(3).await;
    cluster.leader().await;
    let names: Vec<String> = cluster.nodes.iter().map(|n| n.name.clone()).collect();
    // Every node sees all three up (the membership, once formed).
    for node in &cluster.nodes {
        let mut states = node.cluster().watch_node_states();
        common::bounded(
            "three nodes up",
            states.wait_for(|s| s.len() == 3 && s.values().all(|st| *st == NodeState::Up)),
        )
        .await
        .unwrap();
    }
    let mut events = cluster.nodes[0].cluster().node_events();
    cluster.stop(2).await;
    for i in 0..2 {
        let mut states = cluster.nodes[i].cluster().watch_node_states();
        common::bounded(
            "the stopped node reported down",
            states.wait_for(|s| s.get(&names[2]) == Some(&NodeState::Down)),
        )
        .await
        .unwrap();
        assert_eq!(
            cluster.nodes[i].cluster().node_states().get(&names[1 - i]),
            Some(&NodeState::Up)
        );
    }
    let down = common::bounded("a Down event", events.recv())
        .await
        .unwrap();
    assert_eq!(down.name, names[2]);
    assert_eq!(down.kind, NodeEventKind::Down);
    cluster.restart(2).await;
    let up = common::bounded("an Up event", events.recv()).await.unwrap();
    assert_eq!(
        (up.name.as_str(), up.kind),
        (names[2].as_str(), NodeEventKind::Up)
    );
    for i in 0..3 {
        let mut states = cluster.nodes[i].cluster().watch_node_states();
        let all_up = tokio::time::timeout(
            WITHIN,
            states.wait_for(|s| s.len() == 3 && s.values().all(|st| *st == NodeState::Up)),
        )
        .await;
        assert!(all_up.is_ok(), "node {i} does not see all three up");
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_quicker_than_the_down_timeout_is_reported_restarted() {
    // Down only after 10 s without an answer: the restart below is much quicker.
    let timing = pigeon_cluster::Timing {
        node_heartbeat_misses: 100,
        ..common::timing()
    };
    let mut cluster = TestCluster::start_with(3, timing).await;
    cluster.leader().await;
    let name = cluster.nodes[1].name.clone();
    let mut events = cluster.nodes[0].cluster().node_events();
    // A restart is told from the incarnation node 0 heard before; if node 0 had not heard node 1
    // yet (its first ping answered), it learns the new one and the next restart is reported.
    let mut reported = None;
    for _ in 0..3 {
        cluster.stop(1).await;
        cluster.restart(1).await;
        if let Ok(event) = tokio::time::timeout(Duration::from_secs(3), events.recv()).await {
            reported = Some(event.unwrap());
            break;
        }
    }
    let event = reported.expect("no Restarted event after three restarts");
    // A ping that finds the stopped node's port refusing connections reports it down at once
    // (its process is gone), and its answer after the restart up again: the restart is
    // noticed either way.
    assert_eq!(event.name, name);
    match event.kind {
        NodeEventKind::Restarted => {}
        NodeEventKind::Down => {
            let up = tokio::time::timeout(Duration::from_secs(10), events.recv())
                .await
                .expect("no Up event after the Down of a restarted node")
                .unwrap();
            assert_eq!(
                (up.name.as_str(), up.kind),
                (name.as_str(), NodeEventKind::Up)
            );
        }
        NodeEventKind::Up => panic!("{name} reported up without being down"),
    }
    assert_eq!(
        cluster.nodes[0].cluster().node_states().get(&name),
        Some(&NodeState::Up)
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_whose_port_refuses_connections_is_down_before_the_silent_timeout() {
    // A silent node would be down only after 1,000 unanswered pings (100 s, far beyond the
    // test's bounded wait): a stopped node's port refuses connections, which is taken as down
    // at once.
    let timing = pigeon_cluster::Timing {
        node_heartbeat_misses: 1_000,
        ..common::timing()
    };
    let mut cluster = TestCluster::start_with(3, timing).await;
    cluster.leader().await;
    let name = cluster.nodes[2].name.clone();
    let mut states = cluster.nodes[0].cluster().watch_node_states();
    common::bounded(
        "three nodes up",
        states.wait_for(|s| s.len() == 3 && s.values().all(|st| *st == NodeState::Up)),
    )
    .await
    .unwrap();
    let mut events = cluster.nodes[0].cluster().node_events();
    cluster.stop(2).await;
    let down = common::bounded("a Down event", events.recv())
        .await
        .unwrap();
    assert_eq!(
        (down.name.as_str(), down.kind),
        (name.as_str(), NodeEventKind::Down)
    );
    cluster.restart(2).await;
    let up = common::bounded("an Up event", events.recv()).await.unwrap();
    assert_eq!(
        (up.name.as_str(), up.kind),
        (name.as_str(), NodeEventKind::Up)
    );
    cluster.shutdown().await;
}
