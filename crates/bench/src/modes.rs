//! What each mode's flags make of a run: the names it declares or picks, the clients it uses,
//! the options of its producers and consumers, and what the report says it was. Each builds a
//! [`Load`] for the runner.

use crate::amqp_raw::{self, AmqpConfig};
use crate::args::{self, AmqpArgs, ClientKind, CrossArgs, LoadArgs, MqttArgs, StreamArgs};
use crate::client::{ConsumeOptions, PublishOptions};
use crate::report::{AmqpSettings, CrossSettings, MqttSettings, RunInfo, Settings};
use crate::runner::{measure, Configs, Load, Topology};
use crate::stream::{Batching, StreamClient, StreamConfig, StreamSettings};
use crate::tally::Sharing;
use crate::{amqp, describe, mqtt, net, run_id, stream};
use std::process::ExitCode;
use std::time::Duration;

pub(crate) async fn run_amqp(args: &AmqpArgs) -> anyhow::Result<ExitCode> {
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
    let with_tls = |url: &String| args.tls.url(url, "amqp", "amqps");
    let producer_urls: Vec<String> = args.urls.iter().map(with_tls).collect();
    let consumer_urls: Vec<String> = args.consumer_urls().iter().map(with_tls).collect();
    let declare_url = with_tls(&args.declare_url().to_owned());
    let mut any_tls = false;
    for url in producer_urls
        .iter()
        .chain(&consumer_urls)
        .chain([&declare_url])
    {
        any_tls |= net::BrokerUrl::parse(url, net::AMQP_SCHEMES)?.is_tls();
    }
    let tls = args.tls.client(any_tls)?;
    if tls.is_some() && args.client == ClientKind::Lapin {
        anyhow::bail!("--client lapin is plain TCP only here; TLS runs use the default client");
    }
    if !args.queue_args.is_empty() && args.client == ClientKind::Lapin {
        anyhow::bail!("--queue-arg is for the default client; --client lapin declares without");
    }
    let queue_args = args::queue_arg::table(&args.queue_args)?;
    let config = |url: &String| -> anyhow::Result<AmqpConfig> {
        let is_tls = net::BrokerUrl::parse(url, net::AMQP_SCHEMES)?.is_tls();
        Ok(AmqpConfig {
            url: url.clone(),
            exchange: exchange.clone(),
            tls: tls.clone().filter(|_| is_tls),
            queue_args: queue_args.clone(),
        })
    };
    let configs = Configs {
        producers: producer_urls.iter().map(config).collect::<Result<_, _>>()?,
        consumers: consumer_urls.iter().map(config).collect::<Result<_, _>>()?,
        declare: config(&declare_url)?,
    };
    // The report names every node the run used, in the order given.
    let mut urls: Vec<String> = Vec::new();
    for url in producer_urls.iter().chain(&consumer_urls) {
        let url = net::redact_password(url);
        if !urls.contains(&url) {
            urls.push(url);
        }
    }
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
        url: urls.join(" "),
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
            measure::<amqp_raw::RawAmqp, amqp_raw::RawAmqp>(&load, &configs, info).await
        }
        ClientKind::Lapin => measure::<amqp::Amqp, amqp::Amqp>(&load, &configs, info).await,
    }
}

pub(crate) async fn run_mqtt(args: &MqttArgs) -> anyhow::Result<ExitCode> {
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
    measure::<mqtt::Mqtt, mqtt::Mqtt>(&load, &Configs::one(config.clone(), config), info).await
}

/// MQTT publishers to AMQP consumers: publisher i sends to topic `pigeon-bench/<run>/<k>`
/// (k = i % Q), which the broker routes through its MQTT exchange as
/// `pigeon-bench.<run>.<k>`; queue k is bound there with that key.
pub(crate) async fn run_cross(args: &CrossArgs) -> anyhow::Result<ExitCode> {
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
        queue_args: amqp_wire::FieldTable::new(),
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
    let configs = Configs::one(mqtt_config, amqp_config);
    measure::<mqtt::Mqtt, amqp_raw::RawAmqp>(&load, &configs, info).await
}

/// Publishers and consumers on one stream (`pigeon bench stream`), or only readers (`-x 0`).
/// The stream is created unless it exists; the run's own stream (no `--stream`) is deleted at
/// the end, a named one only with `--delete`. Every consumer reads every message, so each is a
/// group of its own for the loss and duplicate counts (as MQTT subscribers of one topic).
pub(crate) async fn run_stream(args: &StreamArgs) -> anyhow::Result<ExitCode> {
    args.validate().map_err(anyhow::Error::msg)?;
    let url = args
        .tls
        .url(&args.url, "rabbitmq-stream", "rabbitmq-stream+tls");
    let broker = net::BrokerUrl::parse(&url, stream::STREAM_SCHEMES)?;
    let tls = args.tls.client(stream::is_tls(&broker))?;
    let mut config = StreamConfig::new(broker, tls);
    config.offset = args.offset();
    config.credit = args.credit;
    config.batching = Batching {
        frame: args.batch,
        sub_entry: args.sub_entry,
    };
    let own = args.stream.is_none();
    let name = args
        .stream
        .clone()
        .unwrap_or_else(|| format!("pigeon-bench-{}", run_id()));
    let redacted = net::redact_password(&url);
    let timeout = args.timeout();
    let mut admin = within(timeout, "connecting", async {
        let mut admin =
            <StreamClient as crate::client::Client>::connect(&config, "pigeon-bench admin").await?;
        if !args.read_only() {
            admin.ensure_stream(&name).await?;
        }
        anyhow::Ok(admin)
    })
    .await
    .map_err(|e| e.context(format!("cannot set up {name} on {redacted}")))?;
    let result = if args.read_only() {
        stream::read::run(args, &config, &name, redacted).await
    } else {
        let load_args = args.load();
        let (duration_s, count) = until_fields(&load_args);
        let info = RunInfo {
            protocol: "stream",
            client: "raw",
            url: redacted,
            settings: Settings::Stream(StreamSettings {
                stream: name.clone(),
                producers: args.producers,
                consumers: args.consumers,
                size: args.size,
                duration_s,
                count,
                max_inflight: args.max_inflight,
                batch: args.batch,
                sub_entry: args.sub_entry,
                offset: args.offset_name(),
                credit: args.credit,
                rate: args.rate,
            }),
            confirm: true,
            sharing: Sharing::FanOut { topics: 1 },
        };
        stream::load::measure(&load_args, &config, &name, args.max_inflight, info).await
    };
    if own || args.delete {
        let deleted = within(timeout, "deleting", async {
            crate::client::Client::delete_queue(&mut admin, &name).await
        });
        if let Err(e) = deleted.await {
            tracing::warn!("deleting stream {name}: {}", describe(&e));
        }
    }
    crate::workload::close(admin, timeout).await;
    result
}

/// Bounds a setup or cleanup step by the run's timeout.
async fn within<T>(
    timeout: Duration,
    what: &str,
    step: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, step).await {
        Ok(result) => result,
        Err(_) => Err(anyhow::anyhow!(
            "{what}: no answer within {}s",
            timeout.as_secs()
        )),
    }
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
