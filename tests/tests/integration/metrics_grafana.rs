//! The official RabbitMQ-Overview Grafana dashboard works against Pigeon: every metric its
//! panels and variables query exists after some AMQP and MQTT traffic, with the labels its
//! joins use (`rabbitmq_identity_info`'s `rabbitmq_cluster`, `rabbitmq_node`,
//! `rabbitmq_endpoint`; `rabbitmq_build_info`'s versions; `le` of the message size
//! histogram, selected literally), read with a real parser of the text format.

use lapin::options::{BasicAckOptions, BasicGetOptions};
use lapin::BasicProperties;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::mqtt_support::Mqtt4;
use pigeon_tests::{unique, within, DataDir};
use prometheus_parse::{Scrape, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

/// The metric names queried by RabbitMQ-Overview.json (rabbitmq-server,
/// deps/rabbitmq_prometheus/docker/grafana/dashboards/), extracted from its `expr` and
/// variable queries. Labels the dashboard reads are checked separately below.
const DASHBOARD_METRICS: &[&str] = &[
    "rabbitmq_build_info",
    "rabbitmq_channels",
    "rabbitmq_channels_closed_total",
    "rabbitmq_channels_opened_total",
    "rabbitmq_connections",
    "rabbitmq_connections_closed_total",
    "rabbitmq_connections_opened_total",
    "rabbitmq_disk_space_available_bytes",
    "rabbitmq_disk_space_available_limit_bytes",
    "rabbitmq_erlang_uptime_seconds",
    "rabbitmq_global_consumers",
    "rabbitmq_global_messages_acknowledged_total",
    "rabbitmq_global_messages_confirmed_total",
    "rabbitmq_global_messages_delivered_consume_auto_ack_total",
    "rabbitmq_global_messages_delivered_consume_manual_ack_total",
    "rabbitmq_global_messages_delivered_get_auto_ack_total",
    "rabbitmq_global_messages_delivered_get_manual_ack_total",
    "rabbitmq_global_messages_delivered_total",
    "rabbitmq_global_messages_get_empty_total",
    "rabbitmq_global_messages_received_confirm_total",
    "rabbitmq_global_messages_received_total",
    "rabbitmq_global_messages_redelivered_total",
    "rabbitmq_global_messages_routed_total",
    "rabbitmq_global_messages_unroutable_dropped_total",
    "rabbitmq_global_messages_unroutable_returned_total",
    "rabbitmq_global_publishers",
    "rabbitmq_identity_info",
    "rabbitmq_message_size_bytes_bucket",
    "rabbitmq_message_size_bytes_count",
    "rabbitmq_message_size_bytes_sum",
    "rabbitmq_process_max_fds",
    "rabbitmq_process_open_fds",
    "rabbitmq_process_resident_memory_bytes",
    "rabbitmq_queue_messages_ready",
    "rabbitmq_queue_messages_unacked",
    "rabbitmq_queues",
    "rabbitmq_queues_created_total",
    "rabbitmq_queues_declared_total",
    "rabbitmq_queues_deleted_total",
    "rabbitmq_resident_memory_limit_bytes",
];

/// The `le` values the "Message Size Distribution" panel selects.
const DASHBOARD_SIZE_BUCKETS: &[&str] = &[
    "100.0", "1000.0", "10000.0", "100000.0", "1e+06", "1e+07", "5e+07", "1e+08", "+Inf",
];

/// GETs `path`: the text, and what the parser makes of it.
async fn scrape(addr: SocketAddr, path: &str) -> (String, Scrape) {
    let body = within("GET the metrics", async {
        reqwest::get(format!("http://{addr}{path}"))
            .await
            .expect("GET")
            .text()
            .await
            .expect("the body")
    })
    .await;
    let parsed =
        Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("valid text exposition");
    (body, parsed)
}

/// Whether a sample of `name` exists (the parser folds `<h>_bucket` samples into one
/// histogram sample named `<h>`).
fn present(s: &Scrape, name: &str) -> bool {
    match name.strip_suffix("_bucket") {
        Some(h) => samples(s, h).any(|x| matches!(x.value, Value::Histogram(_))),
        None => samples(s, name).next().is_some(),
    }
}

/// The samples named `name`.
fn samples<'a>(s: &'a Scrape, name: &'a str) -> impl Iterator<Item = &'a prometheus_parse::Sample> {
    s.samples.iter().filter(move |x| x.metric == name)
}

/// Sum of every sample named `name` (the dashboard `sum()`s them).
fn sum(s: &Scrape, name: &str) -> f64 {
    samples(s, name)
        .map(|x| match &x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            Value::Summary(_) => f64::NAN,
        })
        .sum()
}

fn labels_of(s: &Scrape, name: &str) -> HashMap<String, String> {
    let x = samples(s, name)
        .next()
        .unwrap_or_else(|| panic!("no {name}"));
    x.labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_overview_dashboard_queries_is_served_with_its_labels() {
    let data = DataDir::with(|c| c.fsync = true);
    let Some(broker) = data.start().await else {
        return;
    };
    let server = broker.server().expect("in-process");
    let addr = server.prometheus_addr().expect("Prometheus listener");
    let port = server.mqtt_addr().expect("MQTT").port();

    // AMQP: confirmed persistent publishes to a durable queue, a consumer acking, a get
    // with and without ack, an empty get, an unroutable publish.
    let (conn, ch) = lp::confirm_connection(&broker).await;
    let q = unique("grafana");
    lp::declare(&ch, &q, lp::durable()).await;
    const N: usize = 6;
    for i in 0..N {
        lp::publish_with(
            &ch,
            "",
            &q,
            format!("m{i}").as_bytes(),
            BasicProperties::default().with_delivery_mode(2),
        )
        .await;
    }
    lp::publish(&ch, "", "no-such-queue", b"lost").await;
    let got = lp::get(&ch, &q).await.expect("a message");
    within(
        "basic.ack",
        got.delivery.acker.ack(BasicAckOptions::default()),
    )
    .await
    .expect("ack");
    let auto = within(
        "basic.get no_ack",
        ch.basic_get(q.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .expect("basic.get");
    assert!(auto.is_some());
    let mut consumer = lp::consume_acked(&ch, &q).await;
    for _ in 2..N {
        let d = lp::next_delivery(&mut consumer).await;
        within("basic.ack", d.acker.ack(BasicAckOptions::default()))
            .await
            .expect("ack");
    }
    let ch2 = lp::open_channel(&conn).await;
    let empty = lp::declare(&ch2, &unique("empty"), Default::default()).await;
    assert!(lp::get(&ch2, empty.name().as_str()).await.is_none());

    // MQTT: QoS 0 and QoS 1 through a subscriber.
    let mut sub = Mqtt4::connect(rumqttc::MqttOptions::new("grafana-sub", "127.0.0.1", port)).await;
    sub.subscribe("g/#", rumqttc::QoS::AtLeastOnce).await;
    let mut publisher =
        Mqtt4::connect(rumqttc::MqttOptions::new("grafana-pub", "127.0.0.1", port)).await;
    publisher
        .publish("g/0", rumqttc::QoS::AtMostOnce, false, b"zero".as_slice())
        .await;
    publisher
        .publish("g/1", rumqttc::QoS::AtLeastOnce, false, b"one".as_slice())
        .await;
    sub.next_publish().await;
    sub.next_publish().await;

    // Counters move on the broker's tasks: scrape until the last ack is in.
    let (text, s) = within("the acks to be counted", async {
        loop {
            let (text, s) = scrape(addr, "/metrics").await;
            let acked = samples(&s, "rabbitmq_global_messages_acknowledged_total")
                .find(|x| x.labels.get("protocol") == Some("amqp091"))
                .map(|x| sum_one(&x.value));
            if acked == Some((N - 1) as f64) {
                return (text, s);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    let missing: Vec<&str> = DASHBOARD_METRICS
        .iter()
        .copied()
        .filter(|name| !present(&s, name))
        .collect();
    assert!(missing.is_empty(), "missing: {missing:?}");

    // The dashboard's joins and variables.
    let identity = labels_of(&s, "rabbitmq_identity_info");
    for label in [
        "rabbitmq_node",
        "rabbitmq_cluster",
        "rabbitmq_cluster_permanent_id",
        "rabbitmq_endpoint",
    ] {
        assert!(
            identity.get(label).is_some_and(|v| !v.is_empty()),
            "{label}"
        );
    }
    assert_eq!(identity["rabbitmq_endpoint"], "aggregated");
    let build = labels_of(&s, "rabbitmq_build_info");
    assert!(build.contains_key("rabbitmq_version"));
    assert!(build.contains_key("erlang_version"));
    assert_eq!(build["product_name"], "Pigeon");
    // The panel selects `le` by its text: the parser reads it as a number, so look at the text.
    for le in DASHBOARD_SIZE_BUCKETS {
        let bucket =
            format!("rabbitmq_message_size_bytes_bucket{{protocol=\"amqp091\",le=\"{le}\"}}");
        assert!(text.contains(&bucket), "no {bucket}");
    }

    // A few values the panels would show.
    let amqp = |name: &str| {
        samples(&s, name)
            .filter(|x| x.labels.get("protocol") == Some("amqp091"))
            .map(|x| sum_one(&x.value))
            .sum::<f64>()
    };
    assert_eq!(
        amqp("rabbitmq_global_messages_received_total"),
        (N + 1) as f64
    );
    assert_eq!(
        amqp("rabbitmq_global_messages_received_confirm_total"),
        (N + 1) as f64
    );
    assert_eq!(amqp("rabbitmq_global_messages_routed_total"), N as f64);
    assert_eq!(
        amqp("rabbitmq_global_messages_unroutable_dropped_total"),
        1.0
    );
    assert_eq!(
        amqp("rabbitmq_global_messages_delivered_get_manual_ack_total"),
        1.0
    );
    assert_eq!(
        amqp("rabbitmq_global_messages_delivered_get_auto_ack_total"),
        1.0
    );
    assert_eq!(
        amqp("rabbitmq_global_messages_delivered_consume_manual_ack_total"),
        (N - 2) as f64
    );
    assert_eq!(amqp("rabbitmq_global_messages_delivered_total"), N as f64);
    assert_eq!(amqp("rabbitmq_global_messages_get_empty_total"), 1.0);
    let mqtt311 = |name: &str| {
        samples(&s, name)
            .filter(|x| x.labels.get("protocol") == Some("mqtt311"))
            .map(|x| sum_one(&x.value))
            .sum::<f64>()
    };
    assert_eq!(mqtt311("rabbitmq_global_messages_received_total"), 2.0);
    assert_eq!(
        mqtt311("rabbitmq_global_messages_delivered_consume_auto_ack_total"),
        1.0
    );
    // Every message received has its size observed once.
    assert_eq!(
        sum(&s, "rabbitmq_message_size_bytes_count"),
        sum(&s, "rabbitmq_global_messages_received_total")
    );
    assert!(sum(&s, "rabbitmq_erlang_uptime_seconds") >= 0.0);
    assert!(sum(&s, "rabbitmq_process_resident_memory_bytes") > 0.0);
    assert!(sum(&s, "rabbitmq_process_max_fds") >= sum(&s, "rabbitmq_process_open_fds"));
    assert!(sum(&s, "rabbitmq_disk_space_available_bytes") > 0.0);
    // What RabbitMQ lacks: the store synced the persistent messages.
    assert!(sum(&s, "pigeon_store_fsyncs_total") > 0.0);
    assert!(sum(&s, "pigeon_store_fsync_duration_seconds_count") > 0.0);
    assert!(sum(&s, "pigeon_store_bytes_written_total") > 0.0);

    let (_, per_object) = scrape(addr, "/metrics/per-object").await;
    assert_eq!(
        labels_of(&per_object, "rabbitmq_identity_info")["rabbitmq_endpoint"],
        "per-object"
    );
    assert!(samples(&per_object, "rabbitmq_queue_messages_ready")
        .any(|x| x.labels.get("queue") == Some(q.as_str()) && x.labels.get("vhost") == Some("/")));
}

fn sum_one(v: &Value) -> f64 {
    match v {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        _ => f64::NAN,
    }
}
