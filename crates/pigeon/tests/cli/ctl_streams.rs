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

/// A stream-protocol environment of the broker's user (the `rabbitmq-stream-client` crate).
async fn stream_env(broker: &pigeon_tests::TestBroker) -> rabbitmq_stream_client::Environment {
    let addr = broker.stream_addr().expect("the stream listener");
    pigeon_tests::within(
        "the stream handshake",
        rabbitmq_stream_client::Environment::builder()
            .host(&addr.ip().to_string())
            .port(addr.port())
            .username(broker.user())
            .password(broker.password())
            .build(),
    )
    .await
    .unwrap()
}

/// A single-active consumer of group `name` on `stream`.
async fn sac_consumer(
    env: &rabbitmq_stream_client::Environment,
    stream: &str,
    name: &str,
) -> rabbitmq_stream_client::Consumer {
    pigeon_tests::within(
        "Subscribe",
        env.consumer()
            .name(name)
            .enable_single_active_consumer(true)
            .offset(rabbitmq_stream_client::types::OffsetSpecification::First)
            .build(stream),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_groups_and_their_consumers_are_listed_as_rabbitmq_streams_does() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let env = stream_env(&broker).await;
    let stream = unique("sac");
    pigeon_tests::within("Create", env.stream_creator().create(&stream))
        .await
        .unwrap();
    let first = sac_consumer(&env, &stream, "grp").await;
    let _second = sac_consumer(&env, &stream, "grp").await;
    // A consumer without single-active is in no group.
    let _plain = pigeon_tests::within("Subscribe", env.consumer().build(&stream))
        .await
        .unwrap();

    let groups = ctl(
        &broker,
        &["list_stream_consumer_groups", "--formatter", "json"],
    )
    .await
    .json();
    assert_eq!(
        groups,
        json!([{"stream": stream, "reference": "grp", "partition_index": -1, "consumers": 2}])
    );
    // Chosen columns, in the order given; the table's header names them.
    let out = ctl(
        &broker,
        &[
            "-q",
            "list_stream_consumer_groups",
            "consumers",
            "reference",
        ],
    )
    .await
    .ok();
    assert_eq!(out, "consumers\treference\n2\tgrp\n");

    let group = [
        "list_stream_group_consumers",
        "--stream",
        &stream,
        "--reference",
        "grp",
        "--formatter",
        "json",
    ];
    let states = |rows: &serde_json::Value| -> Vec<(u64, String)> {
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                assert!(
                    r["connection_name"]
                        .as_str()
                        .is_some_and(|n| n.contains("->")),
                    "{r}"
                );
                (
                    r["subscription_id"].as_u64().unwrap(),
                    r["state"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let rows = ctl(&broker, &group).await.json();
    let listed = states(&rows);
    assert_eq!(
        listed.iter().map(|(_, s)| s.as_str()).collect::<Vec<_>>(),
        ["active", "inactive"],
        "{rows}"
    );
    // The first one goes: the second takes over, and is the only one listed.
    pigeon_tests::within("the consumer's close", first.handle().close())
        .await
        .unwrap();
    pigeon_tests::within("the hand-over", async {
        loop {
            let rows = ctl(&broker, &group).await.json();
            let now = states(&rows);
            if now.len() == 1 && now[0] == (listed[1].0, "active".to_string()) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;

    // rabbitmq-streams' refusals: no such group, a missing option.
    let line = ctl(
        &broker,
        &[
            "list_stream_group_consumers",
            "--stream",
            &stream,
            "--reference",
            "nope",
        ],
    )
    .await
    .fails(65);
    assert_eq!(line, "Error: The group does not exist");
    ctl(
        &broker,
        &["list_stream_group_consumers", "--stream", &stream],
    )
    .await
    .fails(64);
}
