//! `pigeon ctl`: the real binary, run as a child process against an in-process broker (the test
//! harness's, its management API on 127.0.0.1:0), checked as a script written for rabbitmqctl
//! would check it: tab-separated columns under a header, `--formatter json`, banners that
//! `-q`/`-s` drop, rabbitmqctl's exit codes and one error line on stderr. Objects are made with a
//! real AMQP client (lapin) where it matters, and what `ctl` changes is seen by one (a closed
//! connection, a login).
//!
//! The binary is `PIGEON_BIN` when set, else the one Cargo built for these tests.
//!
//! `ctl_policies_*` need the policies endpoints (`/api/policies/{vhost}/{name}`), which come
//! with the policies work.

#![allow(clippy::unwrap_used)] // a failed step fails the test at its own line

use lapin::options::{BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::BasicProperties;
use pigeon_server::ServerConfig;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::{unique, within, TestBroker};
use serde_json::Value;
use std::process::Command;

/// What one `pigeon ctl` run printed, and its exit code.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    fn ok(self) -> String {
        assert_eq!(self.code, 0, "pigeon ctl failed: {self:?}");
        self.stdout
    }

    /// Asserts failure with `code` and exactly one line on stderr; returns that line.
    fn fails(self, code: i32) -> String {
        assert_eq!(self.code, code, "unexpected exit code: {self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one error line expected: {self:?}");
        assert!(lines[0].starts_with("Error: "), "{self:?}");
        lines[0].to_string()
    }

    /// stdout parsed as JSON.
    fn json(self) -> Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
}

async fn broker() -> Option<TestBroker> {
    TestBroker::start_with(ServerConfig::for_tests()).await
}

fn api_url(broker: &TestBroker) -> String {
    let addr = broker
        .server()
        .and_then(|s| s.management_addr())
        .expect("the management listener");
    format!("http://{addr}")
}

/// Runs `pigeon ctl --node <url> <args>` as guest, with no environment or config file that
/// could point it elsewhere.
async fn ctl(broker: &TestBroker, args: &[&str]) -> Run {
    ctl_at(&api_url(broker), args).await
}

async fn ctl_at(url: &str, args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut all = vec!["--node", url];
    all.extend_from_slice(args);
    ctl_with(home.path(), &[], &all).await
}

/// Runs `pigeon ctl <args>` with `HOME` at `home` and only the `PIGEON_*` variables of `env`.
async fn ctl_with(home: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let bin = std::env::var("PIGEON_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_pigeon").into());
    let mut command = Command::new(bin);
    command
        .arg("ctl")
        .args(args)
        .env_remove("PIGEON_URL")
        .env_remove("PIGEON_USER")
        .env_remove("PIGEON_PASS")
        .env("HOME", home)
        .envs(env.iter().copied());
    // The broker runs in this process: wait for the child off the runtime's threads.
    let output = within(
        "pigeon ctl to finish",
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .unwrap()
    .expect("pigeon ctl runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

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
async fn add_user_then_authenticate_user_and_log_in() {
    let Some(broker) = broker().await else { return };
    let user = unique("ctl-user");
    let out = ctl(&broker, &["add_user", &user, "s3cret"]).await.ok();
    assert!(
        out.starts_with(&format!("Adding user \"{user}\" ...")),
        "{out}"
    );
    // An existing user: 70, one line.
    let line = ctl(&broker, &["add_user", &user, "other"]).await.fails(70);
    assert!(line.contains("already exists"), "{line}");

    let out = ctl(&broker, &["authenticate_user", &user, "s3cret"])
        .await
        .ok();
    assert!(out.ends_with("Success\n"), "{out}");
    ctl(&broker, &["authenticate_user", &user, "wrong"])
        .await
        .fails(65);

    ctl(&broker, &["change_password", &user, "n3w"]).await.ok();
    ctl(&broker, &["authenticate_user", &user, "s3cret"])
        .await
        .fails(65);
    ctl(&broker, &["authenticate_user", "-q", &user, "n3w"])
        .await
        .ok();

    ctl(
        &broker,
        &["set_user_tags", &user, "monitoring", "policymaker"],
    )
    .await
    .ok();
    let users = ctl(&broker, &["list_users", "-s"]).await.ok();
    assert!(
        users
            .lines()
            .any(|l| l == format!("{user}\t[monitoring, policymaker]")),
        "{users}"
    );
    let users = ctl(&broker, &["list_users", "--formatter", "json"])
        .await
        .json();
    assert!(users
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u["user"] == user.as_str()
            && u["tags"] == serde_json::json!(["monitoring", "policymaker"])));

    // With permissions, the new user logs in over AMQP.
    ctl(&broker, &["set_permissions", &user, ".*", ".*", ".*"])
        .await
        .ok();
    let conn = lp::connect_url(&broker.url_as(&user, "n3w")).await.unwrap();
    drop(conn);

    ctl(&broker, &["delete_user", &user]).await.ok();
    ctl(&broker, &["delete_user", &user]).await.fails(67);
    ctl(&broker, &["authenticate_user", &user, "n3w"])
        .await
        .fails(65);
}

#[tokio::test]
async fn set_permissions_then_list_permissions() {
    let Some(broker) = broker().await else { return };
    let (user, vhost) = (unique("perm-user"), unique("perm-vhost"));
    ctl(&broker, &["add_user", &user, "pw"]).await.ok();
    ctl(&broker, &["add_vhost", &vhost]).await.ok();
    let vhosts = ctl(&broker, &["list_vhosts", "-s"]).await.ok();
    assert!(vhosts.lines().any(|l| l == vhost), "{vhosts}");

    ctl(
        &broker,
        &[
            "set_permissions",
            "-p",
            &vhost,
            &user,
            "^conf",
            "^write",
            "^read",
        ],
    )
    .await
    .ok();
    let out = ctl(&broker, &["list_permissions", "-p", &vhost]).await.ok();
    assert_eq!(
        out,
        format!(
            "Listing permissions for vhost \"{vhost}\" ...\nuser\tconfigure\twrite\tread\n{user}\t^conf\t^write\t^read\n"
        )
    );
    let mine = ctl(
        &broker,
        &["list_user_permissions", &user, "--formatter", "json"],
    )
    .await
    .json();
    assert_eq!(
        mine,
        serde_json::json!([{"vhost": vhost, "configure": "^conf", "write": "^write", "read": "^read"}])
    );

    // Topic permissions: one exchange cleared, the other kept.
    ctl(
        &broker,
        &[
            "set_topic_permissions",
            "-p",
            &vhost,
            &user,
            "amq.topic",
            "^a",
            "^b",
        ],
    )
    .await
    .ok();
    ctl(
        &broker,
        &[
            "set_topic_permissions",
            "-p",
            &vhost,
            &user,
            "other",
            "^c",
            "^d",
        ],
    )
    .await
    .ok();
    ctl(
        &broker,
        &["clear_topic_permissions", "-p", &vhost, &user, "amq.topic"],
    )
    .await
    .ok();
    let topics = ctl(&broker, &["list_topic_permissions", "-p", &vhost, "-s"])
        .await
        .ok();
    assert_eq!(topics, format!("{user}\tother\t^c\t^d\n"));

    ctl(&broker, &["clear_permissions", "-p", &vhost, &user])
        .await
        .ok();
    let out = ctl(&broker, &["list_permissions", "-p", &vhost, "-s"])
        .await
        .ok();
    assert_eq!(out, "");

    // A missing vhost is 65, a missing user 67.
    ctl(
        &broker,
        &[
            "set_permissions",
            "-p",
            "no-such-vhost",
            &user,
            ".*",
            ".*",
            ".*",
        ],
    )
    .await
    .fails(65);
    ctl(
        &broker,
        &[
            "set_permissions",
            "-p",
            &vhost,
            "no-such-user",
            ".*",
            ".*",
            ".*",
        ],
    )
    .await
    .fails(67);
    ctl(&broker, &["delete_vhost", &vhost]).await.ok();
    ctl(&broker, &["delete_vhost", &vhost]).await.fails(65);
}

#[tokio::test]
async fn export_then_import_definitions_brings_objects_back() {
    let Some(broker) = broker().await else { return };
    let (user, vhost, queue) = (unique("def-user"), unique("def-vhost"), unique("def-q"));
    ctl(&broker, &["add_user", &user, "pw"]).await.ok();
    ctl(&broker, &["add_vhost", &vhost]).await.ok();
    ctl(
        &broker,
        &["set_permissions", "-p", &vhost, &user, ".*", ".*", ".*"],
    )
    .await
    .ok();
    ctl(
        &broker,
        &["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"],
    )
    .await
    .ok();
    let url = format!("amqp://guest:guest@{}/{vhost}", broker.addr());
    let conn = lp::connect_url(&url).await.unwrap();
    let channel = lp::open_channel(&conn).await;
    within(
        "queue.declare-ok",
        channel.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    drop(conn);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("defs.json");
    let file = file.to_str().unwrap();
    ctl(&broker, &["export_definitions", file]).await.ok();
    let defs: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    assert!(defs["queues"]
        .as_array()
        .unwrap()
        .iter()
        .any(|q| q["name"] == queue.as_str()));
    // `-` writes the same JSON to stdout, with no banner.
    let stdout = ctl(&broker, &["export_definitions", "-"]).await.json();
    assert_eq!(stdout["users"], defs["users"]);

    ctl(&broker, &["delete_vhost", &vhost]).await.ok();
    ctl(&broker, &["delete_user", &user]).await.ok();
    assert!(!ctl(&broker, &["list_vhosts", "-s"])
        .await
        .ok()
        .lines()
        .any(|l| l == vhost));

    let out = ctl(&broker, &["import_definitions", file]).await.ok();
    assert!(out.contains("Importing definitions"), "{out}");
    assert!(ctl(&broker, &["list_vhosts", "-s"])
        .await
        .ok()
        .lines()
        .any(|l| l == vhost));
    assert!(ctl(&broker, &["list_users", "-s"])
        .await
        .ok()
        .lines()
        .any(|l| l.starts_with(&format!("{user}\t"))));
    let queues = ctl(
        &broker,
        &["list_queues", "-p", &vhost, "-s", "name", "durable"],
    )
    .await
    .ok();
    assert_eq!(queues, format!("{queue}\ttrue\n"));
    ctl(&broker, &["authenticate_user", &user, "pw"]).await.ok();

    ctl(&broker, &["import_definitions", "/no/such/file.json"])
        .await
        .fails(65);
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
async fn status_cluster_and_diagnostics() {
    let Some(broker) = broker().await else { return };
    ctl(&broker, &["await_startup", "--timeout", "10"])
        .await
        .ok();
    assert_eq!(ctl(&broker, &["ping", "-q"]).await.ok(), "Ping succeeded\n");
    ctl(&broker, &["check_running"]).await.ok();
    ctl(&broker, &["check_local_alarms"]).await.ok();
    let out = ctl(&broker, &["check_port_connectivity"]).await.ok();
    assert!(out.contains("Successfully connected to ports"), "{out}");
    ctl(&broker, &["enable_feature_flag", "all"]).await.ok();

    let status = ctl(&broker, &["status", "--formatter", "json"])
        .await
        .json();
    assert_eq!(status["product_name"], "Pigeon");
    assert!(status["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l["protocol"] == "amqp" && l["port"] == broker.addr().port()));
    let text = ctl(&broker, &["status"]).await.ok();
    assert!(text.starts_with("Status of node "), "{text}");

    let name = unique("cluster");
    ctl(&broker, &["set_cluster_name", &name]).await.ok();
    let cluster = ctl(&broker, &["cluster_status", "--formatter", "json"])
        .await
        .json();
    assert_eq!(cluster["cluster_name"], name.as_str());
    assert_eq!(cluster["running_nodes"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn memory_watermark_and_disk_limit_change_at_runtime() {
    let Some(broker) = broker().await else { return };
    // A watermark of 1 KiB: the process uses more, the alarm is on at once.
    ctl(&broker, &["set_vm_memory_high_watermark", "absolute", "1k"])
        .await
        .ok();
    assert_eq!(broker.server().unwrap().memory_limit(), 1024);
    let line = ctl(&broker, &["check_local_alarms"]).await.fails(69);
    assert!(line.contains("memory"), "{line}");
    let status = ctl(&broker, &["status", "--formatter", "json"])
        .await
        .json();
    assert_eq!(status["vm_memory_high_watermark_limit"], 1024);
    assert_eq!(status["alarms"], serde_json::json!(["memory"]));
    // Back to a fraction of the machine's memory: the alarm clears.
    ctl(&broker, &["set_vm_memory_high_watermark", "0.4"])
        .await
        .ok();
    ctl(&broker, &["check_local_alarms"]).await.ok();
    ctl(&broker, &["set_vm_memory_high_watermark", "1.5"])
        .await
        .fails(65);

    ctl(&broker, &["set_disk_free_limit", "60MB"]).await.ok();
    let status = ctl(&broker, &["status", "--formatter", "json"])
        .await
        .json();
    assert_eq!(status["disk_free_limit"], 60_000_000);
    ctl(&broker, &["set_disk_free_limit", "lots"])
        .await
        .fails(65);

    // Administrators only.
    let user = unique("mon");
    ctl(&broker, &["add_user", &user, "pw"]).await.ok();
    ctl(&broker, &["set_user_tags", &user, "monitoring"])
        .await
        .ok();
    let line = ctl(
        &broker,
        &[
            "--username",
            &user,
            "--password",
            "pw",
            "set_vm_memory_high_watermark",
            "0.5",
        ],
    )
    .await
    .fails(69);
    assert!(line.contains("Not administrator"), "{line}");
}

#[tokio::test]
async fn vhost_and_user_limits() {
    let Some(broker) = broker().await else { return };
    let (vhost, user) = (unique("lim-vhost"), unique("lim-user"));
    ctl(&broker, &["add_vhost", &vhost]).await.ok();
    ctl(&broker, &["add_user", &user, "pw"]).await.ok();
    ctl(
        &broker,
        &[
            "set_vhost_limits",
            "-p",
            &vhost,
            r#"{"max-connections": 10, "max-queues": 5}"#,
        ],
    )
    .await
    .ok();
    let out = ctl(&broker, &["list_vhost_limits", "-p", &vhost, "-q"])
        .await
        .ok();
    assert_eq!(out, "{\"max-connections\":10,\"max-queues\":5}\n");
    // set_vhost_limits replaces the whole set, as RabbitMQ's does.
    ctl(
        &broker,
        &["set_vhost_limits", "-p", &vhost, r#"{"max-queues": 7}"#],
    )
    .await
    .ok();
    let out = ctl(&broker, &["list_vhost_limits", "-p", &vhost, "-q"])
        .await
        .ok();
    assert_eq!(out, "{\"max-queues\":7}\n");

    ctl(
        &broker,
        &["set_user_limits", &user, r#"{"max-channels": 3}"#],
    )
    .await
    .ok();
    let out = ctl(&broker, &["list_user_limits", "--user", &user, "-q"])
        .await
        .ok();
    assert_eq!(out, "{\"max-channels\":3}\n");
    ctl(&broker, &["list_vhost_limits", "-p", "no-such-vhost"])
        .await
        .fails(65);
    ctl(
        &broker,
        &["set_user_limits", "no-such-user", r#"{"max-channels": 3}"#],
    )
    .await
    .fails(67);
}

#[tokio::test]
async fn ctl_policies_set_list_clear() {
    let Some(broker) = broker().await else { return };
    let name = unique("ttl");
    let out = ctl(
        &broker,
        &[
            "set_policy",
            "--priority",
            "1",
            "--apply-to",
            "queues",
            &name,
            "^q",
            r#"{"message-ttl":1000}"#,
        ],
    )
    .await
    .ok();
    assert_eq!(
        out,
        format!(
            "Setting policy \"{name}\" for pattern \"^q\" to \"{{\"message-ttl\":1000}}\" with priority \"1\" for vhost \"/\" ...\n"
        )
    );
    let out = ctl(&broker, &["list_policies", "-q"]).await.ok();
    assert_eq!(
        out,
        format!(
            "vhost\tname\tpattern\tapply-to\tdefinition\tpriority\n/\t{name}\t^q\tqueues\t{{\"message-ttl\":1000}}\t1\n"
        )
    );
    let json = ctl(&broker, &["list_policies", "--formatter", "json"])
        .await
        .json();
    assert_eq!(json[0]["definition"], "{\"message-ttl\":1000}");
    ctl(&broker, &["clear_policy", &name]).await.ok();
    assert_eq!(ctl(&broker, &["list_policies", "-s"]).await.ok(), "");
    ctl(&broker, &["clear_policy", &name]).await.fails(69);
}

#[tokio::test]
async fn node_and_credentials_come_from_the_environment_or_a_rabbitmqadmin_config() {
    let Some(broker) = broker().await else { return };
    let user = unique("env-user");
    ctl(&broker, &["add_user", &user, "pw"]).await.ok();
    ctl(&broker, &["set_user_tags", &user, "administrator"])
        .await
        .ok();
    let url = api_url(&broker);
    let home = tempfile::tempdir().unwrap();

    // PIGEON_URL, PIGEON_USER, PIGEON_PASS.
    let env = [
        ("PIGEON_URL", url.as_str()),
        ("PIGEON_USER", user.as_str()),
        ("PIGEON_PASS", "pw"),
    ];
    let who = ctl_with(home.path(), &env, &["list_users", "-s"])
        .await
        .ok();
    assert!(who.contains(&user), "{who}");
    let env = [
        ("PIGEON_URL", url.as_str()),
        ("PIGEON_USER", user.as_str()),
        ("PIGEON_PASS", "nope"),
    ];
    ctl_with(home.path(), &env, &["list_users"]).await.fails(69);

    // ~/.rabbitmqadmin.conf: [default], or the section --node names.
    let addr = broker.server().unwrap().management_addr().unwrap();
    let conf = format!(
        "[default]\nhostname = 127.0.0.1\nport = 1\n\n[mine]\nhostname = {}\nport = {}\nusername = {user}\npassword = pw\n",
        addr.ip(),
        addr.port()
    );
    std::fs::write(home.path().join(".rabbitmqadmin.conf"), conf).unwrap();
    ctl_with(home.path(), &[], &["ping"]).await.fails(69);
    ctl_with(home.path(), &[], &["--node", "mine", "ping"])
        .await
        .ok();
    // Flags win over the file.
    ctl_with(
        home.path(),
        &[],
        &["--node", "mine", "--password", "nope", "ping"],
    )
    .await
    .fails(69);
}
