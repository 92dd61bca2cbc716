//! One stream-protocol connection: a task reading frames and answering them, and a writer task
//! draining the connection's [`Outbound`] buffer (replies, confirms and deliveries all go
//! there).
//!
//! The reading task also wakes for what happens elsewhere, through one [`Waker`]: the store's
//! flusher synced an epoch (confirms are due), a stream this connection reads or writes
//! committed new chunks or was deleted (`StreamWatcher`), or the writer drained the backlog
//! (`Outbound::resume`: deliveries held back for lack of room go on).
//!
//! Errors follow `rabbit_stream_reader`: before `Open` succeeds, anything unexpected (a
//! command that is not part of the handshake, an undecodable frame, a frame over the 8 KiB
//! initial limit) closes the socket without a word; after it, an undecodable or unknown frame
//! gets a `Close` with 0x0d (unknown frame), a frame over `max_message_size` (and the negotiated maximum) a `Close`
//! with 0x0e (frame too large), and the connection waits for the client's close response.

use super::publish::{PendingConfirm, Publisher};
use super::subscribe::Subscription;
use super::view::ConnView;
use crate::auth::AuthenticatedUser;
use crate::authz::Authz;
use crate::limits::ConnectionSlots;
use crate::outbound::Outbound;
use crate::registry::{ConnState, Protocol, Registered};
use crate::transport::{PeerInfo, ReadHalf, Transport};
use crate::ServerState;
use bytes::BytesMut;
use pigeon_broker::queue::stream::StreamWatcher;
use pigeon_broker::VHost;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use stream_wire::{
    decode_frame, key, Close, Command, RawFrame, ResponseCode, WireError, INITIAL_FRAME_MAX,
};
use tokio::io::AsyncReadExt;
use tokio::sync::Notify;

/// How long the connection waits for the client's answer to a `Close` it sent.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Wakes the connection task: held by the streams it watches (weakly) and by store callbacks.
#[derive(Default)]
pub(super) struct Waker(pub(super) Notify);

impl StreamWatcher for Waker {
    fn wake(&self) {
        self.0.notify_one();
    }
}

/// How far the handshake went (`rabbit_stream_reader`'s `connection_step`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Step {
    /// Connected; peer properties and SASL may follow.
    Start,
    /// SASL succeeded; the server sent `Tune`.
    Authenticated,
    /// The client answered `Tune`.
    Tuned,
    /// `Open` succeeded: every command is allowed.
    Open,
}

/// What a handler wants done with the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Next {
    /// Read on.
    Go,
    /// Close the socket once what is buffered is written.
    Hangup,
}

/// One connection's state, owned by its task.
pub(super) struct Conn {
    pub(super) id: u64,
    pub(super) state: Arc<ServerState>,
    pub(super) out: Arc<Outbound>,
    pub(super) peer: PeerInfo,
    pub(super) step: Step,
    pub(super) user: Option<AuthenticatedUser>,
    pub(super) vhost: Option<Arc<VHost>>,
    pub(super) authz: Option<Arc<Authz>>,
    /// Its places in its vhost's and user's connection counts (`max-connections`), from `Open`.
    pub(super) slots: Option<ConnectionSlots>,
    /// Largest frame accepted: 8 KiB until tuned, then the negotiated `FrameMax`.
    pub(super) frame_max: u32,
    /// Negotiated heartbeat in seconds (0: none).
    pub(super) heartbeat: u32,
    /// The client announced `Deliver` v2 in `ExchangeCommandVersions`.
    pub(super) deliver_v2: bool,
    pub(super) waker: Arc<Waker>,
    /// Streams whose watcher list holds [`Conn::waker`].
    pub(super) watched: HashSet<String>,
    pub(super) publishers: HashMap<u8, Publisher>,
    pub(super) subscriptions: HashMap<u8, Subscription>,
    /// Publishes waiting for their store epoch to be synced, oldest first.
    pub(super) confirms: VecDeque<PendingConfirm>,
    /// The highest epoch a store callback will wake this connection for (one callback per
    /// epoch, however many frames wait for it).
    pub(super) awaited_epoch: u64,
    /// The last correlation id of a request this server sent (`ConsumerUpdate`).
    pub(super) next_correlation: u32,
    /// Set once this side sent `Close`: only the client's close response is awaited.
    closing_since: Option<Instant>,
    /// The connection's entry in the registry (`/api/connections`, counts, operator close).
    pub(super) reg: Registered,
    /// Its publishers and subscriptions as the management API reads them (`view.rs`).
    pub(super) view: Arc<ConnView>,
    connected_at: Instant,
    last_read: Instant,
}

/// Serves the connection until it closes.
pub(super) async fn run(transport: Transport, peer: PeerInfo, state: Arc<ServerState>) {
    transport.set_nodelay();
    let (mut rd, wr) = transport.into_split();
    let out = Arc::new(Outbound::new());
    let mut writer = {
        let out = Arc::clone(&out);
        tokio::spawn(async move { out.run_writer(wr).await })
    };
    let now = Instant::now();
    let id = state.broker.next_id();
    let reg = state.registry.register(id, Protocol::Stream, &peer, &out);
    let view = Arc::new(ConnView::new(Arc::clone(&reg.entry)));
    state.stream_views.add(Arc::clone(&view));
    let mut conn = Conn {
        id,
        reg,
        view,
        state,
        out: Arc::clone(&out),
        peer,
        step: Step::Start,
        user: None,
        vhost: None,
        authz: None,
        slots: None,
        frame_max: INITIAL_FRAME_MAX,
        heartbeat: 0,
        deliver_v2: false,
        waker: Arc::default(),
        watched: HashSet::new(),
        publishers: HashMap::new(),
        subscriptions: HashMap::new(),
        confirms: VecDeque::new(),
        awaited_epoch: 0,
        next_correlation: 0,
        closing_since: None,
        connected_at: now,
        last_read: now,
    };
    tracing::debug!(conn = conn.id, peer = %conn.peer.addr, "stream connection accepted");
    conn.serve(&mut rd).await;
    conn.leave_all_groups();
    conn.state.stream_views.remove(conn.id);
    tracing::debug!(conn = conn.id, peer = %conn.peer.addr, "stream connection closed");
    out.close();
    // A client that stopped reading cannot hold the task forever.
    if tokio::time::timeout(CLOSE_GRACE, &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

impl Conn {
    async fn serve(&mut self, rd: &mut ReadHalf) {
        let mut buf = BytesMut::new();
        let mut shutdown = self.state.shutdown.clone();
        // Moved by `ServerState::close_connection` (and vhost or user deletion): an operator's
        // close takes effect at once, as `rabbit_stream_reader` stops on `{shutdown, _}`.
        let mut kicks = self.state.kicks.subscribe();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let waker = Arc::clone(&self.waker);
        let out = Arc::clone(&self.out);
        loop {
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(8192);
            }
            let next = tokio::select! {
                read = rd.read_buf(&mut buf) => match read {
                    Ok(0) | Err(_) => Next::Hangup,
                    Ok(n) => {
                        self.last_read = Instant::now();
                        self.reg.entry.recv_oct.fetch_add(n as u64, Ordering::Relaxed);
                        self.on_bytes(&mut buf)
                    }
                },
                _ = waker.0.notified() => self.on_wake(),
                _ = out.resume.notified() => {
                    self.deliver_all();
                    Next::Go
                }
                _ = tick.tick() => self.on_tick(),
                _ = kicks.changed() => self.on_close_request(),
                _ = shutdown.changed() => {
                    // rabbit_stream_reader on shutdown: a close request, then the socket goes.
                    self.next_correlation = self.next_correlation.wrapping_add(1);
                    self.send(Close {
                        correlation_id: self.next_correlation,
                        code: ResponseCode::Ok,
                        reason: "server shutdown".into(),
                    });
                    Next::Hangup
                }
            };
            if next == Next::Hangup {
                return;
            }
        }
    }

    /// The largest frame read from the client: before Open, the initial or negotiated
    /// maximum. Once open, frames over the negotiated maximum are read too, up to
    /// `max_message_size`: RabbitMQ 3.13 (and every release to 4.2) parses frames of any size
    /// after the handshake (`rabbit_stream_core:init(undefined)`), and clients rely on it:
    /// rstream's producer packs 100,000 small messages into 1.5 MB frames over a negotiated
    /// 1 MiB (its suite's `test_publishing_several_messages_different_streams`). The bound keeps
    /// one frame of a hostile client to the memory one AMQP message may take.
    fn inbound_limit(&self) -> u32 {
        if self.step == Step::Open {
            let cap = u32::try_from(self.state.config.max_message_size).unwrap_or(u32::MAX);
            self.frame_max.max(cap)
        } else {
            self.frame_max
        }
    }

    /// Decodes and handles every whole frame in `buf`.
    fn on_bytes(&mut self, buf: &mut BytesMut) -> Next {
        loop {
            let frame = match decode_frame(buf, self.inbound_limit()) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Next::Go,
                Err(e) => return self.wire_error(&e, true),
            };
            if self.on_frame(frame) == Next::Hangup {
                return Next::Hangup;
            }
        }
    }

    fn on_frame(&mut self, frame: RawFrame) -> Next {
        self.reg.entry.recv_cnt.fetch_add(1, Ordering::Relaxed);
        let command = match Command::decode(frame) {
            Ok(Command::Unknown { key, version, .. }) => {
                tracing::debug!(conn = self.id, key, version, "unknown stream command");
                return self.refuse_frame(ResponseCode::UnknownFrame, "unknown frame", false);
            }
            Ok(command) => command,
            Err(e) => return self.wire_error(&e, false),
        };
        if self.closing_since.is_some() {
            // Everything but the answer to our Close is ignored (rabbit_stream_reader's
            // `closing` state).
            return match command {
                Command::Response(r) if r.command == key::CLOSE => Next::Hangup,
                Command::Close(c) => self.client_close(&c),
                _ => Next::Go,
            };
        }
        if self.step != Step::Open {
            if !command.allowed_before_open() {
                // handle_frame_pre_auth: anything else closes the socket, unanswered.
                tracing::info!(conn = self.id, peer = %self.peer.addr, key = command.key(), "stream command before Open, closing");
                return Next::Hangup;
            }
            return self.pre_open(command);
        }
        self.post_open(command)
    }

    /// Commands of an open connection.
    fn post_open(&mut self, command: Command) -> Next {
        match command {
            Command::DeclarePublisher(c) => self.declare_publisher(c),
            Command::Publish(c) => self.publish(&c),
            Command::QueryPublisherSequence(c) => self.query_publisher_sequence(&c),
            Command::DeletePublisher(c) => self.delete_publisher(&c),
            Command::Subscribe(c) => self.subscribe(c),
            Command::Credit(c) => self.credit(&c),
            Command::StoreOffset(c) => self.store_offset(&c),
            Command::QueryOffset(c) => self.query_offset(&c),
            Command::Unsubscribe(c) => self.unsubscribe(&c),
            Command::Create(c) => self.create(&c),
            Command::Delete(c) => self.delete(&c),
            Command::Metadata(c) => self.metadata(&c),
            Command::Route(c) => self.route(&c),
            Command::Partitions(c) => self.partitions(&c),
            Command::ConsumerUpdateResponse(c) => self.consumer_update_response(&c),
            Command::ExchangeCommandVersions(c) => self.exchange_command_versions(&c),
            Command::StreamStats(c) => self.stream_stats(&c),
            Command::CreateSuperStream(c) => self.create_super_stream(&c),
            Command::DeleteSuperStream(c) => self.delete_super_stream(&c),
            Command::ResolveOffsetSpec(c) => self.resolve_offset_spec(&c),
            Command::Heartbeat(_) => Next::Go,
            Command::Close(c) => self.client_close(&c),
            // A stray close response (we sent no Close): nothing to do.
            Command::Response(r) if r.command == key::CLOSE => Next::Go,
            other => {
                tracing::debug!(
                    conn = self.id,
                    key = other.key(),
                    "unexpected stream command after Open"
                );
                self.refuse_frame(ResponseCode::UnknownFrame, "unknown frame", false)
            }
        }
    }

    /// The client closes: answered OK, then the socket goes.
    fn client_close(&mut self, c: &Close) -> Next {
        tracing::debug!(conn = self.id, code = c.code.code(), reason = %c.reason, "client closed the stream connection");
        self.respond(key::CLOSE, c.correlation_id, ResponseCode::Ok);
        Next::Hangup
    }

    /// A frame that cannot be decoded; `framing_lost`: the rest of the byte stream cannot be
    /// read either (its size was refused).
    fn wire_error(&mut self, e: &WireError, framing_lost: bool) -> Next {
        tracing::info!(conn = self.id, peer = %self.peer.addr, error = %e, "bad stream frame");
        self.refuse_frame(e.response_code(), e.close_reason(), framing_lost)
    }

    /// Before `Open`: the socket closes. After: a `Close` with `code`, then the client's answer
    /// is awaited (unless the framing is lost: then the socket closes after the `Close`).
    fn refuse_frame(&mut self, code: ResponseCode, reason: &str, framing_lost: bool) -> Next {
        if self.step != Step::Open {
            return Next::Hangup;
        }
        self.close_with(code, reason);
        if framing_lost {
            Next::Hangup
        } else {
            Next::Go
        }
    }

    /// Sends a `Close` request and waits (at most [`CLOSE_GRACE`]) for the client's answer.
    pub(super) fn close_with(&mut self, code: ResponseCode, reason: &str) {
        if self.closing_since.is_some() {
            return;
        }
        // A request of the server: its own correlation ids (RabbitMQ's first is 1).
        self.next_correlation = self.next_correlation.wrapping_add(1);
        self.send(Close {
            correlation_id: self.next_correlation,
            code,
            reason: reason.into(),
        });
        self.closing_since = Some(Instant::now());
    }

    /// Something to do: confirms synced, new chunks committed, a stream deleted.
    fn on_wake(&mut self) -> Next {
        self.flush_confirms();
        self.forget_deleted_streams();
        self.activate_promoted();
        self.deliver_all();
        Next::Go
    }

    /// Once a second: handshake timeout, heartbeats, the close grace.
    fn on_tick(&mut self) -> Next {
        let now = Instant::now();
        if let Some(since) = self.closing_since {
            if now.duration_since(since) > CLOSE_GRACE {
                return Next::Hangup;
            }
        }
        if self.on_close_request() == Next::Hangup {
            return Next::Hangup;
        }
        if self.step != Step::Open
            && now.duration_since(self.connected_at) > self.state.config.handshake_timeout
        {
            tracing::info!(conn = self.id, peer = %self.peer.addr, "stream handshake timed out");
            return Next::Hangup;
        }
        if self.heartbeat > 0 && self.step >= Step::Tuned {
            let period = u64::from(self.heartbeat) * 1000;
            if self.out.idle_ms() >= period {
                self.send(stream_wire::Heartbeat);
            }
            // rabbit_stream_reader: the client missed two heartbeats.
            if now.duration_since(self.last_read) > Duration::from_millis(2 * period) {
                tracing::info!(conn = self.id, peer = %self.peer.addr, heartbeat = self.heartbeat, "missed heartbeats from stream client, closing");
                return Next::Hangup;
            }
        }
        Next::Go
    }

    /// `rabbitmqctl close_connection` / the management API (rstream's
    /// `test_*_connection_broke*`, rabbitmq-stream-client's `client_drop_connection`): the
    /// socket closes, with no
    /// `Close` frame (rabbit_stream_reader's `{shutdown, Explanation}` call: `close/3` shuts
    /// the socket down; clients such as rabbitmq-stream-js-client fail on a server `Close`
    /// and report a closed connection for the socket).
    fn on_close_request(&mut self) -> Next {
        let Some(reason) = self.reg.entry.take_close_request() else {
            return Next::Go;
        };
        tracing::info!(conn = self.id, peer = %self.peer.addr, %reason, "forcing stream connection closing");
        self.reg.entry.update(|d| d.state = ConnState::Closing);
        Next::Hangup
    }

    /// Encodes `command` into the outbound buffer.
    pub(super) fn send(&self, command: impl Into<Command>) {
        let command = command.into();
        self.out.send(|buf| command.encode(buf));
    }

    /// Answers a request whose response carries only a code.
    pub(super) fn respond(&self, command: u16, correlation_id: u32, code: ResponseCode) {
        self.send(Command::Response(stream_wire::Response::new(
            command,
            correlation_id,
            code,
        )));
    }

    /// Makes sure the connection is woken when `stream` commits chunks or is deleted.
    pub(super) fn watch(&mut self, queue: &pigeon_broker::Queue) {
        if self.watched.insert(queue.name().to_string()) {
            let waker = Arc::clone(&self.waker) as Arc<dyn StreamWatcher>;
            queue.watch_stream(Arc::downgrade(&waker));
        }
    }
}
