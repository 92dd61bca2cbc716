//! Server configuration: what the listeners bind to and the limits they negotiate.
//!
//! Every field has a default matching RabbitMQ's, so `ServerConfig::default()` is a working broker.
//! The `pigeon` binary fills this from its TOML file and command line.

use serde::Deserialize;
use std::net::SocketAddr;
use std::time::Duration;

pub use crate::listen::Listen;
pub use crate::tls::{TlsConfig, TlsVerify};

/// A user created or updated in the store at every start (a bootstrap convenience: users
/// normally live in the store and are managed at runtime). Its password is hashed before it is
/// stored, and it gets the permissions `.*` `.*` `.*` on `/`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct UserConfig {
    /// Login name.
    pub name: String,
    /// Plain-text password (hashed into the store; the file keeps it in clear, so prefer
    /// creating users at runtime).
    pub password: String,
    /// When true the user may only connect from a loopback address (as if listed in
    /// `loopback_users`).
    #[serde(default)]
    pub loopback_only: bool,
    /// Its tags (`administrator`, `monitoring`, `policymaker`, `management`, ...).
    #[serde(default)]
    pub tags: Vec<String>,
}

/// The permissions the default user gets in the default vhost (RabbitMQ's
/// `default_permissions.configure` / `.write` / `.read`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DefaultPermissions {
    /// Regex of the resources it may configure.
    pub configure: String,
    /// Regex of the resources it may write to.
    pub write: String,
    /// Regex of the resources it may read from.
    pub read: String,
}

impl Default for DefaultPermissions {
    fn default() -> Self {
        DefaultPermissions {
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        }
    }
}

/// Configuration of the whole server.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Where the AMQP 0-9-1 listener binds: one address, a list, or a port (both `[::]` and
    /// `0.0.0.0`); an empty list turns it off. `127.0.0.1:0` picks an ephemeral port.
    pub amqp_listen: Listen,
    /// Where AMQP 0-9-1 over TLS binds (needs `tls`). Unset: `[::]:5671` and `0.0.0.0:5671`
    /// when `tls` is configured, off otherwise.
    pub amqps_listen: Option<Listen>,
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
    /// Most new connections accepted per second from one source address (every listener
    /// together); the excess is closed at once. 0 disables the limit.
    pub connection_rate_limit: u32,
    /// Whether `connection_rate_limit` also applies to loopback sources (off: local tools and
    /// test suites open connections as fast as they like).
    pub connection_rate_limit_loopback: bool,
    /// How long a client has to complete the AMQP handshake.
    #[serde(with = "secs")]
    pub handshake_timeout: Duration,
    /// Users created or updated in the store at every start, each with `.*` permissions on
    /// `/` (see [`UserConfig`]). Empty by default: the first start creates `default_user`.
    pub users: Vec<UserConfig>,
    /// The user the first start on an empty data directory creates (RabbitMQ's
    /// `default_user`); `""` creates none. Later starts never create it again.
    pub default_user: String,
    /// Its password (`default_pass`).
    pub default_pass: String,
    /// The vhost the first start creates, where the default user gets its permissions
    /// (`default_vhost`).
    pub default_vhost: String,
    /// The default user's tags (`default_user_tags`).
    pub default_user_tags: Vec<String>,
    /// The default user's permissions in the default vhost (`default_permissions`).
    pub default_permissions: DefaultPermissions,
    /// Users that may only connect from a loopback address (RabbitMQ's `loopback_users`).
    pub loopback_users: Vec<String>,
    /// Failed logins a source address may make in a row before its attempts are refused
    /// unchecked (0: no limit).
    pub login_failure_burst: u32,
    /// Failed logins per second a source regains after its burst.
    pub login_failure_rate: f64,
    /// Where the MQTT listener (3.1, 3.1.1 and 5.0 on one port) binds (as `amqp_listen`); an
    /// empty list disables it.
    pub mqtt_listen: Listen,
    /// Where MQTT over TLS binds (needs `tls`). Unset: `[::]:8883` and `0.0.0.0:8883` when
    /// `tls` is configured, off otherwise.
    pub mqtts_listen: Option<Listen>,
    /// Where MQTT over WebSocket binds: `[::]:8083` and `0.0.0.0:8083` by default (EMQX's
    /// port; RabbitMQ's Web MQTT uses 15675), `[]` turns it off.
    pub mqtt_ws_listen: Listen,
    /// Where MQTT over secure WebSocket binds (needs `tls`). Unset: `[::]:8084` and
    /// `0.0.0.0:8084` when `tls` is configured, off otherwise.
    pub mqtt_wss_listen: Option<Listen>,
    /// The HTTP path of the MQTT WebSocket endpoint on both WebSocket listeners (`/mqtt`, as
    /// mqtt.js and Paho expect; RabbitMQ's Web MQTT uses `/ws`). Other paths get 404.
    pub mqtt_ws_path: String,
    /// Web origins (`https://app.example.com`) whose pages may open an MQTT WebSocket; a
    /// browser's upgrade from any other gets 403. Empty: any origin (clients that are not
    /// browsers send none and are not concerned).
    pub mqtt_ws_origins: Vec<String>,
    /// The server certificate and the client certificate checks of every TLS listener;
    /// `None`: no TLS listener.
    pub tls: Option<TlsConfig>,
    /// The exchange MQTT publishes go through and subscriptions bind to.
    pub mqtt_exchange: String,
    /// Largest MQTT packet accepted (and announced to 5.0 clients), in bytes.
    pub mqtt_max_packet_size: u32,
    /// Milliseconds an MQTT connection with nothing in flight stays idle before it hibernates
    /// (gives its task back until a packet or a delivery: `mqtt/hibernate.rs`); 0: never.
    pub mqtt_hibernate_after_ms: u64,
    /// Topic aliases a 5.0 client may use towards the broker.
    pub mqtt_topic_alias_maximum: u16,
    /// Messages a session queue holds for a subscriber (offline or slow) before the oldest are
    /// dropped (drop-head, like RabbitMQ's default overflow).
    pub mqtt_max_queued_messages: usize,
    /// Clients without a user name are accepted from loopback as `guest`.
    pub mqtt_allow_anonymous: bool,
    /// Seconds between `$SYS/broker/...` updates (0 disables them).
    pub mqtt_sys_interval: u64,
    /// Milliseconds between the management API's statistics samples, from which it computes
    /// message rates (RabbitMQ's `collect_statistics_interval`, default 5000).
    pub collect_statistics_interval: u64,
    /// QoS 1/2 PUBLISHes a client may have unacknowledged towards the broker (5.0 Receive
    /// Maximum, announced in CONNACK; exceeding it is a protocol error).
    pub mqtt_receive_maximum: u16,
    /// Largest keep-alive granted, in seconds (0: whatever the client asks). A larger or zero
    /// request gets this value, told to 5.0 clients as Server Keep Alive.
    pub mqtt_max_keep_alive: u16,
    /// Topic filters clients may not subscribe to (refused in SUBACK with 0x80).
    pub mqtt_deny_subscribe: Vec<String>,
    /// A PUBLISH or SUBSCRIBE refused by permissions closes the connection (after the
    /// SUBACK), as RabbitMQ's `mqtt.disconnect_on_unauthorized` (default true). When false,
    /// a refused QoS 1/2 PUBLISH is answered with reason 0x87 (5.0; a plain PUBACK in 3.1.1)
    /// and dropped, a QoS 0 one is dropped, and a refused subscription gets 0x87 (5.0) /
    /// 0x80 (3.1.1) in SUBACK, the connection staying open.
    pub mqtt_disconnect_on_unauthorized: bool,
    /// Which name of a verified client certificate is the user name for SASL EXTERNAL (AMQP)
    /// and MQTT certificate login (RabbitMQ's `ssl_cert_login_from`).
    pub ssl_cert_login_from: CertLoginFrom,
    /// MQTT over TLS: a client that sends no user name and no password but a verified
    /// certificate logs in as the user its certificate names (RabbitMQ's
    /// `mqtt.ssl_cert_login`, Mosquitto's `use_identity_as_username`). A user name and
    /// password, when sent, take priority (as RabbitMQ's). The user must exist.
    pub mqtt_ssl_cert_login: bool,
    /// Where the management HTTP API (RabbitMQ's management plugin API, `/api/...`) binds,
    /// as `amqp_listen`; an empty list turns it off. Plain HTTP.
    pub management_listen: Listen,
    /// Where the management HTTP API binds over TLS (HTTPS, needs `tls`; RabbitMQ's
    /// `management.ssl.port`). Unset: `[::]:15671` and `0.0.0.0:15671` when `tls` is
    /// configured, off otherwise.
    pub management_tls_listen: Option<Listen>,
    /// Where the RabbitMQ Stream protocol listener binds (RabbitMQ's `stream.listeners.tcp`,
    /// port 5552), as `amqp_listen`; `[]` turns it off.
    pub stream_listen: Listen,
    /// Where the Stream protocol over TLS binds (needs `tls`; `stream.listeners.ssl`). Unset:
    /// `[::]:5551` and `0.0.0.0:5551` when `tls` is configured, off otherwise.
    pub stream_tls_listen: Option<Listen>,
    /// The host stream clients are told to connect to in `Metadata` and `Open`
    /// (`stream.advertised_host`). Unset: the address the client connected to, `localhost`
    /// when that is a loopback address.
    pub stream_advertised_host: Option<String>,
    /// The port advertised likewise (`stream.advertised_port`). Unset: the port the client
    /// connected to.
    pub stream_advertised_port: Option<u16>,
    /// Policies, as `rabbitmqctl set_policy` would set them.
    pub policies: Vec<PolicyConfig>,
    /// A definitions file (RabbitMQ's JSON, as `rabbitmqctl export_definitions` writes it),
    /// or a directory of `*.json` ones, imported at every start (RabbitMQ's
    /// `load_definitions`).
    pub load_definitions: Option<std::path::PathBuf>,
    /// Where durable exchanges, queues, bindings and persistent messages are kept; `None`
    /// keeps everything in memory.
    pub data_dir: Option<std::path::PathBuf>,
    /// Wait for the disk (fdatasync) before confirming a persistent message. Off only for
    /// tests and benchmarks: a machine crash could then lose confirmed messages.
    pub fsync: bool,
    /// Paging: most message body bytes a queue (not a priority queue; durable or not, given a
    /// data directory) keeps in memory; messages beyond it, or beyond
    /// `queue_resident_messages`, live only in the queue's log until the queue drains down to
    /// them (a transient queue's log is opened on its first page-out and deleted at start).
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
    /// Where Prometheus scrapes `/metrics` and `/metrics/per-object` (RabbitMQ's
    /// rabbitmq_prometheus port, 15692); `[]` turns it off.
    pub prometheus_listen: Listen,
    /// Where the Prometheus endpoint binds over TLS (HTTPS, needs `tls`; RabbitMQ's
    /// `prometheus.ssl.port`). Unset: `[::]:15691` and `0.0.0.0:15691` when `tls` is
    /// configured, off otherwise.
    pub prometheus_tls_listen: Option<Listen>,
    /// The prefix of every metric name (`rabbitmq`, so RabbitMQ's Grafana dashboards work).
    pub prometheus_prefix: String,
    /// The number of nodes the cluster is expected to have (RabbitMQ's
    /// `cluster_formation.target_cluster_size_hint`), which
    /// `/api/health/checks/reached-target-cluster-size` compares with the nodes online. Pigeon
    /// runs one node: above 1 that check fails.
    pub target_cluster_size_hint: u32,
    /// This node's place in a cluster (`[cluster]` of the configuration file, checked by the
    /// `pigeon` crate): the broker's metadata then goes through the cluster's Raft group
    /// (`cluster/`, docs/clustering.md). `None`: a single node, as before.
    #[serde(skip)]
    pub cluster: Option<pigeon_cluster::ClusterConfig>,
    /// The queue type of a `queue.declare` that names none, in a vhost that sets no
    /// `default_queue_type` of its own (RabbitMQ's `default_queue_type` in rabbitmq.conf):
    /// `classic` (unset), `quorum` or `stream`. Applies to durable, non-exclusive,
    /// non-auto-delete queues only, as RabbitMQ's (broker `vhost/default_type.rs`).
    pub default_queue_type: Option<String>,
    /// The type of an MQTT persistent session's queue (clean session false, or a session
    /// expiry): `classic` (unset) or `quorum` (RabbitMQ's `mqtt.durable_queue_type`), so that
    /// a QoS 1 session's messages are in a Raft log and PUBACK waits for its commit.
    pub mqtt_durable_queue_type: Option<String>,
    /// In a cluster, how long a cleared retained message's tombstone is kept, in milliseconds
    /// (Cassandra's `gc_grace_seconds`): older ones are collected (docs/clustering.md,
    /// "Retained messages"). 0: never.
    pub mqtt_retained_tombstone_grace_ms: u64,
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

/// Which name of a client certificate is a user name (`ssl_cert_login_from`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum CertLoginFrom {
    /// The subject distinguished name in RFC 4514 form (`CN=client,O=Acme,C=FR`): RabbitMQ's
    /// default.
    #[default]
    DistinguishedName,
    /// The subject's common name (CN).
    CommonName,
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
            amqp_listen: Listen::all_interfaces(5672),
            amqps_listen: None,
            frame_max: 131_072,
            channel_max: 2047,
            heartbeat: 60,
            max_message_size: 128 * 1024 * 1024,
            max_connections: 65_536,
            connection_rate_limit: 100,
            connection_rate_limit_loopback: false,
            handshake_timeout: Duration::from_secs(10),
            users: Vec::new(),
            default_user: "guest".into(),
            default_pass: "guest".into(),
            default_vhost: "/".into(),
            default_user_tags: vec!["administrator".into()],
            default_permissions: DefaultPermissions::default(),
            loopback_users: vec!["guest".into()],
            login_failure_burst: 10,
            login_failure_rate: 1.0,
            mqtt_listen: Listen::all_interfaces(1883),
            mqtts_listen: None,
            mqtt_ws_listen: Listen::all_interfaces(MQTT_WS_PORT),
            mqtt_wss_listen: None,
            mqtt_ws_path: "/mqtt".into(),
            mqtt_ws_origins: Vec::new(),
            tls: None,
            mqtt_exchange: "amq.topic".into(),
            mqtt_max_packet_size: 16 * 1024 * 1024,
            // RabbitMQ's MQTT reader hibernates after 1 s idle at first (rabbit_mqtt_reader:
            // gen_server2's `{backoff, 1000, 1000, 10000}`).
            mqtt_hibernate_after_ms: 1000,
            mqtt_topic_alias_maximum: 64,
            mqtt_max_queued_messages: 100_000,
            mqtt_allow_anonymous: true,
            mqtt_sys_interval: 10,
            collect_statistics_interval: 5000,
            mqtt_receive_maximum: 1024,
            mqtt_max_keep_alive: 0,
            mqtt_deny_subscribe: Vec::new(),
            mqtt_disconnect_on_unauthorized: true,
            ssl_cert_login_from: CertLoginFrom::DistinguishedName,
            mqtt_ssl_cert_login: false,
            management_listen: Listen::all_interfaces(MANAGEMENT_PORT),
            management_tls_listen: None,
            stream_listen: Listen::all_interfaces(STREAM_PORT),
            stream_tls_listen: None,
            stream_advertised_host: None,
            stream_advertised_port: None,
            policies: Vec::new(),
            load_definitions: None,
            data_dir: Some("pigeon-data".into()),
            fsync: true,
            queue_resident_bytes: 8 * 1024 * 1024,
            queue_resident_messages: 16 * 1024,
            memory_high_watermark: 0.4,
            memory_high_watermark_bytes: None,
            disk_free_limit: 50_000_000,
            disk_free_limit_relative: None,
            prometheus_listen: Listen::all_interfaces(15692),
            prometheus_tls_listen: None,
            prometheus_prefix: "rabbitmq".into(),
            target_cluster_size_hint: 1,
            default_queue_type: None,
            mqtt_durable_queue_type: None,
            mqtt_retained_tombstone_grace_ms: 24 * 60 * 60 * 1000,
            cluster: None,
        }
    }
}

/// The RabbitMQ Stream protocol, RabbitMQ's port.
pub const STREAM_PORT: u16 = 5552;
/// The RabbitMQ Stream protocol over TLS, RabbitMQ's port.
pub const STREAM_TLS_PORT: u16 = 5551;
/// AMQP over TLS, RabbitMQ's and IANA's port.
pub const AMQPS_PORT: u16 = 5671;
/// The management HTTP API, RabbitMQ's port.
pub const MANAGEMENT_PORT: u16 = 15672;
/// The management HTTP API over TLS, RabbitMQ's port (`management.ssl.port`).
pub const MANAGEMENT_TLS_PORT: u16 = 15671;
/// Prometheus over TLS, RabbitMQ's port (`prometheus.ssl.port`).
pub const PROMETHEUS_TLS_PORT: u16 = 15691;
/// MQTT over TLS, IANA's port.
pub const MQTTS_PORT: u16 = 8883;
/// The default port of MQTT over WebSocket.
pub const MQTT_WS_PORT: u16 = 8083;
/// The default port of MQTT over secure WebSocket (once `tls` is configured).
pub const MQTT_WSS_PORT: u16 = 8084;

impl ServerConfig {
    /// The AMQPS listener's addresses: as configured, or the default when `tls` is set.
    pub fn amqps_addrs(&self) -> Listen {
        tls_default(&self.amqps_listen, self.tls.is_some(), AMQPS_PORT)
    }

    /// The Stream-over-TLS listener's addresses: as configured, or the default when `tls` is
    /// set.
    pub fn stream_tls_addrs(&self) -> Listen {
        tls_default(&self.stream_tls_listen, self.tls.is_some(), STREAM_TLS_PORT)
    }

    /// The MQTTS listener's addresses: as configured, or the default when `tls` is set.
    pub fn mqtts_addrs(&self) -> Listen {
        tls_default(&self.mqtts_listen, self.tls.is_some(), MQTTS_PORT)
    }

    /// The secure WebSocket listener's addresses: as configured, or the default when `tls` is
    /// set.
    pub fn mqtt_wss_addrs(&self) -> Listen {
        tls_default(&self.mqtt_wss_listen, self.tls.is_some(), MQTT_WSS_PORT)
    }

    /// The management API's HTTPS addresses: as configured, or the default when `tls` is set.
    pub fn management_tls_addrs(&self) -> Listen {
        tls_default(
            &self.management_tls_listen,
            self.tls.is_some(),
            MANAGEMENT_TLS_PORT,
        )
    }

    /// The Prometheus endpoint's HTTPS addresses: as configured, or the default when `tls`
    /// is set.
    pub fn prometheus_tls_addrs(&self) -> Listen {
        tls_default(
            &self.prometheus_tls_listen,
            self.tls.is_some(),
            PROMETHEUS_TLS_PORT,
        )
    }

    /// Rejects TLS listeners without a `tls` table (checked again by `start`).
    pub fn check_tls(&self) -> Result<(), String> {
        if self.tls.is_some() {
            return Ok(());
        }
        for (key, listen) in [
            ("amqps_listen", &self.amqps_addrs()),
            ("mqtts_listen", &self.mqtts_addrs()),
            ("stream_tls_listen", &self.stream_tls_addrs()),
            ("mqtt_wss_listen", &self.mqtt_wss_addrs()),
            ("management_tls_listen", &self.management_tls_addrs()),
            ("prometheus_tls_listen", &self.prometheus_tls_addrs()),
        ] {
            if !listen.is_empty() {
                return Err(format!(
                    "{key} needs a [tls] table with certfile and keyfile"
                ));
            }
        }
        Ok(())
    }

    /// Checks `default_queue_type` and `mqtt_durable_queue_type` (helper quorumone).
    pub fn check_queue_types(&self) -> Result<(), String> {
        let types = pigeon_broker::vhost::default_type::QUEUE_TYPES;
        if let Some(t) = &self.default_queue_type {
            if !types.contains(&t.as_str()) {
                return Err(format!(
                    "default_queue_type = {t:?}: expected one of {}",
                    types.join(", ")
                ));
            }
        }
        if let Some(t) = &self.mqtt_durable_queue_type {
            if !["classic", "quorum"].contains(&t.as_str()) {
                return Err(format!(
                    "mqtt_durable_queue_type = {t:?}: expected classic or quorum"
                ));
            }
        }
        Ok(())
    }

    /// Rejects a WebSocket path that no request can match.
    pub fn check_ws_path(&self) -> Result<(), String> {
        let path = &self.mqtt_ws_path;
        if !path.starts_with('/')
            || path.contains(['?', '#'])
            || path.chars().any(char::is_whitespace)
        {
            return Err(format!(
                "mqtt_ws_path = {path:?} must be an HTTP path such as \"/mqtt\" (a leading /, no query, no spaces)"
            ));
        }
        Ok(())
    }

    /// A configuration for tests: loopback, ephemeral ports, memory only, defaults otherwise.
    /// TLS is off; a test that sets `tls` sets `amqps_listen` / `mqtts_listen` /
    /// `mqtt_wss_listen` too, or they bind the default ports (5671, 8883, 8084) on every
    /// interface. The stream protocol listens on 127.0.0.1:0, its TLS listener is off. MQTT over WebSocket is off, and so are the HTTPS listeners of the management
    /// API and Prometheus (a test that wants them sets `management_tls_listen` /
    /// `prometheus_tls_listen`).
    pub fn for_tests() -> Self {
        ServerConfig {
            amqp_listen: Listen::one(SocketAddr::from(([127, 0, 0, 1], 0))),
            mqtt_listen: Listen::one(SocketAddr::from(([127, 0, 0, 1], 0))),
            mqtt_ws_listen: Listen::none(),
            management_listen: Listen::one(SocketAddr::from(([127, 0, 0, 1], 0))),
            prometheus_listen: Listen::one(SocketAddr::from(([127, 0, 0, 1], 0))),
            stream_listen: Listen::one(SocketAddr::from(([127, 0, 0, 1], 0))),
            management_tls_listen: Some(Listen::none()),
            prometheus_tls_listen: Some(Listen::none()),
            stream_tls_listen: Some(Listen::none()),
            data_dir: None,
            // Test suites open connections from loopback far faster than any real client.
            connection_rate_limit: 0,
            ..ServerConfig::default()
        }
    }
}

fn tls_default(listen: &Option<Listen>, tls: bool, port: u16) -> Listen {
    match listen {
        Some(l) => l.clone(),
        None if tls => Listen::all_interfaces(port),
        None => Listen::none(),
    }
}

mod secs {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_secs(u64::deserialize(d)?))
    }
}
