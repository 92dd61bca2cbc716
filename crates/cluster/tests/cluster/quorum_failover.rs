//! A busy quorum queue whose leader's node is lost elects a new leader as soon as node liveness
//! reports the loss, past the followers' leader lease (quorum/failover.rs).

use crate::common::{self, TestCluster};
use crate::quorum::{publish, queue_leader, start_queue, stop};
use pigeon_cluster::quorum::{queue_group, QueueOp, Reply};
use pigeon_cluster::Timing;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_group_elects_at_once_when_liveness_loses_its_leader_node() {
    // The queue groups' election timers (and so the followers' leader lease, openraft 0.9's
    // `election_timeout_max`) far beyond the test's bound: a leader elected in time can only
    // have been elected on liveness's word, which is what the test is about. The group stays
    // awake (heartbeating, the followers' lease fresh) for the whole test.
    let timing = Timing {
        quorum_election_min: Duration::from_secs(120),
        quorum_election_max: Duration::from_secs(240),
        quorum_idle_after: Some(Duration::from_secs(600)),
        ..common::timing()
    };
    let mut cluster = TestCluster::start_with(3, timing).await;
    cluster.leader().await;
    let mut queues = start_queue(&cluster, queue_group("/", "busy")).await;
    let first = queue_leader(&queues).await;
    let leader = queues[first].clone().unwrap();
    for seq in 1..=20 {
        let r = leader.write(publish(1, seq, "busy")).await.unwrap();
        assert_eq!(r.reply, Reply::Enqueued(seq));
    }
    // Every follower has applied the writes, so it is awake and holds its leader's lease.
    for q in queues.iter().flatten() {
        assert!(
            q.machine()
                .wait_applied(leader.machine().applied_index(), common::WITHIN)
                .await
        );
    }
    let before: u64 = cluster
        .running()
        .map(|(_, n)| n.cluster().quorum_failover_elections())
        .sum();
    assert_eq!(
        before, 0,
        "an election on liveness's word with every node up"
    );
    stop(&mut cluster, &mut queues, first).await;
    let second = queue_leader(&queues).await;
    assert_ne!(second, first);
    // The new leader stood for election because liveness lost the old one's node: its election
    // timer cannot have fired (above).
    assert!(
        cluster.nodes[second].cluster().quorum_failover_elections() > 0,
        "the new leader was not elected on liveness's word"
    );
    let new_leader = queues[second].clone().unwrap();
    let r = new_leader.write(QueueOp::Tick).await.unwrap();
    assert_eq!(r.reply, Reply::Ok);
    assert_eq!(new_leader.machine().read(|m| m.counts().ready), 20);
    for q in queues.into_iter().flatten() {
        q.shutdown().await;
    }
    cluster.shutdown().await;
}
