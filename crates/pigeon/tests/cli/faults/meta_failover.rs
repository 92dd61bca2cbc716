//! The metadata group under faults (helper metaelect; docs/clustering.md, "Raft timing and
//! failover"): its leader's node killed, and its leader's links slowed to a 300 ms round trip.
//! Metadata changes (durable declares, vhosts) must go through the survivors in both.

use super::proxy::Mode;
use super::{bounded, put, Cluster};
use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use std::time::Duration;
use tokio::time::Instant;

/// The metadata group's election timeout of 120-240 s, so its followers' leader lease (openraft
/// 0.9's `election_timeout_max`) is 240 s and none of them elects on its timer before 360 s of
/// silence: a leader elected within the test's bounds can only have been elected on node
/// liveness's word.
const TIMERS_OFF: &str = "metadata_election_timeout_ms = 120000\n";

/// The metadata leader as every running node sees it, once they agree.
async fn agreed_meta_leader(cluster: &Cluster) -> usize {
    bounded("the nodes to agree on a metadata leader", 60, async {
        loop {
            let mut seen = Vec::new();
            for i in (0..cluster.nodes.len()).filter(|&i| cluster.nodes[i].running()) {
                seen.push(cluster.meta_leader(i).await);
            }
            if seen.iter().all(Option::is_some) && seen.windows(2).all(|w| w[0] == w[1]) {
                if let Some(Some(leader)) = seen.first() {
                    return *leader;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
}

/// Waits until node `i` lists queue `name`.
async fn until_known(cluster: &Cluster, i: usize, name: &str) {
    bounded(&format!("n{i} to know {name}"), 30, async {
        while cluster
            .get(i, &format!("/api/queues/%2f/{name}"))
            .await
            .is_none()
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declare_goes_through_at_once_when_the_metadata_leaders_node_is_killed() {
    let mut cluster = Cluster::start_with(3, TIMERS_OFF).await;
    let leader = agreed_meta_leader(&cluster).await;
    let survivor = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    // A change through a follower: both followers have heard from the leader within their
    // lease and hold a committed vote for it, so each refuses any other candidate's vote until
    // the lease runs out (240 s) unless it campaigns itself.
    cluster.declare(survivor, "mf.before", false).await;
    until_known(&cluster, other, "mf.before").await;
    eprintln!("SIGKILL of n{leader}, the metadata leader");
    let killed = Instant::now();
    cluster.kill(leader);
    // `declare` gives up after 60 s: well before any survivor's election timer (above).
    // Behind the proxies the killed node looks silent (the proxy still accepts connections),
    // so liveness finds it down after its 4 s timeout, not at once: the declare takes that.
    cluster.declare(survivor, "mf.after", false).await;
    eprintln!(
        "kill -> durable queue.declare through n{survivor} done: {:?}",
        killed.elapsed()
    );
    let new_leader = agreed_meta_leader(&cluster).await;
    assert_ne!(new_leader, leader, "the killed node still leads");
    until_known(&cluster, other, "mf.after").await;
    // Through the other survivor too, and the killed node catches up when it is back.
    cluster.declare(other, "mf.after.other", false).await;
    cluster.restart(leader).await;
    until_known(&cluster, leader, "mf.after.other").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_slow_metadata_leader_still_commits() {
    let cluster = Cluster::start(3).await;
    let leader = agreed_meta_leader(&cluster).await;
    cluster.declare(leader, "ms.warmup", false).await;
    // Every link of the metadata leader slowed by 150 ms each way: a 300 ms round trip to each
    // follower, the majority intact. openraft 0.9 gives each AppendEntries the heartbeat
    // interval to be answered (`replication/mod.rs`); with a 250 ms heartbeat no answer came in
    // time and nothing committed.
    for j in (0..3).filter(|&j| j != leader) {
        cluster
            .links
            .set(leader, j, Mode::Delay(Duration::from_millis(150)));
        cluster
            .links
            .set(j, leader, Mode::Delay(Duration::from_millis(150)));
    }
    let follower = (leader + 1) % 3;
    for round in 0..3 {
        // `declare` retries a timed-out change for up to 60 s, then fails the test.
        let started = Instant::now();
        cluster
            .declare(leader, &format!("ms.leader.{round}"), false)
            .await;
        cluster
            .declare(follower, &format!("ms.follower.{round}"), false)
            .await;
        eprintln!("round {round}: two declares in {:?}", started.elapsed());
    }
    let api = cluster.nodes[follower].api();
    bounded("a vhost created through a follower", 60, async {
        loop {
            match put(&api, "/api/vhosts/ms.slow", serde_json::json!({}), 30).await {
                Some(200..=299) => return,
                status => eprintln!("PUT /api/vhosts/ms.slow: {status:?}"),
            }
        }
    })
    .await;
    // The changes were committed by the slow leader, not by a successor.
    assert_eq!(agreed_meta_leader(&cluster).await, leader);
    for i in 0..3 {
        until_known(&cluster, i, "ms.follower.2").await;
    }
}

/// Declares the durable queue `name` through `url` until it succeeds; the time it took.
async fn declare_until_ok(url: &str, name: &str) -> Duration {
    let started = Instant::now();
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let mut conn: Option<Connection> = None;
    bounded(&format!("queue.declare {name}"), 120, async {
        loop {
            if conn.as_ref().is_none_or(|c| !c.status().connected()) {
                conn = Connection::connect(url, ConnectionProperties::default())
                    .await
                    .ok();
            }
            if let Some(c) = &conn {
                if let Ok(ch) = c.create_channel().await {
                    match ch
                        .queue_declare(name.into(), durable, FieldTable::default())
                        .await
                    {
                        Ok(_) => return started.elapsed(),
                        Err(e) => eprintln!("queue.declare {name}: {e}"),
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

/// The measurement of docs/clustering.md, "Raft timing and failover": SIGKILL of the metadata
/// leader's node, then the time until a durable `queue.declare` through a survivor succeeds
/// (the connection to the survivor opened before the kill), with the default timers. Without
/// the proxies, so that the killed node's port refuses connections, as it would on a host.
/// `PIGEON_META_FAILOVER_RUNS` runs (default 3), each on a fresh cluster.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement: run with --ignored --nocapture"]
async fn measure_metadata_failover() {
    let runs: usize = std::env::var("PIGEON_META_FAILOVER_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let mut figures = Vec::new();
    for run in 0..runs {
        let mut cluster = Cluster::start_direct(3).await;
        let leader = agreed_meta_leader(&cluster).await;
        let survivor = (leader + 1) % 3;
        let url = cluster.nodes[survivor].url();
        declare_until_ok(&url, &format!("mm.before.{run}")).await;
        // A second of heartbeats: the followers' leases are fresh, as in a running cluster.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let conn = Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap();
        let killed = Instant::now();
        cluster.kill(leader);
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let name = format!("mm.after.{run}");
        let first = match conn.create_channel().await {
            Ok(ch) => ch
                .queue_declare(name.as_str().into(), durable, FieldTable::default())
                .await
                .is_ok(),
            Err(_) => false,
        };
        if !first {
            declare_until_ok(&url, &name).await;
        }
        let took = killed.elapsed();
        eprintln!("run {run}: SIGKILL of the metadata leader n{leader} -> durable queue.declare through n{survivor} ok: {took:?} (first attempt ok: {first})");
        figures.push(took);
    }
    eprintln!("metadata failover, kill -> first change: {figures:?}");
}
