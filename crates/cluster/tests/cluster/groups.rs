//! A second Raft group beside the metadata group, as quorum queues will be: it shares the node's
//! write-ahead log and its connections to the peers.

use crate::common;

use common::{bounded, vhost, TestCluster, WITHIN};
use openraft::{Config, Raft};
use pigeon_cluster::meta::MetaStateMachine;
use pigeon_cluster::{GroupId, Member, MemoryApplier, MetaTypes};
use std::collections::BTreeMap;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_group_replicates_over_the_same_log_and_links() {
    let cluster = TestCluster::start(3).await;
    cluster.leader().await;
    let group = GroupId(7);
    let config = Arc::new(
        Config {
            heartbeat_interval: 50,
            election_timeout_min: 300,
            election_timeout_max: 600,
            ..Default::default()
        }
        .validate()
        .unwrap(),
    );
    let mut rafts = Vec::new();
    let mut appliers = Vec::new();
    let mut members = BTreeMap::new();
    for (_, node) in cluster.running() {
        let c = node.cluster();
        let applier = MemoryApplier::new();
        let dir = cluster.dir.path().join(&node.name).join("group-7");
        std::fs::create_dir_all(&dir).unwrap();
        let sm = MetaStateMachine::open(&dir, applier.clone()).unwrap();
        let raft = Raft::<MetaTypes>::new(
            c.node_id(),
            config.clone(),
            c.group_network(group),
            c.wal().group(group),
            sm,
        )
        .await
        .unwrap();
        c.register_group(group, Arc::new(raft.clone()));
        members.insert(
            c.node_id(),
            Member {
                name: node.name.clone(),
                addr: node.addr.to_string(),
            },
        );
        rafts.push(raft);
        appliers.push(applier);
    }
    rafts[0].initialize(members).await.unwrap();
    let mut metrics = rafts[0].metrics();
    let leader = bounded(
        "a leader of group 7",
        metrics.wait_for(|m| m.current_leader.is_some()),
    )
    .await
    .unwrap()
    .current_leader
    .unwrap();
    let leader = rafts
        .iter()
        .find(|r| r.metrics().borrow().id == leader)
        .unwrap();
    for i in 0..5 {
        leader.client_write(vhost(i)).await.unwrap();
    }
    for applier in &appliers {
        assert!(applier.wait_for(5, WITHIN).await);
        assert_eq!(applier.commands(), (0..5).map(vhost).collect::<Vec<_>>());
    }
    // The metadata group was not touched, and both groups are in each node's one log.
    for (_, node) in cluster.running() {
        assert!(node.applier.applied().is_empty());
        assert_eq!(
            node.cluster().wal().groups(),
            vec![GroupId::METADATA, group]
        );
    }
    for raft in rafts {
        raft.shutdown().await.unwrap();
    }
    cluster.shutdown().await;
}
