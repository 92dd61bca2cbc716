//! `pigeon ctl` on queues, connections, channels and consumers, and its errors: the real
//! binary, run as a child process against an in-process broker (the test harness's, its
//! management API on 127.0.0.1:0), checked as a script written for rabbitmqctl would check it:
//! tab-separated columns under a header, `--formatter json`, banners that `-q`/`-s` drop,
//! rabbitmqctl's exit codes and one error line on stderr. Objects are made with a real AMQP
//! client (lapin), and what `ctl` changes is seen by one (a closed connection). The other
//! families: `ctl_access.rs` (users, vhosts, permissions, limits, policies, definitions) and
//! `ctl_node.rs` (status, diagnostics, runtime limits, where the node and credentials come from).

use crate::ctl_support;

use ctl_support::{broker, ctl, ctl_at};
use lapin::options::{BasicConsumeOptions, BasicPublishOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::{unique, within};

#[tokio::test]
async fn list_queues_prints_the_columns_asked_for() {
    let Some(broker) = broker().await else { return };
    let (_conn, channel) = lp::confirm_connection(&broker).await;
    let (full, empty) = (unique("full"), unique("empty"));
    let args = lp::table(&[("x-max-length", AMQPValue::LongInt(10))]);
    for (queue, args) in [(&full, args), (&empty, FieldTable::default())] {
        within(
            "queue.declare-ok",
            channel.queue_declare(queue.as_str().into(), lp::durable(), args),
        )
        .await
        .unwrap();
    }
    for body in [b"one", b"two"] {
        let confirm = within(
            "basic.publish",
            channel.basic_publish(
                "".into(),
                full.as_str().into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            ),
        )
        .await
        .unwrap();
        within("the publisher confirm", confirm).await.unwrap();
    }
    let consumer_channel = lp::open_channel(&_conn).await;
    // Kept: lapin cancels a consumer it drops.
    let _consumer = within(
        "basic.consume-ok",
        consumer_channel.basic_consume(
            empty.as_str().into(),
            "ctl-tag".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();

    // The default columns (name messages) under rabbitmqctl's two banners.
    let out = ctl(&broker, &["list_queues"]).await.ok();
    let mut lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..3],
        [
            "Timeout: 60.0 seconds ...",
            "Listing queues for vhost / ...",
            "name\tmessages"
        ]
    );
    lines.drain(..3);
    lines.sort();
    let mut expected = vec![format!("{empty}\t0"), format!("{full}\t2")];
    expected.sort();
    assert_eq!(lines, expected);

    // Columns in the order asked, with -q (no banners, a header).
    let out = ctl(
        &broker,
        &[
            "-q",
            "list_queues",
            "name",
            "messages",
            "consumers",
            "durable",
            "arguments",
        ],
    )
    .await
    .ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "name\tmessages\tconsumers\tdurable\targuments");
    assert!(lines.contains(&format!("{full}\t2\t0\ttrue\t[{{\"x-max-length\",10}}]").as_str()));
    assert!(
        lines.contains(&format!("{empty}\t0\t1\ttrue\t[]").as_str()),
        "{out}"
    );

    // -s: rows only.
    let out = ctl(&broker, &["list_queues", "-s", "name"]).await.ok();
    let mut names: Vec<&str> = out.lines().collect();
    names.sort();
    let mut expected = vec![empty.as_str(), full.as_str()];
    expected.sort();
    assert_eq!(names, expected);

    // JSON: one object per queue, arguments typed as rabbitmqctl types them.
    let rows = ctl(
        &broker,
        &[
            "list_queues",
            "--formatter",
            "json",
            "name",
            "messages",
            "arguments",
        ],
    )
    .await
    .json();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == full.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["messages"], 2);
    assert_eq!(
        row["arguments"],
        serde_json::json!([["x-max-length", "long", 10]])
    );

    // The consumer, its channel (same pid-like token in both lists) and the connection.
    let consumers = ctl(
        &broker,
        &[
            "list_consumers",
            "-s",
            "queue_name",
            "channel_pid",
            "consumer_tag",
        ],
    )
    .await
    .ok();
    let fields: Vec<&str> = consumers.trim_end().split('\t').collect();
    assert_eq!((fields[0], fields[2]), (empty.as_str(), "ctl-tag"));
    let channels = ctl(&broker, &["list_channels", "-s", "pid", "consumer_count"])
        .await
        .ok();
    assert!(
        channels.lines().any(|l| l == format!("{}\t1", fields[1])),
        "{channels}"
    );
    let connections = ctl(&broker, &["list_connections", "-q"]).await.ok();
    assert_eq!(
        connections.lines().next(),
        Some("user\tpeer_host\tpeer_port\tstate")
    );
    assert!(connections
        .lines()
        .nth(1)
        .unwrap()
        .starts_with("guest\t127.0.0.1\t"));

    // An unknown column is a usage error (64), as in rabbitmqctl.
    ctl(&broker, &["list_queues", "name", "bogus"])
        .await
        .fails(64);
}

#[tokio::test]
async fn close_connection_is_seen_by_the_client() {
    let Some(broker) = broker().await else { return };
    let (conn, channel) = lp::connect_channel(&broker).await;
    let queue = lp::exclusive_queue(&channel).await;
    let mut consumer = within(
        "basic.consume-ok",
        channel.basic_consume(
            queue.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();

    // A script's way: the pid from list_connections, passed to close_connection.
    let pid = ctl(&broker, &["list_connections", "-s", "pid"]).await.ok();
    let pid = pid.trim_end();
    assert!(
        pid.starts_with('<') && pid.ends_with('>') && !pid.contains(' '),
        "{pid}"
    );
    ctl(&broker, &["close_connection", pid, "maintenance window"])
        .await
        .ok();
    let error = lp::consumer_error(&mut consumer).await;
    assert_eq!(lp::reply_code(&error), Some(320));
    assert!(error.to_string().contains("maintenance window"), "{error}");
    drop(conn);

    // The connection's name works too; an unknown one is an error.
    let (conn, _channel) = lp::connect_channel(&broker).await;
    let name = ctl(&broker, &["list_connections", "-s", "name"]).await.ok();
    let name = name.trim_end().to_string();
    ctl(&broker, &["close_connection", &name, "bye"]).await.ok();
    within("the connection to close", async {
        while conn.status().connected() {
            tokio::task::yield_now().await;
        }
    })
    .await;
    ctl(
        &broker,
        &["close_connection", "1.2.3.4:5 -> 6.7.8.9:10", "bye"],
    )
    .await
    .fails(69);
}

#[tokio::test]
async fn purge_and_delete_queue() {
    let Some(broker) = broker().await else { return };
    let (_conn, channel) = lp::confirm_connection(&broker).await;
    let queue = unique("pq");
    within(
        "queue.declare-ok",
        channel.queue_declare(queue.as_str().into(), lp::durable(), FieldTable::default()),
    )
    .await
    .unwrap();
    let confirm = within(
        "basic.publish",
        channel.basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"x",
            BasicProperties::default(),
        ),
    )
    .await
    .unwrap();
    within("the publisher confirm", confirm).await.unwrap();
    // --if-empty refuses a queue with a message in it.
    ctl(&broker, &["delete_queue", &queue, "--if-empty"])
        .await
        .fails(69);
    ctl(&broker, &["purge_queue", &queue]).await.ok();
    assert_eq!(
        ctl(&broker, &["list_queues", "-s"]).await.ok(),
        format!("{queue}\t0\n")
    );
    let out = ctl(&broker, &["delete_queue", &queue, "--if-empty"])
        .await
        .ok();
    assert!(
        out.ends_with("Queue was successfully deleted with 0 ready messages\n"),
        "{out}"
    );
    assert_eq!(ctl(&broker, &["list_queues", "-s"]).await.ok(), "");
}

#[tokio::test]
async fn errors_are_one_line_with_rabbitmqctls_exit_codes() {
    let Some(broker) = broker().await else { return };
    // Nothing listens on port 1 of loopback: the node is unavailable (69).
    let line = ctl_at("http://127.0.0.1:1", &["list_queues"])
        .await
        .fails(69);
    assert!(line.contains("127.0.0.1:1"), "{line}");
    ctl(&broker, &["frobnicate"]).await.fails(64);
    ctl(&broker, &["add_user", "only-a-name"]).await.fails(64);
    ctl(&broker, &["list_queues", "--bogus-option"])
        .await
        .fails(64);
    ctl(&broker, &["--password", "wrong", "list_queues"])
        .await
        .fails(69);
    ctl(&broker, &["purge_queue", "no-such-queue"])
        .await
        .fails(69);
    ctl(&broker, &["delete_queue", "no-such-queue"])
        .await
        .fails(64);
    ctl(&broker, &["set_vhost_limits", "not json"])
        .await
        .fails(65);
    // A vhost that does not exist lists nothing, as rabbitmqctl does.
    assert_eq!(
        ctl(&broker, &["list_queues", "-p", "no-such-vhost", "-s"])
            .await
            .ok(),
        ""
    );
}
