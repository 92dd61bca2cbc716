//! Idle quorum-queue groups: timers off on every member, writes still replicated, a lost leader
//! replaced once the survivors are woken; and what 1,000 groups cost on three nodes.

use crate::common;
use crate::quorum::{publish, queue_leader, start_queue, stop};

use common::{TestCluster, WITHIN};
use openraft::ServerState;
use pigeon_cluster::quorum::{queue_group, QueueConfig, QueueOp, QuorumQueue, Reply};
use pigeon_cluster::{Member, Timing};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_group_replicates_and_elects_again_once_woken_after_losing_its_leader() {
    // The idle policy off: this test switches the timers by hand (what the policy builds on).
    let timing = Timing {
        quorum_idle_after: None,
        ..common::timing()
    };
    let mut cluster = TestCluster::start_with(3, timing).await;
    cluster.leader().await;
    let mut queues = start_queue(&cluster, queue_group("/", "idle")).await;
    let first = queue_leader(&queues).await;
    for q in queues.iter().flatten() {
        q.set_idle(true);
    }
    let leader = queues[first].clone().unwrap();
    let r = leader.write(publish(1, 1, "while idle")).await.unwrap();
    assert_eq!(r.reply, Reply::Enqueued(1));
    stop(&mut cluster, &mut queues, first).await;
    // Idle survivors do not notice: no election timer runs. Watched for three maximal election
    // timeouts (a negative check needs a window; a timer firing would be the bug looked for).
    let survivors: Vec<QuorumQueue> = queues.iter().flatten().cloned().collect();
    for q in &survivors {
        let mut m = q.raft().metrics();
        let moved = tokio::time::timeout(
            Duration::from_millis(1_800),
            m.wait_for(|m| m.state != ServerState::Follower),
        )
        .await;
        assert!(moved.is_err(), "an idle follower started an election");
    }
    // Node-level liveness wakes them (here by hand): a new leader, with the message.
    for q in &survivors {
        q.set_idle(false);
    }
    let second = queue_leader(&queues).await;
    assert_ne!(second, first);
    let new_leader = queues[second].clone().unwrap();
    let r = new_leader.write(QueueOp::Tick).await.unwrap();
    assert_eq!(r.reply, Reply::Ok);
    assert_eq!(new_leader.machine().read(|m| m.counts().ready), 1);
    for q in queues.into_iter().flatten() {
        q.shutdown().await;
    }
    cluster.shutdown().await;
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// User plus system CPU time of this process, in clock ticks (1/100 s on Linux).
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

async fn cpu_over(window: Duration) -> f64 {
    let (t0, c0) = (Instant::now(), cpu_ticks());
    tokio::time::sleep(window).await;
    (cpu_ticks() - c0) as f64 / 100.0 / t0.elapsed().as_secs_f64()
}

/// Run by hand: `cargo test -p pigeon-cluster --test cluster quorum_idle::memory -- --ignored
/// --nocapture`. Prints the resident memory and CPU of 1,000 groups on three in-process nodes
/// (production timers: 250 ms heartbeats), with heartbeats and idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, minutes long; run by hand"]
async fn memory_of_1000_idle_groups_on_three_nodes() {
    let groups: u64 = std::env::var("PIGEON_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let cluster = TestCluster::start_with(3, Timing::default()).await;
    cluster.leader().await;
    let members: Vec<Member> = cluster
        .nodes
        .iter()
        .map(|n| Member {
            name: n.name.clone(),
            addr: n.addr.to_string(),
        })
        .collect();
    let before = rss_kib();
    let mut all = Vec::new();
    for g in 0..groups {
        let group = queue_group("/", &format!("q{g}"));
        let mut members_of = Vec::new();
        for node in &cluster.nodes {
            members_of.push(
                QuorumQueue::start(node.cluster(), group, QueueConfig::default())
                    .await
                    .unwrap(),
            );
        }
        // Leaders spread over the nodes, as queues declared on different nodes would be.
        members_of[(g % 3) as usize]
            .initialize(&members)
            .await
            .unwrap();
        all.push(members_of);
    }
    let started = Instant::now();
    let deadline = started + WITHIN * 15;
    let leaderless = || {
        all.iter()
            .filter(|ms| ms.iter().any(|q| q.leader().is_none()))
            .count()
    };
    while leaderless() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "{groups} groups started; {} without a leader everywhere after {:?}",
        leaderless(),
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let formed = rss_kib();
    let busy = cpu_over(Duration::from_secs(5)).await;
    for q in all.iter().flatten() {
        q.set_idle(true);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = cpu_over(Duration::from_secs(5)).await;
    let idle_rss = rss_kib();
    let members_total = groups * 3;
    println!(
        "{groups} groups x 3 members: RSS {before} KiB before, {formed} KiB formed (+{} KiB, \
         {:.1} KiB per member), {idle_rss} KiB idle; CPU {busy:.2} cores with heartbeats, \
         {idle:.2} idle",
        formed - before,
        (formed - before) as f64 / members_total as f64
    );
    for q in all.iter().flatten() {
        q.shutdown().await;
    }
    cluster.shutdown().await;
}
