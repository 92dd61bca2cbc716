//! Pigeon's own runtime endpoints (`/api/pigeon/vm_memory_high_watermark`,
//! `/api/pigeon/disk_free_limit`, what `pigeon ctl set_vm_memory_high_watermark` and
//! `set_disk_free_limit` send): administrators change them, monitoring users read them, bad
//! bodies get 400 and change nothing, and the memory alarm follows a new watermark at once.

use pigeon_server::ServerConfig;
use pigeon_tests::http_support::Api;
use pigeon_tests::{unique, TestBroker};
use serde_json::json;

const MEMORY: &str = "/api/pigeon/vm_memory_high_watermark";
const DISK: &str = "/api/pigeon/disk_free_limit";

#[tokio::test]
async fn administrators_change_the_memory_watermark_and_the_alarm_follows() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let api = Api::new(&broker);
    let server = broker.server().unwrap();
    let before = server.memory_limit();
    assert_eq!(api.get(MEMORY).await.body, json!({"limit": before}));

    // 1 KiB: this process uses more, the alarm is on when the answer arrives.
    assert_eq!(api.put(MEMORY, json!({"absolute": 1024})).await.status, 204);
    assert_eq!(server.memory_limit(), 1024);
    assert!(server.memory_alarm());
    assert_eq!(api.get("/api/health/checks/local-alarms").await.status, 503);
    let nodes = api.get("/api/nodes").await.body;
    assert_eq!(nodes[0]["mem_limit"], 1024);

    assert_eq!(api.put(MEMORY, json!({"relative": 0.4})).await.status, 204);
    assert!(server.memory_limit() > 1024);
    assert!(!server.memory_alarm());

    // Bad bodies change nothing.
    let now = server.memory_limit();
    for bad in [
        json!({}),
        json!({"relative": 1.5}),
        json!({"relative": 0.5, "absolute": 10}),
        json!({"absolute": "lots"}),
        json!({"absolute": -1}),
    ] {
        let answer = api.put(MEMORY, bad.clone()).await;
        assert_eq!(answer.status, 400, "{bad}");
        assert_eq!(answer.body["error"], "bad_request");
    }
    assert_eq!(server.memory_limit(), now);
}

#[tokio::test]
async fn disk_free_limit_changes_and_only_administrators_change_limits() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let api = Api::new(&broker);
    assert_eq!(
        api.put(DISK, json!({"absolute": 60_000_000})).await.status,
        204
    );
    assert_eq!(api.get(DISK).await.body, json!({"limit": 60_000_000}));
    assert_eq!(
        api.get("/api/nodes").await.body[0]["disk_free_limit"],
        60_000_000
    );
    assert_eq!(
        api.put(DISK, json!({"mem_relative": 1.0})).await.status,
        204
    );
    assert!(api.get(DISK).await.body["limit"].as_u64().unwrap() > 0);
    assert_eq!(api.put(DISK, json!({"relative": 1.0})).await.status, 400);

    let user = unique("mon");
    api.put(
        &format!("/api/users/{user}"),
        json!({"password": "pw", "tags": "monitoring"}),
    )
    .await;
    let monitor = api.with_user(&user, "pw");
    assert_eq!(monitor.get(DISK).await.status, 200);
    assert_eq!(monitor.get(MEMORY).await.status, 200);
    let refused = monitor.put(DISK, json!({"absolute": 1})).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.body["reason"], "Not administrator user");
    assert_eq!(
        monitor.put(MEMORY, json!({"relative": 0.5})).await.status,
        401
    );
    assert!(api.get(DISK).await.body["limit"].as_u64().unwrap() > 1);
}
