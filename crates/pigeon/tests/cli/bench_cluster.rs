//! `pigeon bench` against a three-node cluster of real `pigeon` processes, as
//! `bench/cluster_compare.sh` runs it: quorum queues declared through one node
//! (`--declare-url`, `--queue-arg`), producers on one node (`--url`), consumers on another
//! (`--consumer-url`), confirms counted, every message consumed once, and the longest wait
//! between two acks reported; `pigeon bench declare` declares and deletes many quorum queues.

use super::cluster::{start_all, write_configs, Node};
use super::ctl_support::ctl_at;
use pigeon_tests::within;
use serde_json::Value;
use std::process::Command;

/// Runs `pigeon bench ARGS` to the end; returns its JSON report.
async fn bench(args: &[&str]) -> Value {
    let bin = std::env::var("PIGEON_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_pigeon").into());
    let mut command = Command::new(bin);
    command.arg("bench").args(args);
    let out = within(
        "pigeon bench to finish",
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

/// The quorum queues `node` lists whose names start with `prefix`.
async fn quorum_queues(node: &Node, prefix: &str) -> Vec<Value> {
    let out = ctl_at(
        &node.api(),
        &[
            "list_queues",
            "name",
            "type",
            "members",
            "--formatter",
            "json",
        ],
    )
    .await;
    let all: Value = serde_json::from_str(&out.ok()).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .filter(|q| q["name"].as_str().unwrap_or("").starts_with(prefix))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_spreads_a_quorum_queue_run_over_the_nodes_and_declares_idle_queues() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    let nodes = start_all(&configs).await;
    let url = |i: usize| nodes[i].url("guest", "guest");
    let (a, b, c) = (url(0), url(1), url(2));
    let report = bench(&[
        "--json",
        "--count",
        "400",
        "-x",
        "2",
        "-y",
        "2",
        "--queues",
        "2",
        "-s",
        "1024",
        "--persistent",
        "--confirm",
        "--confirm-window",
        "32",
        "--ack",
        "--multi-ack-every",
        "10",
        "--prefetch",
        "50",
        "--queue-arg",
        "x-queue-type=quorum",
        "--queue-arg",
        "x-quorum-initial-group-size=3",
        "--url",
        &a,
        "--url",
        &b,
        "--consumer-url",
        &c,
        "--declare-url",
        &a,
        "--timeout",
        "30",
    ])
    .await;
    assert_eq!(report["published"], 800, "{report}");
    assert_eq!(report["confirmed"], 800, "{report}");
    assert_eq!(report["nacked"], 0, "{report}");
    assert_eq!(report["consumed"], 800, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["ending"], "completed", "{report}");
    let gap = &report["max_confirm_gap"];
    assert!(gap["ms"].as_f64().is_some(), "{report}");
    assert!(
        gap["from_unix_ms"].as_u64() <= gap["to_unix_ms"].as_u64(),
        "{report}"
    );
    // Every node the run used is named, the producers' first.
    let named = report["url"].as_str().unwrap();
    for node in &nodes {
        assert!(named.contains(&node.amqp.to_string()), "{named}");
    }
    // The run deleted its queues (node B applies the deletion a moment after node A answered).
    until_gone(&nodes[1], "pigeon-bench-").await;

    // Many idle quorum queues, declared through node B, listed with three members by node C.
    let declare = |delete: bool| {
        let mut args: Vec<&str> = vec![
            "declare",
            "--url",
            b.as_str(),
            "--count",
            "12",
            "--prefix",
            "idle",
            "--connections",
            "4",
            "--queue-arg",
            "x-queue-type=quorum",
        ];
        if delete {
            args.push("--delete");
        }
        args.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let args = declare(false);
    let report = bench(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(
        (report["done"].as_u64(), report["queues"].as_u64()),
        (Some(12), Some(12)),
        "{report}"
    );
    assert_eq!(report["action"], "declare", "{report}");
    within("the idle queues listed on node C", async {
        while quorum_queues(&nodes[2], "idle-").await.len() < 12 {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
    for q in quorum_queues(&nodes[2], "idle-").await {
        assert_eq!(q["type"], "quorum", "{q}");
        assert_eq!(q["members"].as_array().map(Vec::len), Some(3), "{q}");
    }
    let args = declare(true);
    let report = bench(&args.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(report["done"], 12, "{report}");
    until_gone(&nodes[1], "idle-").await;
}

/// Waits until `node` lists no queue whose name starts with `prefix`.
async fn until_gone(node: &Node, prefix: &str) {
    within(&format!("{prefix}* gone from {}", node.api()), async {
        while !quorum_queues(node, prefix).await.is_empty() {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;
}
