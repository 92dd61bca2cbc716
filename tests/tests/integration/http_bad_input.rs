//! Bad input to the management API gets RabbitMQ's answers and changes nothing: malformed
//! JSON (400 `not_json`), wrong types (400), fields RabbitMQ ignores (ignored) and values it
//! refuses (400), bodies over the 20 MB limit (400 "Exceeded HTTP request body size limit",
//! as `rabbit_mgmt_util:read_complete_body`), paths that try to climb out (404), missing or
//! wrong credentials (401 with `WWW-Authenticate: Basic realm="RabbitMQ Management"`), verbs
//! an endpoint does not have (405). After each batch, the definitions export and the queues'
//! contents are what they were. A real HTTP client (reqwest), and raw sockets where reqwest
//! would clean the request up (`..` in a path).

use pigeon_server::ServerConfig;
use pigeon_tests::http_support::{Answer, Api};
use pigeon_tests::{unique, within, TestBroker};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn broker() -> Option<TestBroker> {
    TestBroker::start_with(ServerConfig::for_tests()).await
}

/// Everything the API can tell about the broker's state: the definitions and each queue's
/// message count.
async fn state(api: &Api) -> Value {
    let definitions = api.get("/api/definitions").await;
    assert_eq!(definitions.status, 200);
    let queues = api.get("/api/queues?columns=vhost,name,messages").await;
    json!({"definitions": definitions.body, "queues": queues.body})
}

fn assert_bad_request(a: &Answer, what: &str) {
    assert_eq!(a.status, 400, "{what}: {:?}", a.body);
    assert_eq!(a.body["error"], "bad_request", "{what}: {:?}", a.body);
}

/// A test vhost with a queue holding one message, an exchange and a binding, as a baseline
/// for "nothing changed".
async fn fixture(api: &Api) -> (String, String) {
    let vhost = unique("bad-input");
    let v = vhost.replace('/', "%2F");
    assert_eq!(
        api.put(&format!("/api/vhosts/{v}"), json!({})).await.status,
        201
    );
    let perms = json!({"configure": ".*", "write": ".*", "read": ".*"});
    assert_eq!(
        api.put(&format!("/api/permissions/{v}/guest"), perms)
            .await
            .status,
        201
    );
    let queue = "kept".to_string();
    assert_eq!(
        api.put(
            &format!("/api/queues/{v}/{queue}"),
            json!({"durable": true})
        )
        .await
        .status,
        201
    );
    let published = api
        .post(
            &format!("/api/exchanges/{v}/amq.default/publish"),
            json!({"properties": {}, "routing_key": queue, "payload": "one", "payload_encoding": "string"}),
        )
        .await;
    assert_eq!(published.body, json!({"routed": true}));
    (v, queue)
}

#[tokio::test]
async fn malformed_json_and_wrong_types_get_400_and_change_nothing() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let (v, queue) = fixture(&api).await;
    let before = state(&api).await;
    let fresh = format!("/api/queues/{v}/fresh");

    // Malformed JSON: RabbitMQ's reason is `not_json`.
    for body in [
        &b"{not json"[..],
        b"{\"durable\": tru",
        b"[1, 2]",
        b"42",
        b"\xff\xfe",
    ] {
        let a = api.raw("PUT", &fresh, Some(body.to_vec())).await;
        assert_bad_request(&a, &String::from_utf8_lossy(body));
        assert_eq!(a.body["reason"], "not_json", "{:?}", a.body);
    }
    // A JSON string that holds JSON (encoded twice).
    let twice = api
        .raw("PUT", &fresh, Some(br#""{\"durable\":true}""#.to_vec()))
        .await;
    assert_bad_request(&twice, "doubly encoded");

    // Wrong types.
    for (path, body) in [
        (fresh.clone(), json!({"durable": "yes"})),
        (fresh.clone(), json!({"auto_delete": 1})),
        (fresh.clone(), json!({"arguments": ["x-max-length", 1]})),
        (fresh.clone(), json!({"arguments": {"x-max-length": "ten"}})),
        (fresh.clone(), json!({"arguments": {"x-message-ttl": -5}})),
        (
            fresh.clone(),
            json!({"arguments": {"x-queue-type": "bananas"}}),
        ),
        (format!("/api/exchanges/{v}/fresh-x"), json!({"type": 5})),
        (
            format!("/api/exchanges/{v}/fresh-x"),
            json!({"type": "bananas"}),
        ),
        (
            format!("/api/exchanges/{v}/fresh-x"),
            json!({"type": "direct", "durable": "very"}),
        ),
        (
            format!("/api/vhosts/{}", unique("v")),
            json!({"description": 5}),
        ),
        (
            format!("/api/vhosts/{}", unique("v")),
            json!({"tracing": "on"}),
        ),
        (
            format!("/api/users/{}", unique("u")),
            json!({"password": 5}),
        ),
        (
            format!("/api/users/{}", unique("u")),
            json!({"password": "p", "tags": 7}),
        ),
        (
            format!("/api/users/{}", unique("u")),
            json!({"password": "p", "password_hash": "x", "tags": ""}),
        ),
        (
            format!("/api/permissions/{v}/guest"),
            json!({"configure": 5, "write": ".*", "read": ".*"}),
        ),
        (
            format!("/api/permissions/{v}/guest"),
            json!({"configure": "(", "write": ".*", "read": ".*"}),
        ),
        (
            format!("/api/vhost-limits/{v}/max-queues"),
            json!({"value": "ten"}),
        ),
        (
            format!("/api/vhost-limits/{v}/max-bananas"),
            json!({"value": 1}),
        ),
        ("/api/cluster-name".to_string(), json!({"name": 5})),
    ] {
        let a = api.put(&path, body.clone()).await;
        assert_bad_request(&a, &format!("PUT {path} {body}"));
    }
    for (path, body) in [
        (
            format!("/api/exchanges/{v}/amq.default/publish"),
            json!({"properties": "none", "routing_key": queue, "payload": "x", "payload_encoding": "string"}),
        ),
        (
            format!("/api/exchanges/{v}/amq.default/publish"),
            json!({"properties": {}, "routing_key": queue, "payload": "x", "payload_encoding": "base65"}),
        ),
        (
            format!("/api/exchanges/{v}/amq.default/publish"),
            json!({"properties": {"delivery_mode": "often"}, "routing_key": queue, "payload": "x", "payload_encoding": "string"}),
        ),
        (
            format!("/api/queues/{v}/{queue}/get"),
            json!({"count": "lots", "ackmode": "ack_requeue_true", "encoding": "auto"}),
        ),
        (
            format!("/api/queues/{v}/{queue}/get"),
            json!({"count": 1, "ackmode": "eat_it", "encoding": "auto"}),
        ),
        (
            format!("/api/queues/{v}/{queue}/get"),
            json!({"count": 1, "ackmode": "ack_requeue_false", "encoding": "rot13"}),
        ),
        (
            format!("/api/bindings/{v}/e/amq.direct/q/{queue}"),
            json!({"routing_key": 5}),
        ),
        (
            "/api/definitions".to_string(),
            json!({"queues": "all of them"}),
        ),
        (
            "/api/definitions".to_string(),
            json!({"vhosts": [{"name": 5}]}),
        ),
        (
            "/api/users/bulk-delete".to_string(),
            json!({"users": "everyone"}),
        ),
    ] {
        let a = api.post(&path, body.clone()).await;
        assert_bad_request(&a, &format!("POST {path} {body}"));
    }
    assert_eq!(state(&api).await, before);
}

#[tokio::test]
async fn unknown_fields_are_ignored_as_rabbitmq_ignores_them() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let (v, _) = fixture(&api).await;
    // RabbitMQ keeps only the keys it knows (`rabbit_mgmt_util:decode/2`): a typo is not an
    // error, the field just has no effect.
    let a = api
        .put(
            &format!("/api/queues/{v}/typo"),
            json!({"durable": true, "durabel": false, "exclusive_consumer": 1}),
        )
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let q = api.get(&format!("/api/queues/{v}/typo")).await;
    assert_eq!(q.body["durable"], true);
    assert!(q.body.get("durabel").is_none());
}

#[tokio::test]
async fn a_body_over_20_mb_gets_400_and_changes_nothing() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let (v, queue) = fixture(&api).await;
    let before = state(&api).await;
    // Valid JSON, just too large: a definitions import with 21 MB of description.
    let huge = json!({"vhosts": [{"name": unique("huge"), "description": "x".repeat(21_000_000)}]});
    let a = api
        .raw(
            "POST",
            "/api/definitions",
            Some(huge.to_string().into_bytes()),
        )
        .await;
    assert_eq!(
        (a.status, a.body),
        (
            400,
            json!({"error": "bad_request", "reason": "Exceeded HTTP request body size limit"})
        )
    );
    let a = api
        .raw(
            "POST",
            &format!("/api/exchanges/{v}/amq.default/publish"),
            Some(vec![b' '; 20_000_001]),
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["reason"], "Exceeded HTTP request body size limit");
    // Without credentials, the size does not matter: 401 first.
    let a = api
        .with_user("guest", "wrong")
        .raw(
            "PUT",
            &format!("/api/queues/{v}/{queue}"),
            Some(vec![b' '; 21_000_000]),
        )
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(state(&api).await, before);
}

/// Sends `request` as it is on a raw socket to the management listener; the status and the
/// body of the answer.
async fn raw_http(broker: &TestBroker, request: &str) -> (u16, String) {
    let addr = broker.server().unwrap().management_addr().unwrap();
    let mut socket = tokio::net::TcpStream::connect(addr).await.unwrap();
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    within("the answer", socket.read_to_end(&mut answer))
        .await
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, answer)
}

#[tokio::test]
async fn paths_that_climb_out_find_nothing() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let (v, queue) = fixture(&api).await;
    let before = state(&api).await;
    for path in [
        "/api/queues/%2F/..%2F..".to_string(),
        "/api/queues/%2F/..%2F..%2Fusers".to_string(),
        format!("/api/queues/{v}/..%2F{queue}"),
        "/api/vhosts/..%2F..%2F..%2Fetc%2Fpasswd".to_string(),
        "/api/definitions/..%2F..%2Fetc%2Fpasswd".to_string(),
    ] {
        let a = api.get(&path).await;
        assert_eq!(a.status, 404, "{path}: {:?}", a.body);
        assert_eq!(a.body["error"], "Object Not Found", "{path}");
    }
    // A DELETE that climbs out deletes nothing.
    assert_eq!(
        api.delete(&format!("/api/queues/{v}/..%2F{queue}"))
            .await
            .status,
        404
    );
    // `..` left in the request line (reqwest would resolve it first: `/api/exchanges/%2F/%2E%2E`
    // would reach the server as `/api/exchanges/`, the list, as RabbitMQ ignores the slash).
    let auth = "Authorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\n"; // guest:guest
    for target in [
        "/api/../etc/passwd",
        "/api/../../../../etc/passwd",
        "/api/%2e%2e/%2e%2e/etc/passwd",
        "/../../etc/passwd",
        "/api/queues/../users",
        "/api/exchanges/%2F/%2E%2E",
    ] {
        let (status, answer) = raw_http(
            &broker,
            &format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"),
        )
        .await;
        assert!(
            status == 404 || status == 400,
            "{target}: {status}\n{answer}"
        );
        assert!(!answer.contains("root:"), "{target} served a file");
    }
    assert_eq!(state(&api).await, before);
}

#[tokio::test]
async fn missing_or_wrong_credentials_get_401_with_the_basic_challenge() {
    // Without the limiter of failed logins per address, which would otherwise refuse this
    // test's own good logins after its bad ones.
    let config = ServerConfig {
        login_failure_burst: 0,
        ..ServerConfig::for_tests()
    };
    let Some(broker) = TestBroker::start_with(config).await else {
        return;
    };
    let api = Api::new(&broker);
    let (v, queue) = fixture(&api).await;
    let before = state(&api).await;
    let challenge = "Basic realm=\"RabbitMQ Management\"";
    let anonymous = reqwest::Client::new();
    for (method, path) in [
        ("GET", "/api/overview".to_string()),
        ("GET", "/api/queues".to_string()),
        ("PUT", format!("/api/queues/{v}/stolen")),
        ("DELETE", format!("/api/queues/{v}/{queue}")),
        ("DELETE", format!("/api/vhosts/{v}")),
        ("POST", "/api/definitions".to_string()),
    ] {
        let url = format!("{}{path}", api.base());
        let request = anonymous.request(method.parse().unwrap(), &url);
        let response = within("an answer", request.send()).await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{method} {path}");
        assert_eq!(response.headers()["www-authenticate"], challenge);
        // Wrong password, unknown user, a scheme that is not Basic, garbage.
        for auth in [
            "Basic Z3Vlc3Q6d3Jvbmc=",     // guest:wrong
            "Basic bm9ib2R5Om5vdGhpbmc=", // nobody:nothing
            "Bearer abc",
            "Basic !!!",
            "Basic Z3Vlc3Q=", // "guest", no colon
        ] {
            let request = anonymous
                .request(method.parse().unwrap(), &url)
                .header("authorization", auth)
                .header("content-type", "application/json")
                .body("{}");
            let response = within("an answer", request.send()).await.unwrap();
            assert_eq!(response.status().as_u16(), 401, "{method} {path} {auth}");
            assert_eq!(response.headers()["www-authenticate"], challenge);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"], "not_authorised");
        }
    }
    assert_eq!(state(&api).await, before);
}

#[tokio::test]
async fn verbs_an_endpoint_does_not_have_get_405() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let (v, queue) = fixture(&api).await;
    let before = state(&api).await;
    for (method, path) in [
        ("PATCH", "/api/overview".to_string()),
        ("DELETE", "/api/overview".to_string()),
        ("POST", format!("/api/queues/{v}/{queue}")),
        ("PUT", format!("/api/queues/{v}/{queue}/get")),
        ("GET", format!("/api/queues/{v}/{queue}/get")),
        ("DELETE", "/api/definitions".to_string()),
        ("PUT", "/api/users".to_string()),
        ("POST", "/api/health/checks/alarms".to_string()),
    ] {
        let a = api.raw(method, &path, Some(b"{}".to_vec())).await;
        assert_eq!(a.status, 405, "{method} {path}: {:?}", a.body);
        assert_eq!(a.body["error"], "method_not_allowed", "{method} {path}");
        assert!(a.headers.contains_key("allow"), "{method} {path}: no Allow");
    }
    assert_eq!(state(&api).await, before);
}
