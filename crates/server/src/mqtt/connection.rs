//! One MQTT connection: the handshake, the packet loop, keep-alive, takeover and the end
//! (CONNECT itself, authentication to CONNACK, is `connect.rs`).
//!
//! One task per connection reads, handles and writes: it waits for the socket (readable, or
//! writable while a write is unfinished) and for [`Outbound::notified`] (deliveries from other
//! tasks, a takeover, the store's sync), and writes the outbound buffer itself. An idle
//! connection is kept small: no writer task, no read buffer between packets (see `readbuf.rs`),
//! no write buffer between writes (see `outbound.rs`), the short-lived state of the handshake
//! and of the close boxed so that it does not size the task, and so is what only a publisher
//! needs (`Publishing`, from its first PUBLISH).

use super::io::{Io, IoEvent};
use super::publishing::Publishing;
use super::session::Session;
use super::sink::{Attached, MqttSink};
use crate::outbound::Outbound;
use crate::readbuf::ReadBuf;
use crate::transport::{PeerInfo, Transport};
use crate::ServerState;
use bytes::{Bytes, BytesMut};
use mqtt_wire::{
    decode, encode, ConnAck, DecodeError, Disconnect, LastWill, Packet, ProtocolVersion, PubRel,
    PublishProperties, ReasonCode,
};
use pigeon_broker::{ConsumerEntry, Exchange, Queue, VHost};
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{sleep, timeout, Instant, Sleep};

mod ending;

/// Why the packet loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// The client sent DISCONNECT (normal: no will, unless 5.0 reason 0x04).
    Disconnect { with_will: bool },
    /// Anything else: socket closed, error, keep-alive, takeover (the will is published).
    Abnormal,
    /// The broker is shutting down.
    Shutdown,
    /// Idle with nothing in flight for `mqtt_hibernate_after_ms`: hibernate (`hibernate.rs`).
    Park,
}

/// How long a quiet connection stays awake with nothing to do before it hibernates, at most
/// (`mqtt_hibernate_after_ms` otherwise). Quiet: since its task started (at CONNECT, or when
/// a hibernated connection resumed with nothing to send) the client has sent nothing but
/// PINGREQs and been sent nothing but their PINGRESPs (and its CONNACK): a client that has just connected, or an
/// idle one whose keep-alive woke it. Such a connection has most likely nothing more to do
/// (fleets of devices connect, then only ping), and while awake it costs its task cell and
/// its tokio registration (~0.8 KiB, about as much as all the rest of an idle connection):
/// with 1 s, a burst of 10,000 connections (a reconnect storm after a restart; `pigeon bench
/// idle`) opened within a second held all of them awake at once, 1.56 KiB per connection
/// instead of 0.85 (docs/performance.md, "Idle connections", seventh pass). A client that
/// subscribes or publishes right after its CONNACK (within a round trip) is no longer quiet
/// and keeps the configured delay; one slower than this is resumed once, at the cost of a
/// task spawn and three `epoll_ctl`s.
const QUIET_HIBERNATE_AFTER_MS: u64 = 10;

/// `quiet_sent` of a connection that is not quiet (`Conn::run`).
const NOT_QUIET: u64 = u64::MAX;

/// The state of one connection after CONNECT.
pub(super) struct Conn {
    pub server: Arc<ServerState>,
    pub version: ProtocolVersion,
    /// The session (and its vhost, `session.vhost`). The outbound buffer is the registry
    /// entry's (`reg.entry.out`): a connection keeps nothing twice, as a hibernated one keeps
    /// all of this (`hibernate.rs`).
    pub session: Arc<Session>,
    pub exchange: Arc<Exchange>,
    /// Boxed: most connections have none, and it is large.
    pub will: Option<Box<LastWill>>,
    pub keep_alive: u16,
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
    /// What only a publishing client needs, boxed at its first PUBLISH (or PUBREL): most
    /// connections never publish, and this is the largest part of every connection's task.
    pub publishing: Option<Box<Publishing>>,
    /// The user's permissions in the vhost (recompiled when they change: `authz.rs`).
    pub authz: Arc<crate::authz::Authz>,
    /// This connection's place in its vhost's and user's connection counts.
    pub _slots: crate::limits::ConnectionSlots,
    /// The access-control generation last looked at (see [`Conn::deleted_under_us`]; its low
    /// 32 bits: compared for equality, a wrap needs 4 billion changes between two looks).
    pub access_generation: u32,
    /// The connection's entry in the registry (listed while it lives).
    pub reg: Listed,
    /// The socket of a hibernated connection (`hibernate.rs`), kept here rather than beside
    /// the state: 4 bytes of this struct's padding instead of 8 more in the hibernated state.
    pub parked: Option<std::net::TcpStream>,
}

/// A connection's registry entry, deregistered by [`Conn`]'s `Drop` through the server's
/// registry (a `Registered` guard keeps a second pointer to it: 8 bytes of every hibernated
/// connection's state, which must stay in jemalloc's 112-byte class).
pub(super) struct Listed {
    pub entry: Arc<crate::registry::Entry>,
}

impl From<crate::registry::Registered> for Listed {
    fn from(reg: crate::registry::Registered) -> Self {
        Listed {
            entry: reg.into_entry(),
        }
    }
}

/// The session's lease is held while the connection lives, and given back when it is dropped
/// (taken at CONNECT: no guard kept, 16 bytes less in every connection's task); its registry
/// entry is deregistered then.
impl Drop for Conn {
    fn drop(&mut self) {
        self.server.mqtt.registry.give_back_lease(&self.session);
        self.server.registry.deregister(&self.reg.entry);
    }
}

/// Serves one accepted socket until it closes.
///
/// Not an `async fn`: its future would keep a second copy of the arguments. The future's size
/// is what every connection costs while idle, so it holds only the socket, the connection's
/// state and the packet loop's future.
pub fn serve(
    stream: Transport,
    peer: PeerInfo,
    server: Arc<ServerState>,
) -> impl std::future::Future<Output = ()> + Send {
    stream.set_nodelay();
    let io = Io {
        stream,
        rb: ReadBuf::new(),
        out: Arc::new(Outbound::new()),
        pending: BytesMut::new(),
    };
    // The handshake (the CONNECT packet, authentication, waiting out a takeover) needs far
    // more state than the packet loop: boxed, it is freed once the client is connected
    // instead of sizing every connection's task for good. It owns what only it needs (the
    // peer address, the server), so the task does not keep them either. The same for the
    // close.
    let handshake = Box::pin(handshake(io, peer, server));
    // `then`, not `async move { let (io, conn) = handshake.await; ... }`: the locals an async
    // block moves into the next future keep their room in it (twice the connection's state).
    futures_util::FutureExt::then(handshake, |(io, conn)| connected(io, conn, true))
}

/// A connected client's packet loop until it ends, or until it hibernates (`hibernate.rs`):
/// then the task ends and the connection waits without one. `fresh`: just connected (a
/// resumed connection's keep-alive deadline keeps running from its last packet). `None`: the
/// handshake refused the client; its last packets are sent and the socket closed.
///
/// The connection stays in its `Option` (never moved to a local across an `.await`): a
/// moved-from variable keeps its room in the future, which sizes every connection's task.
/// Not an `async fn`, which would keep a second copy of its arguments (see [`serve`]).
#[allow(clippy::manual_async_fn)]
fn connected(mut io: Io, mut conn: Option<Conn>, fresh: bool) -> impl Future<Output = ()> + Send {
    async move {
        if let (Some(c), true) = (conn.as_ref(), fresh) {
            // Keep-alive and shutdown cost the task nothing while it waits: the server's timer
            // sweeps every connection's deadline (kept in `out`) and wakes those past it, and
            // at shutdown wakes every connection; each looks at both at its next turn.
            c.reg.entry.out.set_deadline(c.grace());
        }
        while let Some(c) = conn.as_mut() {
            match c.run(&mut io, fresh).await {
                End::Park => {
                    let Some(c) = conn.take() else { break };
                    match super::hibernate::park(c, io) {
                        None => return,
                        // It cannot hibernate (not plain TCP): it stays awake.
                        Some((c, i)) => (conn, io) = (Some(c), i),
                    }
                }
                end => {
                    c.finish(end);
                    break;
                }
            }
        }
        // Lets go of the session (the lease).
        drop(conn);
        Box::pin(io.close()).await;
    }
}

/// The task of a hibernated connection woken up (`hibernate.rs`), its socket back in tokio.
pub(super) fn resumed(
    conn: Conn,
    stream: tokio::net::TcpStream,
) -> impl Future<Output = ()> + Send {
    let io = Io {
        stream: Transport::Tcp(stream),
        rb: ReadBuf::new(),
        out: Arc::clone(&conn.reg.entry.out),
        pending: BytesMut::new(),
    };
    connected(io, Some(conn), false)
}

/// Ends a hibernated connection whose socket cannot go back to tokio: as if it had closed
/// (the will is published).
pub(super) fn abandon(mut conn: Conn) {
    conn.finish(End::Abnormal);
}

/// Answers a client whose address is over `connection_rate_limit` (the listener counted it):
/// reads its CONNECT (bounded by the handshake timeout and a small packet size) and refuses it
/// with CONNACK 0x9F Connection rate exceeded (5.0) or 0x03 Server unavailable (3.1.x), so
/// that a well-behaved client backs off. Nothing of the broker is touched.
pub async fn refuse_over_rate(stream: Transport, peer: PeerInfo, server: Arc<ServerState>) {
    /// A CONNECT with credentials and a small will fits; a larger one is just closed.
    const MAX_CONNECT: usize = 64 * 1024;
    let mut io = Io {
        stream,
        rb: ReadBuf::new(),
        out: Arc::new(Outbound::new()),
        pending: BytesMut::new(),
    };
    let wait = server.config.handshake_timeout;
    if let Ok(Ok(Some(Packet::Connect(c)))) = timeout(wait, io.read_packet(None, MAX_CONNECT)).await
    {
        tracing::debug!(peer = %peer.addr, client_id = %c.client_id, "MQTT connection refused: over the connection rate of its address");
        let ack = Packet::ConnAck(ConnAck::new(ReasonCode::ConnectionRateExceeded));
        send_packet(&io.out, &ack, c.protocol);
    }
    io.close().await;
}

/// Reads CONNECT and connects the client, or refuses it.
async fn handshake(mut io: Io, peer: PeerInfo, server: Arc<ServerState>) -> (Io, Option<Conn>) {
    let max = server.config.mqtt_max_packet_size as usize;
    let first = timeout(server.config.handshake_timeout, io.read_packet(None, max)).await;
    let peer_info = peer;
    let peer = peer_info.addr;
    let conn = match first {
        Ok(Ok(Some(Packet::Connect(c)))) => {
            super::connect::connect(c, &peer_info, &server, &io.out).await
        }
        Ok(Err(e)) => {
            refuse_undecodable(&io.out, &e, peer);
            None
        }
        _ => {
            tracing::debug!(%peer, "no CONNECT, closing");
            None
        }
    };
    (io, conn)
}

/// Polls a future kept in a box only while it is wanted; pending while there is none.
fn poll_boxed<F: Future + ?Sized>(
    f: &mut Option<Pin<Box<F>>>,
    cx: &mut Context<'_>,
) -> Poll<F::Output> {
    match f.as_mut() {
        Some(f) => f.as_mut().poll(cx),
        None => Poll::Pending,
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

pub(super) fn send_packet(out: &Outbound, packet: &Packet, version: ProtocolVersion) {
    out.send(|b| {
        if let Err(e) = encode(packet, version, b) {
            tracing::warn!(error = %e, "cannot encode MQTT packet");
        }
    });
}

impl Conn {
    /// The client's address (kept once, in the registry entry).
    pub(super) fn peer(&self) -> SocketAddr {
        self.reg.entry.peer()
    }

    /// Attaches this connection to its session: resends what was in flight, then lets the
    /// session's queues deliver.
    pub(super) fn attach(&mut self, expiry: u32, props: &mqtt_wire::ConnectProperties) {
        let queues = {
            let mut core = self.session.core.lock();
            core.expiry = expiry;
            let mut attached = Attached {
                version: self.version,
                max_packet_size: props.maximum_packet_size.unwrap_or(u32::MAX),
                receive_maximum: props.receive_maximum.unwrap_or(u16::MAX),
                entry: Arc::clone(&self.reg.entry),
                alias_max: props.topic_alias_maximum.unwrap_or(0),
                aliases: None,
            };
            // [MQTT-4.4.0-1]: resend unacknowledged PUBLISH (with DUP) and PUBREL packets,
            // with their original packet identifiers.
            for i in core.inflight.iter() {
                if i.released {
                    send_packet(
                        &self.reg.entry.out,
                        &Packet::PubRel(PubRel::new(i.packet_id)),
                        self.version,
                    );
                } else {
                    let mut p = i.publish.clone();
                    p.dup = true;
                    attached.send_publish(p);
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
        };
        let entry = ConsumerEntry {
            tag: Arc::clone(&self.session.client_id),
            owner: self.session.uid,
            exclusive: false,
            priority: 0,
            sink: Arc::new(sink),
        };
        if let Err(e) = queue.add_consumer(entry, || {}) {
            tracing::warn!(error = %e, queue = queue.name(), "cannot consume for MQTT session");
            return;
        }
        // MQTT across the cluster: a share group owned by another node (`cluster_shared.rs`).
        super::cluster_shared::attach(&self.server, &self.session, queue);
    }

    pub(super) fn send(&self, packet: &Packet) {
        send_packet(&self.reg.entry.out, packet, self.version);
    }

    /// The packet loop, until the connection ends. Not an `async fn`, which would keep a second
    /// copy of its two references in every connection's task (see [`serve`]).
    #[allow(clippy::manual_async_fn)]
    fn run<'a>(&'a mut self, io: &'a mut Io, fresh: bool) -> impl Future<Output = End> + Send + 'a {
        async move {
            // The memory alarm matters to publishers only: once the client has published, the
            // loop also waits for the alarm to change, in a future of its own, boxed so that the
            // many connections that never publish do not carry it.
            let mut alarm_changed: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
            // Publisher flow control's polling timer, boxed for the same reason; only while paused.
            let mut flow_timer: Option<Pin<Box<Sleep>>> = None;
            // Hibernation (`hibernate.rs`). `idle_since`: the last turn that was not this
            // timer's, in `now_ms`.
            let mut idle_timer: Option<Pin<Box<Sleep>>> = None;
            let mut idle_since = crate::outbound::now_ms();
            // While the connection is quiet (see [`QUIET_HIBERNATE_AFTER_MS`]): what
            // `out.sent_cnt()` is with only the CONNACK and the PINGRESPs sent since this task
            // started. [`NOT_QUIET`] once anything else was received or sent. A resumed
            // connection that has something to send (a delivery resumed it) is not quiet: a
            // subscriber fed every few hundred ms keeps the configured delay, as before.
            let mut quiet_sent = {
                let out = &self.reg.entry.out;
                if fresh || out.backlog() == 0 {
                    out.sent_cnt()
                } else {
                    NOT_QUIET
                }
            };
            loop {
                let mut handled = false;
                loop {
                    let max = self.server.config.mqtt_max_packet_size as usize;
                    match decode(&mut io.rb.buf, Some(self.version), max) {
                        Ok(Some(packet)) => {
                            handled = true;
                            if quiet_sent != NOT_QUIET {
                                // A PINGREQ gets one PINGRESP; anything else ends the quiet.
                                quiet_sent = match packet {
                                    Packet::PingReq => quiet_sent + 1,
                                    _ => NOT_QUIET,
                                };
                            }
                            self.reg.entry.recv_cnt.fetch_add(1, Ordering::Relaxed);
                            if let Err(end) = self.handle(packet) {
                                return end;
                            }
                            // A publisher stops at the next packet once an alarm is raised
                            // (the rest stays in the buffer until it is lifted).
                            if self.publisher && self.server.alarm_causes.any() {
                                break;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::info!(peer = %self.peer(), client_id = %self.session.client_id, error = %e, "malformed packet, closing");
                            self.disconnect(e.reason_code());
                            return End::Abnormal;
                        }
                    }
                }
                if let Some(p) = self.publishing.as_mut() {
                    crate::memory::charge(&self.server, std::mem::take(&mut p.charged));
                    if !p.gathered.is_empty() {
                        p.flow
                            .look(&mut p.gathered, &self.server.flow, &[self.session.uid]);
                    }
                }
                // Persistent sessions: the batch's inbound QoS 2 ids go to disk before their PUBRECs.
                super::persist::save_inbound_qos2(&self.session);
                self.flush_acks();
                if std::mem::take(&mut self.needs_dispatch) {
                    let queues = self.session_queues(&self.session.core.lock());
                    for q in queues {
                        q.dispatch();
                    }
                }
                // Its vhost or user was deleted (the deleting side woke us).
                if let Some(end) = self.deleted_under_us() {
                    return end;
                }
                // Session takeover [MQTT-3.1.4-3]: a new connection of the same client id waits for
                // the session (it woke us). Checked at every turn, so no wake-up can be missed.
                if self.session.waiting.load(Ordering::SeqCst) > 0 {
                    tracing::info!(peer = %self.peer(), client_id = %self.session.client_id, "session taken over");
                    self.disconnect(ReasonCode::SessionTakenOver);
                    return End::Abnormal;
                }
                // Write what this turn and other tasks' deliveries buffered, as far as the socket
                // takes it now.
                let writing = match poll_fn(|cx| Poll::Ready(io.flush(cx))).await {
                    Ok(f) if f.resume => {
                        // Room came back for consumers that were refused it.
                        self.needs_dispatch = true;
                        continue;
                    }
                    Ok(f) => !f.done,
                    Err(e) => {
                        tracing::debug!(peer = %self.peer(), error = %e, "write failed");
                        return End::Abnormal;
                    }
                };
                // Everything read is decoded: wait for the next packet without a buffer.
                io.rb.release();
                if handled {
                    // This turn's deliveries woke other connections' tasks. Tokio runs the last
                    // one woken next on this worker, where no other worker may take it, but only
                    // once this task yields, and a busy publisher's socket is rarely empty: yield
                    // now, so that their writes do not wait behind this publisher's next turns.
                    tokio::task::yield_now().await;
                }
                // A publisher waits while the memory alarm is on; so does a client that sends
                // faster than it reads.
                // Publisher flow control (flow.rs): not while a queue it filled drains.
                let congested = self
                    .publishing
                    .as_mut()
                    .is_some_and(|p| p.flow.must_wait(&self.server.flow, &[self.session.uid]));
                match (congested, flow_timer.as_mut()) {
                    (true, Some(t)) => t.as_mut().reset(Instant::now() + crate::flow::POLL),
                    (true, None) => flow_timer = Some(Box::pin(sleep(crate::flow::POLL))),
                    (false, _) => flow_timer = None,
                }
                if self.publisher && alarm_changed.is_none() {
                    // Subscribed before the flag is read below, so no change is missed.
                    let mut alarm = self.server.alarm.subscribe();
                    alarm_changed = Some(Box::pin(async move {
                        let _ = alarm.changed().await;
                    }));
                }
                let paused = (*self.server.alarm.borrow() && self.publisher) || congested;
                if self.blocked && !paused {
                    self.reg.entry.out.set_deadline(self.grace());
                }
                self.blocked = paused;
                if *self.server.shutdown.borrow() {
                    self.disconnect(ReasonCode::ServerShuttingDown);
                    return End::Shutdown;
                }
                // [MQTT-3.1.2-24]; not while reading is paused (the client is not at fault).
                if !paused && self.reg.entry.out.deadline_expired() {
                    tracing::info!(peer = %self.peer(), client_id = %self.session.client_id, keep_alive = self.keep_alive, "keep-alive timeout");
                    self.disconnect(ReasonCode::KeepAliveTimeout);
                    return End::Abnormal;
                }
                let can_read = self.reg.entry.out.has_room() && !paused;
                // Nothing unread, unwritten or waited for: hibernate once idle long enough.
                // Plain TCP only (TLS and WebSocket state is not parked). Read here rather
                // than kept: every byte of this future is in every connection's task.
                let mut hibernate_after = match io.stream {
                    Transport::Tcp(_) => self.server.config.mqtt_hibernate_after_ms,
                    _ => 0,
                };
                if quiet_sent != NOT_QUIET {
                    if quiet_sent == self.reg.entry.out.sent_cnt() {
                        hibernate_after = hibernate_after.min(QUIET_HIBERNATE_AFTER_MS);
                    } else {
                        // A delivery (or anything else) went out: not quiet any more.
                        quiet_sent = NOT_QUIET;
                    }
                }
                let idle = hibernate_after > 0
                    && !writing
                    && can_read
                    && io.rb.buf.is_empty()
                    && !self.needs_dispatch
                    && self.acks_waiting() == 0;
                if idle {
                    let now = crate::outbound::now_ms();
                    let due = idle_since.saturating_add(hibernate_after);
                    if now >= due {
                        if self.nothing_in_flight() {
                            return End::Park;
                        }
                        // Waiting for the client's acknowledgements: look again later.
                        idle_since = now;
                    }
                    let at = Instant::now()
                        + Duration::from_millis(
                            idle_since
                                .saturating_add(hibernate_after)
                                .saturating_sub(now),
                        );
                    match idle_timer.as_mut() {
                        // Fired (or about to): set for the new time; otherwise it fires early
                        // once, and is set then (one timer update per period, not per turn).
                        Some(t) if t.deadline() <= Instant::now() => t.as_mut().reset(at),
                        Some(_) => {}
                        None => idle_timer = Some(Box::pin(tokio::time::sleep_until(at))),
                    }
                }
                tokio::select! {
                    _ = poll_fn(|cx| poll_boxed(&mut alarm_changed, cx)), if alarm_changed.is_some() => {
                        alarm_changed = None;
                    }
                    _ = poll_fn(|cx| poll_boxed(&mut flow_timer, cx)), if congested => {}
                    // Idle long enough? The next turn looks (and does not count as activity).
                    _ = poll_fn(|cx| poll_boxed(&mut idle_timer, cx)), if idle => continue,
                    // Writable: the flush above continues the write at the next turn.
                    r = poll_fn(|cx| io.poll_io(cx, can_read, writing)), if can_read || writing => match r {
                        Err(_) | Ok(IoEvent::Read(0)) => return End::Abnormal,
                        Ok(IoEvent::Read(n)) => {
                            idle_since = crate::outbound::now_ms();
                            io.rb.filled(n);
                            self.reg.entry.recv_oct.fetch_add(n as u64, Ordering::Relaxed);
                            if self.keep_alive > 0 {
                                self.reg.entry.out.set_deadline(self.grace());
                            }
                        }
                        Ok(IoEvent::Writable { resume }) => self.needs_dispatch |= resume,
                    },
                    // Bytes to write, a takeover, the store's sync, the keep-alive sweep, the
                    // shutdown: the next turn sees to them.
                    _ = self.reg.entry.out.notified() => idle_since = crate::outbound::now_ms(),
                }
            }
        }
    }

    /// No QoS exchange is unfinished either way (what hibernating asks, beside an idle socket).
    fn nothing_in_flight(&self) -> bool {
        let core = self.session.core.lock();
        core.inflight.is_empty() && core.inbound_qos2.is_empty()
    }

    /// [MQTT-3.1.2-24]: one and a half keep-alive periods without a packet end the connection.
    pub(super) fn grace(&self) -> Option<Duration> {
        (self.keep_alive > 0).then(|| Duration::from_millis(u64::from(self.keep_alive) * 1500))
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    /// What an idle MQTT connection's task costs (docs/performance.md: tokio allocates the
    /// task cell in 128-byte steps, the future plus 104 bytes). Measured as the listener
    /// spawns it (`listen.rs`: mapped to give the connection count back, 8 bytes more), it
    /// must stay within the 512-byte cell: 408 bytes at most.
    #[tokio::test]
    async fn the_connection_future_fits_its_cell() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let state = crate::tests_support::state();
        let open = Arc::clone(&state);
        let fut = serve(Transport::Tcp(stream), PeerInfo::plain(peer), state);
        let fut = futures_util::FutureExt::map(fut, move |()| drop(open));
        let size = std::mem::size_of_val(&fut);
        println!("MQTT connection future: {size} bytes");
        assert!(
            size <= 408,
            "the MQTT connection future grew to {size} bytes"
        );
        drop(client);
    }
}
