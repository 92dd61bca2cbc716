//! The stream protocol's connections, publishers and consumers in the management API
//! (rabbitmq_stream_management's `/api/stream/connections`, `/api/stream/publishers`,
//! `/api/stream/consumers`), with the `rabbitmq-stream-client` crate publishing and
//! consuming, and a connection closed through `DELETE`.

use crate::stream_protocol_support;

use pigeon_tests::http_support::Api;
use pigeon_tests::{unique, within};
use rabbitmq_stream_client::types::{Message, OffsetSpecification};
use serde_json::{json, Value};
use std::path::Path;
use stream_protocol_support::{broker, consumer, env, new_stream, take};

fn pigeon() -> &'static Path {
    pigeon_tests::pigeon_bin()
}

/// `pigeon ctl -q --node <the broker's API> <args>` as guest: its standard output.
async fn ctl(broker: &pigeon_tests::TestBroker, args: &[&str]) -> String {
    let addr = broker
        .server()
        .and_then(|s| s.management_addr())
        .expect("the management listener");
    let url = format!("http://{addr}");
    let mut all = vec!["ctl", "-q", "--node", url.as_str()];
    all.extend_from_slice(args);
    let home = std::env::temp_dir();
    let out = within(
        "pigeon ctl",
        tokio::process::Command::new(pigeon())
            .args(&all)
            .env_remove("PIGEON_URL")
            .env_remove("PIGEON_USER")
            .env_remove("PIGEON_PASS")
            .env("HOME", home)
            .output(),
    )
    .await
    .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

fn encode(name: &str) -> String {
    name.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The rows of `list` about `stream`.
fn of_stream(list: &Value, stream: &str) -> Vec<Value> {
    list.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["queue"]["name"] == stream)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishers_and_consumers_are_listed_and_a_connection_closed() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let api = Api::new(&broker);
    let env = env(&broker).await;
    let stream = new_stream(&env).await;

    let mut producer = within(
        "DeclarePublisher",
        env.producer().name("ref-1").build(&stream),
    )
    .await
    .unwrap();
    for body in ["a", "b", "c"] {
        let status = within(
            "a PublishConfirm",
            producer.send_with_confirm(Message::builder().body(body.as_bytes().to_vec()).build()),
        )
        .await
        .unwrap();
        assert!(status.confirmed());
    }
    let mut consumer = consumer(&env, &stream, OffsetSpecification::First).await;
    assert_eq!(take(&mut consumer, 3).await.len(), 3);

    // Publishers: everywhere, by vhost, by stream.
    let all = of_stream(&api.get("/api/stream/publishers").await.body, &stream);
    assert_eq!(all.len(), 1, "{all:?}");
    let p = &all[0];
    assert_eq!(p["reference"], "ref-1");
    assert_eq!(p["stream"], stream.as_str());
    assert_eq!(p["queue"], json!({"name": stream, "vhost": "/"}));
    assert_eq!(p["published"], 3);
    assert_eq!(p["confirmed"], 3);
    assert_eq!(p["errored"], 0);
    assert!(p["publisher_id"].is_u64());
    assert_eq!(p["connection_details"]["user"], "guest");
    let publisher_conn = p["connection_details"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        api.get(&format!("/api/stream/publishers/%2F/{stream}"))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        of_stream(&api.get("/api/stream/publishers/%2F").await.body, &stream).len(),
        1
    );

    // Consumers: the three delivered, nothing left to read.
    let rows = of_stream(&api.get("/api/stream/consumers").await.body, &stream);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let c = &rows[0];
    assert_eq!(c["consumed"], 3, "{c}");
    assert_eq!(c["offset"], 3);
    assert_eq!(c["offset_lag"], 0);
    assert_eq!(c["active"], true);
    assert_eq!(c["activity_status"], "up");
    assert!(c["subscription_id"].is_u64());
    assert!(c["credits"].is_u64());
    assert!(c["properties"].is_object());
    let consumer_conn = c["connection_details"]["name"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        of_stream(&api.get("/api/stream/consumers/%2F").await.body, &stream).len(),
        1
    );

    // rabbitmq-streams' listings: default columns, then chosen ones.
    let out = ctl(&broker, &["list_stream_publishers"]).await;
    assert!(
        out.starts_with("connection_pid\tpublisher_id\tstream\treference\tmessages_published\tmessages_confirmed\tmessages_errored\n"),
        "{out}"
    );
    assert!(
        out.contains(&format!("\t{stream}\tref-1\t3\t3\t0\n")),
        "{out}"
    );
    let out = ctl(&broker, &["list_stream_consumers"]).await;
    assert!(
        out.starts_with("connection_pid\tsubscription_id\tstream\tmessages_consumed\toffset\toffset_lag\tcredits\tactive\tactivity_status\tproperties\n"),
        "{out}"
    );
    let out = ctl(
        &broker,
        &[
            "list_stream_consumers",
            "stream",
            "messages_consumed",
            "offset",
            "offset_lag",
            "active",
            "activity_status",
        ],
    )
    .await;
    assert!(
        out.contains(&format!("{stream}\t3\t3\t0\ttrue\tup\n")),
        "{out}"
    );
    let out = ctl(&broker, &["list_stream_connections"]).await;
    assert!(out.starts_with("conn_name\n"), "{out}");
    assert!(out.contains(&format!("{consumer_conn}\n")), "{out}");
    let out = ctl(
        &broker,
        &["list_stream_connections", "conn_name", "subscriptions"],
    )
    .await;
    assert!(out.contains(&format!("{consumer_conn}\t1\n")), "{out}");

    // Connections: only stream ones, each reachable by vhost and name.
    let conns = api.get("/api/stream/connections").await.body;
    let conns = conns.as_array().unwrap();
    assert!(conns.iter().all(|c| c["protocol"] == "stream"), "{conns:?}");
    for name in [&publisher_conn, &consumer_conn] {
        assert!(conns.iter().any(|c| c["name"] == name.as_str()), "{name}");
    }
    assert_eq!(
        api.get("/api/stream/connections/%2F")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        conns.len()
    );
    let path = format!("/api/stream/connections/%2F/{}", encode(&consumer_conn));
    let one = api.get(&path).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["user"], "guest");
    assert_eq!(one.body["vhost"], "/");
    let theirs = api.get(&format!("{path}/consumers")).await.body;
    assert_eq!(of_stream(&theirs, &stream).len(), 1, "{theirs}");
    let publishers_path = format!(
        "/api/stream/connections/%2F/{}/publishers",
        encode(&publisher_conn)
    );
    assert_eq!(
        of_stream(&api.get(&publishers_path).await.body, &stream).len(),
        1
    );
    assert_eq!(
        api.get("/api/stream/connections/%2F/nope").await.status,
        404
    );

    // A management user without permissions sees none of it and closes nothing.
    let user = unique("m");
    api.put(
        &format!("/api/users/{user}"),
        json!({"password": "pw", "tags": "management"}),
    )
    .await;
    let other = api.with_user(&user, "pw");
    assert_eq!(other.get("/api/stream/connections").await.body, json!([]));
    assert_eq!(other.get("/api/stream/publishers").await.body, json!([]));
    assert_eq!(other.get("/api/stream/consumers").await.body, json!([]));
    assert_ne!(other.delete(&path).await.status, 204);

    // Closing the consumer's connection: it leaves the lists.
    assert_eq!(api.delete(&path).await.status, 204);
    within("the connection to leave the list", async {
        while api.get(&path).await.status != 404 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    let rows = of_stream(&api.get("/api/stream/consumers").await.body, &stream);
    assert_eq!(rows, Vec::<Value>::new());
    // The publisher is untouched.
    assert_eq!(
        of_stream(&api.get("/api/stream/publishers").await.body, &stream).len(),
        1
    );
    within("the producer's close", producer.close())
        .await
        .unwrap();
    drop(consumer);
}

/// `DELETE /api/connections/{name}` of a stream connection answers once the connection is
/// gone, and the client sees its socket closed with no `Close` frame, as
/// rabbit_stream_reader's `{shutdown, Reason}` call does (rabbitmq-stream-js-client's suite
/// closes every connection after each test and then counts them: its "connect declaring
/// connection name" test found it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_connection_closed_through_the_api_is_gone_when_the_delete_answers() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let api = Api::new(&broker);
    let mut raw = stream_protocol_support::Raw::open(broker.stream_addr().unwrap()).await;
    let port = raw.local.port();
    let conns = api.get("/api/stream/connections").await.body;
    let name = conns
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["peer_port"] == port)
        .and_then(|c| c["name"].as_str())
        .expect("the raw connection is listed")
        .to_string();
    assert_eq!(
        api.delete(&format!("/api/connections/{}", encode(&name)))
            .await
            .status,
        204
    );
    let all = api.get("/api/connections").await.body;
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != name.as_str()),
        "{all}"
    );
    assert!(raw.until_closed().await.is_empty());
}

/// A path with a trailing slash is the path without it, as cowboy routes RabbitMQ's API
/// (rabbitmq-stream-js-client's "declaring a consumer on an existing stream with identifiers"
/// asks for `/api/stream/consumers/%2F/`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trailing_slash_is_ignored() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let api = Api::new(&broker);
    let env = env(&broker).await;
    let stream = new_stream(&env).await;
    let consumer = consumer(&env, &stream, OffsetSpecification::First).await;
    let with = api.get("/api/stream/consumers/%2F/").await;
    assert_eq!(with.status, 200);
    assert_eq!(of_stream(&with.body, &stream).len(), 1, "{}", with.body);
    assert_eq!(api.get("/api/overview/").await.status, 200);
    assert_eq!(api.get("/api/queues/%2F/?name=x").await.status, 200);
    // One slash only, as cowboy drops one empty last segment.
    assert_eq!(api.get("/api/overview//").await.status, 404);
    drop(consumer);
}
