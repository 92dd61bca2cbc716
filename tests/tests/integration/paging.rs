//! Queues larger than memory: a queue keeps only a few messages in memory (here 10) and the
//! rest only in its log (a transient queue's own log, opened when it first pages out), read back in order as the queue drains. Whatever is paged
//! out must behave exactly as if it were in memory: order, content, counts, length limits,
//! purge, TTL, requeue, and a restart (which reads only the head back).
//!
//! These tests need their own server configuration (a tiny resident limit and a data
//! directory), so they pass without checking anything against an external broker.

use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, QueueDeclareOptions, QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation};
use pigeon_server::ServerConfig;
use pigeon_tests::lapin_support::{self as lp, confirm_connection, durable, table};
use pigeon_tests::{unique, within, DataDir, TestBroker};
use std::time::Duration;

/// Messages a queue keeps in memory in these tests.
const RESIDENT: usize = 10;

// ---------------------------------------------------------------------------------------------
// Helpers

/// A data directory whose server pages: fsync off, [`RESIDENT`] messages (or 1 MiB) in memory.
fn data_dir() -> DataDir {
    DataDir::with(|c| {
        c.fsync = false;
        c.queue_resident_messages = RESIDENT;
        c.queue_resident_bytes = 1024 * 1024;
    })
}

/// The broker's own view of queue `name`: (ready messages, of which paged out).
fn paged(broker: &TestBroker, name: &str) -> (u32, u32) {
    let q = broker
        .server()
        .unwrap()
        .broker()
        .vhost("/")
        .unwrap()
        .queue(name)
        .unwrap();
    (q.message_count(), q.paged_out_count())
}

async fn durable_queue(channel: &Channel, args: FieldTable) -> String {
    let name = unique("pq");
    within(
        "queue.declare-ok",
        channel.queue_declare(name.as_str().into(), durable(), args),
    )
    .await
    .unwrap();
    name
}

/// Message `i`: body `m{i}`, header `i`, persistent unless `transient`.
fn props(i: usize, transient: bool) -> BasicProperties {
    let headers = table(&[("i", AMQPValue::LongLongInt(i as i64))]);
    BasicProperties::default()
        .with_delivery_mode(if transient { 1 } else { 2 })
        .with_headers(headers)
}

/// Publishes messages `range` to `queue` on a confirm channel, all in flight at once, and
/// returns each one's confirmation.
async fn publish_range(
    channel: &Channel,
    queue: &str,
    range: std::ops::Range<usize>,
    transient: impl Fn(usize) -> bool,
) -> Vec<Confirmation> {
    let mut pending = Vec::new();
    for i in range {
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                props(i, transient(i)),
            )
            .await
            .unwrap();
        pending.push(confirm);
    }
    let mut out = Vec::new();
    for confirm in pending {
        out.push(within("a publisher confirm", confirm).await.unwrap());
    }
    out
}

async fn publish_persistent(channel: &Channel, queue: &str, range: std::ops::Range<usize>) {
    for c in publish_range(channel, queue, range, |_| false).await {
        assert_eq!(c, Confirmation::Ack(None));
    }
}

fn header_i(props: &BasicProperties) -> Option<i64> {
    let headers = props.headers().as_ref()?;
    match headers.inner().get(&ShortString::from("i"))? {
        AMQPValue::LongLongInt(i) => Some(*i),
        _ => None,
    }
}

/// Every message left in `queue`, taken with basic.get (auto-ack) until it is empty:
/// (body, header `i`, redelivered).
async fn drain(channel: &Channel, queue: &str) -> Vec<(String, Option<i64>, bool)> {
    let mut out = Vec::new();
    while let Some(m) = within(
        "basic.get",
        channel.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    {
        out.push((
            lp::body(&m.delivery),
            header_i(&m.delivery.properties),
            m.delivery.redelivered,
        ));
    }
    out
}

fn bodies(range: impl Iterator<Item = usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Order and content

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_messages_come_back_in_order_with_their_content_across_head_and_tail() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    publish_persistent(&ch, &q, 0..1000).await;
    let (ready, out) = paged(&broker, &q);
    assert_eq!(ready, 1000);
    assert_eq!(
        out as usize,
        1000 - RESIDENT,
        "all but a head-full are paged out"
    );
    assert_eq!(lp::message_count(&ch, &q).await, 1000);

    ch.basic_qos(50, BasicQosOptions::default()).await.unwrap();
    let mut consumer = lp::consume_acked(&ch, &q).await;
    for i in 0..1000 {
        let d = lp::next_delivery(&mut consumer).await;
        assert_eq!(lp::body(&d), format!("m{i}"));
        assert_eq!(header_i(&d.properties), Some(i as i64));
        assert_eq!(d.properties.delivery_mode(), &Some(2));
        assert!(!d.redelivered);
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    assert_eq!(paged(&broker, &q), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_and_persistent_messages_keep_their_order_in_a_durable_queue() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    for c in publish_range(&ch, &q, 0..200, |i| i % 3 == 0).await {
        assert_eq!(c, Confirmation::Ack(None));
    }
    assert_eq!(paged(&broker, &q), (200, 200 - RESIDENT as u32));
    let got = drain(&ch, &q).await;
    let want: Vec<(String, Option<i64>, bool)> = (0..200)
        .map(|i| (format!("m{i}"), Some(i as i64), false))
        .collect();
    assert_eq!(got, want);
}

// ---------------------------------------------------------------------------------------------
// Length limits

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_head_drops_the_oldest_messages_even_when_the_rest_is_paged_out() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, table(&[("x-max-length", AMQPValue::LongInt(50))])).await;
    publish_persistent(&ch, &q, 0..100).await;
    assert_eq!(lp::message_count(&ch, &q).await, 50);
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies(50..100));

    // By bytes: "m100".."m199" are 4 bytes each, so 80 bytes hold the last 20.
    let q = durable_queue(
        &ch,
        table(&[("x-max-length-bytes", AMQPValue::LongInt(80))]),
    )
    .await;
    publish_persistent(&ch, &q, 100..200).await;
    assert_eq!(lp::message_count(&ch, &q).await, 20);
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies(180..200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reject_publish_counts_the_paged_out_messages() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let args = table(&[
        ("x-max-length", AMQPValue::LongInt(30)),
        ("x-overflow", lp::text("reject-publish")),
    ]);
    let q = durable_queue(&ch, args).await;
    let confirms = publish_range(&ch, &q, 0..40, |_| false).await;
    assert!(confirms[..30].iter().all(|c| *c == Confirmation::Ack(None)));
    assert!(confirms[30..]
        .iter()
        .all(|c| *c == Confirmation::Nack(None)));
    assert_eq!(paged(&broker, &q), (30, 30 - RESIDENT as u32));
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies(0..30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_the_byte_limit_does_not_count_headers_as_body() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    // Small bodies ("m100": 4 bytes) with 2 KB of headers each: after a restart, the records'
    // lengths say nothing about the bodies' bytes.
    let pad = "h".repeat(2000);
    let q = {
        let (conn, ch) = confirm_connection(&broker).await;
        let args = table(&[
            ("x-max-length-bytes", AMQPValue::LongInt(80)),
            ("x-overflow", lp::text("drop-head")),
        ]);
        let q = durable_queue(&ch, args).await;
        // 20 messages of 4 bytes: exactly the limit; most of them are paged out.
        publish_padded(&ch, &q, 100..120, &pad).await;
        assert_eq!(paged(&broker, &q), (20, 20 - RESIDENT as u32));
        conn.close(200, "bye".into()).await.unwrap();
        q
    };
    let broker = data.restart(broker).await;
    let (_conn, ch) = confirm_connection(&broker).await;
    assert_eq!(lp::message_count(&ch, &q).await, 20);
    // One more: 84 bytes for a limit of 80, so at most the oldest message may go.
    publish_padded(&ch, &q, 120..121, &pad).await;
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert!(
        got.len() >= 20,
        "messages dropped beyond the limit: {got:?}"
    );
    assert_eq!(got, bodies(121 - got.len()..121));
}

/// Publishes persistent messages `range` to `queue` with a header `pad` beside `i`, one at a
/// time, each confirmed.
async fn publish_padded(channel: &Channel, queue: &str, range: std::ops::Range<usize>, pad: &str) {
    for i in range {
        let headers = table(&[
            ("i", AMQPValue::LongLongInt(i as i64)),
            ("pad", lp::text(pad)),
        ]);
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_headers(headers);
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                props,
            )
            .await
            .unwrap();
        let c = within("a publisher confirm", confirm).await.unwrap();
        assert_eq!(c, Confirmation::Ack(None));
    }
}

// ---------------------------------------------------------------------------------------------
// Purge and restart

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_counts_the_tail_and_purged_messages_stay_gone_after_a_restart() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let q = {
        let (conn, ch) = confirm_connection(&broker).await;
        let q = durable_queue(&ch, FieldTable::default()).await;
        publish_persistent(&ch, &q, 0..100).await;
        let purged = ch
            .queue_purge(q.as_str().into(), QueuePurgeOptions::default())
            .await
            .unwrap();
        assert_eq!(purged, 100);
        assert_eq!(paged(&broker, &q), (0, 0));
        publish_persistent(&ch, &q, 100..130).await;
        conn.close(200, "bye".into()).await.unwrap();
        q
    };
    let broker = data.restart(broker).await;
    let (_conn, ch) = confirm_connection(&broker).await;
    assert_eq!(lp::message_count(&ch, &q).await, 30);
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies(100..130));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reads_back_only_the_head_and_delivers_everything_in_order() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let q = {
        let (conn, ch) = confirm_connection(&broker).await;
        let q = durable_queue(&ch, FieldTable::default()).await;
        publish_persistent(&ch, &q, 0..500).await;
        // Three deliveries that are never acknowledged: they come back redelivered.
        for i in 0..3 {
            let m = lp::get(&ch, &q).await.unwrap();
            assert_eq!(lp::body(&m.delivery), format!("m{i}"));
        }
        conn.close(200, "bye".into()).await.unwrap();
        q
    };
    let broker = data.restart(broker).await;
    let (ready, out) = paged(&broker, &q);
    assert_eq!(ready, 500);
    assert_eq!(
        out as usize,
        500 - RESIDENT,
        "only a head-full was read at start"
    );
    let (_conn, ch) = confirm_connection(&broker).await;
    assert_eq!(lp::message_count(&ch, &q).await, 500);
    let got = drain(&ch, &q).await;
    let want: Vec<(String, Option<i64>, bool)> = (0..500)
        .map(|i| (format!("m{i}"), Some(i as i64), i < 3))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_messages_in_the_tail_are_gone_after_a_restart() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let q = {
        let (conn, ch) = confirm_connection(&broker).await;
        let q = durable_queue(&ch, FieldTable::default()).await;
        for c in publish_range(&ch, &q, 0..60, |i| i % 2 == 1).await {
            assert_eq!(c, Confirmation::Ack(None));
        }
        assert_eq!(paged(&broker, &q), (60, 50));
        conn.close(200, "bye".into()).await.unwrap();
        q
    };
    let broker = data.restart(broker).await;
    let (_conn, ch) = confirm_connection(&broker).await;
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies((0..60).filter(|i| i % 2 == 0)));
    assert_eq!(lp::message_count(&ch, &q).await, 0);
}

// ---------------------------------------------------------------------------------------------
// Requeue and TTL

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeued_messages_go_back_ahead_of_the_paged_out_ones() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    publish_persistent(&ch, &q, 0..100).await;

    // A consumer takes 8, is cancelled, gives back 3 with nack-requeue and the rest (but one
    // acked) when its channel closes.
    ch.basic_qos(8, BasicQosOptions::default()).await.unwrap();
    let mut consumer = lp::consume_acked(&ch, &q).await;
    let mut held = Vec::new();
    for i in 0..8 {
        let d = lp::next_delivery(&mut consumer).await;
        assert_eq!(lp::body(&d), format!("m{i}"));
        held.push(d);
    }
    // Cancelled first, so that the consumer takes nothing more.
    ch.basic_cancel(consumer.tag(), BasicCancelOptions::default())
        .await
        .unwrap();
    for d in &held[2..5] {
        d.nack(BasicNackOptions {
            requeue: true,
            ..Default::default()
        })
        .await
        .unwrap();
    }
    held[0].ack(BasicAckOptions::default()).await.unwrap();
    // Cancelling does not give back unacknowledged messages; closing the channel does.
    ch.close(200, "bye".into()).await.unwrap();

    let (_conn2, ch2) = confirm_connection(&broker).await;
    within("the requeued messages", async {
        while lp::message_count(&ch2, &q).await != 99 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let got = drain(&ch2, &q).await;
    let want: Vec<(String, Option<i64>, bool)> = (1..100)
        .map(|i| (format!("m{i}"), Some(i as i64), i < 8))
        .collect();
    assert_eq!(got, want);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_message_ttl_applies_to_paged_out_messages() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    let mut pending = Vec::new();
    for i in 0..40 {
        // Messages 15..25 (in the tail) expire after 1 ms.
        let mut p = props(i, false);
        if (15..25).contains(&i) {
            p = p.with_expiration("1".into());
        }
        let confirm = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                p,
            )
            .await
            .unwrap();
        pending.push(confirm);
    }
    for c in pending {
        assert_eq!(
            within("a confirm", c).await.unwrap(),
            Confirmation::Ack(None)
        );
    }
    assert_eq!(paged(&broker, &q).1, 30);
    // Their expiry time is absolute: once it has passed they are dead wherever they are.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies((0..15).chain(25..40)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_ttl_expires_paged_out_messages_once_they_reach_the_head() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, table(&[("x-message-ttl", AMQPValue::LongInt(50))])).await;
    publish_persistent(&ch, &q, 0..100).await;
    assert_eq!(paged(&broker, &q), (100, 90));
    // The timer expires the head, pages the tail in and expires it in turn.
    within("the queue to expire", async {
        while lp::message_count(&ch, &q).await != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    publish_persistent(&ch, &q, 100..101).await;
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies(100..101));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_queues_page_out_too() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(
        &ch,
        table(&[("x-max-priority", AMQPValue::ShortShortUInt(5))]),
    )
    .await;
    publish_persistent(&ch, &q, 0..50).await;
    assert_eq!(paged(&broker, &q), (50, 50 - RESIDENT as u32));

    // At a restart the priority queue reads its log through (a message's priority is in its
    // record) and keeps a head-full in memory. More in tests/priority_paging.rs.
    drop(ch);
    drop(conn);
    let broker = data.restart(broker).await;
    assert_eq!(paged(&broker, &q), (50, 50 - RESIDENT as u32));
    let (_conn, ch) = confirm_connection(&broker).await;
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies(0..50));
}

// ---------------------------------------------------------------------------------------------
// Transient and exclusive queues

/// The directories of transient queues' logs in the data directory (their names carry
/// `transient`, see the store's `naming.rs`).
fn transient_logs(data: &DataDir) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(data.path().join("queues")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("_transient_"))
        })
        .collect()
}

/// Waits until no transient queue's log is left (a queue deleted with its connection goes a
/// moment after the close).
async fn no_transient_logs_left(data: &DataDir) {
    within("the transient logs deleted", async {
        while !transient_logs(data).is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

async fn declare_transient(channel: &Channel, options: QueueDeclareOptions) -> String {
    let name = unique("tq");
    within(
        "queue.declare-ok",
        channel.queue_declare(name.as_str().into(), options, FieldTable::default()),
    )
    .await
    .unwrap();
    name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_queue_pages_out_to_a_log_that_no_restart_keeps() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = confirm_connection(&broker).await;
    let q = declare_transient(&ch, QueueDeclareOptions::default()).await;
    // Under the limit, nothing is written.
    publish_range(&ch, &q, 0..RESIDENT, |i| i % 2 == 1).await;
    assert!(transient_logs(&data).is_empty());
    // Past it, persistent and transient messages alike page out, and are confirmed at once.
    for c in publish_range(&ch, &q, RESIDENT..300, |i| i % 2 == 1).await {
        assert_eq!(c, Confirmation::Ack(None));
    }
    assert_eq!(paged(&broker, &q), (300, 300 - RESIDENT as u32));
    assert_eq!(lp::message_count(&ch, &q).await, 300);
    let logs = transient_logs(&data);
    assert_eq!(logs.len(), 1, "{logs:?}");
    // Every message comes back, in order, with its content.
    let got = drain(&ch, &q).await;
    let expected: Vec<(String, Option<i64>, bool)> = (0..300)
        .map(|i| (format!("m{i}"), Some(i as i64), false))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(paged(&broker, &q), (0, 0));

    // Paged out again, then the server stops; the log is put back as a crash would leave it.
    publish_range(&ch, &q, 0..100, |_| false).await;
    assert_eq!(paged(&broker, &q), (100, 100 - RESIDENT as u32));
    let saved = tempfile::tempdir().unwrap();
    let logs = transient_logs(&data);
    assert_eq!(logs.len(), 1, "{logs:?}");
    let name = logs[0].file_name().unwrap().to_owned();
    copy_dir(&logs[0], &saved.path().join(&name));
    drop(ch);
    drop(conn);
    broker.stop().await;
    if transient_logs(&data).is_empty() {
        copy_dir(
            &saved.path().join(&name),
            &data.path().join("queues").join(&name),
        );
    }
    assert_eq!(transient_logs(&data).len(), 1);
    // At start it is deleted, never read: the queue and its messages are gone.
    let broker = data.start().await.unwrap();
    assert!(transient_logs(&data).is_empty());
    let (conn, _ch) = confirm_connection(&broker).await;
    assert!(!lp::queue_exists(&conn, &q).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_transient_queue_deletes_its_log() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = declare_transient(&ch, QueueDeclareOptions::default()).await;
    publish_range(&ch, &q, 0..50, |_| false).await;
    assert_eq!(paged(&broker, &q), (50, 50 - RESIDENT as u32));
    assert_eq!(transient_logs(&data).len(), 1);
    lp::delete_queue(&ch, &q).await;
    assert!(transient_logs(&data).is_empty());
    // A queue of the same name starts afresh, with a log of its own.
    let again = within(
        "queue.declare-ok",
        ch.queue_declare(
            q.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    assert_eq!(again.message_count(), 0);
    publish_range(&ch, &q, 100..130, |_| true).await;
    assert_eq!(transient_logs(&data).len(), 1);
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies(100..130));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_queue_pages_out_and_its_log_goes_with_its_connection() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (conn, ch) = confirm_connection(&broker).await;
    let options = QueueDeclareOptions {
        exclusive: true,
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let q = declare_transient(&ch, options).await;
    publish_range(&ch, &q, 0..200, |i| i % 3 == 0).await;
    assert_eq!(paged(&broker, &q), (200, 200 - RESIDENT as u32));
    assert_eq!(transient_logs(&data).len(), 1);
    // Consumed (acked, prefetch 20) in order.
    ch.basic_qos(20, BasicQosOptions::default()).await.unwrap();
    let mut consumer = lp::consume_acked(&ch, &q).await;
    for i in 0..150 {
        let d = lp::next_delivery(&mut consumer).await;
        assert_eq!(lp::body(&d), format!("m{i}"));
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    conn.close(200, "bye".into()).await.unwrap();
    no_transient_logs_left(&data).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_data_directory_a_transient_queue_keeps_everything_in_memory() {
    let config = ServerConfig {
        queue_resident_messages: RESIDENT,
        ..ServerConfig::for_tests()
    };
    let Some(broker) = TestBroker::start_with(config).await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = declare_transient(&ch, QueueDeclareOptions::default()).await;
    publish_range(&ch, &q, 0..50, |_| false).await;
    assert_eq!(paged(&broker, &q), (50, 0));
    let got: Vec<String> = drain(&ch, &q).await.into_iter().map(|m| m.0).collect();
    assert_eq!(got, bodies(0..50));
}

// The memory alarm ignores paged-out messages: tests/memory_flood.rs,
// `messages_paged_out_to_disk_do_not_raise_the_memory_alarm`.

// ---------------------------------------------------------------------------------------------
// Measurement (run by hand, in release mode; see docs/configuration.md, "Queues larger than
// memory"):
//
//   PIGEON_PAGING_MESSAGES=10000000 PIGEON_PAGING_DIR=/big/disk/dir \
//     cargo test --release -p pigeon-tests --test paging -- --ignored --nocapture measure
//
// Fills one durable queue with N persistent 1 KiB messages (default 1,000,000) through the
// real AMQP listener, reports this process's resident memory (the broker and one client),
// restarts the broker on the same directory and reports how long recovery took.

/// VmRSS of this process, in KiB.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, minutes long: run it by hand in release mode"]
async fn measure_resident_memory_and_recovery_of_a_long_queue() {
    let n: usize = std::env::var("PIGEON_PAGING_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir_in(
        std::env::var_os("PIGEON_PAGING_DIR").unwrap_or_else(|| std::env::temp_dir().into()),
    )
    .unwrap();
    let config = ServerConfig {
        data_dir: Some(tmp.path().to_path_buf()),
        fsync: true,
        mqtt_listen: pigeon_server::Listen::none(),
        ..ServerConfig::for_tests()
    };
    let Some(broker) = TestBroker::start_with(config.clone()).await else {
        return;
    };
    let before = rss_kib();
    let (conn, ch) = confirm_connection(&broker).await;
    let q = durable_queue(&ch, FieldTable::default()).await;
    let body = vec![b'x'; 1024];
    let started = std::time::Instant::now();
    let mut window = std::collections::VecDeque::new();
    for i in 0..n {
        let confirm = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        window.push_back(confirm);
        if window.len() >= 1000 {
            let c = window.pop_front().unwrap().await.unwrap();
            assert_eq!(c, Confirmation::Ack(None));
        }
        if i % 1_000_000 == 999_999 {
            println!(
                "{} messages, {:?}, rss {} MiB",
                i + 1,
                started.elapsed(),
                rss_kib() / 1024
            );
        }
    }
    for c in window {
        assert_eq!(c.await.unwrap(), Confirmation::Ack(None));
    }
    let fill = started.elapsed();
    assert_eq!(lp::message_count(&ch, &q).await as usize, n);
    let after = rss_kib();
    println!(
        "filled {n} x 1 KiB persistent in {fill:?} ({:.0}/s); rss before {} MiB, after {} MiB: {:.1} bytes per queued message; paged out {}",
        n as f64 / fill.as_secs_f64(),
        before / 1024,
        after / 1024,
        (after.saturating_sub(before) * 1024) as f64 / n as f64,
        paged(&broker, &q).1
    );
    conn.close(200, "bye".into()).await.unwrap();
    broker.stop().await;

    let started = std::time::Instant::now();
    let broker = TestBroker::start_with(config).await.unwrap();
    let recovery = started.elapsed();
    let (ready, out) = paged(&broker, &q);
    println!(
        "restart: recovered {ready} messages ({out} left paged out) in {recovery:?}; rss {} MiB",
        rss_kib() / 1024
    );
    assert_eq!(ready as usize, n);
    let (_conn, ch) = confirm_connection(&broker).await;
    let first = lp::get(&ch, &q).await.unwrap();
    assert_eq!(first.delivery.data.len(), 1024);
}

/// Memory per message kept in memory: `n` 16-byte transient messages (routing key of 17
/// bytes, AMQP properties with delivery mode only) in a queue of a memory-only broker, which
/// never pages. Prints the growth of the process's resident memory divided by `n`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it by hand (release mode for realistic speed; sizes do not change)"]
async fn measure_memory_per_message_in_memory() {
    let n: usize = std::env::var("PIGEON_MEMORY_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let config = ServerConfig {
        mqtt_listen: pigeon_server::Listen::none(),
        ..ServerConfig::for_tests()
    };
    let Some(broker) = TestBroker::start_with(config).await else {
        return;
    };
    let (_conn, ch) = confirm_connection(&broker).await;
    let q = declare_transient(&ch, QueueDeclareOptions::default()).await;
    // Warm up allocator arenas and connection buffers, then empty the queue again.
    publish_range(&ch, &q, 0..1000, |_| true).await;
    within(
        "purge",
        ch.queue_purge(q.as_str().into(), QueuePurgeOptions::default()),
    )
    .await
    .unwrap();
    let before = rss_kib();
    let body = [b'x'; 16];
    let mut window = std::collections::VecDeque::new();
    for _ in 0..n {
        let confirm = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_delivery_mode(1),
            )
            .await
            .unwrap();
        window.push_back(confirm);
        if window.len() >= 1000 {
            window.pop_front().unwrap().await.unwrap();
        }
    }
    for c in window {
        c.await.unwrap();
    }
    assert_eq!(paged(&broker, &q), (n as u32, 0));
    let after = rss_kib();
    println!(
        "{n} messages of 16 bytes: rss +{} KiB, {} bytes per message",
        after - before,
        (after - before) * 1024 / n as u64
    );
}
