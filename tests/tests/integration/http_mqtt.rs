//! Pigeon's MQTT endpoints of the management API (`/api/mqtt/...`; RabbitMQ has none): the
//! sessions (connected or not, their subscriptions with QoS, queued and in-flight messages),
//! disconnecting a client and discarding its session, the retained messages (listed with a
//! truncated preview, shown whole, deleted), their `name` filter, and who may see and do what. Real MQTT clients
//! (rumqttc, 3.1.1 and 5.0) and a real HTTP client (reqwest) against the real broker.

use base64::Engine;
use pigeon_server::ServerConfig;
use pigeon_tests::http_support::{Answer, Api};
use pigeon_tests::mqtt_support::{Mqtt4, Mqtt5};
use pigeon_tests::{unique, within, TestBroker};
use rumqttc::v5;
use rumqttc::v5::mqttbytes::QoS as QoS5;
use serde_json::{json, Value};
use std::time::Duration;

async fn broker() -> Option<TestBroker> {
    TestBroker::start_with(ServerConfig::for_tests()).await
}

fn mqtt_port(broker: &TestBroker) -> u16 {
    broker.server().unwrap().mqtt_addr().unwrap().port()
}

/// GETs `path` until `ready` holds for the answer (the broker updates sessions and retained
/// messages as it handles the clients' packets, which the clients do not wait for).
async fn until(api: &Api, path: &str, ready: impl Fn(&Answer) -> bool) -> Answer {
    within(&format!("GET {path} to answer as expected"), async {
        loop {
            let a = api.get(path).await;
            if ready(&a) {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

fn find<'a>(list: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|s| s[key] == value)
}

fn persistent5(port: u16, client_id: &str) -> v5::MqttOptions {
    let mut options = v5::MqttOptions::new(client_id, "127.0.0.1", port);
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(300));
    options
}

#[tokio::test]
async fn sessions_are_listed_with_their_subscriptions_and_state() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let port = mqtt_port(&broker);
    let v5_id = unique("api-v5");
    let v4_id = unique("api-v4");
    let mut m5 = Mqtt5::connect(persistent5(port, &v5_id)).await;
    m5.subscribe("sensors/+/temp", QoS5::AtLeastOnce).await;
    m5.subscribe("alerts/#", QoS5::ExactlyOnce).await;
    let mut m4 = Mqtt4::connect(rumqttc::MqttOptions::new(&v4_id, "127.0.0.1", port)).await;
    m4.subscribe("t/1", rumqttc::QoS::AtMostOnce).await;

    let a = api.get("/api/mqtt/sessions").await;
    assert_eq!(a.status, 200);
    let s5 = find(&a.body, "client_id", &v5_id).unwrap();
    assert_eq!(s5["vhost"], "/");
    assert_eq!(s5["connected"], true);
    assert_eq!(s5["user"], "guest");
    assert_eq!(s5["protocol_version"], 5);
    assert_eq!(s5["clean_session"], false);
    assert_eq!(s5["session_expiry_interval"], 300);
    let filters: Vec<(Value, Value)> = s5["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["topic_filter"].clone(), s["qos"].clone()))
        .collect();
    assert_eq!(
        filters,
        vec![
            (json!("sensors/+/temp"), json!(1)),
            (json!("alerts/#"), json!(2))
        ]
    );
    let s4 = find(&a.body, "client_id", &v4_id).unwrap();
    assert_eq!(s4["protocol_version"], 4);
    assert_eq!(s4["clean_session"], true);
    assert_eq!(s4["session_expiry_interval"], 0);
    assert_eq!(s4["subscriptions"][0]["topic_filter"], "t/1");
    assert_eq!(s4["subscriptions"][0]["qos"], 0);
    // Per vhost, and one by one.
    let a = api.get("/api/mqtt/sessions/%2F").await;
    assert!(find(&a.body, "client_id", &v4_id).is_some());
    let detail = api.get(&format!("/api/mqtt/sessions/%2F/{v5_id}")).await;
    assert_eq!(detail.status, 200);
    assert_eq!(detail.body["client_id"], v5_id.as_str());
    assert!(detail.body["connection"].as_str().unwrap().contains("->"));

    // Offline, the session stays (expiry 300 s) and queues what its subscriptions match.
    m5.disconnect().await;
    let path = format!("/api/mqtt/sessions/%2F/{v5_id}");
    until(&api, &path, |a| a.body["connected"] == false).await;
    m4.publish("sensors/1/temp", rumqttc::QoS::AtLeastOnce, false, b"20")
        .await;
    let offline = until(&api, &path, |a| a.body["messages"] == 1).await;
    assert_eq!(offline.body["user"], Value::Null);
    assert_eq!(offline.body["protocol_version"], Value::Null);
    assert_eq!(offline.body["subscriptions"].as_array().unwrap().len(), 2);

    assert_eq!(api.get("/api/mqtt/sessions/%2F/nobody").await.status, 404);
    assert_eq!(api.get("/api/mqtt/sessions/nowhere").await.status, 404);
    m4.disconnect().await;
}

#[tokio::test]
async fn deleting_a_session_disconnects_its_client_with_0x98_and_discards_it() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let port = mqtt_port(&broker);
    let id = unique("doomed");
    let mut m5 = Mqtt5::connect(persistent5(port, &id)).await;
    m5.subscribe("doomed/#", QoS5::AtLeastOnce).await;
    let path = format!("/api/mqtt/sessions/%2F/{id}");
    assert_eq!(api.get(&path).await.body["connected"], true);

    let a = api.delete(&path).await;
    assert_eq!(a.status, 204);
    assert_eq!(
        m5.next_disconnect().await,
        v5::mqttbytes::v5::DisconnectReasonCode::AdministrativeAction
    );
    assert_eq!(api.get(&path).await.status, 404);
    assert_eq!(api.delete(&path).await.status, 404);
    // Discarded: the client comes back to no session.
    let back = Mqtt5::connect(persistent5(port, &id)).await;
    assert!(!back.session_present());
    back.disconnect().await;
    // An offline session is discarded the same way.
    let a = until(&api, &path, |a| a.body["connected"] == false).await;
    assert_eq!(a.status, 200);
    assert_eq!(api.delete(&path).await.status, 204);
    assert_eq!(api.get(&path).await.status, 404);
}

#[tokio::test]
async fn retained_messages_are_listed_shown_and_deleted() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let port = mqtt_port(&broker);
    let topic = format!("{}/kitchen/temp", unique("home"));
    let blob_topic = format!("{}/blob", unique("big"));
    let mut m4 = Mqtt4::connect(rumqttc::MqttOptions::new(unique("pub"), "127.0.0.1", port)).await;
    m4.publish(&topic, rumqttc::QoS::AtLeastOnce, true, b"21.5")
        .await;
    let blob: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    m4.publish(&blob_topic, rumqttc::QoS::AtLeastOnce, true, &blob)
        .await;

    let list = until(&api, "/api/mqtt/retained/%2F", |a| {
        find(&a.body, "topic", &blob_topic).is_some()
    })
    .await;
    let b64 = base64::engine::general_purpose::STANDARD;
    let kitchen = find(&list.body, "topic", &topic).unwrap();
    assert_eq!(kitchen["qos"], 1);
    assert_eq!(kitchen["vhost"], "/");
    assert_eq!(kitchen["payload_bytes"], 4);
    assert_eq!(kitchen["payload_encoding"], "base64");
    assert_eq!(kitchen["payload"], b64.encode(b"21.5"));
    assert_eq!(kitchen["payload_truncated"], false);
    let big = find(&list.body, "topic", &blob_topic).unwrap();
    assert_eq!(big["payload_bytes"], 1000);
    assert_eq!(big["payload_truncated"], true);
    let preview = b64.decode(big["payload"].as_str().unwrap()).unwrap();
    assert_eq!(preview[..], blob[..128]);
    assert!(find(&api.get("/api/mqtt/retained").await.body, "topic", &topic).is_some());

    // One message, its topic URL-encoded or not, whole unless truncated.
    let encoded = topic.replace('/', "%2F");
    let one = api.get(&format!("/api/mqtt/retained/%2F/{encoded}")).await;
    assert_eq!(one.status, 200);
    assert_eq!(one.body["topic"], topic.as_str());
    let whole = api
        .get(&format!("/api/mqtt/retained/%2F/{blob_topic}"))
        .await;
    assert_eq!(
        b64.decode(whole.body["payload"].as_str().unwrap()).unwrap(),
        blob
    );
    let cut = api
        .get(&format!("/api/mqtt/retained/%2F/{blob_topic}?truncate=10"))
        .await;
    assert_eq!(
        b64.decode(cut.body["payload"].as_str().unwrap()).unwrap(),
        blob[..10]
    );
    assert_eq!(
        api.get("/api/mqtt/retained/%2F/no%2Fsuch").await.status,
        404
    );

    // Deleted: a new subscriber gets the next live message first, no retained one.
    let path = format!("/api/mqtt/retained/%2F/{encoded}");
    assert_eq!(api.delete(&path).await.status, 204);
    assert_eq!(api.get(&path).await.status, 404);
    assert_eq!(api.delete(&path).await.status, 404);
    let mut sub = Mqtt4::connect(rumqttc::MqttOptions::new(unique("sub"), "127.0.0.1", port)).await;
    sub.subscribe(&topic, rumqttc::QoS::AtLeastOnce).await;
    m4.publish(&topic, rumqttc::QoS::AtLeastOnce, false, b"live")
        .await;
    let first = sub.next_publish().await;
    assert_eq!(&first.payload[..], b"live");
    assert!(!first.retain);
    sub.disconnect().await;
    m4.disconnect().await;
}

/// The names (client ids, topics) of a listing's items, in order.
fn names(list: &Value) -> Vec<String> {
    let items = list.get("items").unwrap_or(list);
    items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_string())
        .collect()
}

/// Each session and retained message has a `name` (its client id, its topic), so that the
/// lists take RabbitMQ's `name` / `use_regex` filter and paging as its own lists do.
#[tokio::test]
async fn sessions_and_retained_messages_filter_by_name() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let port = mqtt_port(&broker);
    let tag = unique("filter");
    let (north, south) = (format!("{tag}-north"), format!("{tag}-south"));
    let mut clients = Vec::new();
    for id in [&north, &south] {
        clients.push(Mqtt4::connect(rumqttc::MqttOptions::new(id, "127.0.0.1", port)).await);
    }
    let everyone = until(&api, "/api/mqtt/sessions", |a| {
        find(&a.body, "client_id", &south).is_some()
    })
    .await;
    assert_eq!(
        find(&everyone.body, "client_id", &north).unwrap()["name"],
        north.as_str()
    );

    // A substring, case-insensitive; a regex with use_regex=true; paged with a total.
    let upper = north.to_uppercase();
    let a = api.get(&format!("/api/mqtt/sessions?name={upper}")).await;
    assert_eq!(names(&a.body), [north.as_str()]);
    // ^{tag}-(north|south)$, URL-encoded.
    let regex = format!("%5E{tag}-%28north%7Csouth%29%24");
    let a = api
        .get(&format!(
            "/api/mqtt/sessions/%2F?name={regex}&use_regex=true&page=1&page_size=1"
        ))
        .await;
    assert_eq!(a.status, 200);
    assert_eq!(names(&a.body), [north.as_str()]);
    assert_eq!(a.body["filtered_count"], 2);

    let (kitchen, garage) = (format!("{tag}/kitchen"), format!("{tag}/garage"));
    for topic in [&kitchen, &garage] {
        clients[0]
            .publish(topic, rumqttc::QoS::AtLeastOnce, true, b"on")
            .await;
    }
    let path = format!("/api/mqtt/retained?name={tag}%2F");
    let both = until(&api, &path, |a| names(&a.body).len() == 2).await;
    assert_eq!(
        names(&both.body),
        [garage.as_str(), kitchen.as_str()],
        "sorted by name"
    );
    let a = api
        .get("/api/mqtt/retained/%2F?name=kitchen%24&use_regex=true")
        .await;
    assert_eq!(names(&a.body), [kitchen.as_str()]);
    assert_eq!(
        api.get("/api/mqtt/retained?name=nothing-like-it")
            .await
            .body,
        json!([])
    );
    for client in clients {
        client.disconnect().await;
    }
}

#[tokio::test]
async fn monitoring_users_see_everything_read_only_and_management_users_their_vhosts() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let port = mqtt_port(&broker);
    let id = unique("watched");
    let mut m5 = Mqtt5::connect(persistent5(port, &id)).await;
    m5.subscribe("watched/#", QoS5::AtMostOnce).await;
    let topic = unique("kept");
    m5.publish(&topic, QoS5::AtLeastOnce, true, b"x").await;
    let retained = format!("/api/mqtt/retained/%2F/{topic}");
    until(&api, &retained, |a| a.status == 200).await;

    for (user, tags) in [("mon", "monitoring"), ("mgmt", "management")] {
        let put = api
            .put(
                &format!("/api/users/{user}"),
                json!({"password": "pw", "tags": tags}),
            )
            .await;
        assert_eq!(put.status, 201);
    }
    let session = format!("/api/mqtt/sessions/%2F/{id}");
    let monitor = api.with_user("mon", "pw");
    assert!(find(
        &monitor.get("/api/mqtt/sessions").await.body,
        "client_id",
        &id
    )
    .is_some());
    assert_eq!(monitor.get(&session).await.status, 200);
    assert_eq!(monitor.get(&retained).await.status, 200);
    assert_eq!(monitor.delete(&session).await.status, 401);
    assert_eq!(monitor.delete(&retained).await.status, 401);
    // No permissions in `/`: nothing of it is visible.
    let manager = api.with_user("mgmt", "pw");
    assert_eq!(manager.get("/api/mqtt/sessions").await.body, json!([]));
    assert_eq!(manager.get("/api/mqtt/retained").await.body, json!([]));
    assert_eq!(manager.get("/api/mqtt/sessions/%2F").await.status, 401);
    assert_eq!(manager.delete(&retained).await.status, 401);
    // Nothing changed.
    assert_eq!(api.get(&session).await.body["connected"], true);
    assert_eq!(api.get(&retained).await.status, 200);
    m5.disconnect().await;
}
