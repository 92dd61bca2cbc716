//! A classic queue through another node than its home (docs/clustering.md, "Classic queues in
//! a cluster"): `queue.delete` with `if-empty` / `if-unused` is checked by the home, as
//! RabbitMQ's queue process checks it, and the `/api/queues` lists show the home's counts.
//!
//! Two real `pigeon` processes (the harness of `cluster.rs`), lapin and the HTTP API.

use super::cluster::{
    channel, declare_when_ready, publish_confirmed, until_listed, write_configs, Node,
};
use lapin::options::{BasicConsumeOptions, BasicQosOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::Channel;
use pigeon_tests::http_support::Api;
use pigeon_tests::within;
use std::time::Duration;

/// A consumer of `queue` on `ch` with a prefetch of 1 (it holds one message unacknowledged).
async fn consume(ch: &Channel, queue: &str) -> lapin::Consumer {
    ch.basic_qos(1, BasicQosOptions::default()).await.unwrap();
    ch.basic_consume(
        queue.into(),
        format!("c-{queue}").as_str().into(),
        BasicConsumeOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap()
}

/// `queue.delete` through a new channel on `node`.
async fn delete(node: &Node, queue: &str, if_empty: bool, if_unused: bool) -> Result<u32, String> {
    let (_c, ch) = channel(node).await;
    let options = QueueDeleteOptions {
        if_empty,
        if_unused,
        nowait: false,
    };
    ch.queue_delete(queue.into(), options)
        .await
        .map_err(|e| e.to_string())
}

/// Whether `node`'s `/api/queues/%2f/{queue}` finds the queue.
async fn exists(node: &Node, queue: &str) -> bool {
    let api = Api::at(&node.api(), "guest", "guest");
    api.get(&format!("/api/queues/%2f/{queue}")).await.status == 200
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_delete_if_empty_or_unused_through_another_node_is_checked_at_the_home() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 2);
    let home = Node::start(&configs[0]).await;
    let other = Node::start(&configs[1]).await;
    for q in ["full", "used", "empty"] {
        declare_when_ready(&home, q, FieldTable::default()).await;
        until_listed(&other, q).await;
    }
    // "full" holds a message at the home; "used" has a consumer there.
    let (_c0, home_ch) = channel(&home).await;
    publish_confirmed(&home_ch, "full", 1).await;
    let (_c1, consumer_ch) = channel(&home).await;
    let _consumer = consume(&consumer_ch, "used").await;

    // Through the other node, as on the home: 406 PRECONDITION_FAILED, and the queue stays.
    let e = delete(&other, "full", true, false).await.unwrap_err();
    assert!(e.contains("PRECONDITION"), "{e}");
    assert!(e.contains("queue 'full' in vhost '/' is not empty"), "{e}");
    let e = delete(&home, "full", true, false).await.unwrap_err();
    assert!(e.contains("queue 'full' in vhost '/' is not empty"), "{e}");
    let e = delete(&other, "used", false, true).await.unwrap_err();
    assert!(e.contains("PRECONDITION"), "{e}");
    assert!(e.contains("queue 'used' in vhost '/' in use"), "{e}");
    // The management API's DELETE with the conditions asks the home too (400, as locally).
    let api = Api::at(&other.api(), "guest", "guest");
    let r = api.delete("/api/queues/%2f/full?if-empty=true").await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    let r = api.delete("/api/queues/%2f/used?if-unused=true").await;
    assert_eq!(r.status, 400, "{:?}", r.body);
    for q in ["full", "used"] {
        assert!(
            exists(&home, q).await && exists(&other, q).await,
            "{q} deleted"
        );
    }

    // An empty, unused queue is deleted through the other node, on both.
    assert_eq!(delete(&other, "empty", true, true).await, Ok(0));
    within("'empty' gone from the home", async {
        while exists(&home, "empty").await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Without conditions the queue goes, messages and all (as RabbitMQ's plain delete).
    assert_eq!(delete(&other, "full", false, false).await, Ok(1));
    assert!(!exists(&other, "full").await);
}

/// `GET path` on `node` until the row of `queue` satisfies `ok`; that row.
async fn until_row(
    node: &Node,
    path: &str,
    queue: &str,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let api = Api::at(&node.api(), "guest", "guest");
    within(&format!("{queue} in {path} on {}", node.api()), async {
        loop {
            let a = api.get(path).await;
            let row = a
                .body
                .as_array()
                .and_then(|l| l.iter().find(|r| r["name"] == queue).cloned());
            if let Some(row) = row.filter(|r| ok(r)) {
                return row;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_lists_through_another_node_show_the_homes_counts() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 2);
    let home = Node::start(&configs[0]).await;
    let other = Node::start(&configs[1]).await;
    declare_when_ready(&home, "counted", FieldTable::default()).await;
    until_listed(&other, "counted").await;
    // Three messages at the home, one of them out to a consumer there (prefetch 1).
    let (_c0, ch) = channel(&home).await;
    publish_confirmed(&ch, "counted", 3).await;
    let (_c1, consumer_ch) = channel(&home).await;
    let _consumer = consume(&consumer_ch, "counted").await;

    let counted = |r: &serde_json::Value| r["consumers"] == 1 && r["messages_unacknowledged"] == 1;
    for path in ["/api/queues", "/api/queues/%2f"] {
        let row = until_row(&other, path, "counted", counted).await;
        assert_eq!(row["node"], "rabbit@n0", "{row}");
        assert_eq!(row["messages"], 3, "{row}");
        assert_eq!(row["messages_ready"], 2, "{row}");
        // The home's own list says the same.
        let at_home = until_row(&home, path, "counted", counted).await;
        assert_eq!(at_home["messages"], 3, "{at_home}");
    }
    // `pigeon ctl list_queues` (through /api/queues) too.
    let out = super::ctl_support::ctl_at(
        &other.api(),
        &[
            "list_queues",
            "name",
            "messages",
            "consumers",
            "--formatter",
            "json",
        ],
    )
    .await
    .json();
    let row = out
        .as_array()
        .and_then(|l| l.iter().find(|r| r["name"] == "counted").cloned())
        .unwrap();
    assert_eq!(
        (row["messages"].clone(), row["consumers"].clone()),
        (3.into(), 1.into()),
        "{row}"
    );

    // The home down: the other node still lists the queue, as down, without counts.
    home.kill();
    let row = until_row(&other, "/api/queues", "counted", |r| r["state"] == "down").await;
    assert!(row.get("messages").is_none(), "{row}");
}
