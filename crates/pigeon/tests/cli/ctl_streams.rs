//! `pigeon ctl add_super_stream` and `delete_super_stream` (rabbitmq-streams' commands): the
//! real binary against an in-process broker with a data directory, its output and exit codes
//! as rabbitmq-streams', and the super stream it makes used by lapin (publishing to the
//! exchange by key, reading the partition streams from `first`).

use crate::ctl_support;

use ctl_support::ctl;
use pigeon_tests::http_support::Api;
use pigeon_tests::lapin_support::{self as lp, text};
use pigeon_tests::streams_support::{confirm_channel, data_dir, next, stream_consumer};
use pigeon_tests::unique;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_super_stream_makes_partitions_lapin_publishes_to_and_reads() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let name = unique("orders");
    let out = ctl(&broker, &["add_super_stream", &name, "--partitions", "2"])
        .await
        .ok();
    assert_eq!(
        out,
        format!("Adding a super stream...\nSuper stream {name} has been created\n")
    );
    let conn = lp::connect(&broker).await;
    let ch = confirm_channel(&conn).await;
    lp::publish(&ch, &name, "1", b"one").await;
    lp::publish(&ch, &name, "0", b"zero").await;
    for (partition, body) in [("0", "zero"), ("1", "one")] {
        let c = lp::open_channel(&conn).await;
        let mut consumer =
            stream_consumer(&c, &format!("{name}-{partition}"), Some(text("first"))).await;
        assert_eq!(next(&mut consumer).await, (body.to_string(), 0));
    }

    // Quiet: no banner. Deleting takes the partitions with it.
    let out = ctl(&broker, &["-q", "delete_super_stream", &name])
        .await
        .ok();
    assert_eq!(out, format!("Super stream {name} has been deleted\n"));
    assert!(!lp::exchange_exists(&conn, &name).await);
    assert!(!lp::queue_exists(&conn, &format!("{name}-0")).await);
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_is_three_partitions_and_options_become_stream_arguments() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let api = Api::new(&broker);
    let name = unique("metrics");
    ctl(
        &broker,
        &[
            "add_super_stream",
            &name,
            "--max-length-bytes",
            "20gb",
            "--max-age",
            "PT1H30M",
            "--stream-max-segment-size-bytes",
            "50mb",
            "--leader-locator",
            "client-local",
        ],
    )
    .await
    .ok();
    let shown = api
        .get(&format!("/api/stream/super-streams/%2F/{name}"))
        .await
        .body;
    assert_eq!(
        shown["partitions"],
        json!([
            format!("{name}-0"),
            format!("{name}-1"),
            format!("{name}-2")
        ])
    );
    let q = api.get(&format!("/api/queues/%2F/{name}-2")).await.body;
    let args = &q["arguments"];
    assert_eq!(args["x-max-length-bytes"], 20_000_000_000_i64);
    assert_eq!(args["x-max-age"], "5400s");
    assert_eq!(args["x-stream-max-segment-size-bytes"], 50_000_000);
    assert_eq!(args["x-queue-leader-locator"], "client-local");

    // Binding keys, in another vhost.
    let vhost = unique("vh");
    ctl(&broker, &["add_vhost", &vhost]).await.ok();
    ctl(
        &broker,
        &["set_permissions", "-p", &vhost, "guest", ".*", ".*", ".*"],
    )
    .await
    .ok();
    ctl(
        &broker,
        &[
            "add_super_stream",
            "-p",
            &vhost,
            "geo",
            "--binding-keys",
            "eu,us",
        ],
    )
    .await
    .ok();
    let shown = api
        .get(&format!("/api/stream/super-streams/{vhost}/geo"))
        .await
        .body;
    assert_eq!(shown["partitions"], json!(["geo-eu", "geo-us"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_have_rabbitmq_streams_texts_and_exit_codes() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    // Command-line checks (`validate/2`): 64.
    for (args, text) in [
        (vec!["add_super_stream"], "not enough arguments"),
        (
            vec![
                "add_super_stream",
                "s",
                "--partitions",
                "2",
                "--binding-keys",
                "a",
            ],
            "Specify --partitions or --binding-keys, not both.",
        ),
        (
            vec![
                "add_super_stream",
                "s",
                "--binding-keys",
                "a",
                "--routing-keys",
                "b",
            ],
            "Specify --binding-keys only.",
        ),
        (
            vec!["add_super_stream", "s", "--partitions", "0"],
            "The partition number must be greater than 0",
        ),
        (
            vec!["add_super_stream", "s", "--max-length-bytes", "lots"],
            "Invalid value for --max-length-bytes",
        ),
        (
            vec!["add_super_stream", "s", "--max-age", "1h"],
            "Invalid value for --max-age",
        ),
        (
            vec!["add_super_stream", "s", "--leader-locator", "nearest"],
            "Invalid value for --leader-locator",
        ),
        (
            vec!["add_super_stream", "s", "--initial-cluster-size", "0"],
            "Invalid value for --initial-cluster-size",
        ),
    ] {
        let line = ctl(&broker, &args).await.fails(64);
        assert!(line.contains(text), "{args:?}: {line}");
    }
    // The node's refusals (`exit_software`): 70.
    let name = unique("dup");
    ctl(&broker, &["add_super_stream", &name, "--partitions", "1"])
        .await
        .ok();
    let line = ctl(&broker, &["add_super_stream", &name, "--partitions", "1"])
        .await
        .fails(70);
    assert_eq!(
        line,
        format!(
            "Error: {{reference_already_exists,\"there is already an exchange named {name}\"}}"
        )
    );
    let line = ctl(&broker, &["delete_super_stream", &unique("missing")])
        .await
        .fails(70);
    assert_eq!(line, "Error: stream_not_found");
}
