//! The flags of `pigeon bench` (AMQP), `pigeon bench mqtt` and `pigeon bench idle`, and the checks
//! clap cannot express. AMQP names follow RabbitMQ's PerfTest where one exists (`-x`, `-y`, `-s`).

mod declare;
mod idle;
mod mqtt;
pub(crate) mod queue_arg;
mod stream;

pub use declare::DeclareArgs;
pub use idle::{IdleArgs, Protocol};
pub use mqtt::{CrossArgs, MqttArgs, MqttVersion};
pub use queue_arg::QueueArg;
pub use stream::StreamArgs;

use super::stamp::Stamp;
use super::tls::TlsArgs;
use clap::{Args, Subcommand, ValueEnum};
use std::time::Duration;

/// `pigeon bench`: AMQP 0-9-1 producers and consumers by default, or another mode (MQTT,
/// MQTT to AMQP, idle connections).
#[derive(Debug, Clone, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    after_help = "Without a mode, the flags above run AMQP 0-9-1 producers and consumers. \
                  `pigeon bench mqtt --help`: MQTT publishers and subscribers. \
                  `pigeon bench cross --help`: MQTT publishers to AMQP consumers. \
                  `pigeon bench idle --help`: idle connections and a broker's memory per connection. \
                  `pigeon bench stream --help`: RabbitMQ Stream protocol publishers and consumers. \
                  `pigeon bench declare --help`: declare (or delete) many queues and time it."
)]
pub struct BenchArgs {
    /// Another workload than AMQP producers and consumers.
    #[command(subcommand)]
    pub mode: Option<Mode>,

    /// The AMQP workload's flags.
    #[command(flatten)]
    pub amqp: AmqpArgs,
}

/// The workloads other than AMQP.
#[derive(Debug, Clone, Subcommand)]
pub enum Mode {
    /// Load an MQTT broker (3.1.1 or 5.0): publishers, subscribers, QoS 0, 1 or 2; report
    /// throughput, end-to-end latency, and lost and duplicated messages per subscriber.
    Mqtt(MqttArgs),
    /// Cross-protocol: MQTT publishers, AMQP consumers on queues bound to the exchange the
    /// broker routes MQTT messages through (amq.topic); same stamps, latency and loss counts.
    Cross(Box<CrossArgs>),
    /// Open many idle connections (MQTT or AMQP), hold them, and report how many succeeded and,
    /// with --broker-pid, the broker's memory per connection.
    Idle(IdleArgs),
    /// Load a RabbitMQ Stream protocol broker: publishers with a confirm window (optionally
    /// sub-entry batching), consumers from an offset; report published, confirmed and consumed
    /// per second, confirm and end-to-end latency. `-x 0` reads an existing stream and reports
    /// MB/s.
    Stream(Box<StreamArgs>),
    /// Declare many queues (quorum queues with `--queue-arg x-queue-type=quorum`) and leave
    /// them idle, or delete them again; report how long it took (a broker's memory per idle
    /// queue is measured around it).
    Declare(DeclareArgs),
}

/// Flags every message workload has.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Publishing connections, each its own client (at most 65535).
    #[arg(long, short = 'x', visible_alias = "publishers", default_value_t = 1,
          value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(u16::MAX)))]
    pub producers: u32,

    /// Consuming connections, each its own client (0: publish only).
    #[arg(
        long,
        short = 'y',
        visible_alias = "subscribers",
        default_value_t = 1,
        value_name = "N"
    )]
    pub consumers: u32,

    /// Message body size in bytes; the first 16 carry the send time, producer and sequence.
    #[arg(long, short = 's', default_value_t = 16, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(Stamp::LEN as i64..))]
    pub size: u32,

    /// Publish for this many seconds (the default is 10 unless --count is given).
    #[arg(long, value_name = "SECS", conflicts_with = "count",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: Option<u64>,

    /// Publish this many messages per producer, then stop.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Messages per second per producer (0: as fast as the broker takes them).
    #[arg(long, default_value_t = 0, value_name = "R")]
    pub rate: u32,

    /// Give up when a broker operation, or the whole run, makes no progress for this long.
    #[arg(long, default_value_t = 10, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,

    /// Print the report as one JSON object on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// Which AMQP client the bench uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ClientKind {
    /// The bench's own client, on tokio and amqp-wire: the cheapest per message.
    Raw,
    /// lapin, a general-purpose client library.
    Lapin,
}

/// Flags of the AMQP workload (`pigeon bench`).
#[derive(Debug, Clone, Args)]
pub struct AmqpArgs {
    /// Broker to load, as an AMQP URI (the vhost is URL-encoded: `%2f` is `/`); `amqps://`
    /// connects over TLS (port 5671 by default). Give it several times for the nodes of a
    /// cluster: producer i connects to the (i mod n)-th.
    #[arg(
        long = "url",
        default_value = "amqp://guest:guest@127.0.0.1/%2f",
        value_name = "URL"
    )]
    pub urls: Vec<String>,

    /// Where consumers connect (several times: consumer j to the (j mod n)-th); default: the
    /// `--url`s.
    #[arg(long = "consumer-url", value_name = "URL")]
    pub consumer_urls: Vec<String>,

    /// Where the run declares and deletes its queues (in a cluster, the node a quorum queue's
    /// first leader is placed on by RabbitMQ's default `client-local` and by Pigeon); default:
    /// the first consumer URL.
    #[arg(long, value_name = "URL")]
    pub declare_url: Option<String>,

    /// An argument for every queue the run declares, `KEY=VALUE` (several times): an integer
    /// value is sent as a signed 64-bit integer, `true`/`false` as a boolean, anything else as
    /// a string; e.g. `--queue-arg x-queue-type=quorum --queue-arg x-quorum-initial-group-size=3`.
    #[arg(long = "queue-arg", value_name = "KEY=VALUE")]
    pub queue_args: Vec<QueueArg>,

    #[command(flatten)]
    pub tls: TlsArgs,

    /// The AMQP client inside the bench.
    #[arg(long, value_enum, default_value_t = ClientKind::Raw)]
    pub client: ClientKind,

    #[command(flatten)]
    pub load: LoadArgs,

    /// Queues to declare; producer i publishes to queue i % Q and consumer j reads queue j % Q.
    #[arg(long, default_value_t = 1, value_name = "Q",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub queues: u32,

    /// Publish through this existing exchange (amq.direct, amq.topic, ...) instead of the
    /// default one; each queue is bound to it with its own name as the key.
    #[arg(
        long,
        default_value = "",
        value_name = "NAME",
        conflicts_with = "fanout"
    )]
    pub exchange: String,

    /// Declare a fanout exchange for the run (pigeon-bench-fanout-<run>, deleted at the end),
    /// bind every queue to it and publish there: every queue gets every message, and each
    /// queue's consumers should see every message once (copies on other queues are no
    /// duplicates; consumed/s counts every copy).
    #[arg(long)]
    pub fanout: bool,

    /// Use publisher confirms (confirm.select) and count acks and nacks.
    #[arg(long)]
    pub confirm: bool,

    /// Most unconfirmed messages per producer before it waits for confirms.
    #[arg(long, default_value_t = 128, value_name = "K", requires = "confirm",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub confirm_window: u32,

    /// Consume with manual acknowledgements instead of auto-ack (no-ack).
    #[arg(long)]
    pub ack: bool,

    /// Acknowledge every K-th delivery with `multiple` set instead of each one.
    #[arg(long, default_value_t = 1, value_name = "K", requires = "ack",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub multi_ack_every: u32,

    /// Consumer prefetch (basic.qos); 0 sends none, leaving it unlimited. Brokers apply it only
    /// with --ack.
    #[arg(long, default_value_t = 0, value_name = "P")]
    pub prefetch: u16,

    /// Publish persistent messages (delivery_mode 2) to durable queues.
    #[arg(long)]
    pub persistent: bool,
}

/// When the producers stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// After this long.
    Elapsed(Duration),
    /// After this many messages each.
    Count(u64),
}

impl LoadArgs {
    /// When producers stop publishing.
    pub fn until(&self) -> Until {
        match (self.count, self.duration) {
            (Some(n), _) => Until::Count(n),
            (None, secs) => Until::Elapsed(Duration::from_secs(secs.unwrap_or(10))),
        }
    }

    /// How long one broker operation or a run without progress may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// Every queue or topic needs a producer, and a consumer when there are consumers.
    fn check_spread(&self, n: u32, what: &str) -> Result<(), String> {
        if n > self.producers {
            return Err(format!(
                "--{what} {n} exceeds --producers {}: every one needs a producer",
                self.producers
            ));
        }
        if self.consumers > 0 && self.consumers < n {
            return Err(format!(
                "--consumers {} is fewer than --{what} {n}: every one needs a consumer \
                 (or use --consumers 0 to only publish)",
                self.consumers
            ));
        }
        Ok(())
    }
}

/// The broker stops delivering after `prefetch` unacked messages; a consumer that waits for
/// more than that before acking would wait forever.
fn check_ack_batch(prefetch: u16, multi_ack_every: u32) -> Result<(), String> {
    if prefetch > 0 && multi_ack_every > u32::from(prefetch) {
        return Err(format!(
            "--multi-ack-every {multi_ack_every} exceeds --prefetch {prefetch}: the consumer would wait forever"
        ));
    }
    Ok(())
}

impl AmqpArgs {
    /// Checks the combinations clap cannot: every queue must have a producer (unless a fanout
    /// feeds them all), and a consumer when there are consumers, and a batch of acks must fit in
    /// the prefetch window.
    pub fn validate(&self) -> Result<(), String> {
        if self.fanout {
            if self.load.consumers > 0 && self.load.consumers < self.queues {
                return Err(format!(
                    "--consumers {} is fewer than --queues {}: every queue needs a consumer \
                     (or use --consumers 0 to only publish)",
                    self.load.consumers, self.queues
                ));
            }
        } else {
            self.load.check_spread(self.queues, "queues")?;
        }
        check_ack_batch(self.prefetch, self.multi_ack_every)
    }

    /// The URLs consumers connect to: `--consumer-url`, or else `--url`.
    pub fn consumer_urls(&self) -> &[String] {
        if self.consumer_urls.is_empty() {
            &self.urls
        } else {
            &self.consumer_urls
        }
    }

    /// Where the run declares its queues: `--declare-url`, or else the first consumer URL.
    pub fn declare_url(&self) -> &str {
        match &self.declare_url {
            Some(url) => url,
            None => self.consumer_urls().first().map_or("", String::as_str),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse_any(flags: &str) -> Result<BenchArgs, String> {
        let argv = std::iter::once("bench").chain(flags.split_whitespace());
        Ok(Wrapper::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .args)
    }

    fn parse(flags: &str) -> Result<AmqpArgs, String> {
        let args = parse_any(flags)?;
        assert!(args.mode.is_none());
        args.amqp.validate()?;
        Ok(args.amqp)
    }

    fn parse_mqtt(flags: &str) -> Result<MqttArgs, String> {
        match parse_any(&format!("mqtt {flags}"))?.mode {
            Some(Mode::Mqtt(m)) => {
                m.validate()?;
                Ok(m)
            }
            other => panic!("expected mqtt, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_one_producer_one_consumer_ten_seconds_raw_client() {
        let a = parse("").unwrap();
        let l = &a.load;
        assert_eq!((l.producers, l.consumers, a.queues, l.size), (1, 1, 1, 16));
        assert_eq!(l.until(), Until::Elapsed(Duration::from_secs(10)));
        assert!(!a.confirm && !a.ack && !a.persistent && !l.json);
        assert_eq!(a.client, ClientKind::Raw);
        assert_eq!(parse("--client lapin").unwrap().client, ClientKind::Lapin);
        assert!(parse("--client amqprs").is_err());
    }

    #[test]
    fn count_replaces_duration_and_they_conflict() {
        assert_eq!(parse("--count 5").unwrap().load.until(), Until::Count(5));
        assert!(parse("--count 5 --duration 3").is_err());
    }

    #[test]
    fn body_must_hold_the_stamp() {
        assert!(parse("--size 15").is_err());
        assert!(parse("--size 16").is_ok());
        assert!(parse_mqtt("--size 15").is_err());
    }

    #[test]
    fn windows_need_their_mode() {
        assert!(parse("--confirm-window 10").is_err());
        assert!(parse("--confirm --confirm-window 10").is_ok());
        assert!(parse("--multi-ack-every 10").is_err());
        assert!(parse("--ack --multi-ack-every 10").is_ok());
        assert!(parse("--confirm --confirm-window 0").is_err());
    }

    #[test]
    fn ack_batch_larger_than_prefetch_is_rejected() {
        let err = parse("--ack --multi-ack-every 100 --prefetch 50").unwrap_err();
        assert!(err.contains("--prefetch"), "{err}");
        assert!(parse("--ack --multi-ack-every 50 --prefetch 50").is_ok());
        assert!(
            parse("--ack --multi-ack-every 100").is_ok(),
            "no prefetch: no limit"
        );
    }

    #[test]
    fn every_queue_needs_a_producer_and_a_consumer() {
        assert!(parse("--queues 2 --producers 1 --consumers 2").is_err());
        assert!(parse("--queues 2 --producers 2 --consumers 1").is_err());
        assert!(parse("--queues 2 --producers 2 --consumers 0").is_ok());
        assert!(parse("--queues 2 --producers 4 --consumers 2").is_ok());
    }

    #[test]
    fn producer_ids_fit_the_stamp() {
        assert!(parse("--producers 0").is_err());
        assert!(parse("--producers 65536").is_err());
    }

    #[test]
    fn mqtt_mode_has_its_own_flags() {
        let m = parse_mqtt("--publishers 4 --subscribers 4 --qos 2 --inflight 10").unwrap();
        assert_eq!((m.load.producers, m.load.consumers, m.qos), (4, 4, 2));
        assert_eq!((m.inflight, m.topics), (10, 1));
        assert_eq!(m.mqtt_version, MqttVersion::V311);
        assert_eq!(m.url, "mqtt://127.0.0.1");
        let m = parse_mqtt("-x 2 -y 2 --topics 2 --mqtt-version 5").unwrap();
        assert_eq!(m.mqtt_version.wire(), mqtt_wire::ProtocolVersion::V5);
        assert!(parse_mqtt("--qos 3").is_err());
        assert!(
            parse_mqtt("--topics 2").is_err(),
            "one publisher for two topics"
        );
        assert!(parse_mqtt("--confirm").is_err(), "an AMQP flag");
    }

    #[test]
    fn fanout_needs_a_consumer_per_queue_but_not_a_producer() {
        let a = parse("--fanout --queues 4 -x 1 -y 4").unwrap();
        assert!(a.fanout);
        assert!(parse("--fanout --queues 4 -x 1 -y 2").is_err());
        assert!(parse("--fanout --queues 4 -x 1 -y 0").is_ok());
        assert!(parse("--queues 4 -x 1 -y 4").is_err(), "without a fanout");
        assert!(parse("--fanout --exchange amq.direct").is_err());
    }

    #[test]
    fn several_urls_spread_the_connections_and_queue_args_are_typed() {
        let a = parse("").unwrap();
        assert_eq!(a.urls, ["amqp://guest:guest@127.0.0.1/%2f"]);
        assert_eq!(a.consumer_urls(), a.urls.as_slice());
        assert_eq!(a.declare_url(), "amqp://guest:guest@127.0.0.1/%2f");
        let a = parse(
            "--url amqp://n1 --url amqp://n2 --consumer-url amqp://n3 \
             --queue-arg x-queue-type=quorum --queue-arg x-quorum-initial-group-size=3",
        )
        .unwrap();
        assert_eq!(a.urls, ["amqp://n1", "amqp://n2"]);
        assert_eq!(a.consumer_urls(), ["amqp://n3"]);
        assert_eq!(a.declare_url(), "amqp://n3");
        assert_eq!(a.queue_args.len(), 2);
        let a = parse("--declare-url amqp://n2").unwrap();
        assert_eq!(a.declare_url(), "amqp://n2");
        assert!(parse("--queue-arg novalue").is_err());
    }

    #[test]
    fn declare_mode_counts_its_queues() {
        let Some(Mode::Declare(d)) = parse_any(
            "declare --count 1000 --queue-arg x-queue-type=quorum --prefix idle --connections 8",
        )
        .unwrap()
        .mode
        else {
            panic!("expected declare");
        };
        assert_eq!(
            (d.count, d.connections, d.prefix.as_str()),
            (1000, 8, "idle")
        );
        assert!(!d.delete);
        assert!(parse_any("declare --count 0").is_err());
    }

    #[test]
    fn cross_mode_publishes_mqtt_and_consumes_amqp() {
        let Some(Mode::Cross(c)) = parse_any(
            "cross --mqtt-url mqtt://127.0.0.1:1891 --amqp-url amqp://127.0.0.1:5691/%2f \
             -x 2 -y 2 --queues 2 --ack --multi-ack-every 100",
        )
        .unwrap()
        .mode
        else {
            panic!("expected cross");
        };
        c.validate().unwrap();
        assert_eq!((c.qos, c.exchange.as_str(), c.queues), (1, "amq.topic", 2));
        assert_eq!(c.multi_ack_every, 100);
        let Some(Mode::Cross(c)) = parse_any("cross --queues 2").unwrap().mode else {
            panic!("expected cross");
        };
        assert!(c.validate().is_err(), "one publisher for two queues");
    }

    #[test]
    fn amqp_flags_do_not_mix_with_a_mode() {
        assert!(parse_any("--confirm mqtt").is_err());
        assert!(parse_any("idle --protocol mqtt --confirm").is_err());
    }

    #[test]
    fn idle_mode_parses_addresses_and_defaults_its_url() {
        let Some(Mode::Idle(i)) = parse_any(
            "idle --protocol mqtt --connections 10000 --hold 5 --broker-pid 42 \
             --source-addrs 127.0.0.1,127.0.0.2",
        )
        .unwrap()
        .mode
        else {
            panic!("expected idle");
        };
        assert_eq!((i.connections, i.hold, i.broker_pid), (10_000, 5, Some(42)));
        assert_eq!(i.source_addrs.len(), 2);
        assert_eq!(i.url(), "mqtt://127.0.0.1");
        assert!(parse_any("idle").is_err(), "--protocol is required");
    }
}
