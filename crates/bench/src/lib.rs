//! `pigeon bench`: a load generator for any AMQP 0-9-1 or MQTT broker, in the manner of
//! RabbitMQ's PerfTest, that also checks every message arrived exactly once; and
//! `pigeon bench idle`, which holds many idle connections to show a broker's memory per
//! connection. A client of the broker, not part of it: this crate knows nothing of the server,
//! and the `pigeon` binary runs it as a subcommand ([`BenchArgs`], [`run`]).
//!
//! A run declares its own queues (and exchange, and bindings) or picks its own topics (unique
//! names; what it declared is deleted at the end), connects every consumer before any producer
//! starts, publishes for `--duration` or
//! `--count`, lets the consumers drain what is queued, and reports. Each body starts with a
//! [`stamp::Stamp`] (send time, producer, sequence) from which consumers compute end-to-end
//! latency and find lost and duplicated messages. With confirms, producers also time each
//! message from its publish call to the broker's confirm (confirm latency).
//!
//! The pieces:
//! - `args`: the flags and their checks;
//! - `client`: the traits the workload needs from a protocol client; `amqp_raw`: the bench's own
//!   AMQP client (the default), `amqp`: lapin, `mqtt`: the bench's own MQTT client, all three on
//!   `net` (sockets and URLs) except lapin; producers and consumers may use different clients
//!   (`pigeon bench cross`: MQTT publishers, AMQP consumers); `tls`: the TLS flags and
//!   handshake for `amqps://` and `mqtts://` (the bench's own clients only);
//! - `workload`: the producer and consumer loops; `control`: the phases and the end of a run;
//! - `stamp`, `tally`: the message header and what consumers make of it;
//! - `report`, `cpu`: the results and the bench's own CPU time;
//! - `idle`: `pigeon bench idle`.
//!
//! A run always ends: every wait on the broker races the controller's stop, the controller stops
//! when nothing has moved for `--timeout`, and connection setup and cleanup are bounded by it too.

#![cfg_attr(test, allow(clippy::unwrap_used))]

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
mod tls;
mod workload;

pub use args::BenchArgs;

use amqp_raw::AmqpConfig;
use anyhow::Context;
use args::{AmqpArgs, ClientKind, CrossArgs, LoadArgs, Mode, MqttArgs};
use client::{Client, ConsumeOptions, PublishOptions};
use control::{Fleet, Supervision};
use report::{AmqpSettings, CrossSettings, MqttSettings, RunInfo, Settings};
use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tally::Sharing;
use tokio::sync::watch;
use tracing::{info, warn};
use workload::{ConsumerPlan, Phase, ProducerPlan, ProducerStats};

/// The log filter for a run when the user gives none: lapin logs every connection error itself,
/// and the report says what matters. The caller installs the tracing subscriber (the bench logs
/// to whatever it is given; stdout stays free for the report).
pub const DEFAULT_LOG_FILTER: &str = "info,lapin=off,amq_protocol=off";

/// Runs `pigeon bench`; the exit code is failure unless every message arrived exactly once.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match &args.mode {
        None => run_amqp(&args.amqp).await,
        Some(Mode::Mqtt(mqtt)) => run_mqtt(mqtt).await,
        Some(Mode::Cross(cross)) => run_cross(cross).await,
        Some(Mode::Idle(idle)) => idle::run(idle).await,
    }
}

/// What a message workload does, whatever the protocol.
struct Load<'a> {
    load: &'a LoadArgs,
    /// What producer i publishes to: `targets[i % len]` (a queue name or routing key through
    /// the configured exchange; an MQTT topic).
    targets: Vec<String>,
    /// What consumer j consumes: `sources[j % len]` (a queue; an MQTT topic filter).
    sources: Vec<String>,
    /// What to declare before the run and delete after it.
    topology: Topology,
    publish: PublishOptions,
    consume: ConsumeOptions,
    ack_every: Option<u32>,
    sharing: Sharing,
    drain_quiet: Option<Duration>,
}

/// The AMQP objects a run declares (with the consumers' client) and deletes at the end.
#[derive(Debug, Default)]
struct Topology {
    /// An exchange of the run's own: name and type.
    exchange: Option<(String, &'static str)>,
    /// Queues, declared durable with `durable`.
    queues: Vec<String>,
    durable: bool,
    /// (queue, exchange, binding key).
    bindings: Vec<(String, String, String)>,
}

impl Topology {
    fn is_empty(&self) -> bool {
        self.exchange.is_none() && self.queues.is_empty()
    }
}

async fn run_amqp(args: &AmqpArgs) -> anyhow::Result<ExitCode> {
    args.validate().map_err(anyhow::Error::msg)?;
    let run = run_id();
    let queues: Vec<String> = (0..args.queues)
        .map(|i| format!("pigeon-bench-{run}-{i}"))
        .collect();
    let mut topology = Topology {
        queues: queues.clone(),
        durable: args.persistent,
        ..Topology::default()
    };
    let exchange = if args.fanout {
        let name = format!("pigeon-bench-fanout-{run}");
        topology.exchange = Some((name.clone(), "fanout"));
        name
    } else {
        args.exchange.clone()
    };
    if !exchange.is_empty() {
        // Fanout ignores the key; a direct or topic exchange routes each queue's name to it.
        topology.bindings = queues
            .iter()
            .map(|q| (q.clone(), exchange.clone(), q.clone()))
            .collect();
    }
    let url = args.tls.url(&args.url, "amqp", "amqps");
    let tls = args
        .tls
        .client(net::BrokerUrl::parse(&url, net::AMQP_SCHEMES)?.is_tls())?;
    if tls.is_some() && args.client == ClientKind::Lapin {
        anyhow::bail!("--client lapin is plain TCP only here; TLS runs use the default client");
    }
    let config = AmqpConfig {
        url: url.clone(),
        exchange: exchange.clone(),
        tls,
    };
    let load = Load {
        load: &args.load,
        targets: queues.clone(),
        sources: queues,
        topology,
        publish: PublishOptions {
            confirm_window: args.confirm.then_some(args.confirm_window),
            persistent: args.persistent,
        },
        consume: ConsumeOptions {
            manual_ack: args.ack,
            prefetch: args.prefetch,
        },
        ack_every: args.ack.then_some(args.multi_ack_every),
        sharing: if args.fanout {
            Sharing::Broadcast {
                queues: args.queues as usize,
            }
        } else {
            Sharing::Competing
        },
        drain_quiet: None,
    };
    let (duration_s, count) = until_fields(&args.load);
    let info = RunInfo {
        protocol: "amqp",
        client: match args.client {
            ClientKind::Raw => "raw",
            ClientKind::Lapin => "lapin",
        },
        url: net::redact_password(&url),
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
            exchange,
            fanout: args.fanout,
        }),
        confirm: args.confirm,
        sharing: load.sharing,
    };
    match args.client {
        ClientKind::Raw => {
            measure::<amqp_raw::RawAmqp, amqp_raw::RawAmqp>(&load, &config, &config, info).await
        }
        ClientKind::Lapin => measure::<amqp::Amqp, amqp::Amqp>(&load, &config, &config, info).await,
    }
}

async fn run_mqtt(args: &MqttArgs) -> anyhow::Result<ExitCode> {
    args.validate().map_err(anyhow::Error::msg)?;
    let qos = mqtt_wire::QoS::try_from(args.qos).map_err(|e| anyhow::anyhow!("--qos: {e}"))?;
    let run = run_id();
    let url = args.tls.url(&args.url, "mqtt", "mqtts");
    let broker = net::BrokerUrl::parse(&url, net::MQTT_SCHEMES)?;
    let config = mqtt::MqttConfig {
        tls: args.tls.client(broker.is_tls())?,
        url: broker,
        version: args.mqtt_version.wire(),
        qos,
        keep_alive: 60,
        run: run.clone(),
    };
    let acked = args.qos > 0;
    let topics: Vec<String> = (0..args.topics)
        .map(|i| format!("pigeon-bench/{run}/{i}"))
        .collect();
    let load = Load {
        load: &args.load,
        targets: topics.clone(),
        sources: topics,
        topology: Topology::default(),
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
        url: net::redact_password(&url),
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
        sharing: load.sharing,
    };
    measure::<mqtt::Mqtt, mqtt::Mqtt>(&load, &config, &config, info).await
}

/// MQTT publishers to AMQP consumers: publisher i sends to topic `pigeon-bench/<run>/<k>`
/// (k = i % Q), which the broker routes through its MQTT exchange as
/// `pigeon-bench.<run>.<k>`; queue k is bound there with that key.
async fn run_cross(args: &CrossArgs) -> anyhow::Result<ExitCode> {
    args.validate().map_err(anyhow::Error::msg)?;
    let qos = mqtt_wire::QoS::try_from(args.qos).map_err(|e| anyhow::anyhow!("--qos: {e}"))?;
    let run = run_id();
    let mqtt_url = args.tls.url(&args.mqtt_url, "mqtt", "mqtts");
    let amqp_url = args.tls.url(&args.amqp_url, "amqp", "amqps");
    let mqtt_broker = net::BrokerUrl::parse(&mqtt_url, net::MQTT_SCHEMES)?;
    let amqp_tls = net::BrokerUrl::parse(&amqp_url, net::AMQP_SCHEMES)?.is_tls();
    // One TLS configuration for both, given only to the URL that asks for TLS.
    let tls = args.tls.client(mqtt_broker.is_tls() || amqp_tls)?;
    let mqtt_config = mqtt::MqttConfig {
        tls: tls.clone().filter(|_| mqtt_broker.is_tls()),
        url: mqtt_broker,
        version: args.mqtt_version.wire(),
        qos,
        keep_alive: 60,
        run: run.clone(),
    };
    let amqp_config = AmqpConfig {
        url: amqp_url.clone(),
        exchange: String::new(),
        tls: tls.filter(|_| amqp_tls),
    };
    let acked = args.qos > 0;
    let queues: Vec<String> = (0..args.queues)
        .map(|k| format!("pigeon-bench-{run}-{k}"))
        .collect();
    let topics: Vec<String> = (0..args.queues)
        .map(|k| format!("pigeon-bench/{run}/{k}"))
        .collect();
    let bindings = queues
        .iter()
        .zip(&topics)
        .map(|(q, t)| (q.clone(), args.exchange.clone(), topic_to_routing_key(t)))
        .collect();
    let load = Load {
        load: &args.load,
        targets: topics,
        sources: queues.clone(),
        topology: Topology {
            exchange: None,
            queues,
            durable: false,
            bindings,
        },
        publish: PublishOptions {
            confirm_window: acked.then_some(args.inflight),
            persistent: false,
        },
        consume: ConsumeOptions {
            manual_ack: args.ack,
            prefetch: args.prefetch,
        },
        ack_every: args.ack.then_some(args.multi_ack_every),
        sharing: Sharing::Competing,
        drain_quiet: Some(Duration::from_secs(args.drain_quiet)),
    };
    let (duration_s, count) = until_fields(&args.load);
    let info = RunInfo {
        protocol: "cross",
        client: "raw",
        url: format!(
            "{} -> {}",
            net::redact_password(&mqtt_url),
            net::redact_password(&amqp_url)
        ),
        settings: Settings::Cross(CrossSettings {
            mqtt_version: args.mqtt_version.name(),
            qos: args.qos,
            inflight: acked.then_some(args.inflight),
            publishers: args.load.producers,
            consumers: args.load.consumers,
            queues: args.queues,
            exchange: args.exchange.clone(),
            size: args.load.size,
            duration_s,
            count,
            multi_ack_every: args.ack.then_some(args.multi_ack_every),
            prefetch: args.prefetch,
            rate: args.load.rate,
        }),
        confirm: acked,
        sharing: load.sharing,
    };
    measure::<mqtt::Mqtt, amqp_raw::RawAmqp>(&load, &mqtt_config, &amqp_config, info).await
}

/// The routing key a broker gives an MQTT topic (as RabbitMQ's MQTT plugin and Pigeon do):
/// `/` and `.` swap places.
fn topic_to_routing_key(topic: &str) -> String {
    topic
        .chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            c => c,
        })
        .collect()
}

fn until_fields(load: &LoadArgs) -> (Option<u64>, Option<u64>) {
    match load.until() {
        args::Until::Elapsed(d) => (Some(d.as_secs()), None),
        args::Until::Count(n) => (None, Some(n)),
    }
}

/// Runs a workload with producers on client `P` and consumers on client `K`, prints the report
/// and says whether it passed.
async fn measure<P: Client, K: Client>(
    load: &Load<'_>,
    producer_config: &P::Config,
    consumer_config: &K::Config,
    info: RunInfo,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let cpu_before = cpu::CpuTime::now();
    let outcome = execute::<P, K>(load, producer_config, consumer_config, &info.url).await?;
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

/// Declares the topology (when there is one, with the consumers' client), runs the workload,
/// and deletes what it declared whatever happened.
async fn execute<P: Client, K: Client>(
    load: &Load<'_>,
    producer_config: &P::Config,
    consumer_config: &K::Config,
    url: &str,
) -> anyhow::Result<control::Outcome> {
    let topology = &load.topology;
    if topology.is_empty() {
        return drive::<P, K>(load, producer_config, consumer_config).await;
    }
    let timeout = load.load.timeout();
    let mut admin = bounded(
        timeout,
        || format!("cannot connect to {url}"),
        K::connect(consumer_config, "pigeon-bench admin"),
    )
    .await?;
    let mut exchange_declared = None;
    let mut declared = Vec::new();
    let result = async {
        if let Some((name, kind)) = &topology.exchange {
            bounded(
                timeout,
                || format!("declaring {kind} exchange {name}"),
                admin.declare_exchange(name, kind),
            )
            .await?;
            exchange_declared = Some(name);
        }
        for q in &topology.queues {
            bounded(
                timeout,
                || format!("declaring queue {q}"),
                admin.declare_queue(q, topology.durable),
            )
            .await?;
            declared.push(q);
        }
        for (q, x, key) in &topology.bindings {
            bounded(
                timeout,
                || format!("binding queue {q} to {x} with key {key:?}"),
                admin.bind_queue(q, x, key),
            )
            .await?;
        }
        anyhow::Ok(())
    }
    .await;
    let outcome = match result {
        Ok(()) => drive::<P, K>(load, producer_config, consumer_config).await,
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
    if let Some(x) = exchange_declared {
        if let Err(e) = bounded(
            timeout,
            || format!("deleting exchange {x}"),
            admin.delete_exchange(x),
        )
        .await
        {
            warn!("{}", crate::describe(&e));
        }
    }
    workload::close(admin, timeout).await;
    outcome
}

/// An error and its causes on one line, like `{:#}`, without the causes that an error's own
/// message already quotes (std and lapin errors often both print and expose their source). The
/// same as the `pigeon` binary's, which prints the errors `run` returns.
pub(crate) fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        let cause = cause.trim_end();
        if !text.contains(cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(cause);
        }
    }
    text
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
async fn drive<P: Client, K: Client>(
    load: &Load<'_>,
    producer_config: &P::Config,
    consumer_config: &K::Config,
) -> anyhow::Result<control::Outcome> {
    let args = load.load;
    let timeout = args.timeout();
    let target = |i: u32| load.targets[i as usize % load.targets.len()].clone();
    let source = |j: u32| load.sources[j as usize % load.sources.len()].clone();

    // Connections are opened concurrently; a run with many of them starts faster.
    let consume = load.consume;
    let mut consumer_setups = Vec::new();
    for j in 0..args.consumers {
        let (config, q) = (consumer_config.clone(), source(j));
        consumer_setups.push(tokio::spawn(async move {
            let what = || format!("consumer {j} on {q}");
            let client = bounded(
                timeout,
                what,
                K::connect(&config, &format!("pigeon-bench consumer {j}")),
            )
            .await?;
            bounded(timeout, what, client.consumer(&q, consume)).await
        }));
    }
    let publish = load.publish;
    let mut producer_setups = Vec::new();
    for i in 0..args.producers {
        let (config, q) = (producer_config.clone(), target(i));
        producer_setups.push(tokio::spawn(async move {
            let what = || format!("producer {i} on {q}");
            let client = bounded(
                timeout,
                what,
                P::connect(&config, &format!("pigeon-bench producer {i}")),
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
        load.sources.len(),
        if load.topology.queues.is_empty() {
            "topics"
        } else {
            "queues"
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mqtt_topics_become_the_routing_keys_brokers_give_them() {
        assert_eq!(
            topic_to_routing_key("pigeon-bench/18c-42/0"),
            "pigeon-bench.18c-42.0"
        );
        assert_eq!(topic_to_routing_key("a.b/c"), "a/b.c");
    }
}
