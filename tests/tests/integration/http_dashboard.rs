//! The web dashboard and Pigeon's own endpoints it needs: the app and its files are served
//! with their content types and caching headers (an unknown file is 404, `/api` is
//! untouched), the live log answers monitoring users only and carries the broker's log lines,
//! and moving messages between queues moves exactly the number asked, in order, losing none
//! (lapin publishes and counts; the API moves).

use lapin::options::{BasicGetOptions, BasicPublishOptions};
use lapin::{BasicProperties, Confirmation};
use pigeon_server::ServerConfig;
use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::{unique, within, DataDir, TestBroker};
use serde_json::json;

async fn broker() -> Option<TestBroker> {
    TestBroker::start_with(ServerConfig::for_tests()).await
}

/// A plain GET without credentials (the app and its files need none).
async fn fetch(api: &Api, path: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let response = within(
        "the dashboard's answer",
        reqwest::get(format!("{}{path}", api.base())),
    )
    .await
    .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn header<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    headers.get(name).map_or("", |v| v.to_str().unwrap())
}

#[tokio::test]
async fn the_app_and_its_files_are_served_with_their_content_types() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let (status, headers, index) = fetch(&api, "/").await;
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&headers, "cache-control"), "no-cache");
    assert!(header(&headers, "content-security-policy").contains("default-src 'self'"));
    assert!(index.contains("<script type=\"module\""));

    // Every file the page names, under the version it names.
    let urls: Vec<&str> = index
        .split('"')
        .filter(|s| s.starts_with("/assets/"))
        .collect();
    assert!(urls.iter().any(|u| u.ends_with(".css")), "{urls:?}");
    assert!(urls.iter().any(|u| u.ends_with(".js")), "{urls:?}");
    for url in &urls {
        let (status, headers, _) = fetch(&api, url).await;
        assert_eq!(status, 200, "{url}");
        let expected = match url.rsplit('.').next() {
            Some("css") => "text/css; charset=utf-8",
            Some("js") => "text/javascript; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected file {url} ({other:?})"),
        };
        assert_eq!(header(&headers, "content-type"), expected, "{url}");
        assert_eq!(
            header(&headers, "cache-control"),
            "public, max-age=31536000, immutable",
            "{url}"
        );
        assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    }
    // The modules the entry point imports are served beside it.
    let main = urls.iter().find(|u| u.ends_with("main.js")).unwrap();
    let base = main.trim_end_matches("main.js");
    let (status, headers, text) = fetch(&api, &format!("{base}pages/queues.js")).await;
    assert_eq!(status, 200);
    assert_eq!(
        header(&headers, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert!(text.contains("export"));

    // The app's pages answer the app (a reload or a shared link), ...
    for page in ["/queues", "/queues/%2F/orders", "/connections", "/log"] {
        let (status, headers, text) = fetch(&api, page).await;
        assert_eq!(status, 200, "{page}");
        assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
        assert_eq!(text, index);
    }
    // ... an unknown file or page does not, and the API is as it was.
    assert_eq!(fetch(&api, &format!("{base}nope.js")).await.0, 404);
    assert_eq!(fetch(&api, "/assets/x/../../etc/passwd").await.0, 404);
    assert_eq!(fetch(&api, "/no-such-page").await.0, 404);
    let missing = api.get("/api/no-such-endpoint").await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["error"], "Object Not Found");
    assert_eq!(api.get("/api/whoami").await.body["name"], broker.user());
}

/// Installs the live log's layer as this test binary's subscriber (once).
fn install_live_log() {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::filter::LevelFilter::INFO)
        .with(pigeon_server::livelog::layer())
        .try_init();
}

#[tokio::test]
async fn the_live_log_answers_monitoring_users_with_the_broker_s_lines() {
    install_live_log();
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let start = api.get("/api/pigeon/log").await;
    assert_eq!(start.status, 200);
    let since = start.body["last"].as_u64().unwrap();

    // A user without management tags is refused, and the broker logs it.
    let plain = unique("plain");
    let put = api
        .put(
            &format!("/api/users/{plain}"),
            json!({"password": "pw", "tags": ""}),
        )
        .await;
    assert_eq!(put.status, 201);
    assert_eq!(
        api.with_user(&plain, "pw")
            .get("/api/pigeon/log")
            .await
            .status,
        401
    );
    assert_eq!(
        api.with_user("nobody", "nothing")
            .get("/api/pigeon/log")
            .await
            .status,
        401
    );
    // A management user (not monitoring) is refused too: the log spans every vhost.
    let manager = unique("manager");
    api.put(
        &format!("/api/users/{manager}"),
        json!({"password": "pw", "tags": "management"}),
    )
    .await;
    let refused = api.with_user(&manager, "pw").get("/api/pigeon/log").await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body["reason"], "Not monitor user");

    let after = api.get(&format!("/api/pigeon/log?since={since}")).await;
    assert_eq!(after.status, 200);
    let lines = after.body["lines"].as_array().unwrap();
    let refusal = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .unwrap()
                .contains("not a management user")
        })
        .unwrap_or_else(|| panic!("the refusal is logged: {lines:?}"));
    assert_eq!(refusal["level"], "INFO");
    assert!(refusal["message"].as_str().unwrap().contains(&plain));
    assert!(refusal["seq"].as_u64().unwrap() > since);
    assert!(refusal["timestamp"].as_u64().unwrap() > 0);
    assert!(lines.iter().all(|l| l["seq"].as_u64().unwrap() > since));

    // Asking from the last line answers nothing already seen.
    let last = after.body["last"].as_u64().unwrap();
    let again = api.get(&format!("/api/pigeon/log?since={last}")).await;
    assert!(again.body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .all(|l| l["seq"].as_u64().unwrap() > last));
    assert_eq!(api.get("/api/pigeon/log?since=minus-one").await.status, 400);
}

/// Publishes `bodies` persistent, each confirmed.
async fn publish_confirmed(channel: &lapin::Channel, queue: &str, bodies: &[String]) {
    for body in bodies {
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await
            .unwrap();
        assert_eq!(
            within("the publisher confirm", confirm).await.unwrap(),
            Confirmation::Ack(None)
        );
    }
}

/// Every message left in `queue`, taken with basic.get (auto-ack) until it is empty.
async fn drain(channel: &lapin::Channel, queue: &str) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(m) = within(
        "basic.get",
        channel.basic_get(queue.into(), BasicGetOptions { no_ack: true }),
    )
    .await
    .unwrap()
    {
        out.push(lp::body(&m.delivery));
    }
    out
}

#[tokio::test]
async fn moving_messages_moves_exactly_the_number_asked_in_order() {
    // A data directory: persistent messages in durable queues go through the store's sync.
    let dir = DataDir::with(|_| {});
    let Some(broker) = dir.start().await else {
        return;
    };
    let api = Api::new(&broker);
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let (dlq, work) = (unique("dlq"), unique("work"));
    lp::declare(&channel, &dlq, lp::durable()).await;
    lp::declare(&channel, &work, lp::durable()).await;
    let bodies: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
    publish_confirmed(&channel, &dlq, &bodies).await;

    let moved = api
        .post(
            &format!("/api/pigeon/queues/%2F/{dlq}/move"),
            json!({"destination": work, "count": 4}),
        )
        .await;
    assert_eq!(moved.status, 200, "{:?}", moved.body);
    assert_eq!(moved.body, json!({"moved": 4, "stopped": null}));
    assert_eq!(lp::message_count(&channel, &dlq).await, 6);
    assert_eq!(lp::message_count(&channel, &work).await, 4);

    // Without a count: everything left.
    let rest = api
        .post(
            &format!("/api/pigeon/queues/%2F/{dlq}/move"),
            json!({"destination": work}),
        )
        .await;
    assert_eq!(rest.body, json!({"moved": 6, "stopped": null}));
    assert_eq!(lp::message_count(&channel, &dlq).await, 0);
    // Unacknowledged in neither queue: everything settled or delivered.
    let q = api.get(&format!("/api/queues/%2F/{dlq}")).await.body;
    assert_eq!(q["messages_unacknowledged"], 0);
    assert_eq!(drain(&channel, &work).await, bodies, "all ten, in order");

    // Bad requests change nothing.
    publish_confirmed(&channel, &dlq, &bodies[..1]).await;
    for (body, status) in [
        (json!({}), 400),
        (json!({"destination": dlq}), 400),
        (json!({"destination": unique("nowhere")}), 400),
        (json!({"destination": work, "count": -1}), 400),
    ] {
        let a = api
            .post(&format!("/api/pigeon/queues/%2F/{dlq}/move"), body.clone())
            .await;
        assert_eq!(a.status, status, "{body}: {:?}", a.body);
    }
    let missing = api
        .post(
            &format!("/api/pigeon/queues/%2F/{}/move", unique("none")),
            json!({"destination": work}),
        )
        .await;
    assert_eq!(missing.status, 404);
    assert_eq!(lp::message_count(&channel, &dlq).await, 1);
    assert_eq!(lp::message_count(&channel, &work).await, 0);
}
