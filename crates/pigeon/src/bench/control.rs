//! The controller: moves the run through its phases, prints progress, and makes sure the run
//! ends (on time, on completion, on Ctrl-C, or when nothing has moved for `--timeout`).

use super::args::Until;
use super::tally::Tally;
use super::workload::{Phase, ProducerStats};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

/// A consumer task: its tally, and how it ended.
pub type ConsumerTask = JoinHandle<(Tally, anyhow::Result<()>)>;

/// The running tasks and the counters they share.
pub struct Fleet {
    /// One per producer, in producer-id order.
    pub producers: Vec<(Arc<ProducerStats>, JoinHandle<anyhow::Result<()>>)>,
    /// One per consumer: its delivery counter and its task.
    pub consumers: Vec<(Arc<AtomicU64>, ConsumerTask)>,
}

/// Why the run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Producers finished and consumers received as many messages as were sent.
    Completed,
    /// Ctrl-C.
    Interrupted,
    /// Nothing was sent, confirmed or received for `--timeout`.
    Stalled,
}

/// Everything the report needs from a finished run.
pub struct Outcome {
    /// Messages sent, per producer id.
    pub sent: Vec<u64>,
    /// Confirms received (acks, nacks).
    pub acked: u64,
    /// Nacks received.
    pub nacked: u64,
    /// From the start to the last message sent, in nanoseconds.
    pub publish_ns: u64,
    /// The merged tally of every consumer; `None` in a publish-only run.
    pub tally: Option<Tally>,
    /// Why it ended.
    pub ending: Ending,
    /// What went wrong in producers and consumers.
    pub errors: Vec<String>,
}

/// Drives the run to its end and collects the results.
pub async fn supervise(
    fleet: Fleet,
    run: watch::Sender<Phase>,
    until: Until,
    timeout: Duration,
    epoch: Instant,
    confirm: bool,
) -> Outcome {
    let ending = watch_over(&fleet, &run, until, timeout, epoch, confirm).await;
    let _ = run.send(Phase::Stop);
    collect(fleet, ending, timeout).await
}

async fn watch_over(
    fleet: &Fleet,
    run: &watch::Sender<Phase>,
    until: Until,
    timeout: Duration,
    epoch: Instant,
    confirm: bool,
) -> Ending {
    let publish_deadline = match until {
        Until::Elapsed(d) => Some(tokio::time::Instant::from_std(epoch + d)),
        Until::Count(_) => None,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let mut phase = Phase::Publish;
    let mut moved = Moved::default();
    let mut rates = Rates::new(epoch);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut interrupt => {
                info!("interrupted: stopping");
                return Ending::Interrupted;
            }
            () = sleep_until_opt(publish_deadline), if phase == Phase::Publish => {
                phase = Phase::Drain;
                let _ = run.send(phase);
            }
        }
        let now = Counts::read(fleet);
        if moved.stalled(now.total(), timeout) {
            info!(
                "nothing moved for {}s: stopping ({} sent, {} received)",
                timeout.as_secs(),
                now.sent,
                now.received
            );
            return Ending::Stalled;
        }
        rates.maybe_print(&now, confirm);
        let producers_done = fleet.producers.iter().all(|(_, h)| h.is_finished());
        if phase == Phase::Publish && producers_done {
            phase = Phase::Drain;
            let _ = run.send(phase);
        }
        if phase == Phase::Drain && producers_done {
            let consumers_done = fleet.consumers.iter().all(|(_, h)| h.is_finished());
            if fleet.consumers.is_empty() || consumers_done || now.received >= now.sent {
                return Ending::Completed;
            }
        }
    }
}

async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Joins every task, aborting those that do not finish within the timeout.
async fn collect(fleet: Fleet, ending: Ending, timeout: Duration) -> Outcome {
    // Closing takes up to `timeout` inside each task; allow that plus a margin.
    let deadline = tokio::time::Instant::now() + timeout + Duration::from_secs(1);
    let mut errors = Vec::new();
    let (mut acked, mut nacked, mut publish_ns) = (0, 0, 0);
    let mut sent = Vec::with_capacity(fleet.producers.len());
    for (id, (stats, handle)) in fleet.producers.into_iter().enumerate() {
        if let Err(e) = join(handle, deadline).await {
            errors.push(format!("producer {id}: {e:#}"));
        }
        sent.push(stats.sent.load(Relaxed));
        acked += stats.acked.load(Relaxed);
        nacked += stats.nacked.load(Relaxed);
        publish_ns = publish_ns.max(stats.last_ns.load(Relaxed));
    }
    let mut tally: Option<Tally> = None;
    for (id, (_, handle)) in fleet.consumers.into_iter().enumerate() {
        let (part, result) = match join(handle, deadline).await {
            Ok(done) => done,
            Err(e) => {
                errors.push(format!("consumer {id}: its tally is lost: {e:#}"));
                continue;
            }
        };
        if let Err(e) = result {
            errors.push(format!("consumer {id}: {e:#}"));
        }
        match &mut tally {
            Some(t) => t.merge(&part),
            None => tally = Some(part),
        }
    }
    Outcome {
        sent,
        acked,
        nacked,
        publish_ns,
        tally,
        ending,
        errors,
    }
}

async fn join<T>(mut handle: JoinHandle<T>, deadline: tokio::time::Instant) -> anyhow::Result<T> {
    match tokio::time::timeout_at(deadline, &mut handle).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(anyhow::anyhow!("task failed: {e}")),
        Err(_) => {
            handle.abort();
            Err(anyhow::anyhow!("did not stop in time and was aborted"))
        }
    }
}

/// The fleet's counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    sent: u64,
    confirmed: u64,
    received: u64,
}

impl Counts {
    fn read(fleet: &Fleet) -> Counts {
        let mut c = Counts::default();
        for (s, _) in &fleet.producers {
            c.sent += s.sent.load(Relaxed);
            c.confirmed += s.acked.load(Relaxed) + s.nacked.load(Relaxed);
        }
        c.received = fleet.consumers.iter().map(|(r, _)| r.load(Relaxed)).sum();
        c
    }

    fn total(&self) -> u64 {
        self.sent + self.confirmed + self.received
    }
}

/// Detects a run in which nothing moves.
#[derive(Debug)]
struct Moved {
    last: u64,
    at: Instant,
}

impl Default for Moved {
    fn default() -> Self {
        Moved {
            last: 0,
            at: Instant::now(),
        }
    }
}

impl Moved {
    fn stalled(&mut self, total: u64, timeout: Duration) -> bool {
        if total != self.last {
            self.last = total;
            self.at = Instant::now();
            return false;
        }
        self.at.elapsed() >= timeout
    }
}

/// Prints one progress line a second.
struct Rates {
    epoch: Instant,
    at: Instant,
    last: Counts,
}

impl Rates {
    fn new(epoch: Instant) -> Rates {
        Rates {
            epoch,
            at: epoch,
            last: Counts::default(),
        }
    }

    fn maybe_print(&mut self, now: &Counts, confirm: bool) {
        let secs = self.at.elapsed().as_secs_f64();
        if secs < 1.0 {
            return;
        }
        let rate = |a: u64, b: u64| (a.saturating_sub(b) as f64 / secs).round();
        let t = self.epoch.elapsed().as_secs_f64().round();
        if confirm {
            info!(
                "{t:>4}s  published {:>9}/s  confirmed {:>9}/s  consumed {:>9}/s",
                rate(now.sent, self.last.sent),
                rate(now.confirmed, self.last.confirmed),
                rate(now.received, self.last.received)
            );
        } else {
            info!(
                "{t:>4}s  published {:>9}/s  consumed {:>9}/s",
                rate(now.sent, self.last.sent),
                rate(now.received, self.last.received)
            );
        }
        self.at = Instant::now();
        self.last = *now;
    }
}
