//! `pigeon bench`: a load generator for any AMQP 0-9-1 or MQTT broker, in the manner of
//! RabbitMQ's PerfTest, that also checks every message arrived exactly once; and
//! `pigeon bench idle`, which holds many idle connections to show a broker's memory per
//! connection.
//!
//! A run declares its own queues or picks its own topics (unique names; queues are deleted at
//! the end), connects every consumer before any producer starts, publishes for `--duration` or
//! `--count`, lets the consumers drain what is queued, and reports. Each body starts with a
//! [`stamp::Stamp`] (send time, producer, sequence) from which consumers compute end-to-end
//! latency and find lost and duplicated messages.
//!
//! The pieces:
//! - `args`: the flags and their checks;
//! - `client`: the traits the workload needs from a protocol client; `amqp_raw`: the bench's own
//!   AMQP client (the default), `amqp`: lapin, `mqtt`: the bench's own MQTT client, all three on
//!   `net` (sockets and URLs) except lapin;
//! - `workload`: the producer and consumer loops; `control`: the phases and the end of a run;
//! - `stamp`, `tally`: the message header and what consumers make of it;
//! - `report`, `cpu`: the results and the bench's own CPU time;
//! - `idle`: `pigeon bench idle`.
//!
//! A run always ends: every wait on the broker races the controller's stop, the controller stops
//! when nothing has moved for `--timeout`, and connection setup and cleanup are bounded by it too.

mod amqp;
mod amqp_raw;
mod args;
mod client;
mod control;
mod cpu;
mod idle;
mod mqtt;
mod net;
mod report;
mod stamp;
mod tally;
mod workload;

pub use args::BenchArgs;

use crate::logging;
use amqp_raw::AmqpConfig;
use anyhow::Context;
use args::{AmqpArgs, ClientKind, LoadArgs, Mode, MqttArgs};
use client::{Client, ConsumeOptions, PublishOptions};
use control::{Fleet, Supervision};
use report::{AmqpSettings, MqttSettings, RunInfo, Settings};
use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tally::Sharing;
use tokio::sync::watch;
use tracing::{info, warn};
use workload::{ConsumerPlan, Phase, ProducerPlan, ProducerStats};

/// Runs `pigeon bench`; the exit code is failure unless every message arrived exactly once.
pub async fn run(args: BenchArgs, log_flag: Option<String>) -> anyhow::Result<ExitCode> {
    // lapin logs every connection error itself; the report says what matters.
    logging::init(log_flag.as_deref(), None, "info,lapin=off,amq_protocol=off")?;
    match &args.mode {
        None => run_amqp(&args.amqp).await,
        Some(Mode::Mqtt(mqtt)) => run_mqtt(mqtt).await,
        Some(Mode::Idle(idle)) => idle::run(idle).await,
    }
}

/// What a message workload does, whatever the protocol.
struct Load<'a> {
    load: &'a LoadArgs,
    /// Queue or topic names, one per queue or topic.
    names: Vec<String>,
    /// Declare (and delete) the names as queues.
    declare: bool,
    durable: bool,
    publish: PublishOptions,
    consume: ConsumeOptions,
    ack_every: Option<u32>,
    sharing: Sharing,
    drain_quiet: Option<Duration>,
}

async fn run_amqp(args: &AmqpArgs) -> anyhow::Result<ExitCode> {
    args.validate().map_err(anyhow::Error::msg)?;
    let config = AmqpConfig {
        url: args.url.clone(),
        exchange: args.exchange.clone(),
    };
    let run = run_id();
    let load = Load {
        load: &args.load,
        names: (0..args.queues)
            .map(|i| format!("pigeon-bench-{run}-{i}"))
            .collect(),
        declare: true,
        durable: args.persistent,
        publish: PublishOptions {
            confirm_window: args.confirm.then_some(args.confirm_window),
            persistent: args.persistent,
        },
        consume: ConsumeOptions {
            manual_ack: args.ack,
            prefetch: args.prefetch,
        },
        ack_every: args.ack.then_some(args.multi_ack_every),
        sharing: Sharing::Competing,
        drain_quiet: None,
    };
    let (duration_s, count) = until_fields(&args.load);
    let info = RunInfo {
        protocol: "amqp",
        client: match args.client {
            ClientKind::Raw => "raw",
            ClientKind::Lapin => "lapin",
        },
        url: net::redact_password(&args.url),
        settings: Settings::Amqp(AmqpSettings {
            producers: args.load.producers,
            consumers: args.load.consumers,
            queues: args.queues,
            size: args.load.size,
            duration_s,
            count,
            confirm_window: args.confirm.then_some(args.confirm_window),
            multi_ack_every: args.ack.then_some(args.multi_ack_every),
            prefetch: args.prefetch,
            persistent: args.persistent,
            rate: args.load.rate,
            exchange: args.exchange.clone(),
        }),
        confirm: args.confirm,
    };
    match args.client {
        ClientKind::Raw => measure::<amqp_raw::RawAmqp>(&load, &config, info).await,
        ClientKind::Lapin => measure::<amqp::Amqp>(&load, &config, info).await,
    }
}

async fn run_mqtt(args: &MqttArgs) -> anyhow::Result<ExitCode> {
    args.validate().map_err(anyhow::Error::msg)?;
    let qos = mqtt_wire::QoS::try_from(args.qos).map_err(|e| anyhow::anyhow!("--qos: {e}"))?;
    let run = run_id();
    let config = mqtt::MqttConfig {
        url: net::BrokerUrl::parse(&args.url, &[("mqtt", 1883), ("tcp", 1883)])?,
        version: args.mqtt_version.wire(),
        qos,
        keep_alive: 60,
        run: run.clone(),
    };
    let acked = args.qos > 0;
    let load = Load {
        load: &args.load,
        names: (0..args.topics)
            .map(|i| format!("pigeon-bench/{run}/{i}"))
            .collect(),
        declare: false,
        durable: false,
        publish: PublishOptions {
            confirm_window: acked.then_some(args.inflight),
            persistent: false,
        },
        consume: ConsumeOptions {
            manual_ack: false,
            prefetch: 0,
        },
        ack_every: None,
        sharing: Sharing::FanOut {
            topics: args.topics as usize,
        },
        // A broker may drop messages at any QoS (QoS 0 by design, QoS 1 and 2 when a session's
        // queue overflows, as Mosquitto's max_queued_messages does): they count as lost.
        drain_quiet: Some(Duration::from_secs(args.drain_quiet)),
    };
    let (duration_s, count) = until_fields(&args.load);
    let info = RunInfo {
        protocol: "mqtt",
        client: "raw",
        url: net::redact_password(&args.url),
        settings: Settings::Mqtt(MqttSettings {
            mqtt_version: args.mqtt_version.name(),
            qos: args.qos,
            inflight: acked.then_some(args.inflight),
            publishers: args.load.producers,
            subscribers: args.load.consumers,
            topics: args.topics,
            size: args.load.size,
            duration_s,
            count,
            rate: args.load.rate,
        }),
        confirm: acked,
    };
    measure::<mqtt::Mqtt>(&load, &config, info).await
}

fn until_fields(load: &LoadArgs) -> (Option<u64>, Option<u64>) {
    match load.until() {
        args::Until::Elapsed(d) => (Some(d.as_secs()), None),
        args::Until::Count(n) => (None, Some(n)),
    }
}

/// Runs a workload with client `C`, prints the report and says whether it passed.
async fn measure<C: Client>(
    load: &Load<'_>,
    config: &C::Config,
    info: RunInfo,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let cpu_before = cpu::CpuTime::now();
    let outcome = execute::<C>(load, config, &info.url).await?;
    let cpu = cpu::CpuTime::now()
        .zip(cpu_before)
        .map(|(after, before)| after.since(before));
    let report = report::Report::new(info, &outcome, started.elapsed(), cpu);
    if load.load.json {
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

/// Declares the queues (when there are any to declare), runs the workload, and deletes the
/// queues whatever happened.
async fn execute<C: Client>(
    load: &Load<'_>,
    config: &C::Config,
    url: &str,
) -> anyhow::Result<control::Outcome> {
    if !load.declare {
        return drive::<C>(load, config).await;
    }
    let timeout = load.load.timeout();
    let mut admin = bounded(
        timeout,
        || format!("cannot connect to {url}"),
        C::connect(config, "pigeon-bench admin"),
    )
    .await?;
    let mut declared = Vec::new();
    let mut result = Ok(());
    for q in &load.names {
        result = bounded(
            timeout,
            || format!("declaring queue {q}"),
            admin.declare_queue(q, load.durable),
        )
        .await;
        if result.is_err() {
            break;
        }
        declared.push(q);
    }
    let outcome = match result {
        Ok(()) => drive::<C>(load, config).await,
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
    workload::close(admin, timeout).await;
    outcome
}

/// A name unique to this run, so that two runs on one broker never share a queue, a topic or an
/// MQTT client identifier.
fn run_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{millis:x}-{}", std::process::id())
}

/// Connects every consumer, then every producer, then lets them loose.
async fn drive<C: Client>(load: &Load<'_>, config: &C::Config) -> anyhow::Result<control::Outcome> {
    let args = load.load;
    let timeout = args.timeout();
    let names = load.names.len() as u32;
    let name = |i: u32| load.names[(i % names) as usize].clone();

    // Connections are opened concurrently; a run with many of them starts faster.
    let consume = load.consume;
    let mut consumer_setups = Vec::new();
    for j in 0..args.consumers {
        let (config, q) = (config.clone(), name(j));
        consumer_setups.push(tokio::spawn(async move {
            let what = || format!("consumer {j} on {q}");
            let client = bounded(
                timeout,
                what,
                C::connect(&config, &format!("pigeon-bench consumer {j}")),
            )
            .await?;
            bounded(timeout, what, client.consumer(&q, consume)).await
        }));
    }
    let publish = load.publish;
    let mut producer_setups = Vec::new();
    for i in 0..args.producers {
        let (config, q) = (config.clone(), name(i));
        producer_setups.push(tokio::spawn(async move {
            let what = || format!("producer {i} on {q}");
            let client = bounded(
                timeout,
                what,
                C::connect(&config, &format!("pigeon-bench producer {i}")),
            )
            .await?;
            bounded(timeout, what, client.publisher(&q, publish)).await
        }));
    }
    let consumers = join_setups(consumer_setups).await?;
    let producers = join_setups(producer_setups).await?;
    info!(
        "{} producers and {} consumers connected on {} {}; running",
        args.producers,
        args.consumers,
        names,
        if load.declare { "queues" } else { "topics" }
    );

    let (run, phase) = watch::channel(Phase::Publish);
    let epoch = Instant::now();
    let mut fleet = Fleet {
        producers: Vec::new(),
        consumers: Vec::new(),
    };
    let consumer_plan = ConsumerPlan {
        producers: args.producers as usize,
        ack_every: load.ack_every,
        timeout,
    };
    for consumer in consumers {
        let received = Arc::new(AtomicU64::new(0));
        let task = workload::consume(
            consumer,
            consumer_plan,
            received.clone(),
            phase.clone(),
            epoch,
        );
        fleet.consumers.push((received, tokio::spawn(task)));
    }
    for (id, publisher) in producers.into_iter().enumerate() {
        let plan = ProducerPlan {
            // `--producers` is at most u16::MAX, checked by clap.
            id: u16::try_from(id).unwrap_or(u16::MAX),
            size: args.size as usize,
            until: args.until(),
            rate: args.rate,
            timeout,
        };
        let stats = Arc::new(ProducerStats::default());
        let task = workload::produce(publisher, plan, stats.clone(), phase.clone(), epoch);
        fleet.producers.push((stats, tokio::spawn(task)));
    }
    let plan = Supervision {
        until: args.until(),
        timeout,
        epoch,
        confirm: load.publish.confirm_window.is_some(),
        sharing: load.sharing,
        drain_quiet: load.drain_quiet,
    };
    Ok(control::supervise(fleet, run, plan).await)
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
