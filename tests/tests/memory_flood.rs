//! The memory alarm watches the memory the process really uses (its RSS), so a flood of tiny
//! messages into a queue nobody consumes blocks its publishers (AMQP `connection.blocked`, reads
//! paused; MQTT reads paused) with the RSS bounded by the watermark plus a documented margin
//! (docs/architecture.md, "Memory"); then a consumer gets every message, and the publishers
//! resume. Nothing is dropped, nobody is disconnected.
//!
//! The broker runs in this process, so the RSS measured is the test process's (the clients are
//! small beside the queues). This binary uses jemalloc set up as the `pigeon` binary does, so
//! that memory freed when the queue drains goes back to the OS and the alarm clears. Its tests
//! run one at a time (`SERIAL`): each one's broker would see the others' memory.

use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use pigeon_server::ServerConfig;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::{unique, within, DataDir, TestBroker};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How far above the RSS at the start the watermark is set.
const HEADROOM: u64 = 32 << 20;

/// How long a flood may take to reach the watermark: longer than the harness's timeout for
/// one event, since a debug build publishes a few thousand messages a second (it only bounds
/// a failing test).
const FLOOD_TIMEOUT: Duration = Duration::from_secs(120);

/// The documented margin (docs/architecture.md, "Memory"): what the publish path may add
/// between two checks (4 MiB estimated), the read batch each publishing connection may finish
/// (256 KiB of frames: about 3,000 16-byte messages, 1.5 MiB), jemalloc's thread caches and
/// slabs, and the test's own clients.
const MARGIN: u64 = 32 << 20;

fn rss() -> u64 {
    pigeon_server::memory::resident_set().expect("/proc/self/statm")
}

fn flood_config(base: ServerConfig) -> ServerConfig {
    ServerConfig {
        mqtt_sys_interval: 0,
        ..base
    }
}

/// Sets the broker's memory watermark [`HEADROOM`] above the RSS now (once its clients are
/// connected, so that what they cost is not counted as the flood's) and returns it.
fn set_watermark(broker: &TestBroker) -> u64 {
    let limit = rss() + HEADROOM;
    broker
        .server()
        .expect("in-process broker")
        .set_memory_limit(limit);
    limit
}

/// The highest RSS seen by a thread that reads it every millisecond until stopped.
struct PeakRss {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl PeakRss {
    fn start() -> PeakRss {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(rss()));
        let thread = {
            let (stop, peak) = (Arc::clone(&stop), Arc::clone(&peak));
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    peak.fetch_max(rss(), Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(1));
                }
            })
        };
        PeakRss {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("the sampling thread");
        }
        self.peak.load(Ordering::Relaxed).max(rss())
    }
}

/// Waits (bounded) for `cond` to hold, looking every 10 ms.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

fn queue_len(broker: &TestBroker, queue: &str) -> u32 {
    let server = broker.server().expect("in-process broker");
    let vhost = server.broker().vhost("/").expect("vhost /");
    vhost.queue(queue).expect("the queue").message_count()
}

fn assert_bounded(peak: u64, limit: u64) {
    println!(
        "watermark {} MiB, peak RSS {} MiB ({} MiB over)",
        limit >> 20,
        peak >> 20,
        (peak.saturating_sub(limit)) >> 20
    );
    assert!(
        peak < limit + MARGIN,
        "RSS peaked at {peak} bytes, past the watermark {limit} + the margin {MARGIN}"
    );
}

/// Publishes 16-byte transient messages without confirms until `stop`; returns how many were
/// handed to lapin. A publish the broker does not read waits until it reads again, so the
/// count is exact once the task ends.
async fn publish_until(channel: lapin::Channel, queue: String, stop: Arc<AtomicBool>) -> u64 {
    let body = [b'x'; 16];
    let mut sent = 0;
    while !stop.load(Ordering::Relaxed) {
        let _not_confirmed = channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default(),
            )
            .await
            .expect("basic.publish");
        sent += 1;
    }
    sent
}

/// Counts deliveries (no-ack) in the background.
fn count_deliveries(mut consumer: lapin::Consumer) -> Arc<AtomicU64> {
    let received = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&received);
    tokio::spawn(async move {
        while let Some(d) = consumer.next().await {
            d.expect("a delivery");
            counter.fetch_add(1, Ordering::Relaxed);
        }
    });
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_tiny_messages_blocks_amqp_publishers_with_memory_bounded_and_loses_nothing() {
    let _serial = SERIAL.lock().await;
    pigeon_tests::jemalloc::configure();
    let Some(broker) = TestBroker::start_with(flood_config(ServerConfig::for_tests())).await else {
        return;
    };
    let (_admin_conn, admin) = lp::connect_channel(&broker).await;
    let queue = lp::shared_queue(&admin).await;
    let conns = [lp::connect(&broker).await, lp::connect(&broker).await];
    let limit = set_watermark(&broker);
    let peak = PeakRss::start();
    // Two publishers, as in `pigeon bench -x 2 -y 0 -s 16`, until each is told it is blocked.
    let stop = Arc::new(AtomicBool::new(false));
    let mut publishers = Vec::new();
    for c in &conns {
        let channel = lp::open_channel(c).await;
        publishers.push(tokio::spawn(publish_until(
            channel,
            queue.clone(),
            Arc::clone(&stop),
        )));
    }
    tokio::time::timeout(FLOOD_TIMEOUT, async {
        while !conns.iter().all(|c| c.status().blocked()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("connection.blocked on both publishers within the flood timeout");
    // Blocked: the broker reads nothing more from them; what it holds is what it has read.
    assert_bounded(peak.finish(), limit);
    assert!(conns.iter().all(|c| c.status().connected()));
    stop.store(true, Ordering::Relaxed);

    // A consumer drains the queue: the alarm clears, the publishers are told
    // `connection.unblocked` (what they sent while blocked is read then), and every message
    // arrives.
    let consumer = lp::consume(
        &admin,
        &queue,
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
    )
    .await;
    let received = count_deliveries(consumer);
    let mut sent = 0;
    // A publisher resumes once the consumer has drained the queue below the watermark: with
    // ~81 bytes a message that is a million messages, longer than `within`'s bound on a busy
    // machine, so the drain gets the flood's bound.
    for p in publishers {
        sent += tokio::time::timeout(FLOOD_TIMEOUT, p)
            .await
            .expect("the publisher resumes and stops within the flood timeout")
            .expect("publisher task");
    }
    for conn in &conns {
        until("connection.unblocked", || !conn.status().blocked()).await;
    }
    tokio::time::timeout(FLOOD_TIMEOUT, async {
        while received.load(Ordering::Relaxed) < sent {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every message delivered within the flood timeout");
    assert_eq!(queue_len(&broker, &queue), 0);
    // A marker published after the flood is the next delivery: nothing more was on its way.
    lp::publish(&admin, "", &queue, b"marker").await;
    until("the marker", || received.load(Ordering::Relaxed) > sent).await;
    assert_eq!(
        received.load(Ordering::Relaxed),
        sent + 1,
        "every message published is delivered once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_mqtt_flood_is_paused_with_memory_bounded_and_loses_nothing() {
    use bytes::BytesMut;
    use mqtt_wire::{Packet, ProtocolVersion, QoS};
    use pigeon_tests::mqtt_support::{connect_packet, publish_packet, Raw};
    const V4: ProtocolVersion = ProtocolVersion::V3_1_1;

    let _serial = SERIAL.lock().await;
    pigeon_tests::jemalloc::configure();
    let Some(broker) = TestBroker::start_with(flood_config(ServerConfig::for_tests())).await else {
        return;
    };
    let server = broker.server().expect("in-process");
    let mqtt_addr = server.mqtt_addr().expect("MQTT is on");
    let (_admin_conn, admin) = lp::connect_channel(&broker).await;
    let queue = lp::shared_queue(&admin).await;
    let topic = unique("flood");
    lp::bind(
        &admin,
        &queue,
        "amq.topic",
        &format!("{topic}.#"),
        FieldTable::default(),
    )
    .await;
    let (mut publisher, _) = Raw::connect(mqtt_addr, connect_packet(V4, &unique("flood"))).await;
    let limit = set_watermark(&broker);
    let peak = PeakRss::start();
    let stop = Arc::new(AtomicBool::new(false));
    // QoS 0 PUBLISHes of 16 bytes, 100 per write, until told to stop; the write that the broker
    // does not read waits in the socket. Then a PINGRESP says the broker read everything.
    let publishing = {
        let (stop, topic) = (Arc::clone(&stop), format!("{topic}/m"));
        tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let p = publish_packet(&topic, QoS::AtMostOnce, None, &[b'x'; 16]);
            for _ in 0..100 {
                mqtt_wire::encode(&Packet::Publish(p.clone()), V4, &mut buf).expect("encode");
            }
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                publisher.send_bytes(&buf).await;
                sent += 100;
            }
            publisher.send(Packet::PingReq).await;
            // Behind the whole flood: it comes once the queue drained and the alarm cleared.
            let pong = publisher.next_within(FLOOD_TIMEOUT).await;
            assert_eq!(pong, Some(Packet::PingResp));
            sent
        })
    };
    tokio::time::timeout(FLOOD_TIMEOUT, async {
        while !server.memory_alarm() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the memory alarm within the flood timeout");
    // Paused: the queue stops growing while the alarm is on.
    let mut last = u32::MAX;
    until("the publisher to be paused", || {
        let now = queue_len(&broker, &queue);
        let paused = now == last && server.memory_alarm();
        last = now;
        paused
    })
    .await;
    assert_bounded(peak.finish(), limit);
    stop.store(true, Ordering::Relaxed);

    let consumer = lp::consume(
        &admin,
        &queue,
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
    )
    .await;
    let received = count_deliveries(consumer);
    // The publisher resumes once the queue drains (its PINGRESP comes back), still connected.
    let sent = tokio::time::timeout(FLOOD_TIMEOUT, publishing)
        .await
        .expect("the publisher to finish within the flood timeout")
        .expect("publisher task");
    tokio::time::timeout(FLOOD_TIMEOUT, async {
        while received.load(Ordering::Relaxed) < sent {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("every message delivered within the flood timeout");
    lp::publish(&admin, "", &queue, b"marker").await;
    until("the marker", || received.load(Ordering::Relaxed) > sent).await;
    assert_eq!(
        received.load(Ordering::Relaxed),
        sent + 1,
        "every QoS 0 message published is delivered once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_paged_out_to_disk_do_not_raise_the_memory_alarm() {
    let _serial = SERIAL.lock().await;
    pigeon_tests::jemalloc::configure();
    let data = DataDir::with(|c| c.fsync = false);
    let Some(broker) = TestBroker::start_with(flood_config(data.config().clone())).await else {
        return;
    };
    let (conn, ch) = lp::confirm_connection(&broker).await;
    set_watermark(&broker);
    let q = unique("paged");
    lp::declare(&ch, &q, lp::durable()).await;
    // Twice the headroom, persistent, in a durable queue that keeps 8 MiB in memory.
    let body = vec![b'x'; 64 * 1024];
    let mut pending = Vec::new();
    for _ in 0..(2 * HEADROOM / body.len() as u64) {
        let props = BasicProperties::default().with_delivery_mode(2);
        let confirm = ch
            .basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await
            .expect("basic.publish");
        pending.push(confirm);
        if pending.len() == 64 {
            for c in pending.drain(..) {
                within("a confirm", c).await.expect("confirmed");
            }
        }
    }
    for c in pending {
        within("a confirm", c).await.expect("confirmed");
    }
    assert!(!conn.status().blocked());
    assert!(!broker.server().expect("in-process").memory_alarm());

    // Messages in a queue that keeps them in memory do raise it.
    let transient = unique("in-memory");
    ch.queue_declare(
        transient.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("queue.declare");
    let stop = Arc::new(AtomicBool::new(false));
    let publishing = tokio::spawn(publish_until(ch.clone(), transient, Arc::clone(&stop)));
    tokio::time::timeout(FLOOD_TIMEOUT, async {
        while !conn.status().blocked() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("connection.blocked within the flood timeout");
    stop.store(true, Ordering::Relaxed);
    publishing.abort();
}
