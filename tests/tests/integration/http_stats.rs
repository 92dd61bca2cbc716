//! Message statistics in the management API, as RabbitMQ shows them: what lapin publishes,
//! consumes, gets and acknowledges is counted exactly in `/api/overview`'s `message_stats`,
//! per queue, per exchange, per channel and per vhost, each count beside a `_details` object
//! whose `rate` is a number; `queue_totals` has the lengths and theirs; the sampler fills
//! sample lists when a range is asked for; `disable_stats=true` lists queues without
//! statistics. Counts are exact; rates are only checked to be present and non-negative.

use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicGetOptions};
use lapin::types::FieldTable;
use lapin::BasicProperties;
use pigeon_server::ServerConfig;
use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::{unique, within, TestBroker};
use serde_json::Value;
use std::time::Duration;

/// A broker sampling its statistics every 100 ms (RabbitMQ's `collect_statistics_interval`),
/// so that rings fill while a test runs; no `$SYS` publishing to count.
async fn broker() -> Option<TestBroker> {
    TestBroker::start_with(ServerConfig {
        collect_statistics_interval: 100,
        mqtt_sys_interval: 0,
        ..ServerConfig::for_tests()
    })
    .await
}

/// GETs `path` until `done` holds for the body (counters are read live, but a message may
/// still be on its way between a client's call and the broker's count), and returns it.
async fn until(api: &Api, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    within(&format!("{path} to show the expected statistics"), async {
        loop {
            let answer = api.get(path).await;
            assert_eq!(answer.status, 200, "{path}: {:?}", answer.body);
            if done(&answer.body) {
                return answer.body;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// `obj[name]` is `count` and `obj[name_details].rate` a non-negative number.
fn counted(obj: &Value, name: &str, count: u64) -> bool {
    obj[name].as_u64() == Some(count) && rate(obj, name).is_some_and(|r| r >= 0.0)
}

/// The `rate` of `name_details`.
fn rate(obj: &Value, name: &str) -> Option<f64> {
    obj[format!("{name}_details")]["rate"].as_f64()
}

fn all_counted(obj: &Value, expected: &[(&str, u64)]) -> bool {
    expected.iter().all(|(name, n)| counted(obj, name, *n))
}

#[tokio::test]
async fn overview_counts_exactly_what_lapin_did() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let (_conn, channel) = lp::confirm_connection(&broker).await;
    let queue = unique("stats");
    lp::declare(&channel, &queue, lp::durable()).await;
    for i in 0..10 {
        lp::publish(&channel, "", &queue, format!("m{i}").as_bytes()).await;
    }
    // Two routed nowhere and dropped, one returned (mandatory).
    lp::publish(&channel, "amq.direct", "nowhere", b"dropped").await;
    lp::publish(&channel, "amq.direct", "nowhere", b"dropped").await;
    lp::publish_mandatory(
        &channel,
        "amq.direct",
        "nowhere",
        b"returned",
        BasicProperties::default(),
    )
    .await;
    // Four delivered to an acknowledging consumer (a prefetch of 4 holds the rest back),
    // which is cancelled before it acks them, so that nothing more is delivered.
    let consumer_channel = lp::open_channel(&_conn).await;
    consumer_channel
        .basic_qos(4, Default::default())
        .await
        .unwrap();
    let mut consumer = lp::consume_acked(&consumer_channel, &queue).await;
    let mut delivered = Vec::new();
    for _ in 0..4 {
        delivered.push(lp::next_delivery(&mut consumer).await);
    }
    within(
        "basic.cancel-ok",
        consumer_channel.basic_cancel(consumer.tag(), Default::default()),
    )
    .await
    .unwrap();
    for d in delivered {
        d.acker.ack(BasicAckOptions::default()).await.unwrap();
    }
    // Two taken by basic.get and acked, one with no_ack.
    for _ in 0..2 {
        let m = lp::get(&channel, &queue).await.unwrap();
        m.delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .unwrap();
    }
    let m = within(
        "basic.get no_ack",
        channel.basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap();
    assert!(m.is_some());
    // The queue still holds 3; one basic.get on an empty queue.
    let empty = unique("stats-empty");
    lp::declare(&channel, &empty, lp::durable()).await;
    assert!(lp::get(&channel, &empty).await.is_none());

    let overview = until(&api, "/api/overview", |o| {
        all_counted(
            &o["message_stats"],
            &[
                ("publish", 13),
                ("confirm", 13),
                ("drop_unroutable", 2),
                ("return_unroutable", 1),
                ("deliver", 4),
                ("deliver_no_ack", 0),
                ("get", 2),
                ("get_no_ack", 1),
                ("deliver_get", 7),
                ("ack", 6),
                ("redeliver", 0),
                ("get_empty", 1),
            ],
        )
    })
    .await;
    assert_eq!(overview["rates_mode"], "basic");
    let totals = &overview["queue_totals"];
    assert!(
        all_counted(
            totals,
            &[
                ("messages", 3),
                ("messages_ready", 3),
                ("messages_unacknowledged", 0)
            ]
        ),
        "{totals}"
    );
    let churn = &overview["churn_rates"];
    for name in [
        "connection_created",
        "connection_closed",
        "channel_created",
        "channel_closed",
        "queue_declared",
        "queue_created",
        "queue_deleted",
    ] {
        assert!(churn[name].as_u64().is_some(), "{name} in {churn}");
        assert!(rate(churn, name).is_some(), "{name}_details in {churn}");
    }
    assert!(churn["connection_created"].as_u64().unwrap() >= 1);
    assert!(churn["queue_created"].as_u64().unwrap() >= 1);
    assert!(churn["channel_created"].as_u64().unwrap() >= 2);
}

#[tokio::test]
async fn queues_exchanges_channels_and_vhosts_have_their_statistics() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let (conn, channel) = lp::confirm_connection(&broker).await;
    let exchange = lp::temp_exchange(&channel, lapin::ExchangeKind::Direct).await;
    let queue = unique("stats-q");
    lp::declare(&channel, &queue, lp::durable()).await;
    lp::bind(&channel, &queue, &exchange, "k", FieldTable::default()).await;
    for _ in 0..5 {
        lp::publish(&channel, &exchange, "k", b"routed").await;
    }
    lp::publish(&channel, &exchange, "other", b"unroutable").await;
    // All five to a consumer with no acknowledgement.
    let consumer_channel = lp::open_channel(&conn).await;
    let mut consumer = lp::consume(
        &consumer_channel,
        &queue,
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
    )
    .await;
    for _ in 0..5 {
        lp::next_delivery(&mut consumer).await;
    }

    let x = until(&api, &format!("/api/exchanges/%2F/{exchange}"), |x| {
        all_counted(
            &x["message_stats"],
            &[("publish_in", 6), ("publish_out", 5)],
        )
    })
    .await;
    assert_eq!(x["name"], exchange.as_str());

    let q = until(&api, &format!("/api/queues/%2F/{queue}"), |q| {
        all_counted(
            &q["message_stats"],
            &[
                ("publish", 5),
                ("deliver_no_ack", 5),
                ("deliver", 0),
                ("deliver_get", 5),
                ("get_empty", 0),
            ],
        )
    })
    .await;
    assert!(
        all_counted(&q, &[("messages", 0), ("messages_ready", 0)]),
        "{q}"
    );
    assert!(rate(&q, "messages_unacknowledged").is_some(), "{q}");

    // The same in the listing, and with a page.
    let listed = until(&api, "/api/queues", |list| {
        list.as_array()
            .and_then(|l| l.iter().find(|i| i["name"] == queue.as_str()))
            .is_some_and(|i| counted(&i["message_stats"], "publish", 5))
    })
    .await;
    assert!(!listed.as_array().unwrap().is_empty());
    let page = api
        .get(&format!("/api/queues/%2F?page=1&page_size=1&name={queue}"))
        .await;
    assert_eq!(page.status, 200);
    assert_eq!(page.body["filtered_count"], 1);
    assert!(counted(
        &page.body["items"][0]["message_stats"],
        "publish",
        5
    ));

    let channels = until(&api, "/api/channels", |list| {
        list.as_array().is_some_and(|l| {
            l.iter().any(|c| {
                all_counted(
                    &c["message_stats"],
                    &[
                        ("publish", 6),
                        ("confirm", 6),
                        ("drop_unroutable", 1),
                        ("return_unroutable", 0),
                    ],
                )
            })
        })
    })
    .await;
    assert!(channels.as_array().unwrap().iter().any(|c| {
        all_counted(
            &c["message_stats"],
            &[("deliver_no_ack", 5), ("deliver_get", 5), ("ack", 0)],
        )
    }));

    let connections = api.get("/api/connections").await.body;
    let c = &connections[0];
    assert!(c["recv_oct"].as_u64().unwrap() > 0, "{c}");
    assert!(rate(c, "recv_oct").is_some_and(|r| r >= 0.0), "{c}");
    assert!(rate(c, "send_oct").is_some_and(|r| r >= 0.0), "{c}");

    let vhost = until(&api, "/api/vhosts/%2F", |v| {
        v["message_stats"]["publish"].as_u64() == Some(6)
            && counted(&v["message_stats"], "deliver_no_ack", 5)
    })
    .await;
    assert!(rate(&vhost, "messages").is_some(), "{vhost}");
    assert!(
        rate(&vhost, "recv_oct").is_some_and(|r| r >= 0.0),
        "{vhost}"
    );
}

#[tokio::test]
async fn a_range_lists_samples_from_the_sampler() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let (_conn, channel) = lp::confirm_connection(&broker).await;
    let queue = unique("stats-range");
    lp::declare(&channel, &queue, lp::durable()).await;
    lp::publish(&channel, "", &queue, b"one").await;
    let path = "/api/overview?msg_rates_age=60&msg_rates_incr=1&lengths_age=60&lengths_incr=1";
    let o = until(&api, path, |o| {
        let d = &o["message_stats"]["publish_details"];
        d["samples"].as_array().is_some_and(|s| s.len() >= 2)
            && o["queue_totals"]["messages_details"]["samples"]
                .as_array()
                .is_some_and(|s| s.len() >= 2)
    })
    .await;
    let d = &o["message_stats"]["publish_details"];
    let first = &d["samples"][0];
    assert!(first["sample"].as_u64().is_some() && first["timestamp"].as_u64().is_some());
    assert!(d["avg_rate"].as_f64().is_some() && d["avg"].as_f64().is_some());
    let bad = api
        .get("/api/overview?msg_rates_age=x&msg_rates_incr=1")
        .await;
    assert_eq!(bad.status, 400);
    let q = until(
        &api,
        &format!("/api/queues/%2F/{queue}?lengths_age=60&lengths_incr=1"),
        |q| {
            q["messages_details"]["samples"]
                .as_array()
                .is_some_and(|s| s.len() >= 2)
        },
    )
    .await;
    assert_eq!(q["messages_details"]["samples"][0]["sample"], 1);
}

#[tokio::test]
async fn disable_stats_lists_queues_without_statistics() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let (_conn, channel) = lp::confirm_connection(&broker).await;
    let queue = unique("stats-off");
    lp::declare(&channel, &queue, lp::durable()).await;
    lp::publish(&channel, "", &queue, b"one").await;
    let find = |list: &Value| -> Value {
        list.as_array()
            .unwrap()
            .iter()
            .find(|q| q["name"] == queue.as_str())
            .cloned()
            .unwrap()
    };
    let q = find(
        &api.get("/api/queues?disable_stats=true&enable_queue_totals=true")
            .await
            .body,
    );
    assert_eq!(q["messages"], 1);
    assert_eq!(q["messages_ready"], 1);
    assert!(q.get("message_stats").is_none(), "{q}");
    assert!(q.get("messages_details").is_none(), "{q}");
    let q = find(&api.get("/api/queues/%2F?disable_stats=true").await.body);
    assert_eq!(q["durable"], true);
    assert!(q.get("messages").is_none(), "{q}");
    assert!(q.get("message_stats").is_none(), "{q}");
    let q = find(&api.get("/api/queues").await.body);
    assert!(counted(&q["message_stats"], "publish", 1), "{q}");
}

#[tokio::test]
async fn nodes_show_resources_with_rates() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let nodes = api.get("/api/nodes").await;
    assert_eq!(nodes.status, 200);
    let node = &nodes.body[0];
    for name in [
        "mem_used",
        "fd_used",
        "sockets_used",
        "proc_used",
        "disk_free",
    ] {
        assert!(node[name].as_u64().is_some(), "{name} in {node}");
        assert!(rate(node, name).is_some(), "{name}_details in {node}");
    }
    for name in [
        "mem_limit",
        "fd_total",
        "sockets_total",
        "proc_total",
        "disk_free_limit",
        "uptime",
        "run_queue",
        "processors",
    ] {
        assert!(node[name].as_u64().is_some(), "{name} in {node}");
    }
    assert!(node["mem_used"].as_u64().unwrap() > 0);
    assert!(node["fd_used"].as_u64().unwrap() > 0);
    assert!(rate(node, "connection_created").is_some(), "{node}");
    assert_eq!(node["mem_alarm"], false);
    assert_eq!(node["disk_free_alarm"], false);
    let name = node["name"].as_str().unwrap();
    let one = api.get(&format!("/api/nodes/{name}")).await;
    assert_eq!(one.status, 200);
    assert!(rate(&one.body, "mem_used").is_some());
}
