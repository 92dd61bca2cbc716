//! The flags of `pigeon bench mqtt` and `pigeon bench cross`.

use super::{check_ack_batch, LoadArgs};
use crate::tls::TlsArgs;
use clap::{Args, ValueEnum};

/// An MQTT protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MqttVersion {
    /// MQTT 3.1.1 (protocol level 4).
    #[value(name = "3.1.1", alias = "4")]
    V311,
    /// MQTT 5.0 (protocol level 5).
    #[value(name = "5", alias = "5.0")]
    V5,
}

impl MqttVersion {
    /// The wire crate's name for it.
    pub fn wire(self) -> mqtt_wire::ProtocolVersion {
        match self {
            MqttVersion::V311 => mqtt_wire::ProtocolVersion::V3_1_1,
            MqttVersion::V5 => mqtt_wire::ProtocolVersion::V5,
        }
    }

    /// As the report writes it.
    pub fn name(self) -> &'static str {
        match self {
            MqttVersion::V311 => "3.1.1",
            MqttVersion::V5 => "5",
        }
    }
}

/// Flags of `pigeon bench mqtt`.
#[derive(Debug, Clone, Args)]
pub struct MqttArgs {
    /// Broker to load: `mqtt://[user[:password]@]host[:port]`; `mqtts://` connects over TLS
    /// (port 8883 by default).
    #[arg(long, default_value = "mqtt://127.0.0.1")]
    pub url: String,

    #[command(flatten)]
    pub tls: TlsArgs,

    /// MQTT version.
    #[arg(long, value_enum, default_value_t = MqttVersion::V311)]
    pub mqtt_version: MqttVersion,

    #[command(flatten)]
    pub load: LoadArgs,

    /// QoS of every publish and subscription: 0, 1 or 2.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,

    /// QoS 1 and 2: most unacknowledged messages per publisher (capped by an MQTT 5 broker's
    /// Receive Maximum).
    #[arg(long, default_value_t = 64, value_name = "K",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(u16::MAX)))]
    pub inflight: u32,

    /// Topics; publisher i publishes to topic i % T and subscriber j subscribes to topic j % T,
    /// so every subscriber of a topic gets every message published there.
    #[arg(long, default_value_t = 1, value_name = "T",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub topics: u32,

    /// Once publishing and its acknowledgements are over, stop waiting for missing messages after
    /// deliveries have paused this long (a broker may drop QoS 0 messages, and QoS 1 and 2 ones
    /// when a subscriber's queue overflows; they count as lost).
    #[arg(long, default_value_t = 2, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub drain_quiet: u64,
}

/// Flags of `pigeon bench cross`.
#[derive(Debug, Clone, Args)]
pub struct CrossArgs {
    /// Where the MQTT publishers connect: `mqtt://[user[:password]@]host[:port]`.
    #[arg(long, default_value = "mqtt://127.0.0.1")]
    pub mqtt_url: String,

    /// Where the AMQP consumers connect (the same broker), as an AMQP URI.
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1/%2f")]
    pub amqp_url: String,

    /// TLS for both URLs (`--tls` turns both into amqps:// and mqtts://).
    #[command(flatten)]
    pub tls: TlsArgs,

    /// MQTT version of the publishers.
    #[arg(long, value_enum, default_value_t = MqttVersion::V311)]
    pub mqtt_version: MqttVersion,

    #[command(flatten)]
    pub load: LoadArgs,

    /// QoS of the MQTT publishes: 0, 1 or 2.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,

    /// QoS 1 and 2: most unacknowledged messages per publisher.
    #[arg(long, default_value_t = 64, value_name = "K",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(u16::MAX)))]
    pub inflight: u32,

    /// Queues (and topics): publisher i publishes to topic pigeon-bench/<run>/<i % Q>, queue k is
    /// bound to --exchange with that topic's routing key (pigeon-bench.<run>.<k>: `/` becomes
    /// `.`), and consumer j reads queue j % Q.
    #[arg(long, default_value_t = 1, value_name = "Q",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub queues: u32,

    /// The exchange the broker publishes MQTT messages to (Pigeon's and RabbitMQ's default is
    /// amq.topic).
    #[arg(long, default_value = "amq.topic", value_name = "NAME")]
    pub exchange: String,

    /// Consume with manual acknowledgements instead of auto-ack (no-ack).
    #[arg(long)]
    pub ack: bool,

    /// Acknowledge every K-th delivery with `multiple` set instead of each one.
    #[arg(long, default_value_t = 1, value_name = "K", requires = "ack",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub multi_ack_every: u32,

    /// Consumer prefetch (basic.qos); 0 sends none.
    #[arg(long, default_value_t = 0, value_name = "P")]
    pub prefetch: u16,

    /// Once publishing and its acknowledgements are over, stop waiting for missing messages after
    /// deliveries have paused this long (they count as lost).
    #[arg(long, default_value_t = 2, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub drain_quiet: u64,
}

impl CrossArgs {
    /// Every queue needs a publisher, and a consumer when there are consumers; a batch of acks
    /// must fit in the prefetch window.
    pub fn validate(&self) -> Result<(), String> {
        self.load.check_spread(self.queues, "queues")?;
        check_ack_batch(self.prefetch, self.multi_ack_every)
    }
}

impl MqttArgs {
    /// Checks that every topic has a publisher, and a subscriber when there are subscribers.
    pub fn validate(&self) -> Result<(), String> {
        self.load.check_spread(self.topics, "topics")
    }
}
