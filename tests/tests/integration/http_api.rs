//! The management HTTP API, as RabbitMQ's management plugin answers it: authentication and
//! what each user tag may see and do, the overview, vhosts, users, permissions, topic
//! permissions, limits, health checks, and bad input (malformed JSON, wrong types, huge
//! bodies, unknown vhosts, path traversal) refused with 4xx and changing nothing. Every call
//! goes through a real HTTP client (reqwest) to the real broker; logins it grants are checked
//! with a real AMQP client (lapin).

use pigeon_server::ServerConfig;
use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::{unique, TestBroker};
use serde_json::{json, Value};

async fn broker() -> Option<TestBroker> {
    TestBroker::start_with(ServerConfig::for_tests()).await
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_string())
        .collect()
}

fn amqp_url(broker: &TestBroker, user: &str, password: &str, vhost: &str) -> String {
    let vhost = vhost.replace('/', "%2f");
    format!("amqp://{user}:{password}@{}/{vhost}", broker.addr())
}

#[tokio::test]
async fn requests_without_valid_credentials_or_management_tags_get_401() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let nobody = api.with_user("nobody", "nothing");
    let a = nobody.get("/api/overview").await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.body,
        json!({"error": "not_authorised", "reason": "Login failed"})
    );
    assert_eq!(
        a.headers["www-authenticate"],
        "Basic realm=\"RabbitMQ Management\""
    );
    let wrong = api.with_user("guest", "not-guest").get("/api/whoami").await;
    assert_eq!(wrong.status, 401);

    // A user without any management tag logs in over AMQP but not into the API.
    let plain = unique("plain");
    assert_eq!(
        api.put(
            &format!("/api/users/{plain}"),
            json!({"password": "pw", "tags": ""})
        )
        .await
        .status,
        201
    );
    let a = api.with_user(&plain, "pw").get("/api/whoami").await;
    assert_eq!(a.status, 401);
    assert_eq!(a.body["reason"], "Not management user");

    let me = api.get("/api/whoami").await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body, json!({"name": "guest", "tags": ["administrator"]}));
}

#[tokio::test]
async fn overview_lists_listeners_totals_and_product() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let (_conn, channel) = lp::connect_channel(&broker).await;
    let queue = unique("ov");
    channel
        .queue_declare(
            queue.as_str().into(),
            Default::default(),
            Default::default(),
        )
        .await
        .unwrap();
    let a = api.get("/api/overview").await;
    assert_eq!(a.status, 200);
    let o = &a.body;
    assert_eq!(o["product_name"], "Pigeon");
    assert!(o["rabbitmq_version"].as_str().unwrap().starts_with("3."));
    assert!(o["management_version"].is_string());
    assert!(o["node"].as_str().unwrap().starts_with("pigeon@"));
    assert_eq!(o["object_totals"]["queues"], 1);
    assert!(o["object_totals"]["exchanges"].as_u64().unwrap() >= 6);
    assert_eq!(o["queue_totals"]["messages"], 0);
    assert!(o["message_stats"].is_object());
    let listeners = o["listeners"].as_array().unwrap();
    let port = |protocol: &str| {
        listeners
            .iter()
            .find(|l| l["protocol"] == protocol)
            .map(|l| l["port"].as_u64().unwrap())
    };
    assert_eq!(port("amqp"), Some(u64::from(broker.addr().port())));
    let http_port = broker.server().unwrap().management_addr().unwrap().port();
    assert_eq!(port("http"), Some(u64::from(http_port)));

    let nodes = api.get("/api/nodes").await.body;
    assert_eq!(nodes[0]["name"], o["node"]);
    assert_eq!(nodes[0]["mem_alarm"], false);
    let node = nodes[0]["name"].as_str().unwrap();
    assert_eq!(
        api.get(&format!("/api/nodes/{node}")).await.body["running"],
        true
    );

    // The cluster name: administrators change it.
    let renamed = unique("cluster");
    assert_eq!(
        api.put("/api/cluster-name", json!({"name": renamed}))
            .await
            .status,
        204
    );
    assert_eq!(
        api.get("/api/cluster-name").await.body["name"],
        renamed.as_str()
    );
    assert_eq!(
        api.get("/api/overview").await.body["cluster_name"],
        renamed.as_str()
    );
}

#[tokio::test]
async fn vhosts_are_created_listed_and_deleted_by_administrators_only() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let vhost = unique("vh");
    let path = format!("/api/vhosts/{vhost}");
    let a = api
        .put(
            &path,
            json!({"description": "test vhost", "tags": "a,b", "unknown_field": 1}),
        )
        .await;
    assert_eq!(a.status, 201);
    assert_eq!(
        api.put(&path, json!({"description": "changed"}))
            .await
            .status,
        204
    );
    let v = api.get(&path).await.body;
    assert_eq!(v["name"], vhost.as_str());
    assert_eq!(v["description"], "changed");
    assert_eq!(v["tags"], json!(["a", "b"]));
    assert!(names(&api.get("/api/vhosts").await.body).contains(&vhost));
    // `/` is `%2F` in a path.
    assert_eq!(api.get("/api/vhosts/%2F").await.body["name"], "/");

    // A management user sees only the vhosts it has permissions in, and cannot create any.
    let user = unique("mgmt");
    api.put(
        &format!("/api/users/{user}"),
        json!({"password": "pw", "tags": "management"}),
    )
    .await;
    let perm = json!({"configure": ".*", "write": ".*", "read": ".*"});
    assert_eq!(
        api.put(&format!("/api/permissions/{vhost}/{user}"), perm)
            .await
            .status,
        201
    );
    let mgmt = api.with_user(&user, "pw");
    assert_eq!(
        names(&mgmt.get("/api/vhosts").await.body),
        vec![vhost.clone()]
    );
    assert_eq!(mgmt.get("/api/vhosts/%2F").await.status, 401);
    let other = unique("vh");
    assert_eq!(
        mgmt.put(&format!("/api/vhosts/{other}"), json!({}))
            .await
            .status,
        401
    );
    assert_eq!(api.get(&format!("/api/vhosts/{other}")).await.status, 404);
    assert_eq!(mgmt.delete(&path).await.status, 401);

    assert_eq!(api.delete(&path).await.status, 204);
    assert_eq!(api.get(&path).await.status, 404);
    assert_eq!(api.delete(&path).await.status, 404);
}

#[tokio::test]
async fn users_created_through_the_api_log_in_over_amqp() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let user = unique("u");
    let path = format!("/api/users/{user}");
    assert_eq!(
        api.put(&path, json!({"password": "secret", "tags": ["monitoring"]}))
            .await
            .status,
        201
    );
    let u = api.get(&path).await.body;
    assert_eq!(u["name"], user.as_str());
    assert_eq!(u["tags"], json!(["monitoring"]));
    assert_eq!(u["hashing_algorithm"], "rabbit_password_hashing_sha256");
    assert!(!u["password_hash"].as_str().unwrap().is_empty());
    assert!(names(&api.get("/api/users/without-permissions").await.body).contains(&user));

    let perm = json!({"configure": ".*", "write": ".*", "read": ".*"});
    assert_eq!(
        api.put(&format!("/api/permissions/%2F/{user}"), perm)
            .await
            .status,
        201
    );
    let p = api.get(&format!("/api/permissions/%2F/{user}")).await.body;
    assert_eq!(
        p,
        json!({"user": user, "vhost": "/", "configure": ".*", "write": ".*", "read": ".*"})
    );
    lp::connect_url(&amqp_url(&broker, &user, "secret", "/"))
        .await
        .unwrap();

    // The same hash imported under another name logs in with the same password.
    let twin = unique("twin");
    let imported = json!({"password_hash": u["password_hash"], "hashing_algorithm": u["hashing_algorithm"], "tags": ""});
    assert_eq!(
        api.put(&format!("/api/users/{twin}"), imported)
            .await
            .status,
        201
    );
    api.put(
        &format!("/api/permissions/%2F/{twin}"),
        json!({"configure": "", "write": "", "read": ""}),
    )
    .await;
    lp::connect_url(&amqp_url(&broker, &twin, "secret", "/"))
        .await
        .unwrap();

    // Monitoring users read everything but users are for administrators.
    let monitor = api.with_user(&user, "secret");
    assert_eq!(monitor.get("/api/users").await.status, 401);
    assert_eq!(monitor.get("/api/vhosts").await.status, 200);
    assert_eq!(
        monitor
            .put(
                &format!("/api/users/{}", unique("x")),
                json!({"password": "p"})
            )
            .await
            .status,
        401
    );

    // Changing the password: the old one no longer works.
    assert_eq!(api.put(&path, json!({"password": "new"})).await.status, 204);
    assert!(lp::connect_url(&amqp_url(&broker, &user, "secret", "/"))
        .await
        .is_err());
    lp::connect_url(&amqp_url(&broker, &user, "new", "/"))
        .await
        .unwrap();

    let a = api
        .post("/api/users/bulk-delete", json!({"users": [user, twin]}))
        .await;
    assert_eq!(a.status, 204);
    assert_eq!(api.get(&path).await.status, 404);
    assert_eq!(api.delete(&path).await.status, 404);
}

#[tokio::test]
async fn permissions_topic_permissions_and_limits_round_trip() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let user = unique("p");
    api.put(
        &format!("/api/users/{user}"),
        json!({"password": "pw", "tags": ""}),
    )
    .await;
    let perm = json!({"configure": "^a", "write": "^b", "read": "^c"});
    assert_eq!(
        api.put(&format!("/api/permissions/%2F/{user}"), perm.clone())
            .await
            .status,
        201
    );
    assert_eq!(
        api.put(&format!("/api/permissions/%2F/{user}"), perm)
            .await
            .status,
        204
    );
    let of_user = api
        .get(&format!("/api/users/{user}/permissions"))
        .await
        .body;
    assert_eq!(of_user.as_array().unwrap().len(), 1);
    assert_eq!(of_user[0]["configure"], "^a");
    let of_vhost = api.get("/api/vhosts/%2F/permissions").await.body;
    assert!(of_vhost
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["user"] == user.as_str()));
    assert!(
        api.get("/api/permissions")
            .await
            .body
            .as_array()
            .unwrap()
            .len()
            >= 2
    );

    let topic = json!({"exchange": "amq.topic", "write": "^x", "read": "^y"});
    assert_eq!(
        api.put(&format!("/api/topic-permissions/%2F/{user}"), topic)
            .await
            .status,
        201
    );
    let t = api
        .get(&format!("/api/topic-permissions/%2F/{user}"))
        .await
        .body;
    assert_eq!(
        t,
        json!([{"user": user, "vhost": "/", "exchange": "amq.topic", "write": "^x", "read": "^y"}])
    );
    assert_eq!(
        api.get(&format!("/api/users/{user}/topic-permissions"))
            .await
            .body,
        t
    );
    assert_eq!(
        api.delete(&format!("/api/topic-permissions/%2F/{user}"))
            .await
            .status,
        204
    );
    assert_eq!(
        api.get(&format!("/api/topic-permissions/%2F/{user}"))
            .await
            .status,
        404
    );

    // An invalid pattern is refused and nothing changes.
    let bad = json!({"configure": "(", "write": "", "read": ""});
    assert_eq!(
        api.put(&format!("/api/permissions/%2F/{user}"), bad)
            .await
            .status,
        400
    );
    assert_eq!(
        api.get(&format!("/api/permissions/%2F/{user}")).await.body["configure"],
        "^a"
    );
    // Unknown user or vhost: 404.
    let perm = json!({"configure": "", "write": "", "read": ""});
    assert_eq!(
        api.put(
            &format!("/api/permissions/%2F/{}", unique("no")),
            perm.clone()
        )
        .await
        .status,
        404
    );
    assert_eq!(
        api.put(&format!("/api/permissions/{}/{user}", unique("no")), perm)
            .await
            .status,
        404
    );

    assert_eq!(
        api.delete(&format!("/api/permissions/%2F/{user}"))
            .await
            .status,
        204
    );
    assert_eq!(
        api.get(&format!("/api/permissions/%2F/{user}"))
            .await
            .status,
        404
    );

    // Limits.
    assert_eq!(
        api.put("/api/vhost-limits/%2F/max-connections", json!({"value": 7}))
            .await
            .status,
        204
    );
    let l = api.get("/api/vhost-limits/%2F").await.body;
    assert_eq!(l, json!([{"vhost": "/", "value": {"max-connections": 7}}]));
    assert_eq!(
        api.put("/api/vhost-limits/%2F/max-bananas", json!({"value": 7}))
            .await
            .status,
        400
    );
    assert_eq!(
        api.put("/api/vhost-limits/%2F/max-queues", json!({"value": "many"}))
            .await
            .status,
        400
    );
    assert_eq!(
        api.delete("/api/vhost-limits/%2F/max-connections")
            .await
            .status,
        204
    );
    assert_eq!(api.get("/api/vhost-limits").await.body, json!([]));
    assert_eq!(
        api.put(
            &format!("/api/user-limits/{user}/max-channels"),
            json!({"value": 3})
        )
        .await
        .status,
        204
    );
    assert_eq!(
        api.get(&format!("/api/user-limits/{user}")).await.body,
        json!([{"user": user, "value": {"max-channels": 3}}])
    );
    assert_eq!(
        api.delete(&format!("/api/user-limits/{user}/max-channels"))
            .await
            .status,
        204
    );
    assert_eq!(
        api.get(&format!("/api/user-limits/{user}")).await.body,
        json!([])
    );
}

#[tokio::test]
async fn bad_input_gets_4xx_and_changes_nothing() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let vhost = unique("bad");
    let path = format!("/api/vhosts/{vhost}");
    let a = api.raw("PUT", &path, Some(b"{not json".to_vec())).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body["error"], "bad_request");
    assert_eq!(api.get(&path).await.status, 404);
    // Wrong types.
    assert_eq!(api.put(&path, json!({"description": 5})).await.status, 400);
    assert_eq!(api.put(&path, json!(["a list"])).await.status, 400);
    assert_eq!(api.get(&path).await.status, 404);
    let user = unique("bad");
    assert_eq!(
        api.put(&format!("/api/users/{user}"), json!({"password": 5}))
            .await
            .status,
        400
    );
    assert_eq!(
        api.put(
            &format!("/api/users/{user}"),
            json!({"password": "a", "tags": 7})
        )
        .await
        .status,
        400
    );
    assert_eq!(api.get(&format!("/api/users/{user}")).await.status, 404);
    // A body over the limit (20 MB, RabbitMQ's default) is refused before it is read whole,
    // with RabbitMQ's 400.
    let huge = vec![b' '; 21_000_000];
    let a = api.raw("PUT", &path, Some(huge)).await;
    assert_eq!(a.status, 400);
    assert_eq!(api.get(&path).await.status, 404);
    // Unknown objects, and paths that try to climb out.
    assert_eq!(api.get("/api/queues/nowhere").await.status, 404);
    assert_eq!(api.get("/api/queues/%2F/..%2F..").await.status, 404);
    assert_eq!(api.get("/api/queues/%2F/..%2F..%2Fusers").await.status, 404);
    assert_eq!(
        api.get("/api/no-such-endpoint").await.body["error"],
        "Object Not Found"
    );
    // A method the endpoint does not have.
    assert_eq!(api.raw("PATCH", "/api/overview", None).await.status, 405);
    // A paged list with a nonsense page.
    assert_eq!(api.get("/api/queues?page=0").await.status, 400);
    assert_eq!(
        api.get("/api/queues?page=1&page_size=100000").await.status,
        400
    );
}

#[tokio::test]
async fn health_checks_answer_ok_or_503() {
    let Some(broker) = broker().await else { return };
    let api = Api::new(&broker);
    let ok = json!({"status": "ok"});
    assert_eq!(api.get("/api/health/checks/alarms").await.body, ok);
    assert_eq!(api.get("/api/health/checks/local-alarms").await.body, ok);
    assert_eq!(api.get("/api/health/checks/virtual-hosts").await.body, ok);
    assert_eq!(
        api.get("/api/health/checks/node-is-quorum-critical")
            .await
            .body,
        ok
    );
    let port = broker.addr().port();
    let a = api
        .get(&format!("/api/health/checks/port-listener/{port}"))
        .await;
    assert_eq!((a.status, &a.body["status"]), (200, &json!("ok")));
    let a = api.get("/api/health/checks/port-listener/1").await;
    assert_eq!((a.status, &a.body["status"]), (503, &json!("failed")));
    assert_eq!(
        api.get("/api/health/checks/protocol-listener/amqp")
            .await
            .status,
        200
    );
    assert_eq!(
        api.get("/api/health/checks/protocol-listener/stomp")
            .await
            .status,
        503
    );
    assert_eq!(api.get("/api/aliveness-test/%2F").await.body, ok);
    assert_eq!(api.get("/api/aliveness-test/nowhere").await.status, 404);
    // Health checks need credentials too.
    assert_eq!(
        api.with_user("x", "y")
            .get("/api/health/checks/alarms")
            .await
            .status,
        401
    );
}

/// The endpoints the RabbitMQ UI and client libraries read on start: `/api/auth` without
/// credentials, the empty lists with them (and 401 without).
#[tokio::test]
async fn auth_extensions_feature_flags_and_deprecated_features_answer() {
    let Some(broker) = broker().await else {
        return;
    };
    let api = Api::new(&broker);
    let anonymous = |path: &str| reqwest::get(format!("{}{path}", api.base()));
    let auth = anonymous("/api/auth").await.unwrap();
    assert_eq!(auth.status(), 200);
    assert_eq!(
        auth.json::<Value>().await.unwrap(),
        json!({"oauth_enabled": false})
    );
    for path in [
        "/api/extensions",
        "/api/feature-flags",
        "/api/deprecated-features",
        "/api/deprecated-features/used",
    ] {
        let answer = api.get(path).await;
        assert_eq!(answer.status, 200, "{path}");
        assert_eq!(answer.body, json!([]), "{path}");
        assert_eq!(anonymous(path).await.unwrap().status(), 401, "{path}");
    }
}
