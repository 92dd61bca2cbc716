//! Connections, channels and consumers through the management HTTP API: a lapin connection
//! with a channel and a consumer is listed with RabbitMQ's fields, other management users do
//! not see it, and DELETE closes it (320 CONNECTION_FORCED with the `X-Reason` text).

use lapin::options::BasicConsumeOptions;
use pigeon_server::ServerConfig;
use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::{unique, within, TestBroker};
use serde_json::json;

/// 320: the broker closed the connection (AMQP 0-9-1 `connection-forced`).
const CONNECTION_FORCED: u16 = 320;

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

#[tokio::test]
async fn a_lapin_connection_is_listed_and_closed_through_the_api() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let api = Api::new(&broker);
    let (conn, channel) = lp::connect_channel(&broker).await;
    let queue = unique("cq");
    lp::declare(&channel, &queue, Default::default()).await;
    let mut consumer = lp::consume(&channel, &queue, BasicConsumeOptions::default()).await;

    let all = api.get("/api/connections").await.body;
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    let c = &all[0];
    assert_eq!(c["user"], "guest");
    assert_eq!(c["vhost"], "/");
    assert_eq!(c["protocol"], "AMQP 0-9-1");
    assert_eq!(c["channels"], 1);
    assert_eq!(c["ssl"], false);
    assert_eq!(c["port"], broker.addr().port());
    assert!(c["client_properties"].is_object());
    let name = c["name"].as_str().unwrap().to_string();
    let path = format!("/api/connections/{}", encode(&name));
    assert_eq!(api.get(&path).await.body["name"], name.as_str());
    assert_eq!(
        api.get("/api/vhosts/%2F/connections")
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let channels = api.get("/api/channels").await.body;
    assert_eq!(channels[0]["consumer_count"], 1);
    assert_eq!(channels[0]["connection_details"]["name"], name.as_str());
    assert_eq!(
        api.get(&format!("{path}/channels"))
            .await
            .body
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let consumers = api.get("/api/consumers/%2F").await.body;
    assert_eq!(consumers[0]["queue"], json!({"name": queue, "vhost": "/"}));
    assert_eq!(consumers[0]["ack_required"], true);
    let overview = api.get("/api/overview").await.body;
    assert_eq!(overview["object_totals"]["connections"], 1);
    assert_eq!(overview["object_totals"]["channels"], 1);

    // Another management user sees none of guest's connections and cannot close them.
    let user = unique("m");
    api.put(
        &format!("/api/users/{user}"),
        json!({"password": "pw", "tags": "management"}),
    )
    .await;
    let other = api.with_user(&user, "pw");
    assert_eq!(other.get("/api/connections").await.body, json!([]));
    assert_eq!(other.delete(&path).await.status, 404);

    let closed = api.delete(&path).await;
    assert_eq!(closed.status, 204);
    let error = lp::consumer_error(&mut consumer).await;
    assert_eq!(lp::reply_code(&error), Some(CONNECTION_FORCED));
    // The connection leaves the registry when its task ends, after the close handshake.
    within("the connection to leave the list", async {
        while api.get(&path).await.status != 404 {
            tokio::task::yield_now().await;
        }
    })
    .await;
    drop(conn);
}
