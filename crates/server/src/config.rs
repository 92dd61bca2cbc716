//! Server configuration: what the listeners bind to and the limits they negotiate.
//!
//! Every field has a default matching RabbitMQ's, so `ServerConfig::default()` is a working broker.
//! The `pigeon` binary fills this from its TOML file and command line.

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

/// A user allowed to log in. Passwords are compared in constant time.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct UserConfig {
    /// Login name.
    pub name: String,
    /// Plain-text password (hashing comes with the users/permissions work).
    pub password: String,
    /// When true the user may only connect from a loopback address (as RabbitMQ's `guest`).
    #[serde(default)]
    pub loopback_only: bool,
}

/// Configuration of the whole server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where the AMQP 0-9-1 listener binds. `127.0.0.1:0` picks an ephemeral port.
    pub amqp_listen: SocketAddr,
    /// Largest frame the server accepts and offers in `connection.tune` (bytes, >= 4096).
    pub frame_max: u32,
    /// Highest channel number a client may open (offered in `connection.tune`).
    pub channel_max: u16,
    /// Heartbeat interval the server proposes, in seconds (0 disables).
    pub heartbeat: u16,
    /// Largest message body accepted, in bytes.
    pub max_message_size: u64,
    /// Most simultaneous client connections; further ones are refused.
    pub max_connections: usize,
    /// How long a client has to complete the AMQP handshake.
    #[serde(with = "secs")]
    pub handshake_timeout: Duration,
    /// Users that may log in.
    pub users: Vec<UserConfig>,
    /// Where the MQTT listener (3.1, 3.1.1 and 5.0 on one port) binds; `None` disables MQTT.
    pub mqtt_listen: Option<SocketAddr>,
    /// The exchange MQTT publishes go through and subscriptions bind to.
    pub mqtt_exchange: String,
    /// Largest MQTT packet accepted (and announced to 5.0 clients), in bytes.
    pub mqtt_max_packet_size: u32,
    /// Topic aliases a 5.0 client may use towards the broker.
    pub mqtt_topic_alias_maximum: u16,
    /// Messages a session queue holds for a subscriber (offline or slow) before the oldest are
    /// dropped (drop-head, like RabbitMQ's default overflow).
    pub mqtt_max_queued_messages: usize,
    /// Clients without a user name are accepted from loopback as `guest`.
    pub mqtt_allow_anonymous: bool,
    /// Seconds between `$SYS/broker/...` updates (0 disables them).
    pub mqtt_sys_interval: u64,
    /// QoS 1/2 PUBLISHes a client may have unacknowledged towards the broker (5.0 Receive
    /// Maximum, announced in CONNACK; exceeding it is a protocol error).
    pub mqtt_receive_maximum: u16,
    /// Largest keep-alive granted, in seconds (0: whatever the client asks). A larger or zero
    /// request gets this value, told to 5.0 clients as Server Keep Alive.
    pub mqtt_max_keep_alive: u16,
    /// Topic filters clients may not subscribe to (refused in SUBACK with 0x80).
    pub mqtt_deny_subscribe: Vec<String>,
    /// Policies, as `rabbitmqctl set_policy` would set them.
    pub policies: Vec<PolicyConfig>,
    /// Where durable exchanges, queues, bindings and persistent messages are kept; `None`
    /// keeps everything in memory.
    pub data_dir: Option<std::path::PathBuf>,
    /// Wait for the disk (fdatasync) before confirming a persistent message. Off only for
    /// tests and benchmarks: a machine crash could then lose confirmed messages.
    pub fsync: bool,
    /// Paging: most message body bytes a durable (non-exclusive, non-priority) queue keeps in
    /// memory; messages beyond it, or beyond `queue_resident_messages`, live only in the
    /// queue's log until the queue drains down to them.
    pub queue_resident_bytes: usize,
    /// Paging: most messages such a queue keeps in memory.
    pub queue_resident_messages: usize,
    /// Memory alarm: when the process's resident memory (RSS) exceeds this fraction of the
    /// machine's memory (or of the cgroup's limit when lower),
    /// publishing connections are blocked (AMQP `connection.blocked`, reads paused) until they
    /// fall under 90% of it. RabbitMQ's `vm_memory_high_watermark`.
    pub memory_high_watermark: f64,
    /// The same limit in bytes; when set it wins over the fraction.
    pub memory_high_watermark_bytes: Option<u64>,
    /// Disk alarm: when the filesystem holding `data_dir` has fewer free bytes than this,
    /// publishing connections are blocked as by the memory alarm until the space comes back.
    /// RabbitMQ's `disk_free_limit` (and its default, 50 MB). No data directory, no disk alarm.
    pub disk_free_limit: u64,
    /// The same limit as a fraction of the machine's memory (RabbitMQ's
    /// `disk_free_limit.relative`); when set it wins over the bytes.
    pub disk_free_limit_relative: Option<f64>,
}

/// A policy: settings for the queues and/or exchanges of a vhost whose names match `pattern`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// The vhost (default `/`).
    #[serde(default = "default_vhost")]
    pub vhost: String,
    /// Its name.
    pub name: String,
    /// Regular expression matched against queue / exchange names.
    pub pattern: String,
    /// `queues`, `exchanges` or `all` (default).
    #[serde(default = "default_apply_to")]
    pub apply_to: String,
    /// The highest priority wins when several policies match.
    #[serde(default)]
    pub priority: i32,
    /// The settings: `message-ttl`, `expires`, `max-length`, `max-length-bytes`, `overflow`,
    /// `dead-letter-exchange`, `dead-letter-routing-key`, `delivery-limit`,
    /// `alternate-exchange`.
    pub definition: std::collections::BTreeMap<String, PolicyValue>,
}

/// A value in a policy definition.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PolicyValue {
    /// A number (TTLs, lengths, limits).
    Int(i64),
    /// A name (exchanges, routing keys, overflow behaviour).
    Text(String),
}

fn default_vhost() -> String {
    "/".into()
}

fn default_apply_to() -> String {
    "all".into()
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            amqp_listen: SocketAddr::from(([0, 0, 0, 0], 5672)),
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 128 * 1024 * 1024,
            max_connections: 65_536,
            handshake_timeout: Duration::from_secs(10),
            users: vec![UserConfig {
                name: "guest".into(),
                password: "guest".into(),
                loopback_only: true,
            }],
            mqtt_listen: Some(SocketAddr::from(([0, 0, 0, 0], 1883))),
            mqtt_exchange: "amq.topic".into(),
            mqtt_max_packet_size: 16 * 1024 * 1024,
            mqtt_topic_alias_maximum: 64,
            mqtt_max_queued_messages: 100_000,
            mqtt_allow_anonymous: true,
            mqtt_sys_interval: 10,
            mqtt_receive_maximum: 1024,
            mqtt_max_keep_alive: 0,
            mqtt_deny_subscribe: Vec::new(),
            policies: Vec::new(),
            data_dir: Some("pigeon-data".into()),
            fsync: true,
            queue_resident_bytes: 8 * 1024 * 1024,
            queue_resident_messages: 16 * 1024,
            memory_high_watermark: 0.4,
            memory_high_watermark_bytes: None,
            disk_free_limit: 50_000_000,
            disk_free_limit_relative: None,
        }
    }
}

impl ServerConfig {
    /// A configuration for tests: loopback, ephemeral ports, memory only, defaults otherwise.
    pub fn for_tests() -> Self {
        ServerConfig {
            amqp_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            mqtt_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            data_dir: None,
            ..ServerConfig::default()
        }
    }
}

mod secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}
