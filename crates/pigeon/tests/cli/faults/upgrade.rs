//! The rolling upgrade (issue 13, item 6; docs/clustering.md, "Operations"): three nodes,
//! confirmed publishing into a quorum queue and two durable classic queues (homed on two
//! different nodes) all along; for each node in turn `pigeon ctl drain`, SIGTERM, the same
//! binary started again (the "upgrade"), and a wait until the cluster sees it running. At
//! the end every confirmed message is consumed.

use super::workload::Workload;
use super::{bounded, seeded, Cluster};
use pigeon_tests::pigeon_bin;
use std::process::Command;
use std::time::Duration;

/// `pigeon ctl <args>` against node `i`'s API (a drain waits for the leaderships to move:
/// longer than the other tests' `ctl` allows).
async fn ctl(cluster: &Cluster, i: usize, args: &[&str]) -> (i32, String) {
    let mut command = Command::new(pigeon_bin());
    command
        .arg("ctl")
        .args(["--node", &cluster.nodes[i].api()])
        .args(args)
        .env_remove("PIGEON_URL")
        .env_remove("PIGEON_USER")
        .env_remove("PIGEON_PASS");
    let out = bounded(
        "pigeon ctl",
        90,
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .unwrap()
    .expect("pigeon ctl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_upgrade_loses_no_confirmed_message() {
    let test = "rolling_upgrade_loses_no_confirmed_message";
    let (_, _rng) = seeded(test);
    let mut cluster = Cluster::start(3).await;
    // A quorum queue, and classic durable queues homed on n1 and n2 (client-local).
    let queues = [("uq", 0, true), ("uc1", 1, false), ("uc2", 2, false)];
    for (q, home, quorum) in queues {
        cluster.declare(home, q, quorum).await;
    }
    for i in 0..3 {
        for (q, ..) in queues {
            bounded(&format!("n{i} to know {q}"), 30, async {
                while cluster
                    .get(i, &format!("/api/queues/%2f/{q}"))
                    .await
                    .is_none()
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
            .await;
        }
    }
    let urls: Vec<String> = cluster.nodes.iter().map(|n| n.url()).collect();
    let mut works: Vec<Workload> = queues
        .iter()
        .enumerate()
        .map(|(k, (q, ..))| {
            let first = (k as u64 + 1) * 1_000_000_000;
            let mut w = Workload::new(urls.clone(), q, first, Duration::from_millis(20));
            w.publisher(k);
            w
        })
        .collect();
    for w in &works {
        w.progress(20, "before the upgrade", &cluster).await;
    }
    for i in 0..3 {
        let (code, out) = ctl(&cluster, i, &["drain"]).await;
        assert_eq!(code, 0, "drain of n{i}: {out}\n{}", cluster.logs());
        eprintln!("{test}: n{i} drained: {}", out.trim());
        cluster.terminate(i).await;
        cluster.restart(i).await;
        cluster.until_healthy().await;
        // Every queue takes confirmed publishes again (a classic queue's home was down
        // meanwhile: its publishes were nacked).
        for w in &works {
            w.progress(10, &format!("n{i} upgraded"), &cluster).await;
        }
    }
    for w in &mut works {
        w.stop_publishing().await;
        w.consumer(0);
        w.consumer(1);
    }
    for (w, (q, ..)) in works.iter_mut().zip(queues) {
        w.drain(90).await;
        if let Err(e) = w.history.check(&format!("{test} {q}")) {
            panic!("{e}\n{}", cluster.logs());
        }
    }
    cluster.until_same_metadata().await;
}
