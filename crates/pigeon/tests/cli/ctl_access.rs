//! `pigeon ctl` on users, vhosts, permissions, limits, policies and definitions (see `ctl.rs`
//! for how the binary is run); a login `ctl` grants is checked with lapin.
//!
//! `ctl_policies_*` need the policies endpoints (`/api/policies/{vhost}/{name}`), which come
//! with the policies work.

use crate::ctl_support;

use ctl_support::{broker, ctl};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::{unique, within};
use serde_json::Value;

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
