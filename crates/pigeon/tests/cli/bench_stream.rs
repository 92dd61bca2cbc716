//! `pigeon bench stream` against the real binary: the bench runs as a child process, as a user
//! would run it, against the in-process broker's RabbitMQ Stream protocol listener. Its JSON
//! report must count every message published, confirmed, and consumed once by every consumer
//! (each consumer of a stream reads all of it), with and without sub-entry batching; a
//! read-only run (`-x 0`) must then read the stream it left back from `first`.

use pigeon_tests::streams_support::data_dir;
use pigeon_tests::{unique, within, TestBroker};
use serde_json::Value;
use std::process::Command;

/// Runs `pigeon bench stream --url <broker> ARGS --json` to the end; returns its report.
async fn bench_stream(broker: &TestBroker, args: &[&str]) -> Value {
    let addr = broker.stream_addr().expect("the stream listener");
    let url = format!("rabbitmq-stream://guest:guest@{addr}/%2f");
    let bin = std::env::var("PIGEON_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_pigeon").into());
    let mut command = Command::new(bin);
    command
        .args([
            "bench",
            "stream",
            "--url",
            &url,
            "--json",
            "--timeout",
            "30",
        ])
        .args(args);
    // The broker runs in this process: wait for the child off the runtime's threads.
    let out = within(
        "pigeon bench stream to finish",
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

/// Every message published, confirmed and consumed by each of `consumers`, exactly once.
fn assert_every_message_once(report: &Value, published: u64, consumers: u64) {
    assert_eq!(report["published"], published, "{report}");
    assert_eq!(report["confirmed"], published, "{report}");
    assert_eq!(report["nacked"], 0, "{report}");
    assert_eq!(report["sharing"], "fan-out", "{report}");
    assert_eq!(report["expected"], published * consumers, "{report}");
    assert_eq!(report["consumed"], published * consumers, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
    assert_eq!(report["malformed"], 0, "{report}");
    assert_eq!(report["ending"], "completed", "{report}");
    assert!(report["latency_us"]["samples"].as_u64() == Some(published * consumers));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_published_confirmed_and_consumed_once_by_each_consumer() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    // The run's own stream (created, then deleted), a window smaller than the total, and
    // frames that do not divide the count.
    let report = bench_stream(
        &broker,
        &[
            "-x",
            "2",
            "-y",
            "2",
            "--count",
            "5000",
            "--max-inflight",
            "300",
            "--batch",
            "7",
        ],
    )
    .await;
    assert_every_message_once(&report, 10_000, 2);
    assert_eq!(report["protocol"], "stream", "{report}");

    // Sub-entry batching with bodies over 255 bytes (a vbin32 data section), into a named
    // stream that stays for the read below.
    let stream = unique("bench-stream");
    let report = bench_stream(
        &broker,
        &[
            "--stream",
            &stream,
            "-y",
            "3",
            "-s",
            "300",
            "--count",
            "3001",
            "--sub-entry",
            "10",
            "--batch",
            "4",
            "--offset",
            "first",
        ],
    )
    .await;
    assert_every_message_once(&report, 3001, 3);
    assert_eq!(report["settings"]["sub_entry"], 10, "{report}");

    // Read-only: two readers from first, to the message count the stream holds; then delete.
    let report = bench_stream(
        &broker,
        &[
            "-x", "0", "-y", "2", "--stream", &stream, "--count", "3001", "--delete",
        ],
    )
    .await;
    assert_eq!(report["mode"], "read", "{report}");
    assert_eq!(report["messages"], 2 * 3001, "{report}");
    for reader in report["per_consumer"].as_array().unwrap() {
        assert_eq!(reader["messages"], 3001, "{report}");
        assert!(reader["bytes"].as_u64().unwrap() > 3001 * 300, "{report}");
    }
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
}
