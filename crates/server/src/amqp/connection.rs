//! One AMQP connection: the handshake, the frame loop, heartbeats and the close handshake
//! (the channel-0 methods, `connection.start` to `connection.close-ok`, are in
//! `connection/handshake.rs`).
//!
//! The connection task owns the socket's read half and every channel. It reads as much as the
//! socket has, handles every complete frame in the buffer, then flushes per-channel work
//! (coalesced publisher confirms, queue dispatch after acks) before reading again. Its
//! outbound bytes go through [`Outbound`], drained by a writer task of its own.

mod handshake;

use super::channel::{Channel, ConnCtx};
use super::error::{AmqpError, AmqpResult};
use crate::authz::Authz;
use crate::limits::ConnectionSlots;
use crate::outbound::Outbound;
use crate::readbuf::ReadBuf;
use crate::registry::{ConnState, Protocol, Registered};
use crate::transport::{PeerInfo, ReadHalf, TlsInfo, Transport};
use crate::ServerState;
use amqp_wire::{
    decode_frame, encode_method_frame, ChannelClose, ChannelOpenOk, ConnectionClose,
    ConnectionCloseOk, Frame, Method, ReplyCode, ShortString, PROTOCOL_HEADER,
};
use bytes::Bytes;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;
use tokio::time::{interval, timeout, MissedTickBehavior};

/// How long we wait for `connection.close-ok` after sending `connection.close`.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// The AMQP 0-9 protocol header. RabbitMQ serves it as 0-9-1 (rabbit_reader, `handshake` /
/// `version_negotiation`: "This is the protocol header for 0-9, which we can safely treat as
/// though it were 0-9-1"), and so do we; connection.start says 0-9 either way.
const PROTOCOL_HEADER_0_9: [u8; 8] = *b"AMQP\x01\x01\x00\x09";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitStartOk,
    AwaitTuneOk,
    AwaitOpen,
    Open,
    /// We sent connection.close and wait for close-ok until the deadline.
    Closing(Instant),
    /// We sent connection.close-ok: everything the client still sends is read and discarded
    /// until it closes its socket (or sends close-ok, or the deadline passes). RabbitMQ does
    /// the same in its `closed` state (rabbit_reader `close_connection`, `handle_frame` when
    /// `?IS_STOPPING`): a client that closes right after a burst of publishes may still be
    /// flushing them (amqplib sends channel 0's close ahead of other channels' buffered
    /// frames), and closing our socket under those writes would reset the connection, so the
    /// client would see ECONNRESET / EPIPE, or lose our close-ok.
    Closed(Instant),
    Done,
}

struct Connection {
    server: Arc<ServerState>,
    peer: SocketAddr,
    /// What TLS established, on a TLS listener (the client certificate for SASL EXTERNAL).
    #[allow(dead_code)]
    tls: Option<Arc<TlsInfo>>,
    id: u64,
    out: Arc<Outbound>,
    phase: Phase,
    frame_max: u32,
    channel_max: u16,
    heartbeat: u16,
    last_read: Instant,
    cancel_notify: bool,
    auth_failure_close: bool,
    /// The client understands connection.blocked / unblocked.
    blocked_notify: bool,
    /// The connection has published: the memory alarm blocks it.
    publisher: bool,
    /// Reading is paused by the memory alarm.
    blocked: bool,
    /// Publisher flow control (`crate::flow`): queues this connection fills faster than
    /// they drain; reading is paused while any holds it back (`flow_paused`).
    flow: crate::flow::PublishFlow,
    flow_paused: bool,
    ctx: Option<ConnCtx>,
    /// Boxed: a map allocates room for several entries, and a channel's state is large.
    channels: HashMap<u16, Box<Channel>>,
    /// This connection's place in its vhost's and user's connection counts.
    _slots: Option<ConnectionSlots>,
    /// Woken by the store's flusher when confirms can go out.
    synced: Arc<tokio::sync::Notify>,
    /// Who logged in (set by `connection.start-ok`).
    user: Option<crate::auth::AuthenticatedUser>,
    /// The connection's entry in the registry (listed while it lives).
    reg: Registered,
}

/// Serves one accepted socket until it closes.
pub async fn serve(stream: Transport, peer: PeerInfo, server: Arc<ServerState>) {
    // Boxed: the listeners spawn one future type for both protocols, sized for the larger; an
    // idle MQTT connection's task must not carry the size of an AMQP connection's state.
    Box::pin(serve_connection(stream, peer, server)).await;
}

async fn serve_connection(stream: Transport, peer: PeerInfo, server: Arc<ServerState>) {
    stream.set_nodelay();
    let (rd, wr) = stream.into_split();
    let out = Arc::new(Outbound::new());
    let writer = {
        let out = Arc::clone(&out);
        tokio::spawn(async move { out.run_writer(wr).await })
    };
    let id = server.broker.next_id();
    let reg = server.registry.register(id, Protocol::Amqp091, &peer, &out);
    let mut conn = Connection {
        id,
        reg,
        frame_max: server.config.frame_max,
        channel_max: server.config.channel_max,
        heartbeat: 0,
        server,
        peer: peer.addr,
        tls: peer.tls,
        out: Arc::clone(&out),
        phase: Phase::AwaitStartOk,
        last_read: Instant::now(),
        cancel_notify: false,
        auth_failure_close: false,
        blocked_notify: false,
        publisher: false,
        blocked: false,
        flow: crate::flow::PublishFlow::default(),
        flow_paused: false,
        ctx: None,
        channels: HashMap::new(),
        _slots: None,
        synced: Arc::new(tokio::sync::Notify::new()),
        user: None,
    };
    conn.run(rd).await;
    conn.release();
    out.close();
    let _ = timeout(CLOSE_TIMEOUT, writer).await;
    tracing::debug!(peer = %conn.peer, "connection ended");
}

impl Connection {
    async fn run(&mut self, mut rd: ReadHalf) {
        let mut header = [0u8; 8];
        let handshake = self.server.config.handshake_timeout;
        match timeout(handshake, rd.read_exact(&mut header)).await {
            Ok(Ok(_)) if header == PROTOCOL_HEADER || header == PROTOCOL_HEADER_0_9 => {}
            Ok(Ok(_)) => {
                // AMQP 0-9-1 section 4.2.2: answer a bad header with ours and close. RabbitMQ
                // 3.x answers every version it refuses with the 0-9-1 header (rabbit_reader
                // `refuse_connection/2`); 4.x still does for `AMQP 0 0 9 x` and otherwise
                // offers AMQP 1.0, which Pigeon does not speak. The 0-8 headers (`AMQP 1 1 8 0`,
                // `AMQP 1 1 9 1`) that RabbitMQ 3.x served with its 0-8 framing are refused
                // as RabbitMQ 4.x refuses them.
                tracing::info!(peer = %self.peer, header = ?Bytes::copy_from_slice(&header), "bad protocol header");
                self.out.send(|b| b.extend_from_slice(&PROTOCOL_HEADER));
                return;
            }
            _ => return,
        }
        self.send_start();
        let mut rb = ReadBuf::new();
        let mut alarm = self.server.alarm.subscribe();
        let mut shutdown = self.server.shutdown.clone();
        let mut kicks = self.server.kicks.subscribe();
        let deadline = Instant::now() + handshake;
        let mut ticker = interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut tick_period = Duration::from_secs(1);
        loop {
            loop {
                match decode_frame(&mut rb.buf, self.frame_max) {
                    Ok(Some(frame)) => {
                        self.reg.entry.recv_cnt.fetch_add(1, Relaxed);
                        if let Err(e) = self.handle_frame(frame) {
                            self.close_with(e);
                        }
                        if self.phase == Phase::Done {
                            return;
                        }
                        // A publisher stops at the next frame once an alarm is raised (the
                        // rest stays in the buffer until it is lifted).
                        if self.publisher
                            && self.phase == Phase::Open
                            && self.server.alarm_causes.any()
                        {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // The stream can no longer be parsed: say why and hang up.
                        self.close_with(AmqpError::new(e.reply_code(), &e));
                        return;
                    }
                }
            }
            if let Some(ctx) = self.ctx.as_ref() {
                let mut charged = 0;
                let mut gathered = false;
                for ch in self.channels.values_mut() {
                    ch.flush(ctx);
                    charged += std::mem::take(&mut ch.charged);
                    gathered |= !ch.reached.is_empty();
                }
                crate::memory::charge(&self.server, charged);
                if gathered {
                    let own = self.own_consumers();
                    for ch in self.channels.values_mut() {
                        self.flow.look(&mut ch.reached, &self.server.flow, &own);
                    }
                }
            }
            let wanted = self.tick_period();
            if wanted != tick_period {
                tick_period = wanted;
                ticker = interval(wanted);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                ticker.reset();
            }
            // Everything read is decoded: wait for the next frame without a buffer.
            rb.release();
            // A publisher waits while the memory alarm is on (connection.blocked), and a client
            // that sends faster than it reads our replies waits until they drain. Once closing,
            // what the client sends is discarded, and nothing more is said about the alarm.
            let paused = *alarm.borrow() && self.publisher && self.phase == Phase::Open;
            if self.phase == Phase::Open {
                self.set_blocked(paused);
            }
            // Publisher flow control: not while a queue this connection fills holds it back.
            let congested = self.phase == Phase::Open && {
                let own = self.own_consumers();
                self.flow.must_wait(&self.server.flow, &own)
            };
            if self.flow_paused && !congested {
                self.last_read = Instant::now();
            }
            self.flow_paused = congested;
            let can_read = self.out.has_room() && !paused && !congested;
            tokio::select! {
                _ = alarm.changed() => {}
                _ = tokio::time::sleep(crate::flow::POLL), if congested => {}
                r = std::future::poll_fn(|cx| rd.poll_read_into(cx, &mut rb)), if can_read => match r {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        rb.filled(n);
                        self.reg.entry.recv_oct.fetch_add(n as u64, Relaxed);
                        self.last_read = Instant::now();
                    }
                },
                _ = ticker.tick() => {
                    if !self.on_tick(deadline) {
                        return;
                    }
                }
                _ = self.out.resume.notified() => {
                    for ch in self.channels.values() {
                        ch.dispatch();
                    }
                }
                _ = self.out.writer_done.notified() => return,
                // The store synced what some confirms waited for: the flush above sends them.
                _ = self.synced.notified() => {}
                // A vhost or user was deleted: close if it is ours (as RabbitMQ, 320).
                _ = kicks.changed() => {
                    // rabbit_reader: `{shutdown, Explanation}` closes with
                    // connection_forced and the explanation as the text.
                    let reason = self.reg.entry.take_close_request().or_else(|| self.deleted_under_us());
                    if let Some(reason) = reason {
                        self.close_with(AmqpError {
                            force_connection: true,
                            ..AmqpError::new(ReplyCode::ConnectionForced, reason)
                        });
                    }
                }
                _ = shutdown.changed() => {
                    if matches!(self.phase, Phase::Closing(_) | Phase::Closed(_)) {
                        return;
                    }
                    self.close_with(AmqpError {
                        force_connection: true,
                        ..AmqpError::new(ReplyCode::ConnectionForced, "broker forced connection closure with reason 'shutdown'")
                    });
                }
            }
        }
    }

    /// Why the connection must close because its vhost or user was deleted (RabbitMQ's
    /// `rabbit_connection_tracking` texts), if it must.
    fn deleted_under_us(&self) -> Option<String> {
        if let Some(ctx) = self.ctx.as_ref() {
            if ctx.vhost.is_deleted() {
                return Some(format!("vhost '{}' is deleted", ctx.vhost.name()));
            }
        }
        let user = self.user.as_ref()?;
        self.server
            .broker
            .access()
            .user(&user.name)
            .is_none()
            .then(|| format!("user '{}' is deleted", user.name))
    }

    /// The consumer owners (channels) of this connection that consume: a queue only they
    /// consume from never holds this connection back (it would wait for itself).
    fn own_consumers(&self) -> Vec<u64> {
        self.channels
            .values()
            .filter(|c| !c.consumers.is_empty())
            .map(|c| c.shared.uid)
            .collect()
    }

    /// Enters or leaves the blocked state of the memory and disk alarms, telling clients that
    /// asked (the reason names the alarm, as RabbitMQ's).
    fn set_blocked(&mut self, blocked: bool) {
        if blocked == self.blocked {
            return;
        }
        self.blocked = blocked;
        let state = if blocked {
            ConnState::Blocked
        } else {
            ConnState::Running
        };
        self.reg.entry.update(|d| d.state = state);
        if !blocked {
            // Heartbeats queued while we were not reading count from now.
            self.last_read = Instant::now();
        }
        if self.blocked_notify {
            let method = if blocked {
                Method::ConnectionBlocked(amqp_wire::ConnectionBlocked {
                    reason: ShortString::from_static(self.server.alarm_causes.reason()),
                })
            } else {
                Method::ConnectionUnblocked(amqp_wire::ConnectionUnblocked {})
            };
            self.send(0, &method);
        }
    }

    fn tick_period(&self) -> Duration {
        match self.phase {
            Phase::Open if self.heartbeat > 0 => {
                Duration::from_millis(u64::from(self.heartbeat) * 500).max(Duration::from_secs(1))
            }
            Phase::Open => Duration::from_secs(30),
            _ => Duration::from_secs(1),
        }
    }

    /// Timers: handshake deadline, close-ok deadline, heartbeats both ways. False ends the
    /// connection.
    fn on_tick(&mut self, handshake_deadline: Instant) -> bool {
        let now = Instant::now();
        match self.phase {
            Phase::Closing(deadline) | Phase::Closed(deadline) => now < deadline,
            Phase::AwaitStartOk | Phase::AwaitTuneOk | Phase::AwaitOpen => {
                if now >= handshake_deadline {
                    tracing::info!(peer = %self.peer, "handshake timed out");
                    return false;
                }
                true
            }
            Phase::Open if self.heartbeat > 0 => {
                let hb = Duration::from_secs(u64::from(self.heartbeat));
                // Two missed heartbeats: the peer is gone (as RabbitMQ decides).
                // While blocked we do not read, so the client's heartbeats wait in the socket.
                if !self.blocked && !self.flow_paused && now.duration_since(self.last_read) > hb * 2
                {
                    tracing::info!(peer = %self.peer, heartbeat = self.heartbeat, "missed heartbeats from client, closing");
                    return false;
                }
                if self.out.idle_ms() >= u64::from(self.heartbeat) * 1000 / 2 {
                    self.out.send(amqp_wire::encode_heartbeat);
                }
                true
            }
            _ => true,
        }
    }

    fn send(&self, channel: u16, method: &Method) {
        self.out.send(|b| encode_method_frame(channel, method, b));
    }

    fn handle_frame(&mut self, frame: Frame) -> AmqpResult {
        if let Phase::Closing(deadline) | Phase::Closed(deadline) = self.phase {
            // AMQP 0-9-1 section 2.2.4: after close, discard everything but close / close-ok.
            // As RabbitMQ (rabbit_reader `handle_method0` in the closed state): close-ok ends
            // the connection, a close (ours and the client's crossed) is answered with close-ok
            // and we wait for the client to hang up.
            match frame {
                Frame::Method {
                    method: Method::ConnectionCloseOk(_),
                    ..
                } => self.phase = Phase::Done,
                Frame::Method {
                    method: Method::ConnectionClose(_),
                    ..
                } => {
                    self.send(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
                    self.phase = Phase::Closed(deadline);
                }
                _ => {}
            }
            return Ok(());
        }
        match frame {
            Frame::Heartbeat { channel: 0 } => Ok(()),
            Frame::Heartbeat { channel } => Err(AmqpError::new(
                ReplyCode::FrameError,
                format!("heartbeat frame on channel {channel}"),
            )),
            Frame::Method { channel: 0, method } => self.handle_connection_method(method),
            Frame::Method { channel, method } => {
                if method.class_id() == 10 {
                    return Err(AmqpError::new(
                        ReplyCode::CommandInvalid,
                        format!("{} on channel {channel}", method.name()),
                    )
                    .on(&method));
                }
                self.handle_channel_frame(channel, Frame::Method { channel, method })
            }
            Frame::Header { channel: 0, .. } | Frame::Body { channel: 0, .. } => Err(
                AmqpError::new(ReplyCode::UnexpectedFrame, "content frame on channel 0"),
            ),
            other => self.handle_channel_frame(other.channel(), other),
        }
    }

    fn handle_channel_frame(&mut self, number: u16, frame: Frame) -> AmqpResult {
        if let (Some(ctx), Frame::Method { .. }) = (self.ctx.as_mut(), &frame) {
            // Permissions changed since they were compiled: recompile before this method
            // (one atomic load otherwise).
            Authz::refresh(&mut ctx.authz, ctx.broker.access());
        }
        let Some(ctx) = self.ctx.as_ref() else {
            return Err(AmqpError::new(
                ReplyCode::ChannelError,
                "channel frame before connection.open",
            ));
        };
        if let Frame::Method { method, .. } = &frame {
            match method {
                Method::ChannelOpen(_) => {
                    // As RabbitMQ: channel_max bounds the number of open channels.
                    let open = self.channels.len();
                    if self.channel_max != 0 && open >= usize::from(self.channel_max) {
                        return Err(AmqpError::new(
                            ReplyCode::NotAllowed,
                            format!(
                                "number of channels opened ({open}) has reached the negotiated channel_max ({})",
                                self.channel_max
                            ),
                        )
                        .on(method));
                    }
                    if self.channels.contains_key(&number) {
                        return Err(AmqpError::new(
                            ReplyCode::ChannelError,
                            "second 'channel.open' seen",
                        )
                        .on(method));
                    }
                    // The user's max-channels, over all of the user's connections
                    // (rabbit_reader create_channel): 530, closing the connection.
                    let slot = self
                        .server
                        .limits
                        .open_channel(ctx.broker.access(), &ctx.limits_user)
                        .map_err(|e| AmqpError::limit(ReplyCode::NotAllowed, e))?;
                    let mut ch = Box::new(Channel::new(number, ctx));
                    ch.slot = Some(slot);
                    ch.shared.send(&Method::ChannelOpenOk(ChannelOpenOk {}));
                    self.reg
                        .entry
                        .add_channel(&self.server.registry, Arc::clone(&ch.shared) as _);
                    self.channels.insert(number, ch);
                    return Ok(());
                }
                Method::ChannelClose(_) => {
                    if let Some(mut ch) = self.channels.remove(&number) {
                        // Out of the user's channel count before close-ok goes out.
                        ch.slot = None;
                        self.reg.entry.remove_channel(&self.server.registry, number);
                        ch.close_by_client(ctx);
                        return Ok(());
                    }
                }
                Method::ChannelCloseOk(_) => {
                    if self.channels.get(&number).is_some_and(|c| c.closing) {
                        self.channels.remove(&number);
                        self.reg.entry.remove_channel(&self.server.registry, number);
                        return Ok(());
                    }
                    // A close-ok that answers nothing (RabbitMQ: 503).
                    return Err(
                        AmqpError::new(ReplyCode::CommandInvalid, "unimplemented method")
                            .on(method),
                    );
                }
                _ => {}
            }
        }
        let Some(ch) = self.channels.get_mut(&number) else {
            return Err(AmqpError::new(
                ReplyCode::ChannelError,
                format!("expected 'channel.open' on channel {number}"),
            ));
        };
        if ch.closing {
            return Ok(());
        }
        let result = match frame {
            Frame::Method { method, .. } => ch.handle_method(ctx, method),
            Frame::Header {
                class_id,
                body_size,
                properties,
                ..
            } => {
                self.publisher = true;
                ch.handle_header(ctx, class_id, body_size, properties)
            }
            Frame::Body { payload, .. } => ch.handle_body(ctx, payload),
            Frame::Heartbeat { .. } => Ok(()),
        };
        match result {
            Err(e) if !e.is_connection_error() => {
                if e.logged {
                    tracing::debug!(peer = %self.peer, channel = number, code = e.code.code(), text = %e.text, "closing channel");
                } else {
                    tracing::info!(peer = %self.peer, channel = number, code = e.code.code(), text = %e.text, "closing channel");
                }
                ch.cleanup(ctx);
                ch.closing = true;
                ch.shared.send(&Method::ChannelClose(ChannelClose {
                    reply_code: e.code.code(),
                    reply_text: ShortString::from(truncate(&e.text)),
                    class_id: e.class_id,
                    method_id: e.method_id,
                }));
                Ok(())
            }
            other => other,
        }
    }

    /// Starts the close handshake with a connection exception.
    fn close_with(&mut self, e: AmqpError) {
        if matches!(
            self.phase,
            Phase::Closing(_) | Phase::Closed(_) | Phase::Done
        ) {
            return;
        }
        if e.logged {
            tracing::debug!(peer = %self.peer, code = e.code.code(), text = %e.text, "closing connection");
        } else {
            tracing::warn!(peer = %self.peer, code = e.code.code(), text = %e.text, "closing connection");
        }
        self.reg.entry.update(|d| d.state = ConnState::Closing);
        self.release();
        self.send(
            0,
            &Method::ConnectionClose(ConnectionClose {
                reply_code: e.code.code(),
                reply_text: ShortString::from(truncate(&e.text)),
                class_id: e.class_id,
                method_id: e.method_id,
            }),
        );
        self.phase = Phase::Closing(Instant::now() + CLOSE_TIMEOUT);
    }

    /// Gives back everything the connection holds: consumers, unacked messages, exclusive queues.
    fn release(&mut self) {
        // Out of the vhost's and user's counts before close-ok goes out: a client that
        // reconnects at once after it must find its place free.
        self._slots = None;
        let Some(ctx) = self.ctx.as_ref() else {
            return;
        };
        for (number, mut ch) in self.channels.drain() {
            self.reg.entry.remove_channel(&self.server.registry, number);
            ch.cleanup(ctx);
        }
        ctx.vhost.remove_exclusive_queues(self.id);
    }
}

/// Reply texts are short strings: at most 255 bytes, cut at a character boundary.
fn truncate(s: &str) -> &str {
    if s.len() <= 255 {
        return s;
    }
    let mut end = 255;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
