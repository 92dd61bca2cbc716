//! The producer and consumer loops, written against the [`Client`] traits.
//!
//! A run moves through three [`Phase`]s, announced by the controller on a watch channel:
//! `Publish` (producers send), `Drain` (producers stop sending and wait for their confirms;
//! consumers take what is still queued) and `Stop` (everything lets go at once). Every await that
//! could wait on the broker races the phase change, so a dead or silent broker never holds a task
//! past `Stop`; closing connections afterwards is bounded by the operation timeout.

use super::args::Until;
use super::client::{Client, Consumer, Publisher};
use super::stamp::Stamp;
use super::tally::Tally;
use hdrhistogram::Histogram;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Where the run is; ordered, and only ever moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Producers publish, consumers consume.
    Publish,
    /// Producers have stopped publishing; confirms and deliveries still flow.
    Drain,
    /// Everyone stops now.
    Stop,
}

/// Runs `fut` unless the run reaches `phase` first (or the controller is gone).
async fn unless<F: Future>(
    run: &mut watch::Receiver<Phase>,
    phase: Phase,
    fut: F,
) -> Option<F::Output> {
    tokio::select! {
        biased;
        out = fut => Some(out),
        _ = run.wait_for(|p| *p >= phase) => None,
    }
}

/// Nanoseconds since the run started.
fn since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Counters one producer shares with the controller (written by the producer only).
#[derive(Debug, Default)]
pub struct ProducerStats {
    /// Messages handed to the client.
    pub sent: AtomicU64,
    /// Messages the broker confirmed.
    pub acked: AtomicU64,
    /// Messages the broker refused.
    pub nacked: AtomicU64,
    /// When the last message was sent, in nanoseconds since the run started.
    pub last_ns: AtomicU64,
    /// When the last confirm arrived, in nanoseconds since the run started.
    pub last_confirm_ns: AtomicU64,
    /// When the last ack (a positive confirm) arrived, in nanoseconds since the run started.
    pub last_ack_ns: AtomicU64,
    /// The longest wait between two acks (nanoseconds): a broker's failover shows here as
    /// the time from the last ack before it to the first after it.
    pub max_ack_gap_ns: AtomicU64,
    /// When that longest wait ended, in nanoseconds since the run started.
    pub max_ack_gap_end_ns: AtomicU64,
}

/// What one producer does.
#[derive(Debug, Clone, Copy)]
pub struct ProducerPlan {
    /// This producer's id, stamped into each message.
    pub id: u16,
    /// Body size in bytes (at least [`Stamp::LEN`]).
    pub size: usize,
    /// When to stop.
    pub until: Until,
    /// Messages per second; 0 for no limit.
    pub rate: u32,
    /// Bound on closing the connection.
    pub timeout: Duration,
}

/// Publishes until the plan or the phase says stop, then waits for confirms and closes; returns
/// the confirm latencies (`None` without confirms) even when the producer failed, beside the
/// error.
pub async fn produce<P: Publisher>(
    mut publisher: P,
    plan: ProducerPlan,
    stats: Arc<ProducerStats>,
    mut run: watch::Receiver<Phase>,
    epoch: Instant,
) -> (Option<Histogram<u64>>, anyhow::Result<()>) {
    let mut body = vec![0u8; plan.size];
    let start = Instant::now();
    let mut seq: u64 = 0;
    let result = async {
        loop {
            if *run.borrow() >= Phase::Drain || matches!(plan.until, Until::Count(n) if seq >= n) {
                break;
            }
            if plan.rate > 0 {
                let due = start + Duration::from_secs_f64(seq as f64 / f64::from(plan.rate));
                if due > Instant::now() {
                    // About to pause: what the client buffered goes out now, not with the next
                    // message.
                    match unless(&mut run, Phase::Drain, publisher.write_out()).await {
                        Some(written) => written?,
                        None => break,
                    }
                    match unless(&mut run, Phase::Drain, publisher.pause_until(due.into())).await {
                        Some(confirms) => add_confirms(&stats, confirms?, epoch),
                        None => break,
                    }
                }
            }
            let Some(confirms) = unless(&mut run, Phase::Drain, publisher.reserve()).await else {
                break;
            };
            add_confirms(&stats, confirms?, epoch);
            let now = since(epoch);
            Stamp {
                sent_ns: now,
                producer: plan.id,
                seq,
            }
            .write_to(&mut body);
            // A publish under way is finished even when publishing ends meanwhile: abandoning it
            // could leave a message on the wire that the report never counted as sent.
            let Some(sent) = unless(&mut run, Phase::Stop, publisher.publish(&body)).await else {
                break;
            };
            sent?;
            seq += 1;
            stats.sent.store(seq, Relaxed);
            stats.last_ns.store(now, Relaxed);
        }
        // Writes out what is still buffered, then waits for the confirms.
        if let Some(confirms) = unless(&mut run, Phase::Stop, publisher.flush()).await {
            add_confirms(&stats, confirms?, epoch);
        }
        anyhow::Ok(())
    }
    .await;
    let confirm_latency = publisher.take_confirm_latency();
    match tokio::time::timeout(plan.timeout, publisher.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("closing a producer's connection: {e:#}"),
        Err(_) => tracing::debug!("closing a producer's connection timed out"),
    }
    (confirm_latency, result)
}

fn add_confirms(stats: &ProducerStats, confirms: super::client::Confirms, epoch: Instant) {
    if confirms == super::client::Confirms::default() {
        return;
    }
    let now = since(epoch);
    stats.acked.fetch_add(confirms.acked, Relaxed);
    stats.nacked.fetch_add(confirms.nacked, Relaxed);
    stats.last_confirm_ns.store(now, Relaxed);
    if confirms.acked > 0 {
        // Only this producer writes its stats: plain loads and stores suffice.
        let last = stats.last_ack_ns.swap(now, Relaxed);
        let gap = now.saturating_sub(last);
        if last > 0 && gap > stats.max_ack_gap_ns.load(Relaxed) {
            stats.max_ack_gap_ns.store(gap, Relaxed);
            stats.max_ack_gap_end_ns.store(now, Relaxed);
        }
    }
}

/// What one consumer does.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerPlan {
    /// Producers in the run (sizes the tally).
    pub producers: usize,
    /// Ack every this many deliveries (`multiple` when above 1); `None` for auto-ack.
    pub ack_every: Option<u32>,
    /// Bound on the final ack, cancel and close.
    pub timeout: Duration,
}

/// Consumes until `Stop`, tallying every delivery; returns the tally even when the consumer
/// failed, beside the error.
pub async fn consume<K: Consumer>(
    mut consumer: K,
    plan: ConsumerPlan,
    received: Arc<AtomicU64>,
    mut run: watch::Receiver<Phase>,
    epoch: Instant,
) -> (Tally, anyhow::Result<()>) {
    let mut tally = Tally::new(plan.producers);
    let mut unacked: u32 = 0;
    let result = async {
        while let Some(next) = unless(&mut run, Phase::Stop, consumer.next()).await {
            let Some(body) = next? else {
                anyhow::bail!("the broker cancelled the consumer");
            };
            tally.record(&body, since(epoch));
            received.fetch_add(1, Relaxed);
            if let Some(every) = plan.ack_every {
                unacked += 1;
                if unacked >= every {
                    match unless(&mut run, Phase::Stop, consumer.ack(every > 1)).await {
                        Some(acked) => acked?,
                        None => break,
                    }
                    unacked = 0;
                }
            }
        }
        anyhow::Ok(())
    }
    .await;
    // Leave politely: settle the last partial batch of acks and cancel before closing. This is
    // best effort (the broker may be why we stop), bounded as a whole by the timeout.
    let leave = async {
        if unacked > 0 {
            let _ = consumer.ack(true).await;
        }
        let _ = consumer.cancel().await;
        let _ = consumer.close().await;
    };
    if tokio::time::timeout(plan.timeout, leave).await.is_err() {
        tracing::debug!("a consumer's connection did not close in time");
    }
    (tally, result)
}

/// Closes a connection, giving up after `timeout`: the broker may be the reason we are stopping.
pub async fn close<C: Client>(client: C, timeout: Duration) {
    match tokio::time::timeout(timeout, client.close()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("closing a connection: {e:#}"),
        Err(_) => tracing::debug!("closing a connection timed out"),
    }
}
