//! `pigeon bench`: a load generator for any AMQP 0-9-1 broker, in the manner of RabbitMQ's
//! PerfTest, that also checks every message arrived exactly once.
//!
//! A run declares its own queues (unique names, deleted at the end), connects every consumer
//! before any producer starts, publishes for `--duration` or `--count`, lets the consumers drain
//! what is queued, and reports. Each body starts with a [`stamp::Stamp`] (send time, producer,
//! sequence) from which consumers compute end-to-end latency and find lost and duplicated
//! messages.
//!
//! The pieces:
//! - `args`: the flags and their checks;
//! - `client`: the traits the workload needs from an AMQP client; `amqp`: them, on lapin;
//! - `workload`: the producer and consumer loops; `control`: the phases and the end of a run;
//! - `stamp`, `tally`: the message header and what consumers make of it;
//! - `report`, `cpu`: the results and the bench's own CPU time.
//!
//! A run always ends: every wait on the broker races the controller's stop, the controller stops
//! when nothing has moved for `--timeout`, and connection setup and cleanup are bounded by it too.

mod amqp;
mod args;
mod client;
mod control;
mod cpu;
mod report;
mod stamp;
mod tally;
mod workload;

pub use args::BenchArgs;

use crate::logging;
use anyhow::Context;
use client::{Client, ConsumeOptions, PublishOptions};
use control::Fleet;
use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;
use tracing::{info, warn};
use workload::{ConsumerPlan, Phase, ProducerPlan, ProducerStats};

/// Runs `pigeon bench`; the exit code is failure unless every message arrived exactly once.
pub async fn run(args: BenchArgs, log_flag: Option<String>) -> anyhow::Result<ExitCode> {
    // lapin logs every connection error itself; the report says what matters.
    logging::init(log_flag.as_deref(), None, "info,lapin=off,amq_protocol=off")?;
    args.validate().map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let cpu_before = cpu::CpuTime::now();

    let outcome = execute::<amqp::Amqp>(&args).await?;

    let cpu = cpu::CpuTime::now()
        .zip(cpu_before)
        .map(|(after, before)| after.since(before));
    let report = report::Report::new(&args, &outcome, started.elapsed(), cpu);
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

/// Bounds a broker operation by the run's timeout, naming it in the error.
async fn bounded<T>(
    timeout: Duration,
    what: impl Fn() -> String,
    op: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, op).await {
        Ok(result) => result.with_context(what),
        Err(_) => Err(anyhow::anyhow!(
            "{}: no answer within {}s",
            what(),
            timeout.as_secs()
        )),
    }
}

/// Declares the queues, runs the workload, and deletes the queues whatever happened.
async fn execute<C: Client>(args: &BenchArgs) -> anyhow::Result<control::Outcome> {
    let timeout = args.timeout();
    let url = args.redacted_url();
    let admin = bounded(
        timeout,
        || format!("cannot connect to {url}"),
        C::connect(&args.url, "pigeon-bench admin"),
    )
    .await?;
    let queues = queue_names(args.queues);
    let mut declared = Vec::new();
    let mut result = Ok(());
    for q in &queues {
        result = bounded(
            timeout,
            || format!("declaring queue {q}"),
            admin.declare_queue(q, args.persistent),
        )
        .await;
        if result.is_err() {
            break;
        }
        declared.push(q);
    }
    let outcome = match result {
        Ok(()) => drive::<C>(args, &queues).await,
        Err(e) => Err(e),
    };
    for q in declared {
        if let Err(e) = bounded(
            timeout,
            || format!("deleting queue {q}"),
            admin.delete_queue(q),
        )
        .await
        {
            warn!("{}", crate::describe(&e));
        }
    }
    workload::close(&admin, timeout).await;
    outcome
}

/// Names unique to this run, so that two runs on one broker never share a queue.
fn queue_names(n: u32) -> Vec<String> {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let run = format!("{millis:x}-{}", std::process::id());
    (0..n).map(|i| format!("pigeon-bench-{run}-{i}")).collect()
}

/// Connects every consumer, then every producer, then lets them loose.
async fn drive<C: Client>(args: &BenchArgs, queues: &[String]) -> anyhow::Result<control::Outcome> {
    let timeout = args.timeout();
    let queue = |i: u32| queues[(i % args.queues) as usize].clone();

    // Connections are opened concurrently; a run with many of them starts faster.
    let consume = ConsumeOptions {
        manual_ack: args.ack,
        prefetch: args.prefetch,
    };
    let mut consumer_setups = Vec::new();
    for j in 0..args.consumers {
        let (url, q) = (args.url.clone(), queue(j));
        consumer_setups.push(tokio::spawn(async move {
            let what = || format!("consumer {j} on {q}");
            let client = bounded(
                timeout,
                what,
                C::connect(&url, &format!("pigeon-bench consumer {j}")),
            )
            .await?;
            let consumer = bounded(timeout, what, client.consumer(&q, consume)).await?;
            anyhow::Ok((client, consumer))
        }));
    }
    let publish = PublishOptions {
        confirm_window: args.confirm.then_some(args.confirm_window),
        persistent: args.persistent,
    };
    let mut producer_setups = Vec::new();
    for i in 0..args.producers {
        let (url, q) = (args.url.clone(), queue(i));
        producer_setups.push(tokio::spawn(async move {
            let what = || format!("producer {i} on {q}");
            let client = bounded(
                timeout,
                what,
                C::connect(&url, &format!("pigeon-bench producer {i}")),
            )
            .await?;
            let publisher = bounded(timeout, what, client.publisher(&q, publish)).await?;
            anyhow::Ok((client, publisher))
        }));
    }
    let consumers = join_setups(consumer_setups).await?;
    let producers = join_setups(producer_setups).await?;
    info!(
        "{} producers and {} consumers connected on {} queues; running",
        args.producers, args.consumers, args.queues
    );

    let (run, phase) = watch::channel(Phase::Publish);
    let epoch = Instant::now();
    let mut fleet = Fleet {
        producers: Vec::new(),
        consumers: Vec::new(),
    };
    let consumer_plan = ConsumerPlan {
        producers: args.producers as usize,
        ack_every: args.ack.then_some(args.multi_ack_every),
        timeout,
    };
    for (client, consumer) in consumers {
        let received = Arc::new(AtomicU64::new(0));
        let task = workload::consume(
            client,
            consumer,
            consumer_plan,
            received.clone(),
            phase.clone(),
            epoch,
        );
        fleet.consumers.push((received, tokio::spawn(task)));
    }
    for (id, (client, publisher)) in producers.into_iter().enumerate() {
        let plan = ProducerPlan {
            // `--producers` is at most u16::MAX, checked by clap.
            id: u16::try_from(id).unwrap_or(u16::MAX),
            size: args.size as usize,
            until: args.until(),
            rate: args.rate,
            timeout,
        };
        let stats = Arc::new(ProducerStats::default());
        let task = workload::produce(client, publisher, plan, stats.clone(), phase.clone(), epoch);
        fleet.producers.push((stats, tokio::spawn(task)));
    }
    Ok(control::supervise(fleet, run, args.until(), timeout, epoch, args.confirm).await)
}

/// Waits for every setup task; the first failure fails the run.
async fn join_setups<T>(
    setups: Vec<tokio::task::JoinHandle<anyhow::Result<T>>>,
) -> anyhow::Result<Vec<T>> {
    let mut done = Vec::with_capacity(setups.len());
    for setup in setups {
        done.push(setup.await.context("a setup task failed")??);
    }
    Ok(done)
}
