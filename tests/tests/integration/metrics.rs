//! The Prometheus endpoint: scraped over HTTP by a real client and read with a real parser of
//! the text format, its RabbitMQ-named families move as lapin and rumqttc traffic goes through.

use lapin::options::{BasicAckOptions, BasicGetOptions, BasicPublishOptions, BasicQosOptions};
use lapin::BasicProperties;
use pigeon_server::ServerConfig;
use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::mqtt_support::Mqtt4;
use pigeon_tests::{unique, within, TestBroker};
use prometheus_parse::{Scrape, Value};
use serde_json::json;
use std::net::SocketAddr;
use std::time::Duration;

/// GETs `path` and parses the text exposition.
async fn scrape(addr: SocketAddr, path: &str) -> Scrape {
    let response = reqwest::get(format!("http://{addr}{path}"))
        .await
        .expect("GET the metrics");
    assert_eq!(response.status(), 200);
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let body = response.text().await.expect("the body");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("valid text exposition")
}

/// The value of the sample `name` whose labels include `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(v)))
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

fn get(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    value(s, name, labels).unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

/// Scrapes until `ok` holds (counters of acks and deliveries move on the broker's tasks).
async fn scrape_until(
    addr: SocketAddr,
    path: &str,
    what: &str,
    ok: impl Fn(&Scrape) -> bool,
) -> Scrape {
    within(what, async {
        loop {
            let s = scrape(addr, path).await;
            if ok(&s) {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

const AMQP: &[(&str, &str)] = &[("protocol", "amqp091")];

#[tokio::test]
async fn amqp_traffic_moves_the_global_and_queue_families() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let addr = broker
        .server()
        .and_then(|s| s.prometheus_addr())
        .expect("Prometheus listener");
    let before = scrape(addr, "/metrics").await;
    for family in [
        "rabbitmq_identity_info",
        "rabbitmq_build_info",
        "rabbitmq_process_resident_memory_bytes",
        "rabbitmq_resident_memory_limit_bytes",
        "rabbitmq_disk_space_available_limit_bytes",
        "rabbitmq_alarms_memory_used_watermark",
        "rabbitmq_alarms_free_disk_space_watermark",
        "rabbitmq_process_open_fds",
        "rabbitmq_process_max_fds",
        "rabbitmq_queues_declared_total",
        "rabbitmq_queues_created_total",
        "rabbitmq_queues_deleted_total",
    ] {
        assert!(
            before.samples.iter().any(|s| s.metric == family),
            "{family} missing"
        );
    }
    assert!(get(&before, "rabbitmq_process_resident_memory_bytes", &[]) > 0.0);
    assert!(get(&before, "rabbitmq_process_open_fds", &[]) > 0.0);
    let received = get(&before, "rabbitmq_global_messages_received_total", AMQP);

    let (conn, ch) = lp::confirm_connection(&broker).await;
    let q = lp::exclusive_queue(&ch).await;
    const N: usize = 25;
    for i in 0..N {
        let confirm = within(
            "basic.publish",
            ch.basic_publish(
                "".into(),
                q.as_str().into(),
                BasicPublishOptions::default(),
                format!("m{i}").as_bytes(),
                BasicProperties::default(),
            ),
        )
        .await
        .expect("publish");
        within("the confirm", confirm).await.expect("confirmed");
    }
    // Published and not consumed yet: ready in the queue.
    let s = scrape_until(addr, "/metrics", "the messages to be ready", |s| {
        value(s, "rabbitmq_queue_messages_ready", &[]) == Some(N as f64)
    })
    .await;
    assert_eq!(
        get(&s, "rabbitmq_global_messages_received_total", AMQP) - received,
        N as f64
    );
    assert_eq!(
        get(&s, "rabbitmq_global_messages_routed_total", AMQP),
        N as f64
    );
    assert_eq!(
        get(&s, "rabbitmq_global_messages_confirmed_total", AMQP),
        N as f64
    );
    assert_eq!(get(&s, "rabbitmq_connections", &[]), 1.0);
    assert_eq!(get(&s, "rabbitmq_channels", &[]), 1.0);
    assert_eq!(get(&s, "rabbitmq_queues", &[]), 1.0);
    assert_eq!(get(&s, "rabbitmq_queues_created_total", &[]), 1.0);
    let per_queue = scrape(addr, "/metrics/per-object").await;
    let labels = [("vhost", "/"), ("queue", q.as_str())];
    assert_eq!(
        get(&per_queue, "rabbitmq_queue_messages_ready", &labels),
        N as f64
    );
    assert_eq!(
        get(
            &per_queue,
            "rabbitmq_queue_messages_published_total",
            &labels
        ),
        N as f64
    );

    let mut consumer = lp::consume_acked(&ch, &q).await;
    for _ in 0..N {
        let d = lp::next_delivery(&mut consumer).await;
        within("basic.ack", d.acker.ack(BasicAckOptions::default()))
            .await
            .expect("ack");
    }
    let s = scrape_until(addr, "/metrics", "the acks to be counted", |s| {
        value(s, "rabbitmq_global_messages_acknowledged_total", AMQP) == Some(N as f64)
    })
    .await;
    assert_eq!(
        get(&s, "rabbitmq_global_messages_delivered_total", AMQP),
        N as f64
    );
    assert_eq!(
        get(&s, "rabbitmq_global_messages_redelivered_total", AMQP),
        0.0
    );
    assert_eq!(get(&s, "rabbitmq_queue_messages", &[]), 0.0);
    assert_eq!(get(&s, "rabbitmq_queue_consumers", &[]), 1.0);
    assert_eq!(get(&s, "rabbitmq_global_consumers", AMQP), 1.0);
    assert_eq!(get(&s, "rabbitmq_global_publishers", AMQP), 1.0);

    within("connection.close", conn.close(200, "bye".into()))
        .await
        .expect("close");
    let s = scrape_until(addr, "/metrics", "the connection to be closed", |s| {
        value(s, "rabbitmq_connections", &[]) == Some(0.0)
    })
    .await;
    assert_eq!(get(&s, "rabbitmq_connections_opened_total", &[]), 1.0);
    assert_eq!(get(&s, "rabbitmq_connections_closed_total", &[]), 1.0);
    assert_eq!(get(&s, "rabbitmq_channels_opened_total", &[]), 1.0);
    assert_eq!(get(&s, "rabbitmq_channels_closed_total", &[]), 1.0);
    // The exclusive queue went with its connection.
    assert_eq!(get(&s, "rabbitmq_queues_deleted_total", &[]), 1.0);
}

#[tokio::test]
async fn mqtt_qos1_traffic_is_counted_per_protocol_and_qos() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let server = broker.server().expect("in-process");
    let addr = server.prometheus_addr().expect("Prometheus listener");
    let port = server.mqtt_addr().expect("MQTT").port();
    let mut sub = Mqtt4::connect(rumqttc::MqttOptions::new("metrics-sub", "127.0.0.1", port)).await;
    sub.subscribe("m/#", rumqttc::QoS::AtLeastOnce).await;
    let mut publisher =
        Mqtt4::connect(rumqttc::MqttOptions::new("metrics-pub", "127.0.0.1", port)).await;
    const M: usize = 10;
    for i in 0..M {
        publisher
            .publish(
                "m/x",
                rumqttc::QoS::AtLeastOnce,
                false,
                format!("{i}").as_bytes(),
            )
            .await;
    }
    for _ in 0..M {
        sub.next_publish().await;
    }
    let mqtt = [("protocol", "mqtt311")];
    let s = scrape_until(addr, "/metrics", "the PUBACKs to be counted", |s| {
        value(s, "rabbitmq_global_messages_acknowledged_total", &mqtt) == Some(M as f64)
    })
    .await;
    assert_eq!(
        get(&s, "rabbitmq_global_messages_received_total", &mqtt),
        M as f64
    );
    assert_eq!(
        get(&s, "rabbitmq_global_messages_routed_total", &mqtt),
        M as f64
    );
    assert_eq!(
        get(&s, "rabbitmq_global_messages_confirmed_total", &mqtt),
        M as f64
    );
    assert_eq!(
        get(&s, "rabbitmq_global_messages_delivered_total", &mqtt),
        M as f64
    );
    let qos1 = [("protocol", "mqtt311"), ("qos", "1")];
    assert_eq!(
        get(&s, "pigeon_mqtt_messages_received_total", &qos1),
        M as f64
    );
    assert_eq!(get(&s, "pigeon_mqtt_messages_sent_total", &qos1), M as f64);
    assert_eq!(get(&s, "pigeon_mqtt_connections", &[]), 2.0);
    assert_eq!(get(&s, "pigeon_mqtt_sessions", &[("state", "online")]), 2.0);
    assert_eq!(get(&s, "rabbitmq_connections", &[]), 2.0);
    assert_eq!(get(&s, "rabbitmq_global_publishers", &mqtt), 1.0);
    // Nothing on the AMQP side.
    assert_eq!(
        get(&s, "rabbitmq_global_messages_received_total", AMQP),
        0.0
    );
}

#[tokio::test]
async fn the_prefix_is_configurable() {
    let config = ServerConfig {
        prometheus_prefix: "pigeonmq".into(),
        ..ServerConfig::for_tests()
    };
    let Some(broker) = TestBroker::start_with(config).await else {
        return;
    };
    let addr = broker
        .server()
        .and_then(|s| s.prometheus_addr())
        .expect("Prometheus listener");
    let s = scrape(addr, "/metrics").await;
    assert_eq!(get(&s, "pigeonmq_connections", &[]), 0.0);
    assert!(value(&s, "rabbitmq_connections", &[]).is_none());
}

/// `rabbitmq_identity_info`'s `rabbitmq_cluster` is the cluster's name (the `cluster_name`
/// global parameter, as `/api/cluster-name` sets it), on both endpoints; the node's name until
/// one is set, and the node stays the permanent id.
#[tokio::test]
async fn identity_info_carries_the_cluster_name_set_through_the_api() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let addr = broker
        .server()
        .and_then(|s| s.prometheus_addr())
        .expect("Prometheus listener");
    let api = Api::new(&broker);
    let identity = |s: &Scrape| {
        s.samples
            .iter()
            .find(|x| x.metric == "rabbitmq_identity_info")
            .map(|x| x.labels.clone())
            .expect("rabbitmq_identity_info")
    };
    let before = identity(&scrape(addr, "/metrics").await);
    let node = api.get("/api/overview").await.body["node"].clone();
    assert_eq!(before.get("rabbitmq_node"), node.as_str());
    assert_eq!(
        before.get("rabbitmq_cluster"),
        node.as_str(),
        "the default name"
    );

    let renamed = unique("grafana-cluster");
    let put = api.put("/api/cluster-name", json!({"name": renamed})).await;
    assert_eq!(put.status, 204);
    for path in ["/metrics", "/metrics/per-object"] {
        let labels = identity(&scrape(addr, path).await);
        assert_eq!(
            labels.get("rabbitmq_cluster"),
            Some(renamed.as_str()),
            "{path}"
        );
        assert_eq!(labels.get("rabbitmq_node"), node.as_str(), "{path}");
        assert_eq!(
            labels.get("rabbitmq_cluster_permanent_id"),
            node.as_str(),
            "{path}"
        );
    }
}

/// `/metrics/per-object` has RabbitMQ's per-connection and per-channel families, labelled
/// `channel` (with the connection's or channel's name as the management API lists it), and
/// `/metrics` their sums without labels.
#[tokio::test]
async fn per_object_has_the_connection_and_channel_families() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let addr = broker
        .server()
        .and_then(|s| s.prometheus_addr())
        .expect("Prometheus listener");
    let api = Api::new(&broker);
    let (conn, publisher) = lp::confirm_connection(&broker).await;
    let q = lp::exclusive_queue(&publisher).await;
    for body in ["a", "b", "c"] {
        lp::publish(&publisher, "", &q, body.as_bytes()).await;
    }
    // Unroutable: returned (mandatory), then dropped.
    assert!(!lp::routed(&publisher, "amq.direct", "nowhere", b"r").await);
    lp::publish(&publisher, "amq.direct", "nowhere", b"d").await;

    let getter = lp::open_channel(&conn).await;
    let first = lp::get(&getter, &q).await.expect("a message");
    lp::get(&getter, &q).await.expect("a second message");
    let no_ack = BasicGetOptions { no_ack: true };
    let third = within(
        "basic.get no-ack",
        getter.basic_get(q.as_str().into(), no_ack),
    );
    third.await.unwrap().expect("a third message");
    assert!(lp::get(&getter, &q).await.is_none(), "get-empty");
    getter
        .basic_ack(first.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    within("basic.qos", getter.basic_qos(7, BasicQosOptions::default()))
        .await
        .unwrap();
    let idle = lp::exclusive_queue(&getter).await;
    let _consumer = lp::consume_acked(&getter, &idle).await;

    let connections = api.get("/api/connections").await.body;
    let name = connections[0]["name"].as_str().unwrap().to_string();
    let pub_channel = format!("{name} ({})", publisher.id());
    let get_channel = format!("{name} ({})", getter.id());
    let on = |channel: &str| [("channel", channel.to_string())];
    let per = |s: &Scrape, metric: &str, channel: &str| {
        let labels = on(channel);
        let labels: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        get(s, &format!("rabbitmq_{metric}"), &labels)
    };
    let s = scrape_until(addr, "/metrics/per-object", "the ack to count", |s| {
        value(
            s,
            "rabbitmq_channel_messages_acked_total",
            &[("channel", &get_channel)],
        ) == Some(1.0)
    })
    .await;
    for (metric, value) in [
        ("channel_messages_published_total", 5.0),
        ("channel_messages_confirmed_total", 5.0),
        ("channel_messages_unroutable_returned_total", 1.0),
        ("channel_messages_unroutable_dropped_total", 1.0),
        ("channel_consumers", 0.0),
        ("channel_get_ack_total", 0.0),
    ] {
        assert_eq!(per(&s, metric, &pub_channel), value, "{metric}");
    }
    for (metric, value) in [
        ("channel_get_ack_total", 2.0),
        ("channel_get_total", 1.0),
        ("channel_get_empty_total", 1.0),
        ("channel_messages_acked_total", 1.0),
        ("channel_messages_unacked", 1.0),
        ("channel_messages_delivered_total", 0.0),
        ("channel_messages_delivered_ack_total", 0.0),
        ("channel_messages_redelivered_total", 0.0),
        ("channel_consumers", 1.0),
        ("consumer_prefetch", 7.0),
        ("channel_prefetch", 0.0),
        ("channel_messages_published_total", 0.0),
    ] {
        assert_eq!(per(&s, metric, &get_channel), value, "{metric}");
    }
    assert_eq!(per(&s, "connection_channels", &name), 2.0);
    for metric in [
        "connection_incoming_bytes_total",
        "connection_outgoing_bytes_total",
        "connection_incoming_packets_total",
        "connection_outgoing_packets_total",
    ] {
        assert!(per(&s, metric, &name) > 0.0, "{metric}");
    }

    // Aggregated: the same families, summed, without labels.
    let s = scrape(addr, "/metrics").await;
    assert_eq!(
        get(&s, "rabbitmq_channel_messages_published_total", &[]),
        5.0
    );
    assert_eq!(get(&s, "rabbitmq_connection_channels", &[]), 2.0);
    assert!(s
        .samples
        .iter()
        .filter(|x| x.metric.starts_with("rabbitmq_channel_"))
        .all(|x| x.labels.get("channel").is_none()));
    conn.close(200, "bye".into()).await.unwrap();
}

/// Not a test: times a per-object scrape with 100,000 queues (`cargo test --release -p
/// pigeon-tests --test metrics -- --ignored --nocapture`).
#[tokio::test]
#[ignore]
async fn bench_per_object_scrape_of_100k_queues() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let server = broker.server().expect("in-process");
    let vhost = server.broker().vhost("/").expect("vhost /");
    for i in 0..100_000 {
        vhost
            .declare_queue(&format!("q{i}"), false, Default::default(), 0)
            .expect("declare");
    }
    let addr = server.prometheus_addr().expect("Prometheus listener");
    for _ in 0..3 {
        let start = std::time::Instant::now();
        let body = reqwest::get(format!("http://{addr}/metrics/per-object"))
            .await
            .expect("GET")
            .text()
            .await
            .expect("body");
        println!(
            "per-object scrape of 100000 queues: {:?}, {} bytes",
            start.elapsed(),
            body.len()
        );
        let start = std::time::Instant::now();
        let body = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .expect("GET")
            .text()
            .await
            .expect("body");
        println!(
            "aggregated scrape of 100000 queues: {:?}, {} bytes",
            start.elapsed(),
            body.len()
        );
    }
}
