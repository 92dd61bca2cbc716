//! One MQTT connection: CONNECT, the packet loop, keep-alive, takeover and the end.

use super::session::Session;
use super::sink::{Attached, MqttSink};
use super::Stats;
use crate::outbound::Outbound;
use crate::readbuf::ReadBuf;
use crate::ServerState;
use bytes::Bytes;
use mqtt_wire::{
    decode, encode, ConnAck, ConnAckProperties, Connect, DecodeError, Disconnect, LastWill, Packet,
    ProtocolVersion, PubRel, PublishProperties, ReasonCode, TopicName,
};
use pigeon_broker::{ConsumerEntry, Exchange, Queue, VHost};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{sleep, timeout, Instant};

/// How long a new connection waits for the previous one of the same client id to let go.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the packet loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The client sent DISCONNECT (normal: no will, unless 5.0 reason 0x04).
    Disconnect { with_will: bool },
    /// Anything else: socket closed, error, keep-alive, takeover (the will is published).
    Abnormal,
    /// The broker is shutting down.
    Shutdown,
}

/// The state of one connection after CONNECT.
pub(super) struct Conn {
    pub server: Arc<ServerState>,
    pub peer: SocketAddr,
    pub out: Arc<Outbound>,
    pub version: ProtocolVersion,
    pub session: Arc<Session>,
    pub vhost: Arc<VHost>,
    pub exchange: Arc<Exchange>,
    pub will: Option<LastWill>,
    pub keep_alive: u16,
    /// Topic aliases the client set on this connection.
    pub aliases: HashMap<u16, TopicName>,
    /// Credit came back: let the session's queues deliver.
    pub needs_dispatch: bool,
    /// CONNECT asked for session expiry 0 (5.0 forbids raising it at DISCONNECT).
    pub connect_expiry_zero: bool,
    /// The client accepts reason strings (5.0 Request Problem Information).
    pub problem_information: bool,
    /// The client has published: the memory alarm pauses it.
    pub publisher: bool,
    /// Reading is paused by the memory alarm.
    pub blocked: bool,
    /// PUBACK / PUBREC waiting for the store to sync the message they acknowledge (epoch).
    pub pending_acks: std::collections::VecDeque<(u64, Packet)>,
    /// Woken by the store's flusher when pending acknowledgements can go.
    pub synced: Arc<tokio::sync::Notify>,
    /// Highest epoch a wake-up was asked for.
    pub wake_epoch: u64,
}

/// Serves one accepted socket until it closes.
pub async fn serve(stream: TcpStream, peer: SocketAddr, server: Arc<ServerState>) {
    let _ = stream.set_nodelay(true);
    let (mut rd, wr) = stream.into_split();
    let out = Arc::new(Outbound::new());
    let writer = {
        let out = Arc::clone(&out);
        tokio::spawn(async move { out.run_writer(wr).await })
    };
    let mut rb = ReadBuf::new();
    let max = server.config.mqtt_max_packet_size as usize;
    let first = timeout(
        server.config.handshake_timeout,
        read_packet(&mut rd, &mut rb, None, max),
    )
    .await;
    match first {
        Ok(Ok(Some(Packet::Connect(c)))) => {
            if let Some((mut conn, permit)) = connect(c, peer, &server, &out).await {
                let end = conn.run(&mut rd, &mut rb).await;
                conn.finish(end);
                drop(permit);
            }
        }
        Ok(Err(e)) => refuse_undecodable(&out, &e, peer),
        _ => tracing::debug!(%peer, "no CONNECT, closing"),
    }
    out.close();
    let _ = timeout(Duration::from_secs(3), writer).await;
    // The writer has sent our last packets (a DISCONNECT with its reason) and a FIN. Read and
    // discard what the client still sends until it closes too, briefly: closing with unread
    // input would reset the connection, and the client might never read why it was closed.
    let mut sink = [0u8; 1024];
    let _ = timeout(Duration::from_secs(2), async {
        while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// Reads until one packet is decoded; `Ok(None)` when the socket closed first.
async fn read_packet(
    rd: &mut OwnedReadHalf,
    rb: &mut ReadBuf,
    version: Option<ProtocolVersion>,
    max: usize,
) -> Result<Option<Packet>, DecodeError> {
    loop {
        if let Some(p) = decode(&mut rb.buf, version, max)? {
            return Ok(Some(p));
        }
        rb.prepare();
        match rd.read_buf(&mut rb.buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(n) => rb.filled(n),
        }
    }
}

fn refuse_undecodable(out: &Outbound, e: &DecodeError, peer: SocketAddr) {
    tracing::info!(%peer, error = %e, "bad CONNECT");
    // [MQTT-3.1.2-2]: an unsupported protocol level gets CONNACK 0x01 (0x84 in 5.0).
    if let DecodeError::UnsupportedProtocolVersion { .. } = e {
        let ack = Packet::ConnAck(ConnAck::new(ReasonCode::UnsupportedProtocolVersion));
        out.send(|b| {
            let _ = encode(&ack, ProtocolVersion::V3_1_1, b);
        });
    }
}

fn send_packet(out: &Outbound, packet: &Packet, version: ProtocolVersion) {
    out.send(|b| {
        if let Err(e) = encode(packet, version, b) {
            tracing::warn!(error = %e, "cannot encode MQTT packet");
        }
    });
}

/// Authenticates, finds or creates the session, takes it over, and answers CONNACK.
async fn connect(
    c: Connect,
    peer: SocketAddr,
    server: &Arc<ServerState>,
    out: &Arc<Outbound>,
) -> Option<(Conn, OwnedSemaphorePermit)> {
    let version = c.protocol;
    let refuse = |code: ReasonCode, why: &str| {
        tracing::info!(%peer, client_id = %c.client_id, reason = ?code, "MQTT connection refused: {why}");
        send_packet(out, &Packet::ConnAck(ConnAck::new(code)), version);
        None
    };
    let config = &server.config;
    // User name `vhost:user` picks a vhost (as RabbitMQ's MQTT plugin); no user name is the
    // anonymous guest, from loopback only.
    let (vhost_name, user) = match c.username.as_deref() {
        Some(u) => match u.split_once(':') {
            Some((v, u)) => (v.to_string(), Some(u.to_string())),
            None => ("/".to_string(), Some(u.to_string())),
        },
        None => ("/".to_string(), None),
    };
    match &user {
        None if !(config.mqtt_allow_anonymous && peer.ip().to_canonical().is_loopback()) => {
            return refuse(ReasonCode::NotAuthorized, "anonymous login not allowed");
        }
        None => {}
        Some(u) => {
            let password = c.password.clone().unwrap_or_default();
            if let Err(e) = crate::auth::check(&config.users, u, &password, peer.ip()) {
                return refuse(ReasonCode::BadUserNameOrPassword, &e.to_string());
            }
        }
    }
    let Some(vhost) = server.broker.vhost(&vhost_name) else {
        return refuse(ReasonCode::NotAuthorized, "no such vhost");
    };
    let Ok(exchange) = vhost.exchange(&config.mqtt_exchange) else {
        return refuse(ReasonCode::ServerUnavailable, "MQTT exchange missing");
    };
    let mut assigned = None;
    let client_id = if c.client_id.is_empty() {
        // [MQTT-3.1.3-7/8]: an empty id needs a clean session in 3.1.1; 5.0 assigns one.
        if version != ProtocolVersion::V5 && (!c.clean_start || version == ProtocolVersion::V3_1) {
            return refuse(ReasonCode::ClientIdentifierNotValid, "empty client id");
        }
        let id = format!("pigeon-{:016x}", server.broker.next_id());
        assigned = Some(id.clone());
        id
    } else {
        c.client_id.clone()
    };
    let registry = &server.mqtt.registry;
    let (session, existed, permit) = loop {
        let (session, existed) =
            registry.get_or_create(&vhost, &client_id, || server.broker.next_id());
        session.waiting.fetch_add(1, Ordering::SeqCst);
        if session.lease.available_permits() == 0 {
            // Session takeover [MQTT-3.1.4-3]: the connection holding it is asked to go.
            session.kick.notify_one();
        }
        let acquired = timeout(TAKEOVER_TIMEOUT, Arc::clone(&session.lease).acquire_owned()).await;
        session.waiting.fetch_sub(1, Ordering::SeqCst);
        let Ok(Ok(permit)) = acquired else {
            return refuse(
                ReasonCode::ServerUnavailable,
                "previous connection did not let go",
            );
        };
        // The previous connection may have ended the session while we waited.
        match registry.get(vhost.name(), &client_id) {
            Some(s) if Arc::ptr_eq(&s, &session) => break (session, existed, permit),
            _ => continue,
        }
    };
    if c.clean_start && existed {
        session.discard();
    }
    let session_present = existed && !c.clean_start;
    let expiry = match version {
        ProtocolVersion::V5 => c.properties.session_expiry_interval.unwrap_or(0),
        _ if c.clean_start => 0,
        _ => u32::MAX,
    };
    session.generation.fetch_add(1, Ordering::Relaxed);
    let mut conn = Conn {
        server: Arc::clone(server),
        peer,
        out: Arc::clone(out),
        version,
        session: Arc::clone(&session),
        vhost,
        exchange,
        will: c.will,
        keep_alive: c.keep_alive,
        aliases: HashMap::new(),
        needs_dispatch: false,
        connect_expiry_zero: expiry == 0,
        problem_information: c.properties.request_problem_information.unwrap_or(true),
        publisher: false,
        blocked: false,
        pending_acks: std::collections::VecDeque::new(),
        synced: Arc::new(tokio::sync::Notify::new()),
        wake_epoch: 0,
    };
    // [MQTT-3.1.2-21]: the server may impose its own keep-alive (5.0 Server Keep Alive).
    let max_keep_alive = config.mqtt_max_keep_alive;
    let server_keep_alive = (max_keep_alive > 0
        && (conn.keep_alive == 0 || conn.keep_alive > max_keep_alive))
        .then_some(max_keep_alive);
    if let Some(k) = server_keep_alive {
        conn.keep_alive = k;
    }
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.session_present = session_present;
    if version == ProtocolVersion::V5 {
        let receive_maximum = config.mqtt_receive_maximum;
        ack.properties = ConnAckProperties {
            server_keep_alive,
            receive_maximum: (receive_maximum < u16::MAX).then_some(receive_maximum),
            assigned_client_identifier: assigned,
            topic_alias_maximum: Some(config.mqtt_topic_alias_maximum),
            maximum_packet_size: Some(config.mqtt_max_packet_size),
            retain_available: Some(true),
            wildcard_subscription_available: Some(true),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(true),
            ..ConnAckProperties::default()
        };
    }
    send_packet(out, &Packet::ConnAck(ack), version);
    conn.attach(expiry, &c.properties);
    super::persist::save(&session);
    tracing::debug!(%peer, client_id = %client_id, ?version, session_present, "MQTT client connected");
    server.mqtt.stats.connected.fetch_add(1, Ordering::Relaxed);
    Some((conn, permit))
}

impl Conn {
    /// Attaches this connection to its session: resends what was in flight, then lets the
    /// session's queues deliver.
    fn attach(&mut self, expiry: u32, props: &mqtt_wire::ConnectProperties) {
        let queues = {
            let mut core = self.session.core.lock();
            core.expiry = expiry;
            let mut attached = Attached {
                out: Arc::clone(&self.out),
                version: self.version,
                max_packet_size: props.maximum_packet_size.map_or(usize::MAX, |m| m as usize),
                receive_maximum: usize::from(props.receive_maximum.unwrap_or(u16::MAX)),
                alias_max: props.topic_alias_maximum.unwrap_or(0),
                aliases: HashMap::new(),
            };
            // [MQTT-4.4.0-1]: resend unacknowledged PUBLISH (with DUP) and PUBREL packets,
            // with their original packet identifiers.
            for i in core.inflight.iter() {
                if i.released {
                    send_packet(
                        &self.out,
                        &Packet::PubRel(PubRel::new(i.packet_id)),
                        self.version,
                    );
                } else {
                    let mut p = i.publish.clone();
                    p.dup = true;
                    attached.send_publish(p, &self.server.mqtt.stats);
                }
            }
            core.attached = Some(attached);
            self.session_queues(&core)
        };
        for q in queues {
            // A persistent session stays a consumer of its shared groups' queues while away
            // (see `finish`): replace that entry rather than adding a second one.
            q.remove_consumer(self.session.uid, &self.session.client_id);
            self.consume(&q);
        }
    }

    /// Every queue the session consumes from.
    pub(super) fn session_queues(&self, core: &super::session::SessionCore) -> Vec<Arc<Queue>> {
        let mut queues: Vec<Arc<Queue>> = core.queue.iter().cloned().collect();
        for s in &core.subscriptions {
            if !queues.iter().any(|q| Arc::ptr_eq(q, &s.queue)) {
                queues.push(Arc::clone(&s.queue));
            }
        }
        queues
    }

    /// Registers the session as a consumer of `queue`.
    pub(super) fn consume(&self, queue: &Arc<Queue>) {
        let sink = MqttSink {
            session: Arc::clone(&self.session),
            stats: Arc::clone(&self.server.mqtt.stats),
        };
        let entry = ConsumerEntry {
            tag: Arc::from(self.session.client_id.as_str()),
            owner: self.session.uid,
            exclusive: false,
            priority: 0,
            sink: Arc::new(sink),
        };
        if let Err(e) = queue.add_consumer(entry, || {}) {
            tracing::warn!(error = %e, queue = queue.name(), "cannot consume for MQTT session");
        }
    }

    pub(super) fn send(&self, packet: &Packet) {
        send_packet(&self.out, packet, self.version);
    }

    async fn run(&mut self, rd: &mut OwnedReadHalf, rb: &mut ReadBuf) -> End {
        let max = self.server.config.mqtt_max_packet_size as usize;
        let mut alarm = self.server.alarm.subscribe();
        let mut shutdown = self.server.shutdown.clone();
        // [MQTT-3.1.2-24]: one and a half keep-alive periods without a packet end the connection.
        let grace =
            (self.keep_alive > 0).then(|| Duration::from_millis(u64::from(self.keep_alive) * 1500));
        let far = Duration::from_secs(86_400 * 365);
        let keepalive = sleep(grace.unwrap_or(far));
        tokio::pin!(keepalive);
        loop {
            loop {
                match decode(&mut rb.buf, Some(self.version), max) {
                    Ok(Some(packet)) => {
                        if let Err(end) = self.handle(packet) {
                            return end;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(peer = %self.peer, client_id = %self.session.client_id, error = %e, "malformed packet, closing");
                        self.disconnect(e.reason_code());
                        return End::Abnormal;
                    }
                }
            }
            self.flush_acks();
            if std::mem::take(&mut self.needs_dispatch) {
                let queues = self.session_queues(&self.session.core.lock());
                for q in queues {
                    q.dispatch();
                }
            }
            rb.prepare();
            // A publisher waits while the memory alarm is on; so does a client that sends
            // faster than it reads.
            let paused = *alarm.borrow() && self.publisher;
            if self.blocked && !paused {
                if let Some(g) = grace {
                    keepalive.as_mut().reset(Instant::now() + g);
                }
            }
            self.blocked = paused;
            let can_read = self.out.has_room() && !paused;
            tokio::select! {
                _ = alarm.changed() => {}
                r = rd.read_buf(&mut rb.buf), if can_read => match r {
                    Ok(0) | Err(_) => return End::Abnormal,
                    Ok(n) => {
                        rb.filled(n);
                        if let Some(g) = grace {
                            keepalive.as_mut().reset(Instant::now() + g);
                        }
                    }
                },
                _ = &mut keepalive, if !paused => {
                    tracing::info!(peer = %self.peer, client_id = %self.session.client_id, keep_alive = self.keep_alive, "keep-alive timeout");
                    self.disconnect(ReasonCode::KeepAliveTimeout);
                    return End::Abnormal;
                }
                // A kick left over from a connection that let go before it saw it (its
                // notification is stored) must not end this one: only leave when a new
                // connection is actually waiting for the session.
                _ = self.session.kick.notified() => {
                    if self.session.waiting.load(Ordering::SeqCst) > 0 {
                        tracing::info!(peer = %self.peer, client_id = %self.session.client_id, "session taken over");
                        self.disconnect(ReasonCode::SessionTakenOver);
                        return End::Abnormal;
                    }
                }
                _ = self.out.resume.notified() => self.needs_dispatch = true,
                _ = self.out.writer_done.notified() => return End::Abnormal,
                _ = self.synced.notified() => {}
                _ = shutdown.changed() => {
                    self.disconnect(ReasonCode::ServerShuttingDown);
                    return End::Shutdown;
                }
            }
        }
    }

    /// Sends the PUBACK / PUBREC whose messages are on disk, in order.
    fn flush_acks(&mut self) {
        let synced = self
            .server
            .store
            .as_ref()
            .map_or(u64::MAX, |s| s.synced_epoch());
        while let Some((epoch, _)) = self.pending_acks.front() {
            if *epoch > synced {
                let epoch = *epoch;
                if let (Some(store), true) = (&self.server.store, epoch > self.wake_epoch) {
                    self.wake_epoch = epoch;
                    let notify = Arc::clone(&self.synced);
                    store.on_synced(epoch, Box::new(move |_| notify.notify_one()));
                }
                return;
            }
            if let Some((_, ack)) = self.pending_acks.pop_front() {
                self.send(&ack);
            }
        }
    }

    /// Sends DISCONNECT with `reason` to a 5.0 client (3.1.1 has no server DISCONNECT).
    pub(super) fn disconnect(&self, reason: ReasonCode) {
        if self.version == ProtocolVersion::V5 {
            let mut d = Disconnect::new(reason);
            // A human-readable reason, unless the client asked for none
            // (Request Problem Information = 0).
            if self.problem_information {
                d.properties.reason_string = Some(format!("{reason:?}"));
            }
            self.send(&Packet::Disconnect(d));
        }
    }

    /// Detaches from the session, publishes the will if due, and ends or keeps the session.
    fn finish(&mut self, end: End) {
        let session = Arc::clone(&self.session);
        let (queues, expiry) = {
            let mut core = session.core.lock();
            core.attached = None;
            (self.session_queues(&core), core.expiry)
        };
        let own = session.core.lock().queue.clone();
        for q in &queues {
            // A shared group's queue is auto-delete: a session that outlives this connection
            // stays its consumer (without credit while detached), or the queue and its binding
            // would go with the last member online. Ending the session removes it (`discard`).
            let shared = !own.as_ref().is_some_and(|o| Arc::ptr_eq(o, q));
            if expiry != 0 && shared {
                continue;
            }
            self.vhost
                .remove_consumer(q, session.uid, &session.client_id);
        }
        self.server
            .mqtt
            .stats
            .connected
            .fetch_sub(1, Ordering::Relaxed);
        let generation = session.generation.load(Ordering::Relaxed);
        let will = match end {
            End::Disconnect { with_will: false } => None,
            _ => self.will.take(),
        };
        if let Some(will) = will {
            let delay = will.properties.will_delay_interval.unwrap_or(0).min(expiry);
            let (vhost, exchange, stats) = (
                Arc::clone(&self.vhost),
                Arc::clone(&self.exchange),
                Arc::clone(&self.server.mqtt.stats),
            );
            let publish_will = move || publish_will(&vhost, &exchange, &stats, will, session.uid);
            if delay == 0 {
                publish_will();
            } else {
                // [MQTT-3.1.3-9]: a delayed will is not sent if the session resumes in time.
                let session = Arc::clone(&self.session);
                tokio::spawn(async move {
                    sleep(Duration::from_secs(u64::from(delay))).await;
                    if session.generation.load(Ordering::Relaxed) == generation {
                        publish_will();
                    }
                });
            }
        }
        let registry_owner = Arc::clone(&self.server);
        match expiry {
            0 => registry_owner.mqtt.registry.end(&self.session),
            u32::MAX => {}
            secs => {
                let session = Arc::clone(&self.session);
                tokio::spawn(async move {
                    sleep(Duration::from_secs(u64::from(secs))).await;
                    let idle = session.generation.load(Ordering::Relaxed) == generation
                        && session.lease.available_permits() == 1;
                    if idle {
                        registry_owner.mqtt.registry.end(&session);
                    }
                });
            }
        }
        tracing::debug!(peer = %self.peer, client_id = %self.session.client_id, ?end, "MQTT client gone");
    }
}

fn publish_will(
    vhost: &VHost,
    exchange: &Arc<Exchange>,
    stats: &Stats,
    will: LastWill,
    origin: u64,
) {
    let w = will.properties;
    let props = PublishProperties {
        payload_format_indicator: w.payload_format_indicator,
        message_expiry_interval: w.message_expiry_interval,
        content_type: w.content_type,
        response_topic: w.response_topic,
        correlation_data: w.correlation_data,
        user_properties: w.user_properties,
        ..PublishProperties::default()
    };
    super::handlers::publish_message(
        vhost,
        exchange,
        stats,
        &will.topic,
        will.qos,
        will.retain,
        &props,
        Bytes::copy_from_slice(&will.payload),
        origin,
    );
}
