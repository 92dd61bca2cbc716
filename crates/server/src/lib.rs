//! Pigeon's network server: listeners and the protocol adapters onto the broker core.
//!
//! [`start`] binds the listeners (AMQP 0-9-1, MQTT) and returns a [`ServerHandle`]. Every accepted socket gets one
//! task that reads frames and drives the protocol state machine (`amqp/connection.rs`), and one
//! writer task that drains the connection's outbound buffer (`outbound.rs`), whatever the protocol.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod alarm;
mod amqp;
mod auth;
pub mod config;
mod flow;
pub mod memory;
mod mqtt;
mod outbound;
mod policy;
mod readbuf;

pub use config::{PolicyConfig, PolicyValue, ServerConfig, UserConfig};

use pigeon_broker::Broker;
use pigeon_store::{Store, StoreOptions, SyncMode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
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
    /// A listener could not bind its address (in use, or not allowed).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address from the configuration.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
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
    /// The memory alarm's limit, figure and publish-path counter (`memory.rs`).
    pub memory: memory::MemoryMeter,
    /// Per-queue publisher flow control's marks (`flow.rs`).
    pub flow: flow::FlowMarks,
}

/// The protocol a listener speaks.
#[derive(Debug, Clone, Copy)]
enum Protocol {
    Amqp,
    Mqtt,
}

/// A running server. Dropping it does not stop the server; call [`ServerHandle::shutdown`].
pub struct ServerHandle {
    store: Option<Arc<Store>>,
    amqp_addr: SocketAddr,
    mqtt_addr: Option<SocketAddr>,
    broker: Arc<Broker>,
    state: Arc<ServerState>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl ServerHandle {
    /// The address the AMQP listener is bound to (the real port when the config asked for 0).
    pub fn amqp_addr(&self) -> SocketAddr {
        self.amqp_addr
    }

    /// The address the MQTT listener is bound to, if MQTT is enabled.
    pub fn mqtt_addr(&self) -> Option<SocketAddr> {
        self.mqtt_addr
    }

    /// Replaces the policies of every vhost (existing queues and exchanges follow at once).
    pub fn set_policies(&self, policies: &[PolicyConfig]) -> Result<(), String> {
        policy::apply(&self.broker, policies)
    }

    /// Changes the disk free limit (bytes) of the running server, as `rabbitmqctl
    /// set_disk_free_limit`; the alarm follows at the next check (within 200 ms).
    pub fn set_disk_free_limit(&self, bytes: u64) {
        self.state.disk_free_limit.store(bytes, Ordering::Relaxed);
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
        if let Some(store) = &self.store {
            if let Err(e) = store.sync() {
                tracing::error!(error = %e, "final store sync failed");
            }
        }
    }

    /// Waits until the server stops.
    pub async fn wait(mut self) {
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Binds the listeners and starts serving.
pub async fn start(config: ServerConfig) -> Result<ServerHandle, ServerError> {
    let (amqp, amqp_addr) = bind(config.amqp_listen).await?;
    let mqtt = match config.mqtt_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let (shutdown, shutdown_rx) = watch::channel(false);
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
    policy::apply(&broker, &config.policies).map_err(ServerError::Config)?;
    let sys_interval = config.mqtt_sys_interval;
    let disk_free_limit = AtomicU64::new(alarm::disk_free_limit(&config));
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
        memory,
        flow,
    });
    let sessions = mqtt::persist::recover(&state);
    if sessions > 0 {
        tracing::info!(sessions, "persistent MQTT sessions recovered");
    }
    let mut tasks = JoinSet::new();
    tasks.spawn(timers(Arc::clone(&state)));
    tasks.spawn(accept_loop(amqp, Arc::clone(&state), Protocol::Amqp));
    tracing::info!(addr = %amqp_addr, "AMQP 0-9-1 listener started");
    let mqtt_addr = mqtt.map(|(listener, addr)| {
        tasks.spawn(accept_loop(listener, Arc::clone(&state), Protocol::Mqtt));
        if sys_interval > 0 {
            let interval = Duration::from_secs(sys_interval);
            tasks.spawn(mqtt::sys::run(Arc::clone(&state), interval));
        }
        tracing::info!(%addr, "MQTT listener started");
        addr
    });
    Ok(ServerHandle {
        store,
        amqp_addr,
        mqtt_addr,
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
fn memory_limit(config: &ServerConfig) -> u64 {
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
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), ServerError> {
    let bind_err = |source| ServerError::Bind { addr, source };
    let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    Ok((listener, local))
}

async fn accept_loop(listener: TcpListener, state: Arc<ServerState>, protocol: Protocol) {
    let mut shutdown = state.shutdown.clone();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let open = state.connections.fetch_add(1, Ordering::Relaxed);
                    if open >= state.config.max_connections {
                        state.connections.fetch_sub(1, Ordering::Relaxed);
                        tracing::warn!(%peer, limit = state.config.max_connections, "connection limit reached, refusing");
                        continue;
                    }
                    let state = Arc::clone(&state);
                    connections.spawn(async move {
                        match protocol {
                            Protocol::Amqp => amqp::serve(stream, peer, Arc::clone(&state)).await,
                            Protocol::Mqtt => mqtt::serve(stream, peer, Arc::clone(&state)).await,
                        }
                        state.connections.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    // Connections see the same shutdown signal and close themselves; give them a moment.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while connections.join_next().await.is_some() {}
    })
    .await;
}
