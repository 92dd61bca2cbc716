//! One AMQP connection: the handshake, the frame loop, heartbeats and the close handshake
//! (the channel-0 methods, `connection.start` to `connection.close-ok`, are in
//! `connection/handshake.rs`; the socket in `conn_io.rs`, shared with MQTT).
//!
//! One task per connection reads, handles and writes, as MQTT's: it reads as much as the
//! socket has, handles every complete frame in the buffer, flushes per-channel work (coalesced
//! publisher confirms, queue dispatch after acks), then writes the outbound buffer itself
//! ([`Outbound`]: replies, and deliveries other tasks encoded into it). It waits for the
//! socket and for [`Outbound::notified`] only, so that an idle connection is small:
//!
//! - deliveries from publishers' tasks, the store's sync (confirms to send), an operator's
//!   close, a deleted vhost or user, the broker's shutdown all wake it through its
//!   `Outbound`, and it looks at each at its next turn;
//! - its timers (the handshake's deadline, heartbeats, the close handshake's bound) are one
//!   deadline in its `Outbound` that the server's 200 ms timer sweeps (`Registry::
//!   sweep_keepalive`), as MQTT's keep-alive: no timer in the task;
//! - the memory alarm's wake-up and publisher flow control's polling timer exist only for a
//!   connection that has published, boxed.

// Read barrier (helper readwrites): a missed lookup waits for the node to catch up.
mod barrier;
mod channels;
mod handshake;

use super::channel::ConnCtx;
use super::error::{AmqpError, AmqpResult};
use crate::conn_io::{Io, IoEvent};
use crate::limits::ConnectionSlots;
use crate::outbound::Outbound;
use crate::readbuf::ReadBuf;
use crate::registry::{ConnState, Protocol, Registered};
use crate::transport::{PeerInfo, Transport};
use crate::ServerState;
use amqp_wire::{
    decode_frame, encode_method_frame, ConnectionClose, ConnectionCloseOk, Frame, Method,
    ReplyCode, ShortString, PROTOCOL_HEADER,
};
use bytes::{Buf, Bytes, BytesMut};
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{sleep, Instant, Sleep};

/// How long we wait for `connection.close-ok` after sending `connection.close`, and for our
/// last frames to be written once the connection ends.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(3);

/// The AMQP 0-9 protocol header. RabbitMQ serves it as 0-9-1 (rabbit_reader, `handshake` /
/// `version_negotiation`: "This is the protocol header for 0-9, which we can safely treat as
/// though it were 0-9-1"), and so do we; connection.start says 0-9 either way.
const PROTOCOL_HEADER_0_9: [u8; 8] = *b"AMQP\x01\x01\x00\x09";

/// Heartbeat checks (every half heartbeat interval) that may pass without a byte from the
/// client before it is given up: two whole intervals, as RabbitMQ (rabbit_heartbeat's
/// receiver checks every interval and gives up after two checks without data; so do we at
/// twice the rate, between 2 and 2.5 intervals after the last byte instead of 2 and 3).
const MISSED_CHECKS: u8 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the 8-byte protocol header.
    AwaitHeader,
    AwaitStartOk,
    AwaitTuneOk,
    AwaitOpen,
    Open,
    /// We sent connection.close and wait for close-ok until the deadline.
    Closing,
    /// We sent connection.close-ok: everything the client still sends is read and discarded
    /// until it closes its socket (or sends close-ok, or the deadline passes). RabbitMQ does
    /// the same in its `closed` state (rabbit_reader `close_connection`, `handle_frame` when
    /// `?IS_STOPPING`): a client that closes right after a burst of publishes may still be
    /// flushing them (amqplib sends channel 0's close ahead of other channels' buffered
    /// frames), and closing our socket under those writes would reset the connection, so the
    /// client would see ECONNRESET / EPIPE, or lose our close-ok.
    Closed,
    Done,
}

struct Connection {
    server: Arc<ServerState>,
    out: Arc<Outbound>,
    phase: Phase,
    frame_max: u32,
    channel_max: u16,
    heartbeat: u16,
    /// The heartbeat receiver: the bytes read at its last check (`recv_oct`), and the checks
    /// since without any.
    hb_seen: u64,
    hb_missed: u8,
    cancel_notify: bool,
    auth_failure_close: bool,
    /// The client understands connection.blocked / unblocked.
    blocked_notify: bool,
    /// The connection has published: the memory alarm blocks it.
    publisher: bool,
    /// Reading is paused by the memory alarm.
    blocked: bool,
    /// The broker's shutdown was seen (and the close started).
    shutdown_seen: bool,
    /// Publisher flow control (`crate::flow`): queues this connection fills faster than
    /// they drain; reading is paused while any holds it back (`flow_paused`).
    /// Boxed, created when the connection's first publishes reached queues: most
    /// connections never publish.
    flow: Option<Box<crate::flow::PublishFlow>>,
    flow_paused: bool,
    /// The access-control generation last looked at (see [`Connection::deleted_under_us`]).
    access_generation: u64,
    ctx: Option<ConnCtx>,
    /// A channel's state is boxed, and created at its first use (`OpenChannel`): a map
    /// allocates room for several entries, and most channels of an idle connection do nothing.
    channels: channels::Channels,
    /// This connection's place in its vhost's and user's connection counts.
    _slots: Option<ConnectionSlots>,
    /// Who logged in (set by `connection.start-ok`), shared with the channels' context.
    user: Option<Arc<str>>,
    /// A topology change proposed to the cluster (`amqp/replicated.rs`): while it is
    /// undecided, no frame is read or handled, so the client's methods keep their order.
    meta_wait: Option<crate::amqp::replicated::MetaWait>,
    /// Read barrier (`connection/barrier.rs`): the frame to handle again once `meta_wait` (the
    /// barrier) ends, and whether the frame being handled is that second try.
    retry: Option<Box<Frame>>,
    retrying: bool,
    /// The connection's entry in the registry (listed while it lives): its id, peer and TLS
    /// details too.
    reg: Registered,
}

/// Serves one accepted socket until it closes.
///
/// Not an `async fn`: its future would keep a second copy of the arguments. The future's size
/// is what every connection costs while idle, so it holds only the socket, the connection's
/// state and the frame loop's future.
pub fn serve(
    stream: Transport,
    peer: PeerInfo,
    server: Arc<ServerState>,
) -> impl Future<Output = ()> + Send {
    stream.set_nodelay();
    let out = Arc::new(Outbound::new());
    let id = server.broker.next_id();
    let reg = server.registry.register(id, Protocol::Amqp091, &peer, &out);
    // The whole handshake, from the protocol header to connection.open, within this.
    out.set_deadline(Some(server.config.handshake_timeout));
    let mut conn = Connection {
        reg,
        frame_max: server.config.frame_max,
        channel_max: server.config.channel_max,
        heartbeat: 0,
        hb_seen: 0,
        hb_missed: 0,
        access_generation: server.broker.access().generation(),
        server,
        out: Arc::clone(&out),
        phase: Phase::AwaitHeader,
        cancel_notify: false,
        auth_failure_close: false,
        blocked_notify: false,
        publisher: false,
        blocked: false,
        shutdown_seen: false,
        flow: None,
        flow_paused: false,
        ctx: None,
        channels: channels::Channels::default(),
        _slots: None,
        user: None,
        meta_wait: None,
        retry: None,
        retrying: false,
    };
    let mut io = Io {
        stream,
        rb: ReadBuf::new(),
        out,
        pending: BytesMut::new(),
    };
    // Used in place: moved into locals, they would take their room in the future twice.
    async move {
        conn.run(&mut io).await;
        conn.release();
        Box::pin(io.flush_and_shutdown(CLOSE_TIMEOUT)).await;
        tracing::debug!(peer = %conn.peer(), "connection ended");
    }
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

impl Connection {
    /// The client's address.
    fn peer(&self) -> SocketAddr {
        self.reg.entry.peer()
    }

    /// The frame loop, until the connection ends. Not an `async fn`, which would keep a second
    /// copy of its two references in every connection's task (see [`serve`]).
    #[allow(clippy::manual_async_fn)]
    fn run<'a>(&'a mut self, io: &'a mut Io) -> impl Future<Output = ()> + Send + 'a {
        async move {
            // The memory alarm matters to publishers only: once the client has published, the
            // loop also waits for the alarm to change, in a future of its own, boxed so that
            // the many connections that never publish do not carry it.
            let mut alarm_changed: Option<Pin<Box<dyn Future<Output = ()> + Send>>> = None;
            // Publisher flow control's polling timer, boxed for the same reason; only while
            // paused.
            let mut flow_timer: Option<Pin<Box<Sleep>>> = None;
            loop {
                let mut handled = false;
                if self.phase == Phase::AwaitHeader && !self.read_header(&mut io.rb.buf) {
                    return;
                }
                while self.phase != Phase::AwaitHeader && self.meta_wait.is_none() {
                    match decode_frame(&mut io.rb.buf, self.frame_max) {
                        Ok(Some(frame)) => {
                            handled = true;
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
                self.flush_channels();
                // An operator's close, a deleted vhost or user, the broker's shutdown: each
                // woke us (through `out`), and is looked at here at every turn, so that no
                // wake-up can be missed.
                if let Some(reason) = self.close_reason() {
                    // rabbit_reader: `{shutdown, Explanation}` closes with
                    // connection_forced and the explanation as the text.
                    self.close_with(AmqpError {
                        force_connection: true,
                        ..AmqpError::new(ReplyCode::ConnectionForced, reason)
                    });
                }
                if !self.shutdown_seen && *self.server.shutdown.borrow() {
                    self.shutdown_seen = true;
                    if matches!(self.phase, Phase::Closing | Phase::Closed) {
                        return;
                    }
                    self.close_with(AmqpError {
                        force_connection: true,
                        ..AmqpError::new(
                            ReplyCode::ConnectionForced,
                            "broker forced connection closure with reason 'shutdown'",
                        )
                    });
                }
                // The deadline the server's timer found passed: see what was due.
                if self.out.deadline_expired() && !self.on_deadline() {
                    return;
                }
                // Write what this turn and other tasks' deliveries buffered, as far as the
                // socket takes it now.
                let writing = match poll_fn(|cx| Poll::Ready(io.flush(cx))).await {
                    Ok(f) => {
                        if f.resume {
                            // Room came back for consumers that were refused it.
                            self.dispatch_all();
                        }
                        !f.done
                    }
                    Err(e) => {
                        tracing::debug!(peer = %self.peer(), error = %e, "write failed");
                        return;
                    }
                };
                // Everything read is decoded: wait for the next frame without a buffer.
                io.rb.release();
                if handled {
                    // This turn's deliveries woke other connections' tasks: let them run
                    // before this publisher's next turn (see `mqtt/connection.rs`).
                    tokio::task::yield_now().await;
                }
                // A publisher waits while the memory alarm is on (connection.blocked), and a
                // client that sends faster than it reads our replies waits until they drain.
                // Once closing, what the client sends is discarded, and nothing more is said
                // about the alarm.
                let paused =
                    *self.server.alarm.borrow() && self.publisher && self.phase == Phase::Open;
                if self.phase == Phase::Open {
                    self.set_blocked(paused);
                }
                if self.publisher && alarm_changed.is_none() {
                    // Subscribed before the flag is read again at the next turn, so no change
                    // is missed.
                    let mut alarm = self.server.alarm.subscribe();
                    alarm_changed = Some(Box::pin(async move {
                        let _ = alarm.changed().await;
                    }));
                }
                // Publisher flow control: not while a queue this connection fills holds it back.
                let congested = self.phase == Phase::Open && self.flow.is_some() && {
                    let own = self.own_consumers();
                    let marks = &self.server.flow;
                    self.flow.as_mut().is_some_and(|f| f.must_wait(marks, &own))
                };
                match (congested, flow_timer.as_mut()) {
                    (true, Some(t)) => t.as_mut().reset(Instant::now() + crate::flow::POLL),
                    (true, None) => flow_timer = Some(Box::pin(sleep(crate::flow::POLL))),
                    (false, _) => flow_timer = None,
                }
                self.flow_paused = congested;
                let can_read =
                    self.out.has_room() && !paused && !congested && self.meta_wait.is_none();
                tokio::select! {
                    _ = poll_fn(|cx| poll_boxed(&mut alarm_changed, cx)), if alarm_changed.is_some() => {
                        alarm_changed = None;
                    }
                    _ = poll_fn(|cx| poll_boxed(&mut flow_timer, cx)), if congested => {}
                    done = poll_fn(|cx| poll_boxed(&mut self.meta_wait, cx)), if self.meta_wait.is_some() => {
                        self.meta_wait = None;
                        self.finish_meta(done);
                    }
                    // Writable: the flush above continues the write at the next turn.
                    r = poll_fn(|cx| io.poll_io(cx, can_read, writing)), if can_read || writing => match r {
                        Err(_) | Ok(IoEvent::Read(0)) => return,
                        Ok(IoEvent::Read(n)) => {
                            io.rb.filled(n);
                            self.reg.entry.recv_oct.fetch_add(n as u64, Relaxed);
                        }
                        Ok(IoEvent::Writable { resume }) => {
                            if resume {
                                self.dispatch_all();
                            }
                        }
                    },
                    // Bytes to write, the store's sync, an operator's close, a deletion, the
                    // shutdown, the deadline: the next turn sees to them.
                    _ = self.out.notified() => {}
                }
            }
        }
    }

    /// Reads the protocol header once 8 bytes are there, and answers it; false ends the
    /// connection.
    fn read_header(&mut self, buf: &mut BytesMut) -> bool {
        if buf.len() < 8 {
            return true;
        }
        let header = &buf[..8];
        if header != PROTOCOL_HEADER && header != PROTOCOL_HEADER_0_9 {
            // AMQP 0-9-1 section 4.2.2: answer a bad header with ours and close. RabbitMQ
            // 3.x answers every version it refuses with the 0-9-1 header (rabbit_reader
            // `refuse_connection/2`); 4.x still does for `AMQP 0 0 9 x` and otherwise
            // offers AMQP 1.0, which Pigeon does not speak. The 0-8 headers (`AMQP 1 1 8 0`,
            // `AMQP 1 1 9 1`) that RabbitMQ 3.x served with its 0-8 framing are refused
            // as RabbitMQ 4.x refuses them.
            tracing::info!(peer = %self.peer(), header = ?Bytes::copy_from_slice(header), "bad protocol header");
            self.out.send(|b| b.extend_from_slice(&PROTOCOL_HEADER));
            return false;
        }
        buf.advance(8);
        self.phase = Phase::AwaitStartOk;
        self.send_start();
        true
    }

    /// Why the connection must close now: an operator asked (`close_connection`), or its
    /// vhost or user was deleted.
    fn close_reason(&mut self) -> Option<String> {
        if matches!(self.phase, Phase::Closing | Phase::Closed | Phase::Done) {
            return None;
        }
        self.reg
            .entry
            .take_close_request()
            .or_else(|| self.deleted_under_us())
    }

    /// Why the connection must close because its vhost or user was deleted (RabbitMQ's
    /// `rabbit_connection_tracking` texts), if it must. The user is looked up only when
    /// access control changed.
    fn deleted_under_us(&mut self) -> Option<String> {
        let ctx = self.ctx.as_ref()?;
        if ctx.vhost.is_deleted() {
            return Some(format!("vhost '{}' is deleted", ctx.vhost.name()));
        }
        let access = self.server.broker.access();
        let generation = access.generation();
        if generation == self.access_generation {
            return None;
        }
        self.access_generation = generation;
        let user = self.user.as_ref()?;
        access
            .user(user)
            .is_none()
            .then(|| format!("user '{user}' is deleted"))
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
            self.hb_missed = 0;
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

    /// How often heartbeats are looked at: every half interval, as RabbitMQ's sender
    /// (rabbit_heartbeat `start_heartbeat_sender`: "so that we don't end up waiting for nearly
    /// 2 * TimeoutSec before sending a heartbeat"); none without heartbeats.
    fn heartbeat_period(&self) -> Option<Duration> {
        (self.heartbeat > 0).then(|| Duration::from_millis(u64::from(self.heartbeat) * 500))
    }

    /// The deadline in `out` passed (the server's timer woke us): the handshake or the close
    /// handshake took too long, or heartbeats are due both ways. False ends the connection.
    fn on_deadline(&mut self) -> bool {
        match self.phase {
            Phase::Closing | Phase::Closed | Phase::Done => false,
            Phase::AwaitHeader | Phase::AwaitStartOk | Phase::AwaitTuneOk | Phase::AwaitOpen => {
                tracing::info!(peer = %self.peer(), "handshake timed out");
                false
            }
            Phase::Open => {
                let Some(period) = self.heartbeat_period() else {
                    self.out.set_deadline(None);
                    return true;
                };
                // The receiver, as RabbitMQ's: the peer is gone when nothing came for two
                // intervals. While blocked we do not read, so the client's heartbeats wait in
                // the socket: not counted (RabbitMQ pauses its receiver, `pause_monitor`).
                let seen = self.reg.entry.recv_oct.load(Relaxed);
                if seen != self.hb_seen
                    || self.blocked
                    || self.flow_paused
                    || self.meta_wait.is_some()
                {
                    self.hb_seen = seen;
                    self.hb_missed = 0;
                } else {
                    self.hb_missed += 1;
                    if self.hb_missed >= MISSED_CHECKS {
                        tracing::info!(peer = %self.peer(), heartbeat = self.heartbeat, "missed heartbeats from client, closing");
                        return false;
                    }
                }
                // The sender: a heartbeat when nothing was written for half an interval.
                if self.out.idle_ms() >= u64::from(self.heartbeat) * 500 {
                    self.out.send(amqp_wire::encode_heartbeat);
                }
                self.out.set_deadline(Some(period));
                true
            }
        }
    }

    fn send(&self, channel: u16, method: &Method) {
        self.out.send(|b| encode_method_frame(channel, method, b));
    }

    fn handle_frame(&mut self, frame: Frame) -> AmqpResult {
        if let Phase::Closing | Phase::Closed = self.phase {
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
                    // The deadline of the close handshake stays.
                    self.send(0, &Method::ConnectionCloseOk(ConnectionCloseOk {}));
                    self.phase = Phase::Closed;
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
            Frame::Method { channel: 0, method } => {
                if self.connection_method_waits(&method) {
                    self.wait_for_barrier(Frame::Method { channel: 0, method });
                    return Ok(());
                }
                self.handle_connection_method(method)
            }
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

    /// Starts the close handshake with a connection exception.
    fn close_with(&mut self, e: AmqpError) {
        if matches!(self.phase, Phase::Closing | Phase::Closed | Phase::Done) {
            return;
        }
        if e.logged {
            tracing::debug!(peer = %self.peer(), code = e.code.code(), text = %e.text, "closing connection");
        } else {
            tracing::warn!(peer = %self.peer(), code = e.code.code(), text = %e.text, "closing connection");
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
        self.phase = Phase::Closing;
        self.out.set_deadline(Some(CLOSE_TIMEOUT));
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
        ctx.vhost.remove_exclusive_queues(self.reg.entry.id);
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpStream;

    /// What an idle AMQP connection's task costs (docs/performance.md, "Idle connections":
    /// tokio allocates the task cell in 128-byte steps, the future plus 104 bytes and the
    /// listener's wrapper).
    #[tokio::test]
    async fn the_connection_future_stays_small() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let state = crate::tests_support::state();
        let fut = serve(Transport::Tcp(stream), PeerInfo::plain(peer), state);
        let size = std::mem::size_of_val(&fut);
        println!(
            "AMQP connection future: {size} bytes; Io {}, Connection {}, Channel {}, ChannelShared {}, ConnCtx {}",
            std::mem::size_of::<Io>(),
            std::mem::size_of::<Connection>(),
            std::mem::size_of::<super::super::channel::Channel>(),
            std::mem::size_of::<super::super::delivery::ChannelShared>(),
            std::mem::size_of::<ConnCtx>(),
        );
        assert!(
            size <= 1024,
            "the AMQP connection future grew to {size} bytes"
        );
        drop(client);
    }
}
