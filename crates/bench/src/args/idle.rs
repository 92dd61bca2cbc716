//! The flags of `pigeon bench idle`.

use super::MqttVersion;
use crate::tls::TlsArgs;
use clap::{Args, ValueEnum};
use std::net::IpAddr;

/// The protocol of idle connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// MQTT: CONNECT with keep-alive 60, then only PINGREQ.
    Mqtt,
    /// AMQP 0-9-1: connection and one channel, heartbeats off.
    Amqp,
}

/// Flags of `pigeon bench idle`.
#[derive(Debug, Clone, Args)]
pub struct IdleArgs {
    /// Which protocol the connections speak.
    #[arg(long, value_enum)]
    pub protocol: Protocol,

    /// Broker URL (default: mqtt://127.0.0.1 or amqp://guest:guest@127.0.0.1/%2f, on the default ports);
    /// mqtts:// and amqps:// connect over TLS.
    #[arg(long)]
    pub url: Option<String>,

    #[command(flatten)]
    pub tls: TlsArgs,

    /// Connections to open.
    #[arg(long, default_value_t = 1000, value_name = "K",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,

    /// Seconds to hold them once all are open.
    #[arg(long, default_value_t = 10, value_name = "SECS")]
    pub hold: u64,

    /// Open half the connections, wait this long, read the broker's RSS, then open the other
    /// half: the report adds the cost per connection of the second half (`slope_kib`), which
    /// does not depend on the broker's RSS before the run. 0: all at once.
    #[arg(long, default_value_t = 0, value_name = "SECS")]
    pub settle: u64,

    /// The broker's process id: sample its resident memory (VmRSS in /proc/PID/status) before
    /// and after, and report it per connection.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,

    /// Local addresses to connect from, in turn (e.g. 127.0.0.1,127.0.0.2), when one address
    /// has too few ephemeral ports. Default: the system's choice, or for more than 20,000
    /// connections to a loopback broker, 127.0.0.1, 127.0.0.2, ... (one per 20,000).
    #[arg(long, value_name = "IP,...", value_delimiter = ',')]
    pub source_addrs: Vec<IpAddr>,

    /// Connections being set up at once.
    #[arg(long, default_value_t = 200, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,

    /// MQTT version (with --protocol mqtt).
    #[arg(long, value_enum, default_value_t = MqttVersion::V311)]
    pub mqtt_version: MqttVersion,

    /// MQTT keep-alive in seconds, sent in CONNECT (PINGREQ goes out every half of it).
    #[arg(long, default_value_t = 60, value_name = "SECS")]
    pub keep_alive: u16,

    /// Bound on setting up or closing one connection.
    #[arg(long, default_value_t = 10, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,

    /// Print the report as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
}

impl IdleArgs {
    /// The broker URL, or the protocol's default.
    pub fn url(&self) -> String {
        self.url.clone().unwrap_or_else(|| {
            match self.protocol {
                Protocol::Mqtt => "mqtt://127.0.0.1",
                Protocol::Amqp => "amqp://guest:guest@127.0.0.1/%2f",
            }
            .to_owned()
        })
    }
}
