//! `pigeon ctl` on the node: status, cluster status, the diagnostics checks, the memory
//! watermark and disk limit changed at runtime, and where the node and the credentials come
//! from (flags, `PIGEON_*`, `~/.rabbitmqadmin.conf`). See `ctl.rs` for how the binary is run.

use crate::ctl_support;

use ctl_support::{api_url, broker, ctl, ctl_with};
use pigeon_tests::unique;

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
