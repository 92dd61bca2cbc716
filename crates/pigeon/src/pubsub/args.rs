//! The flags of `pigeon pub` and `pigeon sub`: mosquitto_pub/mosquitto_sub's for MQTT, and
//! amqp-publish/amqp-consume's (or RabbitMQ PerfTest's where those clash) for AMQP.
//!
//! One set of flags serves both protocols, so where the tools disagree one meaning wins:
//! `-r` is MQTT's retain (mosquitto), the AMQP routing key is `-k` (PerfTest's `-k`);
//! `-q` is MQTT's QoS (mosquitto), the AMQP queue is `-Q`.

use clap::{Args, ValueEnum};
use pigeon_bench::TlsArgs;
use std::path::PathBuf;

/// Where to connect, and as whom: shared by `pub` and `sub`.
#[derive(Debug, Clone, Args)]
pub struct ConnArgs {
    /// The broker: `amqp://user:pass@host:port/vhost` (the vhost URL-encoded, `%2f` is `/`),
    /// `amqps://`, `mqtt://user:pass@host:port`, `mqtts://`, or MQTT over WebSocket `ws://` and
    /// `wss://` (`ws://host:8083/mqtt`). The scheme picks the protocol.
    #[arg(
        short = 'u',
        long,
        value_name = "URL",
        default_value = "amqp://guest:guest@localhost:5672/%2f"
    )]
    pub url: String,

    /// MQTT client identifier (default: pigeon-pub-<pid> / pigeon-sub-<pid>); for AMQP, the
    /// connection's name.
    #[arg(short = 'i', long = "id", value_name = "ID")]
    pub id: Option<String>,

    /// MQTT protocol version: 5 or 311 (3.1.1).
    #[arg(
        short = 'V',
        long = "protocol-version",
        value_enum,
        default_value = "311"
    )]
    pub mqtt_version: MqttVersion,

    /// MQTT quality of service: 0, 1 or 2.
    #[arg(short = 'q', long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    pub qos: u8,

    /// AMQP exchange: `pub` publishes to it (default: the default exchange); `sub` binds its
    /// queue to it with each `-b` key (default: amq.topic).
    #[arg(short = 'e', long, value_name = "EXCHANGE")]
    pub exchange: Option<String>,

    /// TLS (`amqps://`, `mqtts://`, `wss://`).
    #[command(flatten)]
    pub tls: TlsArgs,
}

/// An MQTT protocol version, as mosquitto's `-V` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MqttVersion {
    /// MQTT 3.1.1.
    #[value(name = "311", alias = "mqttv311", alias = "3.1.1")]
    V311,
    /// MQTT 5.0.
    #[value(name = "5", alias = "mqttv5", alias = "5.0")]
    V5,
}

/// `pigeon pub`: publish messages over AMQP or MQTT.
#[derive(Debug, Clone, Args)]
// `-V` is mosquitto's protocol version here, not pigeon's version.
#[command(disable_version_flag = true)]
#[command(group = clap::ArgGroup::new("body").required(true).args(["message", "file", "stdin_line", "stdin_file", "null_message"]))]
pub struct PubArgs {
    #[command(flatten)]
    pub conn: ConnArgs,

    /// MQTT topic to publish to.
    #[arg(short = 't', long, value_name = "TOPIC")]
    pub topic: Option<String>,

    /// AMQP routing key (default: the MQTT topic's routing key with -t, else empty).
    #[arg(short = 'k', long = "routing-key", value_name = "KEY")]
    pub routing_key: Option<String>,

    /// The message body.
    #[arg(short = 'm', long, value_name = "MESSAGE")]
    pub message: Option<String>,

    /// Send a file's contents as the message.
    #[arg(short = 'f', long, value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// Read standard input and send each line as a message.
    #[arg(short = 'l', long = "stdin-line")]
    pub stdin_line: bool,

    /// Read all of standard input and send it as one message.
    #[arg(short = 's', long = "stdin-file")]
    pub stdin_file: bool,

    /// Send an empty message.
    #[arg(short = 'n', long = "null-message")]
    pub null_message: bool,

    /// Send the message this many times.
    #[arg(short = 'C', long, value_name = "COUNT", default_value_t = 1)]
    pub count: u64,

    /// MQTT: retain the message.
    #[arg(short = 'r', long)]
    pub retain: bool,

    /// AMQP: persistent message (delivery mode 2).
    #[arg(short = 'p', long)]
    pub persistent: bool,

    /// AMQP: mandatory; a message no queue takes is returned and the command fails.
    #[arg(long)]
    pub mandatory: bool,

    /// Content type (AMQP property; MQTT 5 content type).
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,

    /// AMQP correlation id (MQTT 5 correlation data).
    #[arg(long, value_name = "ID")]
    pub correlation_id: Option<String>,

    /// AMQP reply-to (MQTT 5 response topic).
    #[arg(long, value_name = "ADDRESS")]
    pub reply_to: Option<String>,

    /// AMQP per-message TTL in milliseconds (the expiration property).
    #[arg(long, value_name = "MS")]
    pub expiration: Option<u64>,

    /// A header `key=value`, repeated for more (AMQP headers; MQTT 5 user properties).
    #[arg(short = 'H', long = "header", value_name = "KEY=VALUE", value_parser = parse_header)]
    pub headers: Vec<(String, String)>,
}

/// How `pigeon sub` prints a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The body, one message per line (with `-v`, the topic or routing key first).
    Text,
    /// One JSON object per line: topic or routing key, properties and body.
    Json,
}

/// `pigeon sub`: consume messages over AMQP or MQTT and print them.
#[derive(Debug, Clone, Args)]
#[command(disable_version_flag = true)]
pub struct SubArgs {
    #[command(flatten)]
    pub conn: ConnArgs,

    /// MQTT topic filter to subscribe to, repeated for more.
    #[arg(short = 't', long, value_name = "FILTER")]
    pub topic: Vec<String>,

    /// AMQP queue to consume (without one, a server-named exclusive queue is declared and
    /// bound with each `-b`).
    #[arg(short = 'Q', long, value_name = "QUEUE")]
    pub queue: Option<String>,

    /// AMQP binding key for the queue, on `-e` (default amq.topic); repeated for more.
    #[arg(short = 'b', long = "binding-key", value_name = "KEY")]
    pub binding_keys: Vec<String>,

    /// Exit after this many messages.
    #[arg(short = 'C', long, value_name = "COUNT")]
    pub count: Option<u64>,

    /// Print the topic (MQTT) or routing key (AMQP) before each body.
    #[arg(short = 'v', long)]
    pub verbose: bool,

    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,

    /// Give up (exit 27, as mosquitto_sub) after this many seconds.
    #[arg(short = 'W', long, value_name = "SECS")]
    pub timeout: Option<u64>,
}

/// `key=value`, as curl's and amqp-publish's `-H`.
fn parse_header(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}
