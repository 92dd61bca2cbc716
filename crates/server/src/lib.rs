//! Pigeon's network server: listeners and the protocol adapters onto the broker core.
//!
//! [`start`] binds the listeners (`listen.rs`: AMQP 0-9-1 and MQTT, each over TCP and TLS,
//! MQTT also over WebSocket) and returns a [`ServerHandle`]. Every accepted socket gets one
//! task: the TLS handshake (`tls.rs`) if any, then the protocol's state machine
//! (`amqp/connection.rs`, `mqtt/connection.rs`) over a [`transport::Transport`], which also
//! writes its outbound buffer (`outbound.rs`).

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod admin;
mod alarm;
mod amqp;
pub mod auth;
mod authz;
mod cert_login;
mod cluster;
pub mod config;
mod conn_io;
mod flow;
mod http;
pub mod in_memory;
mod limits;
pub mod listen;
pub mod livelog;
pub mod memory;
mod metrics;
mod mqtt;
mod outbound;
mod policy;
mod readbuf;
pub mod registry;
mod stream;
pub mod tls;
pub mod transport;
pub mod ws;

/// The RabbitMQ release whose behaviour Pigeon follows, given as the version wherever clients
/// read one: AMQP's `connection.start` server properties, the stream protocol's
/// `PeerProperties` answer and the management API's `rabbitmq_version`. Clients gate features
/// on it (rabbitmq-stream-js-client turns filtering, super streams and Publish/Deliver v2 off
/// below 3.13.0); Pigeon's own version goes beside it as `pigeon_version` / `product_version`.
pub const RABBITMQ_VERSION: &str = "3.13.7";

pub use auth::{AuthError, AuthenticatedUser};
pub use config::{
    CertLoginFrom, DefaultPermissions, Listen, PolicyConfig, PolicyValue, ServerConfig, TlsConfig,
    TlsVerify, UserConfig,
};
pub use listen::Kind as ListenerKind;
pub use pigeon_broker::access::{AccessError, UserLimits, VHostInfo, VHostLimits};
pub use tls::{Reloaded, TlsError};

use pigeon_broker::Broker;
use pigeon_store::{Store, StoreOptions, SyncMode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tls::TlsContext;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// What can stop the server from starting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A policy in the configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The data directory could not be opened or recovered.
    #[error("cannot open the data directory {}: {source}", dir.display())]
    Store {
        /// The configured directory.
        dir: std::path::PathBuf,
        /// What went wrong.
        source: pigeon_store::StoreError,
    },
    /// The default user, the default vhost or a configured user could not be created.
    #[error("cannot set up users and vhosts: {0}")]
    Access(#[from] pigeon_broker::access::AccessError),
    /// A listener could not bind its address (in use, or not allowed).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The TLS certificate, key or CA files cannot be used.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The cluster node could not start (its listener, its log, its state machine).
    #[error("cluster: {0}")]
    Cluster(String),
}

/// What every connection task shares.
pub(crate) struct ServerState {
    pub broker: Arc<Broker>,
    pub config: ServerConfig,
    pub shutdown: watch::Receiver<bool>,
    pub connections: AtomicUsize,
    pub mqtt: mqtt::MqttState,
    /// Where persistent messages and durable definitions go (`None`: memory only).
    pub store: Option<Arc<Store>>,
    /// The memory and disk alarms: true while publishers must wait.
    pub alarm: watch::Sender<bool>,
    /// Which alarms hold the flag above (the AMQP `connection.blocked` reason).
    pub alarm_causes: alarm::AlarmCauses,
    /// The disk free limit in bytes ([`ServerHandle::set_disk_free_limit`] changes it).
    pub disk_free_limit: AtomicU64,
    /// Connections and channels counted against the vhost and user limits; the accept rate.
    pub limits: limits::Limits,
    /// Checks logins against the broker's users (`auth/`).
    pub auth: auth::Authenticator,
    /// Moves when a vhost or user is deleted or an operator closes a connection (`admin.rs`).
    /// Connections no longer watch it (they are woken through the registry, each looks at
    /// its own vhost, user and close request); kept for other watchers.
    pub kicks: watch::Sender<u64>,
    /// Every connection, its channels and consumers (`registry/`).
    pub registry: Arc<registry::Registry>,
    /// The memory alarm's limit, figure and publish-path counter (`memory.rs`).
    pub memory: memory::MemoryMeter,
    /// Per-queue publisher flow control's marks (`flow.rs`).
    pub flow: flow::FlowMarks,
    /// The policies the configuration file set (`policy.rs`).
    pub config_policies: policy::Owned,
    /// Permissions compiled once per user and vhost, shared by their connections (`authz.rs`).
    pub grants: Arc<authz::Grants>,
    /// The stream protocol's single-active-consumer groups (`stream/sac.rs`).
    pub stream_groups: stream::Groups,
    /// What the management API reads of stream connections (`stream/view.rs`).
    pub stream_views: stream::Views,
    /// This node of the cluster, when `[cluster]` is configured (`cluster/`): replicated
    /// metadata changes go through it. `None`: a single node.
    pub cluster: Option<pigeon_cluster::Cluster>,
    /// The node's default queue type and, without `[cluster]`, its quorum queues as a
    /// cluster of one (`cluster/quorum/single.rs`, helper quorumone).
    pub declares: Arc<cluster::quorum::single::Declares>,
    /// Maintenance mode (`pigeon ctl drain` / `revive`, `cluster/maintenance.rs`): the client
    /// listeners' suspension and `being_drained`.
    pub maintenance: cluster::maintenance::Maintenance,
    /// Asked by `join_cluster` (`cluster/join.rs`): the process restarts to reset and join.
    pub restart: cluster::join::Restart,
}

impl ServerState {
    /// Closes the connection called `name` as `rabbitmqctl close_connection` does: AMQP
    /// clients get 320 CONNECTION_FORCED with `reason` as the text, MQTT 5.0 clients
    /// DISCONNECT 0x98 (Administrative action), MQTT 3.1.1 and stream clients a closed socket.
    /// False if no such connection is open. Reuses the wake-up of vhost and user deletion (`kicks`).
    pub fn close_connection(&self, name: &str, reason: &str) -> bool {
        match self.registry.request_close(name, reason) {
            Some(protocol) => {
                tracing::info!(connection = %name, %reason, "closing connection on request");
                if !protocol.is_mqtt() {
                    self.kicks.send_modify(|n| *n = n.wrapping_add(1));
                }
                true
            }
            None => false,
        }
    }
}

/// A running server. Dropping it does not stop the server; call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    store: Option<Arc<Store>>,
    /// Every bound socket, in the order of [`listen::Kind::ALL`] and of the configuration.
    addrs: Vec<(listen::Kind, SocketAddr)>,
    tls: Option<Arc<TlsContext>>,
    broker: Arc<Broker>,
    state: Arc<ServerState>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl ServerHandle {
    /// The first address the AMQP listener is bound to (the real port when the config asked
    /// for 0); `0.0.0.0:0` when AMQP is off.
    pub fn amqp_addr(&self) -> SocketAddr {
        self.addr(listen::Kind::Amqp)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The first address the MQTT listener is bound to, if MQTT is enabled.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.addr(listen::Kind::Mqtt)
    }

    /// The first address the AMQP-over-TLS listener is bound to, if it is enabled.
    pub fn amqps_addr(&self) -> Option<SocketAddr> {
        self.addr(listen::Kind::Amqps)
    }

    /// The first address the MQTT-over-TLS listener is bound to, if it is enabled.
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        self.addr(listen::Kind::Mqtts)
    }

    /// The first address the RabbitMQ Stream protocol listener is bound to, if it is enabled.
    pub fn stream_addr(&self) -> Option<SocketAddr> {
        self.addr(listen::Kind::Stream)
    }

    /// The first address the Stream protocol over TLS is bound to, if it is enabled.
    pub fn stream_tls_addr(&self) -> Option<SocketAddr> {
        self.addr(listen::Kind::StreamTls)
    }

    /// What a Prometheus scrape of `/metrics` (`per_object`: `/metrics/per-object`) returns.
    pub fn metrics_text(&self, per_object: bool) -> String {
        let mut e = metrics::exposition::Exposition::new(&self.state.config.prometheus_prefix);
        metrics::write_all(&mut e, &self.state, per_object);
        e.into_string()
    }

    /// The first address the Prometheus endpoint is bound to, if it is enabled.
    pub fn prometheus_addr(&self) -> Option<SocketAddr> {
        self.addr(listen::Kind::Prometheus)
    }

    /// The first address the MQTT-over-WebSocket listener is bound to, if it is enabled.
    pub fn mqtt_ws_addr(&self) -> Option<SocketAddr> {
        self.addr(listen::Kind::MqttWs)
    }

    /// The first address the MQTT-over-secure-WebSocket listener is bound to, if enabled.
    pub fn mqtt_wss_addr(&self) -> Option<SocketAddr> {
        self.addr(listen::Kind::MqttWss)
    }

    /// The first address the management HTTP API is bound to, if it is enabled.
    pub fn management_addr(&self) -> Option<SocketAddr> {
        self.addr(listen::Kind::Http)
    }

    /// The first address the management HTTP API over TLS is bound to, if it is enabled.
    pub fn management_tls_addr(&self) -> Option<SocketAddr> {
        self.addr(listen::Kind::Https)
    }

    /// The first address the Prometheus endpoint over TLS is bound to, if it is enabled.
    pub fn prometheus_tls_addr(&self) -> Option<SocketAddr> {
        self.addr(listen::Kind::PrometheusTls)
    }

    /// The first address a listener is bound to.
    pub fn addr(&self, kind: listen::Kind) -> Option<SocketAddr> {
        self.addrs(kind).next()
    }

    /// Every address a listener is bound to.
    pub fn addrs(&self, kind: listen::Kind) -> impl Iterator<Item = SocketAddr> + '_ {
        self.addrs
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, a)| *a)
    }

    /// Re-reads the TLS certificate, key and CA files (what SIGHUP does; changes on disk are
    /// picked up without it). New handshakes use them; established connections keep theirs.
    /// On error the previous files stay in use. `Ok(None)`: TLS is not configured.
    pub fn reload_tls(&self) -> Result<Option<Reloaded>, TlsError> {
        self.tls.as_ref().map(|t| t.reload()).transpose()
    }

    /// Applies the configuration file's policies again (SIGHUP): sets these, clears those
    /// the file set before and no longer has; others (set through the API) stay. Existing
    /// queues and exchanges follow at once.
    pub fn set_policies(&self, policies: &[PolicyConfig]) -> Result<(), String> {
        policy::apply(&self.broker, policies, &self.state.config_policies)
    }

    /// Changes the disk free limit (bytes) of the running server, as `rabbitmqctl
    /// set_disk_free_limit`; the alarm follows at the next check (within 200 ms).
    pub fn set_disk_free_limit(&self, bytes: u64) {
        self.state.disk_free_limit.store(bytes, Ordering::Relaxed);
    }

    /// The connection registry: connections, channels, consumers.
    pub fn registry(&self) -> &Arc<registry::Registry> {
        &self.state.registry
    }

    /// MQTT connections hibernated now (idle without a task: `mqtt/hibernate.rs`).
    pub fn mqtt_hibernated(&self) -> usize {
        self.state.mqtt.hibernated()
    }

    /// How many times hibernated MQTT connections were resumed, and how many PINGREQs were
    /// answered without resuming one (`mqtt/hibernate.rs`), since the start.
    pub fn mqtt_resumed_and_pings(&self) -> (u64, u64) {
        self.state.mqtt.parking.resumed_and_pings()
    }

    /// A snapshot of every open connection (`/api/connections`).
    pub fn connections(&self) -> Vec<registry::ConnectionInfo> {
        self.state.registry.connections()
    }

    /// A snapshot of every open AMQP channel (`/api/channels`).
    pub fn channels(&self) -> Vec<registry::ChannelInfo> {
        self.state.registry.channels()
    }

    /// A snapshot of every AMQP consumer (`/api/consumers`).
    pub fn consumers(&self) -> Vec<registry::ConsumerInfo> {
        self.state.registry.consumers()
    }

    /// Closes a connection by name with a reason the client sees (see
    /// `ServerState::close_connection`); false if there is none.
    pub fn close_connection(&self, name: &str, reason: &str) -> bool {
        self.state.close_connection(name, reason)
    }

    /// Whether the memory alarm is on (publishers blocked), as `rabbitmqctl status` lists it.
    pub fn memory_alarm(&self) -> bool {
        self.state.alarm_causes.memory.load(Ordering::Relaxed)
    }

    /// The memory high watermark in bytes (`memory_high_watermark[_bytes]`, resolved).
    pub fn memory_limit(&self) -> u64 {
        self.state.memory.limit()
    }

    /// Changes the memory high watermark (bytes) of the running server, as `rabbitmqctl
    /// set_vm_memory_high_watermark absolute`; the alarm follows at the next check (within
    /// 200 ms, or the next few MiB published), and so do the queues' flow marks.
    pub fn set_memory_limit(&self, bytes: u64) {
        self.state.memory.set_limit(bytes);
        self.state.flow.follow(bytes);
    }

    /// The broker core behind the listeners.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.broker
    }

    /// Stops accepting, closes every connection (AMQP 320 CONNECTION_FORCED) and waits for
    /// them to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        while self.tasks.join_next().await.is_some() {}
        if let Some(cluster) = &self.state.cluster {
            cluster.shutdown().await;
        }
        if let Some(local) = &self.state.declares.local {
            local.shutdown().await;
        }
        if let Some(store) = &self.store {
            if let Err(e) = store.sync() {
                tracing::error!(error = %e, "final store sync failed");
            }
            // A checkpoint of every queue log that grew by 1 MiB or more, so that the next
            // start reads it instead of the whole log (the store's crate doc, "Checkpoints").
            if let Err(e) = store.checkpoint(1024 * 1024) {
                tracing::warn!(error = %e, "could not checkpoint the queue logs");
            }
        }
    }

    /// Resolves when `pigeon ctl join_cluster` asked this node to reset and join another
    /// cluster (`cluster/join.rs`): the caller stops the server ([`Self::shutdown`]) and
    /// starts the process again, whose start resets the node and joins.
    pub async fn restart_requested(&self) {
        self.state.restart.requested().await
    }

    /// Waits until the server stops.
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Binds the listeners and starts serving.
pub async fn start(mut config: ServerConfig) -> Result<ServerHandle, ServerError> {
    config.check_tls().map_err(ServerError::Config)?;
    config.check_ws_path().map_err(ServerError::Config)?;
    config.check_queue_types().map_err(ServerError::Config)?;
    // Streams store AMQP 1.0 messages, as RabbitMQ does (`amqp/amqp10.rs`).
    pigeon_broker::queue::stream::set_entry_codec(&amqp::amqp10::Amqp10Entries);
    let tls = match &config.tls {
        Some(t) => Some(Arc::new(TlsContext::load(t)?)),
        None => None,
    };
    let mut bound = Vec::new();
    for kind in listen::Kind::ALL {
        bound.extend(listen::bind(kind, &kind.addrs(&config))?);
    }
    let mut http_bound = listen::bind(listen::Kind::Http, &config.management_listen)?;
    http_bound.extend(listen::bind(
        listen::Kind::Https,
        &config.management_tls_addrs(),
    )?);
    for kind in [listen::Kind::Prometheus, listen::Kind::PrometheusTls] {
        bound.extend(listen::bind(kind, &kind.addrs(&config))?);
    }
    let (shutdown, shutdown_rx) = watch::channel(false);
    // A `join_cluster` accepted before this restart: the node's data goes first (cluster/join.rs).
    let pending_join = match (&config.data_dir, config.cluster.as_mut()) {
        (Some(dir), Some(cluster)) => cluster::join::reset_pending(dir, cluster)?,
        _ => None,
    };
    let (broker, store) = match &config.data_dir {
        None => (Broker::new(), None),
        Some(dir) => {
            let options = StoreOptions {
                sync: if config.fsync {
                    SyncMode::Always
                } else {
                    SyncMode::Never
                },
                ..StoreOptions::default()
            };
            let store = Arc::new(Store::open(dir, options).map_err(|e| ServerError::Store {
                dir: dir.clone(),
                source: e,
            })?);
            let paging = paging_limits(&config);
            let (broker, recovered) = Broker::open(Arc::clone(&store), &amqp::AMQP_CODEC, paging)
                .map_err(|e| ServerError::Store {
                dir: dir.clone(),
                source: e,
            })?;
            tracing::info!(
                dir = %dir.display(),
                vhosts = broker.vhosts().len(),
                users = broker.access().users().len(),
                exchanges = recovered.exchanges,
                queues = recovered.queues,
                bindings = recovered.bindings,
                messages = recovered.messages,
                ms = recovered.duration.as_millis() as u64,
                "recovered from the data directory"
            );
            (broker, Some(store))
        }
    };
    let config_policies = policy::Owned::default();
    if config.cluster.is_none() {
        admin::bootstrap(&broker, &config)?;
        policy::apply(&broker, &config.policies, &config_policies).map_err(ServerError::Config)?;
    } else {
        // Written once for the cluster, through it, once it formed (`cluster/seed.rs`).
        policy::check(&config.policies).map_err(ServerError::Config)?;
    }
    let cluster = match config.cluster.clone() {
        Some(c) => Some(cluster::start(c, &broker, store.as_ref()).await?),
        None => None,
    };
    if let (Some(cluster), Some(dir), Some(_)) = (&cluster, &config.data_dir, &pending_join) {
        cluster::join::clear_when_joined(cluster, dir.clone());
    }
    // Quorum queues on a node without [cluster]: a cluster of one, started when needed
    // (`cluster/quorum/single.rs`). Without a data directory there is none: quorum declares
    // are refused (the broker's `VHost::declare_queue`).
    let declares = Arc::new(cluster::quorum::single::Declares {
        node_default: config.default_queue_type.clone(),
        local: match (&cluster, &config.data_dir) {
            (None, Some(dir)) => Some(cluster::quorum::single::LocalQuorum::new(&broker, dir)),
            _ => None,
        },
    });
    let auth = auth::Authenticator::new(
        Arc::clone(&broker),
        admin::loopback_users(&config),
        config.login_failure_rate,
        config.login_failure_burst,
    );
    let sys_interval = config.mqtt_sys_interval;
    let disk_free_limit = AtomicU64::new(alarm::disk_free_limit(&config));
    let config_rate_limit = config.connection_rate_limit;
    let rate_limit_loopback = config.connection_rate_limit_loopback;
    let registry: Arc<registry::Registry> = Arc::default();
    let memory = memory::MemoryMeter::new(memory_limit(&config));
    if !memory.measurable() {
        tracing::warn!("cannot measure the memory in use: no memory alarm");
    }
    tracing::info!(
        limit = memory.limit(),
        "memory high watermark: {} MiB",
        memory.limit() >> 20
    );
    let flow = flow::FlowMarks::new(memory.limit());
    let state = Arc::new(ServerState {
        broker: Arc::clone(&broker),
        config,
        shutdown: shutdown_rx,
        connections: AtomicUsize::new(0),
        mqtt: mqtt::MqttState::new(),
        store: store.clone(),
        alarm: watch::channel(false).0,
        alarm_causes: alarm::AlarmCauses::default(),
        disk_free_limit,
        limits: limits::Limits::new(config_rate_limit, rate_limit_loopback),
        auth,
        kicks: watch::channel(0).0,
        registry,
        memory,
        flow,
        config_policies,
        grants: Arc::default(),
        stream_groups: stream::Groups::default(),
        stream_views: stream::Views::default(),
        cluster,
        declares,
        maintenance: Default::default(),
        restart: Default::default(),
    });
    admin::register_hooks(&state);
    if let Some(path) = &state.config.load_definitions {
        // (Clustered: after the set-up of `cluster/seed.rs`, in the background.)
        http::load_definitions(&state, path).map_err(ServerError::Config)?;
    } else if state.cluster.is_some() {
        cluster::seed::spawn(&state);
    }
    let sessions = mqtt::persist::recover(&state);
    if sessions > 0 {
        tracing::info!(sessions, "persistent MQTT sessions recovered");
    }
    if let Some(local) = &state.declares.local {
        // Quorum queues restored from the store get their groups back before clients come;
        // with quorum queues as a default, the node is ready for the first declare.
        let quorum = |t: &Option<String>| t.as_deref() == Some("quorum");
        let wanted = local.broker_has_quorum_queues()
            || quorum(&state.config.default_queue_type)
            || quorum(&state.config.mqtt_durable_queue_type)
            || state
                .broker
                .vhosts()
                .iter()
                .any(|v| quorum(&v.default_queue_type()));
        if wanted {
            local.start().await.map_err(ServerError::Cluster)?;
        }
    }
    // MQTT across the cluster (cluster/mqtt.rs): after the sessions, which it announces.
    cluster::mqtt::start(&state);
    let mut tasks = JoinSet::new();
    tasks.spawn(timers(Arc::clone(&state)));
    if let Some(tls) = &tls {
        tasks.spawn(tls::reload::watch_files(
            Arc::clone(tls),
            state.shutdown.clone(),
        ));
    }
    if sys_interval > 0 && bound.iter().any(|b| b.kind.mqtt()) {
        let interval = Duration::from_secs(sys_interval);
        tasks.spawn(mqtt::sys::run(Arc::clone(&state), interval));
    }
    let mut addrs = Vec::with_capacity(bound.len());
    for b in bound {
        tracing::info!(addr = %b.addr, "{} listener started", b.kind.name());
        addrs.push((b.kind, b.addr));
        if b.kind == listen::Kind::Prometheus {
            tasks.spawn(metrics::endpoint::serve(b, Arc::clone(&state)));
            continue;
        }
        if b.kind == listen::Kind::PrometheusTls {
            if let Some(tls) = &tls {
                let listener = tls::https::TlsListener::start(b, Arc::clone(tls), &state);
                tasks.spawn(metrics::endpoint::serve_tls(listener, Arc::clone(&state)));
            }
            continue;
        }
        let tls = b.kind.tls().then(|| tls.clone()).flatten();
        tasks.spawn(listen::accept_loop(b, Arc::clone(&state), tls));
    }
    if !http_bound.is_empty() {
        let (mut plain, mut secure) = (Vec::new(), Vec::new());
        for b in http_bound {
            tracing::info!(addr = %b.addr, "{} listener started", b.kind.name());
            addrs.push((b.kind, b.addr));
            match (&tls, b.kind) {
                (Some(tls), listen::Kind::Https) => {
                    secure.push(tls::https::TlsListener::start(b, Arc::clone(tls), &state));
                }
                _ => plain.push(b.listener),
            }
        }
        tasks.spawn(http::serve(
            plain,
            secure,
            Arc::clone(&state),
            addrs.clone(),
        ));
    }
    Ok(ServerHandle {
        store,
        addrs,
        tls,
        broker,
        state,
        shutdown,
        tasks,
    })
}

/// How much of each durable queue stays in memory (the rest is paged out to its log).
fn paging_limits(config: &ServerConfig) -> pigeon_broker::PagingLimits {
    pigeon_broker::PagingLimits {
        resident_bytes: config.queue_resident_bytes,
        resident_messages: config.queue_resident_messages,
    }
}

/// The memory limit of the alarm, in bytes.
pub(crate) fn memory_limit(config: &ServerConfig) -> u64 {
    if let Some(bytes) = config.memory_high_watermark_bytes {
        return bytes;
    }
    (memory::total_memory() as f64 * config.memory_high_watermark) as u64
}

/// The broker's timers, five times a second: message TTLs, unused queues (`x-expires`), and
/// the memory and disk alarms.
async fn timers(state: Arc<ServerState>) {
    let mut shutdown = state.shutdown.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let now = std::time::Instant::now();
                for vhost in state.broker.vhosts() {
                    vhost.tick(now);
                }
                memory::check(&state);
                alarm::check_disk(&state);
                alarm::update_flag(&state);
                state.registry.sweep_keepalive();
            }
            _ = shutdown.changed() => {
                // MQTT connections look at the flag when woken (`mqtt/connection.rs`).
                state.registry.wake_all();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests_support {
    use super::*;

    /// A server state for unit tests: memory only, test config, no listeners.
    pub fn state() -> Arc<ServerState> {
        let config = ServerConfig::for_tests();
        let disk_free_limit = AtomicU64::new(alarm::disk_free_limit(&config));
        let broker = Broker::new();
        let registry: Arc<registry::Registry> = Arc::default();
        let auth = auth::Authenticator::new(
            Arc::clone(&broker),
            admin::loopback_users(&config),
            config.login_failure_rate,
            config.login_failure_burst,
        );
        Arc::new(ServerState {
            broker,
            config,
            shutdown: watch::channel(false).1,
            connections: AtomicUsize::new(0),
            mqtt: mqtt::MqttState::new(),
            store: None,
            alarm: watch::channel(false).0,
            alarm_causes: alarm::AlarmCauses::default(),
            disk_free_limit,
            limits: limits::Limits::new(0, false),
            auth,
            kicks: watch::channel(0).0,
            registry,
            memory: memory::MemoryMeter::new(u64::MAX),
            flow: flow::FlowMarks::new(u64::MAX),
            config_policies: policy::Owned::default(),
            grants: Arc::default(),
            stream_groups: stream::Groups::default(),
            stream_views: stream::Views::default(),
            cluster: None,
            declares: Arc::default(),
            maintenance: Default::default(),
            restart: Default::default(),
        })
    }
}
