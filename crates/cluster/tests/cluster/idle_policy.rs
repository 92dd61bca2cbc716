//! The idle policy of quorum queues' groups (quorum/idle.rs): idle once formed, awake after a
//! write and idle again once quiet, and a new leader elected without anyone's help when the
//! leader's node is lost (node liveness wakes the survivors).

use crate::common::{self, within, TestCluster};
use crate::quorum::{publish, queue_leader, start_queue, stop};
use pigeon_cluster::quorum::{queue_group, QueueOp, QuorumQueue, Reply};

fn all_idle(queues: &[Option<QuorumQueue>]) -> bool {
    queues.iter().flatten().all(QuorumQueue::is_idle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_is_idle_once_formed_wakes_on_a_write_and_elects_when_its_leader_node_is_lost() {
    let mut cluster = TestCluster::start(3).await;
    cluster.leader().await;
    let mut queues = start_queue(&cluster, queue_group("/", "policy")).await;
    let first = queue_leader(&queues).await;
    // Formed and idle: no member runs Raft's timers.
    within("every member idle after forming", || all_idle(&queues)).await;
    // A write commits through the idle leader and wakes it (and, once applied, the followers).
    let leader = queues[first].clone().unwrap();
    let r = leader.write(publish(1, 1, "wakes")).await.unwrap();
    assert_eq!(r.reply, Reply::Enqueued(1));
    assert!(!leader.is_idle(), "a write leaves the leader idle");
    // Quiet for `quorum_idle_after` (1 s in the tests' timing): idle again, followers first.
    within("every member idle again", || all_idle(&queues)).await;
    assert_eq!(
        queue_leader(&queues).await,
        first,
        "going idle changed the leader"
    );
    // The leader's node stops. Nobody wakes the survivors by hand: node liveness declares the
    // node down, the policy wakes the members it led, they elect.
    stop(&mut cluster, &mut queues, first).await;
    let second = queue_leader(&queues).await;
    assert_ne!(second, first);
    let new_leader = queues[second].clone().unwrap();
    let r = new_leader.write(QueueOp::Tick).await.unwrap();
    assert_eq!(r.reply, Reply::Ok);
    assert_eq!(new_leader.machine().read(|m| m.counts().ready), 1);
    // And the survivors go idle again under their new leader.
    within("the survivors idle again", || all_idle(&queues)).await;
    // The old leader's node comes back: its member starts idle, learns the leader (which
    // announces itself when liveness sees the node up) and catches up.
    cluster.restart(first).await;
    let group = new_leader.group();
    let back = QuorumQueue::start(cluster.nodes[first].cluster(), group, Default::default())
        .await
        .unwrap();
    queues[first] = Some(back.clone());
    common::bounded("the restarted member catches up", async {
        while back.machine().read(|m| m.counts().ready) != 1 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(queue_leader(&queues).await, second);
    within("all three idle", || all_idle(&queues)).await;
    for q in queues.into_iter().flatten() {
        q.shutdown().await;
    }
    cluster.shutdown().await;
}
