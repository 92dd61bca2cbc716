//! The case behind the soak's duplicates without `redelivered` (docs/clustering.md, "Fault
//! tests", finding 2), made deterministic: a consumer's node stops hearing the group (here
//! SIGSTOP) right before messages are given to that consumer; the others find the node down
//! and take the messages back (`NodeDown`: returned, delivered again with the flag to another
//! consumer); the node comes back and catches up. Before the fix it then carried out the
//! deliveries it had missed, late, without the flag: the second delivery of each message
//! said `redelivered = false`. Now a node hands over a delivery only once it has applied what
//! the leader had committed, and only if its consumer still holds the message; a delivery it
//! applies late is flagged (server `cluster/quorum/member/effects.rs`, `fence`).

use super::{bounded, Cluster};
use futures_lite::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use std::time::Duration;

const QUEUE: &str = "stale";

async fn channel(cluster: &Cluster, i: usize) -> (Connection, Channel) {
    let conn = Connection::connect(&cluster.nodes[i].url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    (conn, ch)
}

async fn consume(ch: &Channel, tag: &str, prefetch: u16) -> lapin::Consumer {
    ch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .unwrap();
    ch.basic_consume(
        QUEUE.into(),
        tag.into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap()
}

async fn publish(ch: &Channel, body: &str) {
    let confirm = ch
        .basic_publish(
            "".into(),
            QUEUE.into(),
            BasicPublishOptions::default(),
            body.as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(
        matches!(confirm, Confirmation::Ack(_)),
        "{body}: {confirm:?}"
    );
}

/// The next delivery of `consumer`: (body, redelivered).
async fn next(consumer: &mut lapin::Consumer, what: &str) -> (String, bool) {
    let d = bounded(what, 60, consumer.next()).await.unwrap().unwrap();
    (String::from_utf8_lossy(&d.data).into_owned(), d.redelivered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_catching_up_does_not_deliver_what_the_queue_took_back() {
    let mut cluster = Cluster::start(3).await;
    cluster.declare(0, QUEUE, true).await;
    let (leader, members) = bounded("the queue's leader", 60, async {
        loop {
            if let Some(found) = cluster.queue_members(0, QUEUE).await {
                if found.1.len() == 3 {
                    return found;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let x = members.iter().copied().find(|&i| i != leader).unwrap();
    let z = (0..3).find(|&i| i != leader && i != x).unwrap();

    // A consumer on follower x that holds what it gets; attached once the leader counts it.
    let (_cx_conn, cx_ch) = channel(&cluster, x).await;
    let mut cx = consume(&cx_ch, "cx", 10).await;
    bounded("the consumer on x to be attached", 30, async {
        loop {
            let q = cluster
                .get(leader, &format!("/api/queues/%2f/{QUEUE}"))
                .await;
            if q.is_some_and(|q| q["consumers"] == 1) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;

    // x stops; five messages are committed by the other two and given to x's consumer.
    cluster.pause(x);
    let (_p_conn, p_ch) = channel(&cluster, leader).await;
    p_ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for i in 0..5 {
        publish(&p_ch, &format!("m{i}")).await;
    }
    // Once x is found down, the queue takes them back and a consumer on z gets them, flagged.
    let (_cz_conn, cz_ch) = channel(&cluster, z).await;
    let mut cz = consume(&cz_ch, "cz", 5).await;
    for i in 0..5 {
        let (body, redelivered) = next(&mut cz, "the messages again on z").await;
        assert_eq!(body, format!("m{i}"));
        assert!(
            redelivered,
            "{body} taken back from x's consumer: redelivered"
        );
    }

    // x comes back and catches up with the group.
    cluster.resume(x);
    cluster.until_healthy().await;
    // x carries out its consumers' deliveries in log order: once a message published now
    // reaches a second consumer on x (z's is full), whatever x would have handed `cx` from
    // before has been handed, on the same channel, ahead of it.
    let mut cx2 = consume(&cx_ch, "cx2", 10).await;
    publish(&p_ch, "marker").await;
    let (body, _) = next(&mut cx2, "the marker on x").await;
    assert_eq!(body, "marker");
    // Already received if it was sent: no waiting on the broker here. x hands over nothing
    // the queue took back once it knows of the take-back; requests that waited in its socket
    // while it was stopped can make it apply the old deliveries before it knows, and then they
    // must be flagged (the second delivery of each message).
    let mut flagged = 0;
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_millis(500), cx.next()).await {
        flagged += 1;
        assert!(
            d.redelivered,
            "x delivered {:?} again without the redelivered flag after catching up, though the \
             queue had taken it back and delivered it again on z\n{}",
            String::from_utf8_lossy(&d.data),
            cluster.logs()
        );
    }
    eprintln!("x handed its first consumer {flagged} late deliveries, all flagged");
}
