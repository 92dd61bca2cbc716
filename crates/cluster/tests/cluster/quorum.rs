//! A quorum queue's Raft group on three in-process nodes: publishes are committed by a majority
//! before the publisher is confirmed, consumers receive, the loss of the leader's node elects a
//! new leader that redelivers what the lost node's consumer held, and a restarted node catches up.

use crate::common;

use common::{bounded, TestCluster, WITHIN};
use pigeon_cluster::quorum::{
    queue_group, ConsumerId, Delivery, Effect, Message, PublisherId, QueueConfig, QueueOp,
    QueueResponse, QuorumQueue, Reply,
};
use pigeon_cluster::{ClusterError, GroupId, Member};
use std::time::Duration;

/// Starts the queue's member on every running node and forms the group from node 0.
pub async fn start_queue(cluster: &TestCluster, group: GroupId) -> Vec<Option<QuorumQueue>> {
    let mut queues = Vec::new();
    let mut members = Vec::new();
    for node in &cluster.nodes {
        let q = QuorumQueue::start(node.cluster(), group, QueueConfig::default())
            .await
            .unwrap();
        queues.push(Some(q));
        members.push(Member {
            name: node.name.clone(),
            addr: node.addr.to_string(),
        });
    }
    queues[0]
        .as_ref()
        .unwrap()
        .initialize(&members)
        .await
        .unwrap();
    queues
}

/// Waits until every running member knows the same leader, which says it leads; its index.
pub async fn queue_leader(queues: &[Option<QuorumQueue>]) -> usize {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        let running: Vec<(usize, &QuorumQueue)> = queues
            .iter()
            .enumerate()
            .filter_map(|(i, q)| q.as_ref().map(|q| (i, q)))
            .collect();
        let leaders: Vec<_> = running.iter().map(|(_, q)| q.leader()).collect();
        if let Some(Some(id)) = leaders.first() {
            if leaders.iter().all(|l| l == &Some(*id)) {
                if let Some((i, _)) = running.iter().find(|(_, q)| q.is_leader()) {
                    return *i;
                }
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agreed queue leader: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn publish(publisher: u64, seq: u64, body: &str) -> QueueOp {
    QueueOp::Enqueue {
        publisher: Some((PublisherId(publisher), seq)),
        message: Message {
            header: b"props".to_vec(),
            body: body.as_bytes().to_vec(),
        },
        ttl: None,
    }
}

fn delivered(response: &QueueResponse, to: ConsumerId) -> Vec<Delivery> {
    response
        .effects
        .iter()
        .filter_map(|e| match e {
            Effect::Deliver {
                consumer,
                deliveries,
            } if *consumer == to => Some(deliveries.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

pub async fn stop(cluster: &mut TestCluster, queues: &mut [Option<QuorumQueue>], i: usize) {
    let q = queues[i].take().unwrap();
    bounded("queue member shutdown", q.shutdown()).await;
    cluster.stop(i).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quorum_queue_confirms_after_a_majority_and_redelivers_after_its_leader_is_lost() {
    let mut cluster = TestCluster::start(3).await;
    cluster.leader().await;
    let group = queue_group("/", "orders");
    let mut queues = start_queue(&cluster, group).await;
    let first = queue_leader(&queues).await;
    let leader = queues[first].clone().unwrap();
    let on_leader = ConsumerId {
        node: cluster.nodes[first].cluster().node_id(),
        key: 1,
    };
    let other = (first + 1) % 3;
    let on_other = ConsumerId {
        node: cluster.nodes[other].cluster().node_id(),
        key: 1,
    };
    let r = leader
        .write(QueueOp::Checkout {
            consumer: on_leader,
            prefetch: 3,
        })
        .await
        .unwrap();
    assert_eq!(r.reply, Reply::Ok);
    // Each publish is confirmed only once committed (client_write returns after a majority
    // has the entry and the leader applied it); the consumer receives in the same response.
    let mut got = Vec::new();
    for seq in 1..=3u64 {
        let r = leader
            .write(publish(7, seq, &format!("m{seq}")))
            .await
            .unwrap();
        assert_eq!(r.reply, Reply::Enqueued(seq));
        assert!(r.effects.contains(&Effect::PublisherSettled {
            publisher: PublisherId(7),
            seq
        }));
        got.extend(delivered(&r, on_leader));
    }
    let bodies: Vec<&[u8]> = got.iter().map(|d| d.message.body.as_slice()).collect();
    assert_eq!(bodies, vec![b"m1".as_slice(), b"m2", b"m3"]);
    assert!(got.iter().all(|d| !d.redelivered && d.delivery_count == 0));
    // A resend of a confirmed publish (the publisher missed the confirm) is not enqueued again.
    let r = leader.write(publish(7, 3, "m3")).await.unwrap();
    assert_eq!(r.reply, Reply::Duplicate);
    leader
        .write(QueueOp::Settle {
            consumer: on_leader,
            ids: vec![got[0].id],
        })
        .await
        .unwrap();
    leader
        .write(QueueOp::Checkout {
            consumer: on_other,
            prefetch: 10,
        })
        .await
        .unwrap();
    // The leader's node goes, with the consumer that holds m2 and m3 unacknowledged.
    let lost_node = cluster.nodes[first].cluster().node_id();
    stop(&mut cluster, &mut queues, first).await;
    let second = queue_leader(&queues).await;
    assert_ne!(second, first);
    let new_leader = queues[second].clone().unwrap();
    // Its node is reported down (by node-level liveness, in the broker): what its consumer held
    // is returned and goes to the other consumer, redelivered. That m2 and m3 are there at all
    // shows they were on a majority before their publisher was confirmed.
    let r = new_leader
        .write(QueueOp::NodeDown(lost_node))
        .await
        .unwrap();
    let again = delivered(&r, on_other);
    let bodies: Vec<&[u8]> = again.iter().map(|d| d.message.body.as_slice()).collect();
    assert_eq!(bodies, vec![b"m2".as_slice(), b"m3"]);
    assert!(again.iter().all(|d| d.redelivered && d.delivery_count == 1));
    new_leader
        .write(QueueOp::Settle {
            consumer: on_other,
            ids: vec![again[0].id],
        })
        .await
        .unwrap();
    new_leader.write(publish(8, 1, "m4")).await.unwrap();
    // The old leader's node restarts from its own log and catches up on what it missed.
    cluster.restart(first).await;
    let q = QuorumQueue::start(
        cluster.nodes[first].cluster(),
        group,
        QueueConfig::default(),
    )
    .await
    .unwrap();
    queues[first] = Some(q.clone());
    let target = new_leader.machine().applied_index();
    assert!(
        q.machine().wait_applied(target, WITHIN).await,
        "the restarted member did not catch up"
    );
    let expected = new_leader.machine().read(|m| m.clone());
    assert_eq!(q.machine().read(|m| m.clone()), expected);
    assert_eq!(expected.counts().checked_out, 2); // m3 and m4 held by the other node's consumer
    for q in queues.into_iter().flatten() {
        q.shutdown().await;
    }
    cluster.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_without_a_majority_is_not_confirmed() {
    let mut cluster = TestCluster::start(3).await;
    cluster.leader().await;
    let mut queues = start_queue(&cluster, queue_group("/", "lonely")).await;
    let first = queue_leader(&queues).await;
    for i in 0..3 {
        if i != first {
            stop(&mut cluster, &mut queues, i).await;
        }
    }
    let leader = queues[first].clone().unwrap();
    let err = leader.write(publish(1, 1, "lost")).await.unwrap_err();
    assert!(matches!(err, ClusterError::Timeout { .. }), "{err}");
    assert_eq!(leader.machine().read(|m| m.counts().ready), 0);
    leader.shutdown().await;
    cluster.shutdown().await;
}
