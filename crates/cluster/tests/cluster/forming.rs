//! Three nodes on loopback form a cluster from their static peers and replicate metadata.

use crate::common;

use common::{bounded, vhost, TestCluster, WITHIN};
use pigeon_cluster::{ClusterError, MetaResponse, Role};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_form_a_cluster_from_static_peers_and_elect_a_leader() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    for (_, node) in cluster.running() {
        let status = node.cluster().status();
        assert_eq!(status.members.len(), 3, "{status:?}");
        assert!(status.members.iter().all(|m| m.voter), "{status:?}");
        assert_eq!(
            status.leader.as_deref(),
            Some(cluster.nodes[leader].name.as_str())
        );
    }
    let roles: Vec<Role> = cluster
        .running()
        .map(|(_, n)| n.cluster().status().role)
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == Role::Leader).count(),
        1,
        "{roles:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_written_on_the_leader_are_applied_on_every_node_in_the_same_order() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    // Concurrent writers: the order is whatever the leader chose, and it must be the same
    // everywhere.
    let mut writers = Vec::new();
    for w in 0..4 {
        let node = cluster.nodes[leader].cluster().clone();
        writers.push(tokio::spawn(async move {
            for i in 0..10 {
                assert_eq!(
                    node.write(vhost(w * 100 + i)).await.unwrap(),
                    MetaResponse::Done
                );
            }
        }));
    }
    for w in writers {
        bounded("writers", w).await.unwrap();
    }
    for (_, node) in cluster.running() {
        assert!(
            node.applier.wait_for(40, WITHIN).await,
            "{} applied {}",
            node.name,
            node.applier.applied().len()
        );
    }
    let reference = cluster.nodes[leader].applier.applied();
    assert_eq!(reference.len(), 40);
    for (_, node) in cluster.running() {
        assert_eq!(
            node.applier.applied(),
            reference,
            "{} applied another order",
            node.name
        );
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_a_follower_is_forwarded_or_refused_naming_the_leader() {
    let cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = (leader + 1) % 3;
    let node = cluster.nodes[follower].cluster();
    match node.write_local(vhost(1)).await {
        Err(ClusterError::NotLeader {
            leader: Some(name), ..
        }) => {
            assert_eq!(name, cluster.nodes[leader].name);
            let text = ClusterError::NotLeader {
                group: pigeon_cluster::GroupId::METADATA,
                leader: Some(name.clone()),
            }
            .to_string();
            assert!(text.contains(&name), "{text}");
        }
        other => panic!(
            "expected NotLeader naming {}, got {other:?}",
            cluster.nodes[leader].name
        ),
    }
    // `write` forwards it instead, and it is applied everywhere.
    assert_eq!(node.write(vhost(2)).await.unwrap(), MetaResponse::Done);
    for (_, n) in cluster.running() {
        assert!(n.applier.wait_for(1, WITHIN).await);
        assert_eq!(n.applier.commands(), vec![vhost(2)]);
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_cannot_commit_and_the_write_times_out_with_a_clear_error() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    cluster.nodes[leader]
        .cluster()
        .write(vhost(1))
        .await
        .unwrap();
    for (_, n) in cluster.running() {
        assert!(n.applier.wait_for(1, WITHIN).await);
    }
    // Stop two nodes, the leader among them: the one left is a minority of one.
    let survivor = (leader + 1) % 3;
    for i in 0..3 {
        if i != survivor {
            cluster.stop(i).await;
        }
    }
    let node = cluster.nodes[survivor].cluster().clone();
    let err = bounded("the write to fail", node.write(vhost(2)))
        .await
        .unwrap_err();
    assert!(matches!(err, ClusterError::Timeout { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("not committed") && text.contains("majority"),
        "{text}"
    );
    // Nothing was applied by the minority.
    assert_eq!(cluster.nodes[survivor].applier.commands(), vec![vhost(1)]);
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_left_alone_cannot_commit_either() {
    let mut cluster = TestCluster::start(3).await;
    let leader = cluster.leader().await;
    cluster.nodes[leader]
        .cluster()
        .write(vhost(1))
        .await
        .unwrap();
    for i in 0..3 {
        if i != leader {
            cluster.stop(i).await;
        }
    }
    let node = cluster.nodes[leader].cluster().clone();
    let err = bounded("the write to fail", node.write(vhost(2)))
        .await
        .unwrap_err();
    match &err {
        ClusterError::Timeout {
            leader: Some(name), ..
        } => assert_eq!(name, &cluster.nodes[leader].name),
        other => panic!("expected a timeout naming the leader, got {other:?}"),
    }
    assert!(
        !cluster.nodes[leader].applier.commands().contains(&vhost(2)),
        "a minority applied a write"
    );
    cluster.shutdown().await;
}
