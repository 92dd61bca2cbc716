//! The stream workload: publishers and consumers driven frame by frame and chunk by chunk.
//!
//! The generic loops (`workload.rs`) move one message per call: a clock reading, a stamp, a
//! window check, a future raced against the phase, a confirm slot, per message. At a few
//! million 16-byte messages a second that made the bench, not the broker, the bottleneck
//! (docs/performance.md, "Streams"). Here the unit is the frame and the chunk, and every
//! message is still accounted for:
//!
//! - a publisher takes the clock once per run of messages (a frame's worth, fewer when the
//!   confirm window, `--count` or `--rate` allows fewer), stamps each message of the run with
//!   that time, its producer id and its own sequence number, and counts confirms per
//!   publishing id ([`super::confirms::IdConfirms`]: each id settled once, latency weighted by
//!   messages);
//! - a consumer takes the clock once per delivered chunk, and reads every message's stamp in
//!   it from the borrowed chunk bytes into the same [`Tally`] as every bench: a bit per
//!   (producer, sequence) for losses and duplicates, and its end-to-end latency (chunk
//!   arrival minus send time).
//!
//! The controller, the phases and the report are the generic ones (`control.rs`,
//! `report.rs`), so the report means what it means for every other protocol.

use super::consumer::StreamConsumer;
use super::publisher::{Run, StreamPublisher};
use super::{StreamClient, StreamConfig};
use crate::args::{LoadArgs, Until};
use crate::client::{Client, ConsumeOptions, PublishOptions};
use crate::control::{self, Fleet, Supervision};
use crate::cpu;
use crate::report::{self, RunInfo};
use crate::stamp::Stamp;
use crate::tally::{Sharing, Tally};
use crate::workload::{Phase, ProducerStats};
use hdrhistogram::Histogram;
use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

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

/// Nanoseconds from `epoch` to `at`.
fn ns_since(epoch: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX)
}

/// What one publisher does.
#[derive(Debug, Clone, Copy)]
struct Plan {
    id: u16,
    size: usize,
    until: Until,
    rate: u32,
    timeout: Duration,
}

/// Publishes run by run until the plan or the phase says stop, then waits for the confirms
/// and closes; returns the confirm latencies even when the publisher failed, beside the error.
async fn produce(
    mut publisher: StreamPublisher,
    plan: Plan,
    stats: Arc<ProducerStats>,
    mut run: watch::Receiver<Phase>,
    epoch: Instant,
) -> (Option<Histogram<u64>>, anyhow::Result<()>) {
    let mut body = vec![0u8; plan.size.max(Stamp::LEN)];
    let start = Instant::now();
    let per_frame = publisher.messages_per_frame();
    let window = publisher.window();
    let mut seq: u64 = 0;
    let result = async {
        loop {
            let mut count = per_frame;
            if let Until::Count(n) = plan.until {
                count = count.min(n.saturating_sub(seq));
            }
            if *run.borrow() >= Phase::Drain || count == 0 {
                break;
            }
            if plan.rate > 0 {
                // Messages due by now; none due: write out what is buffered and sleep until
                // the next one is.
                let due = (start.elapsed().as_secs_f64() * f64::from(plan.rate)) as u64 + 1;
                if due <= seq {
                    let next = start + Duration::from_secs_f64(seq as f64 / f64::from(plan.rate));
                    let written = crate::client::Publisher::write_out(&mut publisher);
                    match unless(&mut run, Phase::Drain, written).await {
                        Some(written) => written?,
                        None => break,
                    }
                    add_confirms(&stats, publisher.take_confirms(), epoch);
                    if unless(
                        &mut run,
                        Phase::Drain,
                        tokio::time::sleep_until(next.into()),
                    )
                    .await
                    .is_none()
                    {
                        break;
                    }
                    continue;
                }
                count = count.min(due - seq);
            }
            // Room in the confirm window for at least one message; the run fills what there is.
            let Some(confirms) = unless(
                &mut run,
                Phase::Drain,
                publisher.settle_until(window.saturating_sub(1)),
            )
            .await
            else {
                break;
            };
            add_confirms(&stats, confirms?, epoch);
            let room = window.saturating_sub(publisher.unsettled()) as u64;
            count = count.min(room.max(1));
            let sent = Instant::now();
            let sent_ns = ns_since(epoch, sent);
            let batch = Run {
                producer: plan.id,
                first_seq: seq,
                count,
                sent,
                sent_ns,
            };
            // A run under way is finished even when publishing ends meanwhile: abandoning it
            // could leave messages on the wire that the report never counted as sent.
            let Some(published) = unless(
                &mut run,
                Phase::Stop,
                publisher.publish_run(&mut body, batch),
            )
            .await
            else {
                break;
            };
            published?;
            seq += count;
            stats.sent.store(seq, Relaxed);
            stats.last_ns.store(sent_ns, Relaxed);
            add_confirms(&stats, publisher.take_confirms(), epoch);
        }
        // Writes out what is still buffered, then waits for the confirms.
        if let Some(confirms) = unless(&mut run, Phase::Stop, publisher.settle_until(0)).await {
            add_confirms(&stats, confirms?, epoch);
        }
        anyhow::Ok(())
    }
    .await;
    let confirm_latency = crate::client::Publisher::take_confirm_latency(&mut publisher);
    match tokio::time::timeout(plan.timeout, crate::client::Publisher::close(publisher)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!("closing a producer's connection: {e:#}"),
        Err(_) => tracing::debug!("closing a producer's connection timed out"),
    }
    (confirm_latency, result)
}

fn add_confirms(stats: &ProducerStats, confirms: crate::client::Confirms, epoch: Instant) {
    if confirms == crate::client::Confirms::default() {
        return;
    }
    stats.acked.fetch_add(confirms.acked, Relaxed);
    stats.nacked.fetch_add(confirms.nacked, Relaxed);
    stats
        .last_confirm_ns
        .store(ns_since(epoch, Instant::now()), Relaxed);
}

/// Consumes chunk by chunk until `Stop`, tallying every message; returns the tally even when
/// the consumer failed, beside the error.
async fn consume(
    mut consumer: StreamConsumer,
    producers: usize,
    timeout: Duration,
    received: Arc<AtomicU64>,
    mut run: watch::Receiver<Phase>,
    epoch: Instant,
) -> (Tally, anyhow::Result<()>) {
    let mut tally = Tally::new(producers);
    let result = async {
        while let Some(next) = unless(&mut run, Phase::Stop, consumer.next_chunk()).await {
            let Some(deliver) = next? else {
                anyhow::bail!("the broker cancelled the consumer");
            };
            let now_ns = ns_since(epoch, Instant::now());
            let n = consumer.tally_chunk(&deliver.chunk, &mut tally, now_ns)?;
            received.fetch_add(n, Relaxed);
        }
        anyhow::Ok(())
    }
    .await;
    let leave = async {
        let _ = crate::client::Consumer::cancel(&mut consumer).await;
        let _ = crate::client::Consumer::close(consumer).await;
    };
    if tokio::time::timeout(timeout, leave).await.is_err() {
        tracing::debug!("a consumer's connection did not close in time");
    }
    (tally, result)
}

/// Runs publishers and consumers on `stream`, prints the report and says whether it passed.
pub async fn measure(
    args: &LoadArgs,
    config: &StreamConfig,
    stream: &str,
    max_inflight: u32,
    info: RunInfo,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let cpu_before = cpu::CpuTime::now();
    let outcome = drive(args, config, stream, max_inflight).await?;
    let cpu = cpu::CpuTime::now()
        .zip(cpu_before)
        .map(|(after, before)| after.since(before));
    let report = report::Report::new(info, &outcome, started.elapsed(), cpu);
    if args.json {
        println!("{}", report.to_json());
    } else {
        println!("{report}");
    }
    Ok(if report.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Bounds a setup step by the run's timeout, naming it in the error.
async fn bounded<T>(
    timeout: Duration,
    what: String,
    op: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, op).await {
        Ok(result) => result.map_err(|e| e.context(what)),
        Err(_) => Err(anyhow::anyhow!(
            "{what}: no answer within {}s",
            timeout.as_secs()
        )),
    }
}

/// Connects every consumer, then every publisher, then lets them loose under the controller.
async fn drive(
    args: &LoadArgs,
    config: &StreamConfig,
    stream: &str,
    max_inflight: u32,
) -> anyhow::Result<control::Outcome> {
    let timeout = args.timeout();
    let mut consumer_setups = Vec::new();
    for j in 0..args.consumers {
        let (config, q) = (config.clone(), stream.to_string());
        consumer_setups.push(tokio::spawn(async move {
            let what = format!("consumer {j} on {q}");
            let name = format!("pigeon-bench consumer {j}");
            let client = bounded(timeout, what.clone(), StreamClient::connect(&config, &name));
            let options = ConsumeOptions {
                manual_ack: false,
                prefetch: 0,
            };
            bounded(timeout, what, client.await?.consumer(&q, options)).await
        }));
    }
    let mut producer_setups = Vec::new();
    for i in 0..args.producers {
        let (config, q) = (config.clone(), stream.to_string());
        producer_setups.push(tokio::spawn(async move {
            let what = format!("producer {i} on {q}");
            let name = format!("pigeon-bench producer {i}");
            let client = bounded(timeout, what.clone(), StreamClient::connect(&config, &name));
            let options = PublishOptions {
                confirm_window: Some(max_inflight),
                persistent: true,
            };
            bounded(timeout, what, client.await?.publisher(&q, options)).await
        }));
    }
    let mut consumers = Vec::new();
    for setup in consumer_setups {
        consumers.push(setup.await??);
    }
    let mut producers = Vec::new();
    for setup in producer_setups {
        producers.push(setup.await??);
    }
    tracing::info!(
        "{} producers and {} consumers connected on stream {stream}; running",
        args.producers,
        args.consumers,
    );
    let (run, phase) = watch::channel(Phase::Publish);
    let epoch = Instant::now();
    let mut fleet = Fleet {
        producers: Vec::new(),
        consumers: Vec::new(),
    };
    let producer_count = args.producers as usize;
    for consumer in consumers {
        let received = Arc::new(AtomicU64::new(0));
        let task = consume(
            consumer,
            producer_count,
            timeout,
            received.clone(),
            phase.clone(),
            epoch,
        );
        fleet.consumers.push((received, tokio::spawn(task)));
    }
    for (id, publisher) in producers.into_iter().enumerate() {
        let plan = Plan {
            // `--producers` is at most u16::MAX, checked by clap.
            id: u16::try_from(id).unwrap_or(u16::MAX),
            size: args.size as usize,
            until: args.until(),
            rate: args.rate,
            timeout,
        };
        let stats = Arc::new(ProducerStats::default());
        let task = produce(publisher, plan, stats.clone(), phase.clone(), epoch);
        fleet.producers.push((stats, tokio::spawn(task)));
    }
    let plan = Supervision {
        until: args.until(),
        timeout,
        epoch,
        confirm: true,
        // Every consumer reads every message: each is a group of its own.
        sharing: Sharing::FanOut { topics: 1 },
        drain_quiet: None,
    };
    Ok(control::supervise(fleet, run, plan).await)
}
