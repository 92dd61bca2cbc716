//! Idle quorum-queue groups: timers off on every member, writes still replicated, a lost leader
//! replaced once the survivors are woken; and what 1,000 groups cost on three nodes.

use crate::common;
use crate::quorum::{publish, queue_leader, start_queue, stop};

use common::TestCluster;
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

/// Waits, checking every 100 ms, until `done` or `limit` passes; how long it took, or `None`.
async fn until(limit: Duration, mut done: impl FnMut() -> bool) -> Option<Duration> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > limit {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Some(started.elapsed())
}

/// Run by hand, in a release build: `cargo test --release -p pigeon-cluster --test cluster
/// quorum_idle::memory -- --ignored --nocapture` (`PIGEON_GROUPS=10000` for 10,000 groups).
/// Three in-process nodes with production timers (250 ms Raft heartbeats, 500 ms node
/// liveness, groups idle after 5 s without commands) form the groups (leaders spread over the
/// nodes) and print: how long forming took, the resident memory per member once formed and
/// idle, the CPU idle, the CPU for the seconds after one write to every group (awake:
/// heartbeating), and how long the survivors take to give every group a leader after one
/// node is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, minutes long; run by hand"]
async fn memory_of_1000_idle_groups_on_three_nodes() {
    let groups: u64 = std::env::var("PIGEON_GROUPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let mut cluster = TestCluster::start_with(3, Timing::default()).await;
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
    let started = Instant::now();
    let mut all: Vec<Vec<Option<QuorumQueue>>> = Vec::new();
    for g in 0..groups {
        let group = queue_group("/", &format!("q{g}"));
        let mut members_of = Vec::new();
        for node in &cluster.nodes {
            members_of.push(Some(
                QuorumQueue::start(node.cluster(), group, QueueConfig::default())
                    .await
                    .unwrap(),
            ));
        }
        // Leaders spread over the nodes, as queues declared on different nodes would be.
        members_of[(g % 3) as usize]
            .as_ref()
            .unwrap()
            .initialize(&members)
            .await
            .unwrap();
        all.push(members_of);
    }
    let leaderless = |all: &[Vec<Option<QuorumQueue>>]| {
        all.iter()
            .filter(|ms| {
                let leaders: Vec<_> = ms.iter().flatten().map(QuorumQueue::leader).collect();
                // Agreed on a leader that is one of the running members and says it leads.
                leaders.iter().any(Option::is_none)
                    || leaders.windows(2).any(|w| w[0] != w[1])
                    || !ms.iter().flatten().any(QuorumQueue::is_leader)
            })
            .count()
    };
    let awake = |all: &[Vec<Option<QuorumQueue>>]| {
        all.iter()
            .flatten()
            .flatten()
            .filter(|q| !q.is_idle())
            .count()
    };
    let limit = Duration::from_secs(600);
    let led = until(limit, || leaderless(&all) == 0).await;
    println!(
        "{groups} groups: started and initialized in {:?}; every group with one leader known \
         to its three members after {led:?} more",
        started.elapsed() - led.unwrap_or_default()
    );
    let idle = until(limit, || awake(&all) == 0).await;
    println!("every member idle after {idle:?} more");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let formed = rss_kib();
    let idle_cpu = cpu_over(Duration::from_secs(10)).await;
    let members_total = groups * 3;
    println!(
        "{groups} groups x 3 members, idle: RSS {before} KiB before, {formed} KiB formed \
         (+{} KiB, {:.1} KiB per member); CPU {idle_cpu:.3} cores",
        formed - before,
        (formed - before) as f64 / members_total as f64
    );
    // One write to every group, 64 at a time: every group awake (heartbeating) for 5 s after
    // its write. Failures counted rather than fatal: with thousands of groups awake at once on
    // two cores, some writes can time out, which is what this measures.
    let wrote = Instant::now();
    let leaders: Vec<QuorumQueue> = all
        .iter()
        .map(|ms| ms.iter().flatten().find(|q| q.is_leader()).unwrap().clone())
        .collect();
    let mut failed = 0usize;
    for chunk in leaders.chunks(64) {
        let mut writes = tokio::task::JoinSet::new();
        for q in chunk {
            let q = q.clone();
            writes.spawn(async move { q.write(QueueOp::Tick).await });
        }
        while let Some(r) = writes.join_next().await {
            match r.unwrap() {
                Ok(r) => assert_eq!(r.reply, Reply::Ok),
                Err(e) => {
                    if failed == 0 {
                        println!("a write failed: {e}");
                    }
                    failed += 1;
                }
            }
        }
    }
    println!("{failed} of {groups} writes failed");
    let write_time = wrote.elapsed();
    let busy_cpu = cpu_over(Duration::from_secs(3)).await;
    let busy_rss = rss_kib();
    let quiet = until(limit, || awake(&all) == 0).await;
    println!(
        "one write to each group in {write_time:?}; then CPU {busy_cpu:.2} cores while awake, \
         RSS {busy_rss} KiB; every member idle again after {quiet:?}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_cpu = cpu_over(Duration::from_secs(5)).await;
    println!("idle again: CPU {idle_cpu:.3} cores, RSS {} KiB", rss_kib());
    // Node 0 stops: the groups it led (a third) need a new leader from the survivors, woken
    // by node liveness (down after 4 s).
    for ms in &mut all {
        if let Some(q) = ms[0].take() {
            q.shutdown().await;
        }
    }
    cluster.stop(0).await;
    let failover = until(limit, || leaderless(&all) == 0).await;
    println!(
        "node 0 stopped: every group led by a survivor after {failover:?} (node down after {:?})",
        Timing::default().node_heartbeat * Timing::default().node_heartbeat_misses
    );
    for q in all.iter().flatten().flatten() {
        q.shutdown().await;
    }
    cluster.shutdown().await;
}
