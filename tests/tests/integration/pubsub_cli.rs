//! `pigeon pub` and `pigeon sub`, the real binary run as a user runs it, against an in-process
//! broker: MQTT in and AMQP out and the other way round, `-C` counts, `-l` lines, TLS with
//! client certificates, and a publish the broker refuses failing the command.
//!
//! The binary is built by cargo (once per test process, a no-op when it is up to date) in the
//! target directory of this test, or taken from `PIGEON_BIN`. A `sub` is ready when it logs
//! (`--log info`) that it consumes or has subscribed: the test waits for that line, not a
//! delay, before publishing.

use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use pigeon_tests::access::{self, perm};
use pigeon_tests::lapin_support as lp;
use pigeon_tests::tls_support::{config_with, Pki};
use pigeon_tests::{unique, within, TestBroker};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long a `sub` may take to say it is ready.
const READY: Duration = Duration::from_secs(30);

fn pigeon() -> &'static Path {
    pigeon_tests::pigeon_bin()
}

/// Runs `pigeon <args>` to its end, with `stdin` as its input.
async fn run(args: Vec<String>, stdin: &str) -> Output {
    let stdin = stdin.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(pigeon())
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// A `pigeon sub` running in the background, ready (it said so on stderr).
struct Sub {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Sub {
    async fn start(args: Vec<String>) -> Sub {
        tokio::task::spawn_blocking(move || {
            let mut child = Command::new(pigeon())
                .args(&args)
                .args(["--log", "info", "-W", "60"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let (tx, stderr) = mpsc::channel();
            let err = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let _ = tx.send(line);
                }
            });
            loop {
                let line = stderr
                    .recv_timeout(READY)
                    .expect("pigeon sub to say it is ready");
                if line.contains("consuming from queue") || line.contains("subscribed to") {
                    break;
                }
            }
            Sub { child, stderr }
        })
        .await
        .unwrap()
    }

    /// Waits for the sub to exit (it has a `-C`) and returns its status and stdout.
    async fn finish(self) -> (bool, String) {
        tokio::task::spawn_blocking(move || {
            let Sub { child, stderr } = self;
            let output = child.wait_with_output().unwrap();
            let errors: Vec<String> = stderr.try_iter().collect();
            assert!(output.status.success(), "pigeon sub failed: {errors:?}");
            (
                output.status.success(),
                String::from_utf8(output.stdout).unwrap(),
            )
        })
        .await
        .unwrap()
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn mqtt_url(broker: &TestBroker) -> String {
    let addr = broker.server().unwrap().mqtt_addr().unwrap();
    format!("mqtt://guest:guest@{addr}")
}

/// A queue bound to amq.topic with `key`, declared by lapin (so a `sub -Q` finds it and a
/// publish before the sub starts is kept).
async fn bound_queue(broker: &TestBroker, key: &str) -> String {
    let conn = lp::connect(broker).await;
    let channel = conn.create_channel().await.unwrap();
    let queue = unique("pubsub-cli");
    within(
        "queue.declare",
        channel.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    within(
        "queue.bind",
        channel.queue_bind(
            queue.as_str().into(),
            "amq.topic".into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    queue
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_pub_reaches_an_amqp_sub() {
    let Some(broker) = TestBroker::start_with(access::config()).await else {
        return;
    };
    let topic = unique("cli-m2a");
    let sub = Sub::start(strings(&[
        "sub",
        "-u",
        &broker.amqp_url(),
        "-b",
        &format!("{topic}.#"),
        "-C",
        "1",
        "--format",
        "json",
    ]))
    .await;
    let out = run(
        strings(&[
            "pub",
            "-u",
            &mqtt_url(&broker),
            "-t",
            &format!("{topic}/a"),
            "-m",
            "hello from mqtt",
            "-q",
            "1",
        ]),
        "",
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let (_, stdout) = sub.finish().await;
    let json: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(json["routing_key"], format!("{topic}.a"));
    assert_eq!(json["exchange"], "amq.topic");
    assert_eq!(json["body"], "hello from mqtt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_pub_lines_reach_an_mqtt_sub_which_stops_at_its_count() {
    let Some(broker) = TestBroker::start_with(access::config()).await else {
        return;
    };
    let topic = unique("cli-a2m");
    let sub = Sub::start(strings(&[
        "sub",
        "-u",
        &mqtt_url(&broker),
        "-t",
        &format!("{topic}/#"),
        "-q",
        "1",
        "-C",
        "3",
        "-v",
    ]))
    .await;
    let out = run(
        strings(&[
            "pub",
            "-u",
            &broker.amqp_url(),
            "-e",
            "amq.topic",
            "-k",
            &format!("{topic}.x"),
            "-l",
        ]),
        "one\ntwo\nthree\nfour\n",
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let (_, stdout) = sub.finish().await;
    assert_eq!(
        stdout,
        format!("{topic}/x one\n{topic}/x two\n{topic}/x three\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_count_leaves_the_rest_in_the_queue() {
    let Some(broker) = TestBroker::start_with(access::config()).await else {
        return;
    };
    let queue = bound_queue(&broker, "unused").await;
    let url = broker.amqp_url();
    let out = run(
        strings(&["pub", "-u", &url, "-k", &queue, "-m", "m", "-C", "5"]),
        "",
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let first = run(strings(&["sub", "-u", &url, "-Q", &queue, "-C", "2"]), "").await;
    assert!(first.status.success(), "{first:?}");
    assert_eq!(String::from_utf8(first.stdout).unwrap(), "m\nm\n");
    // The three left are still there, unacked ones requeued: a second sub takes exactly them.
    let rest = run(
        strings(&["sub", "-u", &url, "-Q", &queue, "-C", "3", "-W", "30"]),
        "",
    )
    .await;
    assert!(rest.status.success(), "{rest:?}");
    assert_eq!(String::from_utf8(rest.stdout).unwrap(), "m\nm\nm\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_and_sub_over_tls_with_client_certificates() {
    let pki = Pki::new("pubsub CLI CA");
    let Some(broker) = TestBroker::start_with(config_with(pki.verify_peer(1, true))).await else {
        return;
    };
    let server = broker.server().unwrap();
    let (amqps, mqtts) = (server.amqps_addr().unwrap(), server.mqtts_addr().unwrap());
    let client = pki.client("pigeon-cli");
    let ca = pki.write("ca.pem", &pki.ca_pem());
    let cert = pki.write("client.pem", &client.cert_pem);
    let key = pki.write("client.key", &client.key_pem);
    let tls = |args: &[&str]| {
        let mut args = strings(args);
        for (flag, path) in [("--cafile", &ca), ("--cert", &cert), ("--key", &key)] {
            args.push(flag.into());
            args.push(path.display().to_string());
        }
        args
    };
    let topic = unique("cli-tls");
    let queue = bound_queue(&broker, &format!("{topic}.#")).await;
    let mqtts_url = format!("mqtts://guest:guest@{mqtts}");
    let out = run(
        tls(&[
            "pub",
            "-u",
            &mqtts_url,
            "-t",
            &format!("{topic}/s"),
            "-m",
            "secret",
            "-q",
            "1",
        ]),
        "",
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let amqps_url = format!("amqps://guest:guest@{amqps}/%2f");
    let got = run(
        tls(&["sub", "-u", &amqps_url, "-Q", &queue, "-C", "1", "-W", "30"]),
        "",
    )
    .await;
    assert!(got.status.success(), "{got:?}");
    assert_eq!(String::from_utf8(got.stdout).unwrap(), "secret\n");

    // Without a client certificate the broker refuses the handshake: one line, non-zero.
    let refused = run(
        strings(&[
            "pub",
            "-u",
            &mqtts_url,
            "-t",
            "x",
            "-m",
            "y",
            "--cafile",
            &ca.display().to_string(),
        ]),
        "",
    )
    .await;
    assert!(!refused.status.success(), "{refused:?}");
    let stderr = String::from_utf8(refused.stderr).unwrap();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_publish_fails_the_command() {
    // alice may read and configure but not write.
    let Some(broker) = access::broker_with(perm(".*", "", ".*")).await else {
        return;
    };
    let url = broker.url_as(access::USER, access::PASSWORD);
    let out = run(strings(&["pub", "-u", &url, "-k", "q", "-m", "x"]), "").await;
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("ACCESS_REFUSED"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");

    // A mandatory message no queue takes comes back: that fails too.
    let guest = broker.amqp_url();
    let out = run(
        strings(&[
            "pub",
            "-u",
            &guest,
            "-k",
            &unique("nowhere"),
            "-m",
            "x",
            "--mandatory",
        ]),
        "",
    )
    .await;
    assert!(!out.status.success(), "{out:?}");
    assert!(String::from_utf8(out.stderr).unwrap().contains("NO_ROUTE"));
}
