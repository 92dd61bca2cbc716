//! Transient and exclusive queues: part of the `paging` tests (helpers in `mod.rs`).

use super::*;

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
