//! Runs a [`Load`]: declares its topology, connects every consumer and then every producer,
//! lets them loose under the controller, deletes what it declared, and prints the report.

use crate::client::{Client, ConsumeOptions, PublishOptions};
use crate::control::{self, Fleet, Supervision};
use crate::report::{self, RunInfo};
use crate::tally::Sharing;
use crate::workload::{self, ConsumerPlan, Phase, ProducerPlan, ProducerStats};
use crate::{args::LoadArgs, cpu, describe};
use anyhow::Context;
use std::future::Future;
use std::process::ExitCode;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tracing::{info, warn};

/// What a message workload does, whatever the protocol.
pub(crate) struct Load<'a> {
    pub(crate) load: &'a LoadArgs,
    /// What producer i publishes to: `targets[i % len]` (a queue name or routing key through
    /// the configured exchange; an MQTT topic).
    pub(crate) targets: Vec<String>,
    /// What consumer j consumes: `sources[j % len]` (a queue; an MQTT topic filter).
    pub(crate) sources: Vec<String>,
    /// What to declare before the run and delete after it.
    pub(crate) topology: Topology,
    pub(crate) publish: PublishOptions,
    pub(crate) consume: ConsumeOptions,
    pub(crate) ack_every: Option<u32>,
    pub(crate) sharing: Sharing,
    pub(crate) drain_quiet: Option<Duration>,
}

/// The AMQP objects a run declares (with the consumers' client) and deletes at the end.
#[derive(Debug, Default)]
pub(crate) struct Topology {
    /// An exchange of the run's own: name and type.
    pub(crate) exchange: Option<(String, &'static str)>,
    /// Queues, declared durable with `durable`.
    pub(crate) queues: Vec<String>,
    pub(crate) durable: bool,
    /// (queue, exchange, binding key).
    pub(crate) bindings: Vec<(String, String, String)>,
}

impl Topology {
    fn is_empty(&self) -> bool {
        self.exchange.is_none() && self.queues.is_empty()
    }
}

/// Where producers, consumers and the declaring connection connect: producer i with
/// `producers[i % len]`, consumer j with `consumers[j % len]` (several nodes of a cluster).
pub(crate) struct Configs<PC, KC> {
    pub(crate) producers: Vec<PC>,
    pub(crate) consumers: Vec<KC>,
    /// The connection that declares the topology and deletes it at the end (with the
    /// consumers' client).
    pub(crate) declare: KC,
}

impl<PC, KC: Clone> Configs<PC, KC> {
    /// Every producer with one configuration, every consumer (and the declaring connection)
    /// with another.
    pub(crate) fn one(producer: PC, consumer: KC) -> Self {
        Configs {
            producers: vec![producer],
            consumers: vec![consumer.clone()],
            declare: consumer,
        }
    }
}

/// Runs a workload with producers on client `P` and consumers on client `K`, prints the report
/// and says whether it passed.
pub(crate) async fn measure<P: Client, K: Client>(
    load: &Load<'_>,
    configs: &Configs<P::Config, K::Config>,
    info: RunInfo,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let cpu_before = cpu::CpuTime::now();
    let outcome = execute::<P, K>(load, configs, &info.url).await?;
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
    configs: &Configs<P::Config, K::Config>,
    url: &str,
) -> anyhow::Result<control::Outcome> {
    let topology = &load.topology;
    if topology.is_empty() {
        return drive::<P, K>(load, configs).await;
    }
    let timeout = load.load.timeout();
    let mut admin = bounded(
        timeout,
        || format!("cannot connect to {url}"),
        K::connect(&configs.declare, "pigeon-bench admin"),
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
    let result = match result {
        Ok(()) => until_known::<P, K>(configs, &topology.queues, timeout).await,
        Err(e) => Err(e),
    };
    let outcome = match result {
        Ok(()) => drive::<P, K>(load, configs).await,
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
            warn!("{}", describe(&e));
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
            warn!("{}", describe(&e));
        }
    }
    workload::close(admin, timeout).await;
    outcome
}

/// Waits until every node the producers and consumers connect to knows every queue: a cluster
/// answers a declare on the declaring node and applies it on the others a moment later
/// (Pigeon's metadata log; RabbitMQ's Mnesia transaction is done on all nodes when it answers),
/// and a publish to a queue its node does not know yet is dropped, a consume refused (404).
async fn until_known<P: Client, K: Client>(
    configs: &Configs<P::Config, K::Config>,
    queues: &[String],
    timeout: Duration,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut waited = false;
    for config in &configs.producers {
        waited |= knows_all::<P>(config, queues, started + timeout).await?;
    }
    for config in &configs.consumers {
        waited |= knows_all::<K>(config, queues, started + timeout).await?;
    }
    if waited {
        info!(
            "every node knew the run's queues {} ms after they were declared",
            started.elapsed().as_millis()
        );
    }
    Ok(())
}

/// Waits until the broker at `config` knows every queue; says whether it had to wait.
async fn knows_all<C: Client>(
    config: &C::Config,
    queues: &[String],
    deadline: Instant,
) -> anyhow::Result<bool> {
    let timeout = deadline.saturating_duration_since(Instant::now());
    let mut client = bounded(
        timeout,
        || "connecting to check the queues".to_owned(),
        C::connect(config, "pigeon-bench check"),
    )
    .await?;
    let mut waited = false;
    for q in queues {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let known = bounded(
                left,
                || format!("checking queue {q}"),
                client.knows_queue(q),
            );
            if known.await? {
                break;
            }
            if Instant::now() >= deadline {
                anyhow::bail!("queue {q} was declared but a node did not know it in time");
            }
            waited = true;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    workload::close(client, deadline.saturating_duration_since(Instant::now())).await;
    Ok(waited)
}

/// Connects every consumer, then every producer, then lets them loose.
async fn drive<P: Client, K: Client>(
    load: &Load<'_>,
    configs: &Configs<P::Config, K::Config>,
) -> anyhow::Result<control::Outcome> {
    let producer_config = |i: u32| configs.producers[i as usize % configs.producers.len()].clone();
    let consumer_config = |j: u32| configs.consumers[j as usize % configs.consumers.len()].clone();
    let args = load.load;
    let timeout = args.timeout();
    let target = |i: u32| load.targets[i as usize % load.targets.len()].clone();
    let source = |j: u32| load.sources[j as usize % load.sources.len()].clone();

    // Connections are opened concurrently; a run with many of them starts faster.
    let consume = load.consume;
    let mut consumer_setups = Vec::new();
    for j in 0..args.consumers {
        let (config, q) = (consumer_config(j), source(j));
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
        let (config, q) = (producer_config(i), target(i));
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
