//! The connection registry: every AMQP and MQTT connection, what the management API lists
//! (`/api/connections`, `/api/channels`, `/api/consumers`) and Prometheus counts, and the
//! handle an operator closes a connection with (`rabbitmqctl close_connection`).
//!
//! A connection registers once it is accepted (AMQP) or connected (MQTT) and deregisters when
//! its [`Registered`] guard drops. What never changes (name, addresses, TLS) is stored once;
//! what the handshake learns (user, vhost, tuning) sits behind a short mutex touched a few
//! times per connection; the traffic counters are relaxed atomics bumped where the bytes are
//! read and written (`Outbound` counts what is sent). Nothing here is on the per-message path
//! but those atomics. Channels (`channel.rs`) are views the AMQP adapter hands in.

mod channel;
mod counters;

pub use counters::{MessageTotals, ProtocolCounters, SIZE_BUCKETS, SIZE_BUCKET_LABELS};

pub(crate) use channel::ChannelView;
pub use channel::{ChannelInfo, ChannelStats, ConsumerInfo};

use crate::outbound::Outbound;
use crate::transport::TlsInfo;
use amqp_wire::FieldTable;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

/// The protocol of a connection, named as RabbitMQ's management API names it (the
/// `protocol` field: `AMQP 0-9-1`, and rabbit_mqtt_processor's `human_readable_mqtt_version`
/// after `MQTT `).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// AMQP 0-9-1 (also when the client sent the 0-9 header).
    Amqp091,
    /// MQTT 3.1 (protocol level 3).
    Mqtt310,
    /// MQTT 3.1.1 (protocol level 4).
    Mqtt311,
    /// MQTT 5.0 (protocol level 5).
    Mqtt50,
    /// The RabbitMQ Stream protocol (`server/src/stream/`).
    Stream,
}

impl Protocol {
    /// Every protocol, in the order of their counters.
    pub const ALL: [Protocol; PROTOCOLS] = [
        Protocol::Amqp091,
        Protocol::Mqtt310,
        Protocol::Mqtt311,
        Protocol::Mqtt50,
        Protocol::Stream,
    ];

    /// The `protocol` label of RabbitMQ's global counters.
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Amqp091 => "amqp091",
            Protocol::Mqtt310 => "mqtt310",
            Protocol::Mqtt311 => "mqtt311",
            Protocol::Mqtt50 => "mqtt50",
            Protocol::Stream => "stream",
        }
    }

    /// RabbitMQ's display string.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Amqp091 => "AMQP 0-9-1",
            Protocol::Mqtt310 => "MQTT 3.1.0",
            Protocol::Mqtt311 => "MQTT 3.1.1",
            Protocol::Mqtt50 => "MQTT 5.0",
            Protocol::Stream => "stream",
        }
    }

    /// True for the MQTT versions.
    pub fn is_mqtt(self) -> bool {
        matches!(
            self,
            Protocol::Mqtt310 | Protocol::Mqtt311 | Protocol::Mqtt50
        )
    }
}

/// How many protocols [`Protocol::ALL`] lists (the length of the per-protocol arrays).
pub const PROTOCOLS: usize = 5;

/// A connection's state as the management API shows it (`state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// The handshake is under way.
    Starting,
    /// Open.
    Running,
    /// Paused by a resource alarm after publishing.
    Blocked,
    /// The close handshake is under way.
    Closing,
}

impl ConnState {
    /// RabbitMQ's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Starting => "starting",
            ConnState::Running => "running",
            ConnState::Blocked => "blocked",
            ConnState::Closing => "closing",
        }
    }
}

/// What the handshake learns about a connection.
#[derive(Debug, Clone)]
pub(crate) struct Details {
    pub user: String,
    pub vhost: String,
    pub client_properties: FieldTable,
    /// MQTT client identifier.
    pub client_id: Option<String>,
    /// Heartbeat (AMQP) or keep-alive (MQTT), seconds.
    pub timeout: u16,
    pub frame_max: u32,
    pub channel_max: u16,
    pub state: ConnState,
}

/// One registered connection (shared by its task and the registry).
pub(crate) struct Entry {
    pub id: u64,
    pub name: String,
    pub protocol: Mutex<Protocol>,
    pub peer: SocketAddr,
    pub local: Option<SocketAddr>,
    pub tls: Option<Arc<TlsInfo>>,
    pub connected_at: SystemTime,
    /// Counts what is sent (`send_oct`, `send_cnt`).
    pub out: Arc<Outbound>,
    /// Bytes read from the socket.
    pub recv_oct: AtomicU64,
    /// Frames (AMQP) or packets (MQTT) received.
    pub recv_cnt: AtomicU64,
    /// The client has published (MQTT; AMQP channels count their publishes).
    pub publisher: AtomicBool,
    /// Its message counters (`rabbitmq_global_messages_*`), summed when scraped.
    pub counters: Arc<ProtocolCounters>,
    pub details: Mutex<Details>,
    /// Open AMQP channels.
    pub channels: Mutex<Vec<Arc<dyn ChannelView>>>,
    /// Set when an operator closes the connection: the task closes it at its next turn.
    close_requested: AtomicBool,
    close_reason: Mutex<Option<String>>,
}

impl Entry {
    /// The reason an operator gave to close this connection, once (cheap while none did).
    pub fn take_close_request(&self) -> Option<String> {
        if !self.close_requested.load(Ordering::Relaxed) {
            return None;
        }
        self.close_requested.store(false, Ordering::Relaxed);
        Some(self.close_reason.lock().take().unwrap_or_default())
    }

    /// Updates what the handshake learnt.
    pub fn update(&self, f: impl FnOnce(&mut Details)) {
        f(&mut self.details.lock());
    }

    /// Adds an open channel.
    pub fn add_channel(&self, registry: &Registry, ch: Arc<dyn ChannelView>) {
        registry.channels_opened.fetch_add(1, Ordering::Relaxed);
        self.channels.lock().push(ch);
    }

    /// Removes a closed channel.
    pub fn remove_channel(&self, registry: &Registry, number: u16) {
        let mut channels = self.channels.lock();
        let before = channels.len();
        channels.retain(|c| c.stats().number != number);
        let removed = before - channels.len();
        drop(channels);
        registry
            .channels_closed
            .fetch_add(removed as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> ConnectionInfo {
        let d = self.details.lock().clone();
        let (ssl_protocol, ssl_cipher) = match &self.tls {
            Some(t) => (
                t.protocol.map(|p| tls_version_name(p).to_string()),
                t.cipher.map(|c| format!("{c:?}")),
            ),
            None => (None, None),
        };
        ConnectionInfo {
            id: self.id,
            name: self.name.clone(),
            protocol: self.protocol.lock().as_str(),
            user: d.user,
            vhost: d.vhost,
            peer_host: self.peer.ip().to_string(),
            peer_port: self.peer.port(),
            host: self.local.map(|l| l.ip().to_string()).unwrap_or_default(),
            port: self.local.map_or(0, |l| l.port()),
            ssl: self.tls.is_some(),
            ssl_protocol,
            ssl_cipher,
            peer_cert_subject: self
                .tls
                .as_ref()
                .and_then(|t| t.peer_names())
                .and_then(Result::ok)
                .map(|n| n.subject_dn),
            client_properties: d.client_properties,
            client_id: d.client_id,
            connected_at: self.connected_at,
            channels: self.channels.lock().len() as u32,
            state: d.state.as_str(),
            timeout: d.timeout,
            frame_max: d.frame_max,
            channel_max: d.channel_max,
            recv_oct: self.recv_oct.load(Ordering::Relaxed),
            recv_cnt: self.recv_cnt.load(Ordering::Relaxed),
            send_oct: self.out.sent_oct(),
            send_cnt: self.out.sent_cnt(),
        }
    }
}

/// RabbitMQ's `ssl_protocol` names (`tlsv1.3`).
fn tls_version_name(v: rustls::ProtocolVersion) -> &'static str {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "tlsv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "tlsv1.2",
        _ => "unknown",
    }
}

/// A snapshot of one connection, with RabbitMQ's field names (`/api/connections`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// Broker-wide id.
    pub id: u64,
    /// `"127.0.0.1:54321 -> 127.0.0.1:5672"`: what `close_connection` takes.
    pub name: String,
    /// `AMQP 0-9-1`, `MQTT 3.1.1`, `MQTT 5.0`...
    pub protocol: &'static str,
    /// Who logged in (empty during the handshake).
    pub user: String,
    /// The vhost (empty until `connection.open`).
    pub vhost: String,
    /// The client's address.
    pub peer_host: String,
    /// The client's port.
    pub peer_port: u16,
    /// Our address the client connected to.
    pub host: String,
    /// Our port.
    pub port: u16,
    /// Over TLS.
    pub ssl: bool,
    /// `tlsv1.3`, `tlsv1.2`.
    pub ssl_protocol: Option<String>,
    /// The negotiated cipher suite.
    pub ssl_cipher: Option<String>,
    /// The subject DN of the client's certificate, if it sent one.
    pub peer_cert_subject: Option<String>,
    /// AMQP `client_properties` (empty for MQTT).
    pub client_properties: FieldTable,
    /// MQTT client identifier.
    pub client_id: Option<String>,
    /// When the socket was accepted.
    pub connected_at: SystemTime,
    /// Open channels (AMQP).
    pub channels: u32,
    /// `starting`, `running`, `blocked`, `closing`.
    pub state: &'static str,
    /// Heartbeat (AMQP) or keep-alive (MQTT), seconds.
    pub timeout: u16,
    /// Negotiated frame_max (AMQP) or maximum packet size (MQTT).
    pub frame_max: u32,
    /// Negotiated channel_max (AMQP).
    pub channel_max: u16,
    /// Bytes received.
    pub recv_oct: u64,
    /// Frames or packets received.
    pub recv_cnt: u64,
    /// Bytes sent.
    pub send_oct: u64,
    /// Writes (frames or packets, several per delivery) sent.
    pub send_cnt: u64,
}

/// Every live connection.
#[derive(Default)]
pub struct Registry {
    conns: Mutex<HashMap<u64, Arc<Entry>>>,
    /// Connections ever registered (`rabbitmq_connections_opened_total`).
    pub opened: AtomicU64,
    /// Connections ever deregistered.
    pub closed: AtomicU64,
    /// Channels ever opened.
    pub channels_opened: AtomicU64,
    /// Channels ever closed.
    pub channels_closed: AtomicU64,
    /// Message counters of closed connections, per protocol (lock order: `conns` first).
    retired: Mutex<[MessageTotals; PROTOCOLS]>,
}

/// RabbitMQ's connection name: `peer -> local` (rabbit_net:connection_string).
pub(crate) fn connection_name(peer: SocketAddr, local: Option<SocketAddr>) -> String {
    match local {
        Some(l) => format!("{}:{} -> {}:{}", peer.ip(), peer.port(), l.ip(), l.port()),
        None => format!("{}:{}", peer.ip(), peer.port()),
    }
}

impl Registry {
    /// Wakes every connection whose keep-alive deadline passed (the server's 200 ms timer):
    /// one sweep for all connections instead of a timer in each task.
    pub(crate) fn sweep_keepalive(&self) {
        let now = crate::outbound::now_ms();
        for e in self.conns.lock().values() {
            e.out.expire_if_due(now);
        }
    }

    /// Wakes every connection's task (at shutdown: each looks at the flag at its next turn,
    /// instead of every task holding a receiver of the shutdown signal).
    pub(crate) fn wake_all(&self) {
        for e in self.conns.lock().values() {
            e.out.wake();
        }
    }

    /// Registers a connection; it stays listed while the guard lives.
    pub(crate) fn register(
        self: &Arc<Self>,
        id: u64,
        protocol: Protocol,
        peer: &crate::transport::PeerInfo,
        out: &Arc<Outbound>,
    ) -> Registered {
        let entry = Arc::new(Entry {
            id,
            name: connection_name(peer.addr, peer.local),
            protocol: Mutex::new(protocol),
            peer: peer.addr,
            local: peer.local,
            tls: peer.tls.clone(),
            connected_at: SystemTime::now(),
            out: Arc::clone(out),
            recv_oct: AtomicU64::new(0),
            recv_cnt: AtomicU64::new(0),
            publisher: AtomicBool::new(false),
            counters: Arc::default(),
            details: Mutex::new(Details {
                user: String::new(),
                vhost: String::new(),
                client_properties: FieldTable::default(),
                client_id: None,
                timeout: 0,
                frame_max: 0,
                channel_max: 0,
                state: ConnState::Starting,
            }),
            channels: Mutex::new(Vec::new()),
            close_requested: AtomicBool::new(false),
            close_reason: Mutex::new(None),
        });
        self.conns.lock().insert(id, Arc::clone(&entry));
        self.opened.fetch_add(1, Ordering::Relaxed);
        Registered {
            registry: Arc::clone(self),
            entry,
        }
    }

    /// How many connections are open.
    pub fn len(&self) -> usize {
        self.conns.lock().len()
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Publishers and consumers per protocol now (`rabbitmq_global_publishers`,
    /// `rabbitmq_global_consumers`): AMQP channels that published and AMQP consumers; MQTT
    /// connections that published (consumers are counted by the MQTT adapter).
    pub fn publishers_and_consumers(&self) -> [(u64, u64); PROTOCOLS] {
        let mut out = [(0u64, 0u64); PROTOCOLS];
        for e in self.entries() {
            let p = *e.protocol.lock() as usize;
            if e.publisher.load(Ordering::Relaxed) {
                out[p].0 += 1;
            }
            for ch in e.channels.lock().iter() {
                let s = ch.stats();
                if s.publish.load(Ordering::Relaxed) > 0 {
                    out[p].0 += 1;
                }
                out[p].1 += u64::from(s.consumer_count());
            }
        }
        out
    }

    /// The message counters per protocol (in [`Protocol::ALL`]'s order): closed connections'
    /// and every live connection's, read under the lock a closing connection folds its own
    /// in with, so that nothing is counted twice.
    pub fn message_totals(&self) -> [MessageTotals; PROTOCOLS] {
        let conns = self.conns.lock();
        let mut out = *self.retired.lock();
        for e in conns.values() {
            out[*e.protocol.lock() as usize].add(&e.counters);
        }
        out
    }

    /// Open AMQP channels.
    pub fn channel_count(&self) -> usize {
        self.entries().iter().map(|e| e.channels.lock().len()).sum()
    }

    pub(crate) fn entries(&self) -> Vec<Arc<Entry>> {
        self.conns.lock().values().cloned().collect()
    }

    /// A snapshot of every connection, oldest first.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        let mut all: Vec<ConnectionInfo> = self.entries().iter().map(|e| e.snapshot()).collect();
        all.sort_by_key(|c| c.id);
        all
    }

    /// One connection by name.
    pub fn connection(&self, name: &str) -> Option<ConnectionInfo> {
        self.entries()
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.snapshot())
    }

    /// Every open channel (`/api/channels`).
    pub fn channels(&self) -> Vec<ChannelInfo> {
        let mut all = Vec::new();
        for e in self.entries() {
            let d = e.details.lock().clone();
            for ch in e.channels.lock().iter() {
                all.push(channel::info(ch.as_ref(), &e.name, &d.user, &d.vhost));
            }
        }
        all.sort_by(|a, b| (&a.connection, a.number).cmp(&(&b.connection, b.number)));
        all
    }

    /// Every consumer of every channel (`/api/consumers`).
    pub fn consumers(&self) -> Vec<ConsumerInfo> {
        let mut all = Vec::new();
        for e in self.entries() {
            let vhost = e.details.lock().vhost.clone();
            for ch in e.channels.lock().iter() {
                ch.stats().consumers_into(&e.name, &vhost, &mut all);
            }
        }
        all
    }

    /// Asks the connection called `name` to close with `reason` (AMQP: 320 CONNECTION_FORCED
    /// with the reason as text, as `rabbitmqctl close_connection`; MQTT 5.0: DISCONNECT 0x98
    /// Administrative action; MQTT 3.1.1: the socket closes). False if there is none. The
    /// caller wakes the connection's task (see `ServerState::close_connection`).
    pub(crate) fn request_close(&self, name: &str, reason: &str) -> Option<Protocol> {
        let entry = self.entries().into_iter().find(|e| e.name == name)?;
        *entry.close_reason.lock() = Some(reason.to_string());
        entry.close_requested.store(true, Ordering::Relaxed);
        // MQTT connections write themselves: waking their outbound wakes their task.
        entry.out.wake();
        let protocol = *entry.protocol.lock();
        Some(protocol)
    }
}

/// Keeps a connection listed; deregisters it when dropped.
pub(crate) struct Registered {
    registry: Arc<Registry>,
    pub entry: Arc<Entry>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        let mut conns = self.registry.conns.lock();
        if conns.remove(&self.entry.id).is_some() {
            let protocol = *self.entry.protocol.lock() as usize;
            self.registry.retired.lock()[protocol].add(&self.entry.counters);
            drop(conns);
            self.registry.closed.fetch_add(1, Ordering::Relaxed);
            let channels = self.entry.channels.lock().len() as u64;
            self.registry
                .channels_closed
                .fetch_add(channels, Ordering::Relaxed);
        }
    }
}
