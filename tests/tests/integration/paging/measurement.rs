//! Measurement: part of the `paging` tests (helpers in `mod.rs`). Run by hand, in release mode;
//! see docs/configuration.md, "Queues larger than memory":
//!
//!   PIGEON_PAGING_MESSAGES=10000000 PIGEON_PAGING_DIR=/big/disk/dir \
//!     cargo test --release -p pigeon-tests --test integration -- --ignored --nocapture paging::measurement
//!
//! Fills one durable queue with N persistent 1 KiB messages (default 1,000,000) through the
//! real AMQP listener, reports this process's resident memory (the broker and one client),
//! restarts the broker on the same directory and reports how long recovery took.

use super::*;

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
