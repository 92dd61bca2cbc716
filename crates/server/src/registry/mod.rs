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

mod addrs;
mod channel;
mod counters;
mod info;
mod listing;
mod names;

pub use counters::{MessageTotals, ProtocolCounters, SIZE_BUCKETS, SIZE_BUCKET_LABELS};
pub use info::ConnectionInfo;
pub(crate) use names::{intern, Name};

pub(crate) use channel::ChannelView;
pub use channel::{ChannelInfo, ChannelStats, ConsumerInfo};

use crate::outbound::Outbound;
use crate::transport::TlsInfo;
use addrs::Addrs;
use once_cell::race::OnceBox;
use parking_lot::Mutex;
use std::collections::{HashMap, HashSet};
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
    /// Shared by every connection of the user ([`intern`]): no string per connection.
    pub user: Name,
    /// Shared by every connection in the vhost ([`intern`]).
    pub vhost: Name,
    /// MQTT client identifier (the session's, shared: one string per connection less).
    pub client_id: Option<Arc<str>>,
    /// Heartbeat (AMQP) or keep-alive (MQTT), seconds.
    pub timeout: u16,
    pub frame_max: u32,
    pub channel_max: u16,
    pub state: ConnState,
    /// Why an operator closes the connection (with `Entry::close_requested`; here rather
    /// than behind a mutex of its own, 24 bytes of every entry; boxed twice, 8 bytes where a
    /// `Box<str>` is 16: it is rare).
    #[allow(clippy::box_collection)] // 8 bytes of every entry where a `String` is 24
    close_reason: Option<Box<String>>,
}

/// One registered connection (shared by its task and the registry).
pub(crate) struct Entry {
    pub id: u64,
    /// Known when it registers (MQTT registers at CONNECT), and never changes.
    pub protocol: Protocol,
    /// The client's address and ours (16 bytes where two `SocketAddr`s take 64).
    addrs: Addrs,
    /// When it was accepted, Unix milliseconds (8 bytes where a `SystemTime` takes 16: see
    /// the size note below).
    connected_at: u64,
    /// Counts what is sent (`send_oct`, `send_cnt`).
    pub out: Arc<Outbound>,
    /// Bytes read from the socket.
    pub recv_oct: AtomicU64,
    /// Frames (AMQP) or packets (MQTT) received.
    pub recv_cnt: AtomicU64,
    /// The client has published (MQTT; AMQP channels count their publishes).
    pub publisher: AtomicBool,
    /// Its message counters (`rabbitmq_global_messages_*`), summed when scraped; allocated at
    /// the first count ([`Entry::counters`]): an idle connection counts nothing, and the block
    /// is 384 bytes with its cache-line alignment (docs/performance.md, "Idle connections").
    /// (A `OnceBox`, 8 bytes, where a `OnceLock` is 16.)
    counters: OnceBox<Arc<ProtocolCounters>>,
    pub details: Mutex<Details>,
    /// What only AMQP and stream connections have (client properties, channels) and TLS
    /// connections (the TLS details): boxed, and none for plain MQTT's.
    extras: Option<Box<Extras>>,
    /// Set when an operator closes the connection: the task closes it at its next turn.
    close_requested: AtomicBool,
}

// Size: an `Arc<Entry>` is one allocation per connection, 336 bytes (jemalloc's 384-byte
// class) with a `SystemTime`, a `Vec` and an `Option<String>` above; 304 in the 320-byte class
// with two `SocketAddr`s and the AMQP parts inline; 224 in the 224-byte class with the user
// and vhost `String`s, a `OnceLock` and the close reason behind a mutex of its own; 192 now,
// the 192-byte class (not the 256-byte one, tokio's `ScheduledIo`'s, whose slabs hibernations
// leave half empty: docs/performance.md, "Idle connections") with the user and vhost interned
// `Arc<str>`s and the protocol behind a mutex; 160 now (the 160-byte class, seventh pass),
// with the names thin pointers ([`Name`]), the protocol plain (it never changes) and the TLS
// details in [`Extras`]. The test `registry::tests::an_entry_fits_its_size_class` keeps it
// there.

/// The parts of an entry only AMQP and stream connections, and TLS connections, use.
#[derive(Default)]
struct Extras {
    /// The TLS session's details (TLS connections only).
    tls: Option<Arc<TlsInfo>>,
    /// `client_properties` as the client encoded them (AMQP: length prefix included),
    /// decoded only when listed: a typical client's table is ~200 bytes encoded and ~700
    /// parsed, kept for every connection while it lives.
    client_properties: Mutex<Box<[u8]>>,
    /// Open AMQP channels (a boxed slice: 8 bytes less than a `Vec`; channels open rarely).
    channels: Mutex<Box<[Arc<dyn ChannelView>]>>,
}

impl Entry {
    /// RabbitMQ's connection name, `peer -> local`: made when asked (the management API, an
    /// operator's close) rather than kept, 64 bytes less per connection.
    pub fn name(&self) -> String {
        connection_name(self.peer(), self.local())
    }

    /// The TLS session's details, for a TLS connection.
    pub fn tls(&self) -> Option<&Arc<TlsInfo>> {
        self.extras.as_ref().and_then(|x| x.tls.as_ref())
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.addrs.peer()
    }

    /// Our address the client connected to.
    pub fn local(&self) -> Option<SocketAddr> {
        self.addrs.local()
    }

    /// Records the client's properties as encoded (AMQP `connection.start-ok`, the stream
    /// protocol's `PeerProperties`); nothing for a protocol without them.
    pub fn set_client_properties(&self, raw: Box<[u8]>) {
        if let Some(x) = &self.extras {
            *x.client_properties.lock() = raw;
        }
    }

    /// Runs `f` over its open channels (none for MQTT), under their lock.
    pub fn with_channels<R>(&self, f: impl FnOnce(&[Arc<dyn ChannelView>]) -> R) -> R {
        match &self.extras {
            Some(x) => f(&x.channels.lock()),
            None => f(&[]),
        }
    }

    /// How many channels are open.
    pub fn channel_count(&self) -> usize {
        self.with_channels(<[_]>::len)
    }

    /// Whether the connection is called `name`.
    fn is_named(&self, name: &str) -> bool {
        self.name() == name
    }

    /// Whether it is listed (`/api/connections`, `pigeon ctl list_connections`): a stream
    /// connection only once its client has opened a vhost, as `rabbit_stream_reader` notifies
    /// `connection_created` and registers the connection in `transition_to_opened`. Clients'
    /// test suites read `client_properties.connection_name` of every listed connection, which
    /// a half-open one does not have yet (rstream's `test_*_connection_broke*`).
    fn listed(&self) -> bool {
        self.protocol != Protocol::Stream || self.details.lock().state != ConnState::Starting
    }

    /// Its message counters, allocated now if nothing was counted yet.
    pub fn counters(&self) -> &Arc<ProtocolCounters> {
        self.counters.get_or_init(Default::default)
    }

    /// Its message counters, if anything was counted (read without allocating them).
    pub fn counted(&self) -> Option<&ProtocolCounters> {
        self.counters.get().map(|c| &**c)
    }

    /// The reason an operator gave to close this connection, once (cheap while none did).
    pub fn take_close_request(&self) -> Option<String> {
        if !self.close_requested.load(Ordering::Relaxed) {
            return None;
        }
        self.close_requested.store(false, Ordering::Relaxed);
        Some(
            self.details
                .lock()
                .close_reason
                .take()
                .map(|r| *r)
                .unwrap_or_default(),
        )
    }

    /// Updates what the handshake learnt.
    pub fn update(&self, f: impl FnOnce(&mut Details)) {
        f(&mut self.details.lock());
    }

    /// Adds an open channel.
    pub fn add_channel(&self, registry: &Registry, ch: Arc<dyn ChannelView>) {
        let Some(x) = &self.extras else {
            return;
        };
        registry.channels_opened.fetch_add(1, Ordering::Relaxed);
        let mut channels = x.channels.lock();
        let mut grown = std::mem::take(&mut *channels).into_vec();
        grown.push(ch);
        *channels = grown.into_boxed_slice();
    }

    /// Removes a closed channel.
    pub fn remove_channel(&self, registry: &Registry, number: u16) {
        let Some(x) = &self.extras else {
            return;
        };
        let mut channels = x.channels.lock();
        let before = channels.len();
        let mut kept = std::mem::take(&mut *channels).into_vec();
        kept.retain(|c| c.stats().number != number);
        let removed = before - kept.len();
        *channels = kept.into_boxed_slice();
        drop(channels);
        registry
            .channels_closed
            .fetch_add(removed as u64, Ordering::Relaxed);
    }
}

/// Bytes received and sent by the connections of each vhost.
pub(crate) type TrafficByVhost = HashMap<String, [u64; 2]>;

/// A registry entry in [`Registry`]'s set, found by its id.
struct ById(Arc<Entry>);

impl std::ops::Deref for ById {
    type Target = Entry;

    fn deref(&self) -> &Entry {
        &self.0
    }
}

impl std::borrow::Borrow<u64> for ById {
    fn borrow(&self) -> &u64 {
        &self.0.id
    }
}

impl std::hash::Hash for ById {
    // As `u64` hashes, which `Borrow<u64>` requires.
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.id.hash(state);
    }
}

impl PartialEq for ById {
    fn eq(&self, other: &Self) -> bool {
        self.0.id == other.0.id
    }
}

impl Eq for ById {}

/// Every live connection.
#[derive(Default)]
pub struct Registry {
    /// By id: a set of the entries looked up by their id (8 bytes a slot, where a map from
    /// the id took 16: a slot per connection, idle or not).
    conns: Mutex<HashSet<ById>>,
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
    /// Signalled whenever a connection is deregistered ([`Registry::until_gone`]).
    gone: tokio::sync::Notify,
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
        for e in self.conns.lock().iter() {
            e.out.expire_if_due(now);
        }
    }

    /// Wakes every connection's task (at shutdown: each looks at the flag at its next turn,
    /// instead of every task holding a receiver of the shutdown signal).
    pub(crate) fn wake_all(&self) {
        for e in self.conns.lock().iter() {
            e.out.wake();
        }
    }

    /// Tells connection `id`, if it is still registered, that its socket became readable (a
    /// hibernated MQTT connection: `mqtt/hibernate.rs`, [`Outbound::wake_readable`]).
    ///
    /// [`Outbound::wake_readable`]: crate::outbound::Outbound::wake_readable
    pub(crate) fn wake_readable(&self, id: u64) {
        let out = self.conns.lock().get(&id).map(|e| Arc::clone(&e.0.out));
        if let Some(out) = out {
            out.wake_readable();
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
            protocol,
            addrs: Addrs::new(peer.addr, peer.local),
            connected_at: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            out: Arc::clone(out),
            recv_oct: AtomicU64::new(0),
            recv_cnt: AtomicU64::new(0),
            publisher: AtomicBool::new(false),
            counters: OnceBox::new(),
            details: Mutex::new(Details {
                user: intern(""),
                vhost: intern(""),
                client_id: None,
                timeout: 0,
                frame_max: 0,
                channel_max: 0,
                state: ConnState::Starting,
                close_reason: None,
            }),
            extras: (matches!(protocol, Protocol::Amqp091 | Protocol::Stream)
                || peer.tls.is_some())
            .then(|| {
                Box::new(Extras {
                    tls: peer.tls.clone(),
                    ..Extras::default()
                })
            }),
            close_requested: AtomicBool::new(false),
        });
        self.conns.lock().insert(ById(Arc::clone(&entry)));
        self.opened.fetch_add(1, Ordering::Relaxed);
        Registered {
            registry: Some(Arc::clone(self)),
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
            let p = e.protocol as usize;
            if e.publisher.load(Ordering::Relaxed) {
                out[p].0 += 1;
            }
            e.with_channels(|channels| {
                for ch in channels {
                    let s = ch.stats();
                    if s.publish.load(Ordering::Relaxed) > 0 {
                        out[p].0 += 1;
                    }
                    out[p].1 += u64::from(s.consumer_count());
                }
            });
        }
        out
    }

    /// The message counters per protocol (in [`Protocol::ALL`]'s order): closed connections'
    /// and every live connection's, read under the lock a closing connection folds its own
    /// in with, so that nothing is counted twice.
    pub fn message_totals(&self) -> [MessageTotals; PROTOCOLS] {
        let conns = self.conns.lock();
        let mut out = *self.retired.lock();
        for e in conns.iter() {
            if let Some(c) = e.counted() {
                out[e.protocol as usize].add(c);
            }
        }
        out
    }

    /// Open AMQP channels.
    pub fn channel_count(&self) -> usize {
        self.entries().iter().map(|e| e.channel_count()).sum()
    }

    pub(crate) fn entries(&self) -> Vec<Arc<Entry>> {
        self.conns.lock().iter().map(|e| Arc::clone(&e.0)).collect()
    }

    /// Each connection's id and bytes received and sent, and the bytes per vhost: what the
    /// statistics sampler reads every interval, in place (a full [`Registry::connections`]
    /// snapshot was a transient of ~0.7 KB per connection at every sample).
    pub(crate) fn traffic(&self) -> (Vec<(u64, [u64; 2])>, TrafficByVhost) {
        let entries = self.entries();
        let mut each = Vec::with_capacity(entries.len());
        let mut by_vhost: HashMap<String, [u64; 2]> = HashMap::new();
        for e in &entries {
            let v = [e.recv_oct.load(Ordering::Relaxed), e.out.sent_oct()];
            each.push((e.id, v));
            let d = e.details.lock();
            match by_vhost.get_mut(&*d.vhost) {
                Some(t) => {
                    t[0] += v[0];
                    t[1] += v[1];
                }
                None => {
                    by_vhost.insert(d.vhost.to_string(), v);
                }
            }
        }
        (each, by_vhost)
    }

    /// Waits (at most `limit`) until no connection called `name` is listed; false if one
    /// still is. The management API's close of a stream connection answers once the socket
    /// is closed, as rabbit_stream_reader's synchronous `{shutdown, Reason}` call does.
    pub(crate) async fn until_gone(&self, name: &str, limit: std::time::Duration) -> bool {
        let gone = async {
            loop {
                let notified = self.gone.notified();
                tokio::pin!(notified);
                // Registered before the look-up: a deregistration in between is not missed.
                notified.as_mut().enable();
                if !self.entries().iter().any(|e| e.is_named(name)) {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, gone).await.is_ok()
    }

    /// Asks the connection called `name` to close with `reason` (AMQP: 320 CONNECTION_FORCED
    /// with the reason as text, as `rabbitmqctl close_connection`; MQTT 5.0: DISCONNECT 0x98
    /// Administrative action; MQTT 3.1.1 and the stream protocol: the socket closes). False if
    /// there is none. The
    /// caller wakes the connection's task (see `ServerState::close_connection`).
    pub(crate) fn request_close(&self, name: &str, reason: &str) -> Option<Protocol> {
        let entry = self.entries().into_iter().find(|e| e.is_named(name))?;
        entry.details.lock().close_reason = Some(Box::new(reason.into()));
        entry.close_requested.store(true, Ordering::Relaxed);
        // MQTT connections write themselves: waking their outbound wakes their task.
        entry.out.wake();
        Some(entry.protocol)
    }
}

/// Keeps a connection listed; deregisters it when dropped.
pub(crate) struct Registered {
    /// `None` once [`Registered::into_entry`] handed the deregistration to its caller.
    registry: Option<Arc<Registry>>,
    pub entry: Arc<Entry>,
}

impl Registered {
    /// The entry alone, for a connection that deregisters it itself ([`Registry::deregister`],
    /// with the registry it already holds: an MQTT connection's state, which a hibernated
    /// connection keeps, is 8 bytes smaller for it).
    pub(crate) fn into_entry(mut self) -> Arc<Entry> {
        self.registry = None;
        Arc::clone(&self.entry)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(registry) = &self.registry {
            registry.deregister(&self.entry);
        }
    }
}

impl Registry {
    /// Stops listing a connection (once: later calls do nothing).
    pub(crate) fn deregister(&self, entry: &Entry) {
        let mut conns = self.conns.lock();
        if conns.remove(&entry.id) {
            let protocol = entry.protocol as usize;
            if let Some(c) = entry.counted() {
                self.retired.lock()[protocol].add(c);
            }
            drop(conns);
            self.closed.fetch_add(1, Ordering::Relaxed);
            self.gone.notify_waiters();
            let channels = entry.channel_count() as u64;
            self.channels_closed.fetch_add(channels, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Entry;

    /// An `Arc<Entry>` (the entry and the two counts before it) stays within jemalloc's
    /// 160-byte size class: one allocation per connection, idle or not.
    #[test]
    fn an_entry_fits_its_size_class() {
        let size = std::mem::size_of::<Entry>() + 2 * std::mem::size_of::<usize>();
        println!("Arc<Entry>: {size} bytes");
        assert!(size <= 160, "{size}");
    }
}
