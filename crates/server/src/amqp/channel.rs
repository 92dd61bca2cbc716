//! One AMQP channel: its state machine, content assembly and method dispatch.
//!
//! A channel is owned by its connection's task; only [`ChannelShared`] (tags, unacked messages,
//! credit) is touched from other tasks. Handlers for the exchange and queue classes live in
//! `topology.rs`, those of the basic, confirm and tx classes in `basic.rs`.

use super::codec::parse_expiration;
use super::delivery::{AmqpConsumer, ChannelShared, Unacked};
use super::error::{AmqpError, AmqpResult};
use crate::authz::Authz;
use crate::outbound::Outbound;
use amqp_wire::{ChannelCloseOk, ChannelFlowOk, Method, ReplyCode, ShortString};
use bytes::{Bytes, BytesMut};
use pigeon_broker::queue::quorum::ReplicaConfirm;
use pigeon_broker::{Broker, Exchange, Message, Queue, QueuedMessage, VHost};
use pigeon_store::Store;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// What a channel's handlers need from their connection.
pub struct ConnCtx {
    /// The broker.
    pub broker: Arc<Broker>,
    /// The vhost the connection opened.
    pub vhost: Arc<VHost>,
    /// Broker-wide id of the connection (owner of its exclusive queues).
    pub conn_id: u64,
    /// The connection's outbound buffer.
    pub out: Arc<Outbound>,
    /// Negotiated frame_max.
    pub frame_max: u32,
    /// Largest body accepted.
    pub max_message_size: u64,
    /// The client understands a server-sent `basic.cancel`.
    pub cancel_notify: bool,
    /// The store, when persistent messages go to disk.
    pub store: Option<Arc<Store>>,
    /// Highest store epoch this connection asked to be woken for.
    pub wake_epoch: AtomicU64,
    /// The user's permissions in this vhost (recompiled by the connection when they change).
    pub authz: Arc<Authz>,
    /// This node of the cluster, when clustered: durable topology changes go through it
    /// (`replicated.rs`).
    pub cluster: Option<pigeon_cluster::Cluster>,
    /// The node's default queue type and its quorum queues without `[cluster]`
    /// (`cluster/quorum/single.rs`).
    pub(crate) declares: Arc<crate::cluster::quorum::single::Declares>,
    /// The user's name, for the channel limit.
    pub user: Arc<str>,
    /// The connection's message counters (its registry entry's).
    pub counters: Arc<crate::registry::ProtocolCounters>,
}

impl ConnCtx {
    /// The highest store epoch that is on disk (everything, without a store).
    pub fn synced_epoch(&self) -> u64 {
        self.store.as_ref().map_or(u64::MAX, |s| s.synced_epoch())
    }

    /// The epoch the store's next flush completes: what a write made now waits for.
    pub fn current_epoch(&self) -> u64 {
        self.store.as_ref().map_or(0, |s| s.current_epoch())
    }

    /// Asks to be woken (through the connection's outbound buffer, which its task waits on)
    /// once `epoch` is on disk.
    pub fn wake_when_synced(&self, epoch: u64) {
        let Some(store) = &self.store else {
            return;
        };
        if self.wake_epoch.fetch_max(epoch, Ordering::Relaxed) >= epoch {
            return;
        }
        let out = Arc::clone(&self.out);
        store.on_synced(epoch, Box::new(move |_| out.wake()));
    }
}

/// A `basic.publish` waiting for its content.
pub(super) struct Publish {
    pub exchange: Arc<Exchange>,
    pub routing_key: ShortString,
    pub mandatory: bool,
    /// Header frame received: (body size, raw properties).
    pub header: Option<(u64, Bytes)>,
    pub body: BytesMut,
}

/// A consumer of this channel.
pub(super) struct ConsumerRecord {
    pub queue: Arc<Queue>,
    pub sink: Arc<AmqpConsumer>,
}

/// Publisher-confirm bookkeeping (confirm.select).
///
/// Every publish waits in `waiting` with the store epoch that must be synced before it may be
/// confirmed (0 when nothing was written to disk), and, when it reached quorum queues, their
/// groups' commit (`ReplicaConfirm`). Confirms go out in order at the end of each
/// read batch, or when the store reports a sync: runs of acks as one `basic.ack multiple`.
#[derive(Default)]
pub(super) struct Confirms {
    /// Sequence number of the last publish.
    pub last_seq: u64,
    /// (seq, epoch, ack (else nack), quorum queues' commit) of publishes not confirmed yet,
    /// in order.
    pub waiting: VecDeque<(u64, u64, bool, Option<Arc<ReplicaConfirm>>)>,
    /// Highest sequence number confirmed.
    pub confirmed_upto: u64,
    /// (seq, its queues' home nodes) of publishes that reached queues homed on other nodes
    /// of the cluster (cluster/forward.rs), in order: confirmed once those nodes have them.
    pub remote: VecDeque<(u64, Arc<pigeon_broker::RemoteConfirm>)>,
}

/// An ack, nack or reject held back by a transaction.
pub(super) enum TxAck {
    Ack {
        tag: u64,
        multiple: bool,
    },
    Nack {
        tag: u64,
        multiple: bool,
        requeue: bool,
    },
}

/// Work held back by a transaction (tx.select) until commit.
#[derive(Default)]
pub(super) struct Tx {
    /// (exchange, message, mandatory, extra routing keys from `CC`/`BCC`).
    pub publishes: Vec<(Arc<Exchange>, Message, bool, Vec<String>)>,
    pub acks: Vec<TxAck>,
}

/// One open channel.
pub struct Channel {
    pub(super) shared: Arc<ChannelShared>,
    /// We sent `channel.close` and wait for `close-ok`; everything else is dropped.
    pub closing: bool,
    pub(super) publish: Option<Publish>,
    pub(super) confirms: Option<Confirms>,
    pub(super) tx: Option<Tx>,
    pub(super) consumers: HashMap<ShortString, ConsumerRecord>,
    /// Prefetch for consumers created from now on (basic.qos global=false).
    pub(super) prefetch: u32,
    /// The last queue declared: an empty queue name means this one (AMQP 0-9-1 queue class).
    pub(super) last_queue: Option<String>,
    /// Credit came back: let the consumed queues deliver again.
    pub(super) needs_dispatch: bool,
    /// The direct reply-to pseudo-queue this channel consumes, if any.
    pub(super) reply_queue: Option<String>,
    /// The exchange the last publish was allowed to, with the permissions' generation: a
    /// publisher that keeps publishing to one exchange does no regex match.
    pub(super) publish_allowed: Option<(u64, ShortString)>,
    /// The same for the topic permission: (generation, exchange, routing key).
    pub(super) topic_allowed: Option<(u64, ShortString, ShortString)>,
    /// The queues this read batch's publishes reached (publisher flow control, `crate::flow`).
    pub(super) reached: crate::flow::Gathered,
    /// What this read batch published, as the memory alarm estimates it, not yet charged.
    pub(super) charged: u64,
    /// A topology change proposed to the cluster (`replicated.rs`), for the connection to wait
    /// for before it reads this channel's next frame.
    pub(super) meta_wait: Option<super::replicated::MetaWait>,
}

/// An open channel as its connection keeps it. Most channels of an idle connection were opened
/// and do nothing: such a channel is its shared view (what the registry lists and deliveries
/// would use) and its place in the user's channel count; its state ([`Channel`], ~500 bytes)
/// is created at its first frame after `channel.open`.
pub struct OpenChannel {
    pub shared: Arc<ChannelShared>,
    /// This channel's place in its user's channel count (given back when dropped).
    pub slot: Option<crate::limits::Slot>,
    used: Option<Box<Channel>>,
}

impl OpenChannel {
    /// A new open channel numbered `number`.
    pub fn new(number: u16, ctx: &ConnCtx, slot: crate::limits::Slot) -> OpenChannel {
        OpenChannel {
            shared: Arc::new(ChannelShared::new(
                number,
                ctx.broker.next_id(),
                Arc::clone(&ctx.out),
                ctx.frame_max,
                Arc::clone(&ctx.counters),
            )),
            slot: Some(slot),
            used: None,
        }
    }

    /// The channel's state, created at the first need.
    pub fn state(&mut self) -> &mut Channel {
        let shared = &self.shared;
        self.used
            .get_or_insert_with(|| Box::new(Channel::new(Arc::clone(shared))))
    }

    /// The channel's state if it was used.
    pub fn used(&self) -> Option<&Channel> {
        self.used.as_deref()
    }

    /// The same, to change.
    pub fn used_mut(&mut self) -> Option<&mut Channel> {
        self.used.as_deref_mut()
    }

    /// We sent `channel.close` and wait for `close-ok`.
    pub fn closing(&self) -> bool {
        self.used.as_ref().is_some_and(|c| c.closing)
    }

    /// Replies to a client's `channel.close` after cleaning up.
    pub fn close_by_client(&mut self, ctx: &ConnCtx) {
        self.cleanup(ctx);
        self.shared.send(&Method::ChannelCloseOk(ChannelCloseOk {}));
    }

    /// Releases everything the channel holds (see [`Channel::cleanup`]).
    pub fn cleanup(&mut self, ctx: &ConnCtx) {
        match self.used.as_mut() {
            Some(c) => c.cleanup(ctx),
            None => self.shared.closed.store(true, Ordering::Relaxed),
        }
    }
}

impl Channel {
    /// The state of the open channel `shared` is the view of.
    fn new(shared: Arc<ChannelShared>) -> Channel {
        Channel {
            shared,
            closing: false,
            publish: None,
            confirms: None,
            tx: None,
            consumers: HashMap::new(),
            prefetch: 0,
            last_queue: None,
            meta_wait: None,
            needs_dispatch: false,
            reply_queue: None,
            publish_allowed: None,
            topic_allowed: None,
            reached: crate::flow::Gathered::default(),
            charged: 0,
        }
    }

    /// Handles a method frame for this channel.
    pub fn handle_method(&mut self, ctx: &ConnCtx, method: &Method) -> AmqpResult {
        if self.publish.is_some() {
            return Err(AmqpError::new(
                ReplyCode::UnexpectedFrame,
                format!(
                    "expected content header for class 60, got non content header frame instead ({})",
                    method.name()
                ),
            )
            .on(method));
        }
        let result = match method {
            Method::ChannelFlow(m) => {
                self.shared.active.store(m.active, Ordering::Relaxed);
                self.needs_dispatch |= m.active;
                self.shared
                    .send(&Method::ChannelFlowOk(ChannelFlowOk { active: m.active }));
                Ok(())
            }
            Method::ChannelFlowOk(_) => Ok(()),
            Method::ExchangeDeclare(_)
            | Method::ExchangeDelete(_)
            | Method::ExchangeBind(_)
            | Method::ExchangeUnbind(_)
            | Method::QueueDeclare(_)
            | Method::QueueBind(_)
            | Method::QueueUnbind(_)
            | Method::QueuePurge(_)
            | Method::QueueDelete(_) => self.handle_topology(ctx, method),
            Method::AccessRequest(_) => {
                self.shared.send(&Method::AccessRequestOk(
                    amqp_wire::AccessRequestOk::default(),
                ));
                Ok(())
            }
            _ => self.handle_basic(ctx, method),
        };
        result.map_err(|e| if e.class_id == 0 { e.on(method) } else { e })
    }

    /// Handles a content header frame.
    pub fn handle_header(
        &mut self,
        ctx: &ConnCtx,
        class_id: u16,
        body_size: u64,
        properties: Bytes,
    ) -> AmqpResult {
        let Some(p) = self.publish.as_mut().filter(|p| p.header.is_none()) else {
            return Err(AmqpError::new(
                ReplyCode::UnexpectedFrame,
                "unexpected content header frame",
            ));
        };
        if class_id != 60 {
            return Err(AmqpError::new(
                ReplyCode::UnexpectedFrame,
                format!("content header for class {class_id}, expected 60"),
            ));
        }
        if body_size > ctx.max_message_size {
            self.publish = None;
            return Err(AmqpError {
                class_id: 60,
                method_id: 40,
                ..AmqpError::new(
                    ReplyCode::PreconditionFailed,
                    format!(
                        "message size {body_size} is larger than configured max size {}",
                        ctx.max_message_size
                    ),
                )
            });
        }
        // A per-message TTL must be a non-negative integer (RabbitMQ refuses others).
        if properties.first().is_some_and(|f| f & 0x01 != 0) {
            let expiration = amqp_wire::BasicProperties::decode(&properties)
                .ok()
                .and_then(|p| p.expiration);
            if let Some(e) = expiration.filter(|e| parse_expiration(e.as_str()).is_none()) {
                self.publish = None;
                return Err(AmqpError {
                    class_id: 60,
                    method_id: 40,
                    ..AmqpError::new(
                        ReplyCode::PreconditionFailed,
                        format!("invalid expiration '{e}' for message"),
                    )
                });
            }
        }
        // Own the properties: a slice would pin the connection's read buffer.
        p.header = Some((body_size, Bytes::copy_from_slice(&properties)));
        if body_size == 0 {
            return self.finish_publish(ctx, Bytes::new());
        }
        Ok(())
    }

    /// Handles a content body frame.
    pub fn handle_body(&mut self, ctx: &ConnCtx, payload: Bytes) -> AmqpResult {
        let Some((p, size)) = self
            .publish
            .as_mut()
            .and_then(|p| p.header.as_ref().map(|h| h.0).map(|s| (p, s)))
        else {
            return Err(AmqpError::new(
                ReplyCode::UnexpectedFrame,
                "unexpected content body frame",
            ));
        };
        let have = p.body.len() as u64 + payload.len() as u64;
        if have > size {
            return Err(AmqpError::new(
                ReplyCode::FrameError,
                format!("content body exceeds the declared size {size}"),
            ));
        }
        if have == size && p.body.is_empty() {
            // The whole body in one frame: at most one exact-size copy.
            return self.finish_publish(ctx, Message::body_from_buffer(payload));
        }
        if p.body.is_empty() {
            p.body.reserve(usize::try_from(size).unwrap_or(0));
        }
        p.body.extend_from_slice(&payload);
        if have == size {
            let body = std::mem::take(&mut p.body).freeze();
            return self.finish_publish(ctx, body);
        }
        Ok(())
    }

    /// Work to do after a batch of frames, or when the store synced: confirms to send, queues
    /// to poke.
    pub fn flush(&mut self, ctx: &ConnCtx) {
        if let Some(c) = self.confirms.as_mut() {
            let synced = ctx.synced_epoch();
            let mut ack_upto = c.confirmed_upto;
            while let Some((seq, epoch, ok, replicated)) = c.waiting.front() {
                let (seq, epoch, mut ok) = (*seq, *epoch, *ok);
                if epoch > synced {
                    ctx.wake_when_synced(epoch);
                    break;
                }
                if let Some(r) = replicated {
                    match r.outcome() {
                        Some(acked) => ok &= acked,
                        None => {
                            // Woken (the connection flushes again) once the groups answer.
                            let out = Arc::clone(&ctx.out);
                            r.on_done(Box::new(move || out.wake()));
                            break;
                        }
                    }
                }
                if let Some((_, remote)) = c.remote.front().filter(|(s, _)| *s == seq) {
                    if !remote.done() {
                        let out = Arc::clone(&ctx.out);
                        remote.on_done(Arc::new(move || out.wake()));
                        break;
                    }
                    ok &= remote.ok();
                    c.remote.pop_front();
                }
                c.waiting.pop_front();
                if ok {
                    ack_upto = seq;
                    continue;
                }
                // A nack (refused by a length limit) ends the run of acks before it.
                send_ack(&self.shared, c.confirmed_upto, ack_upto);
                self.shared.send(&Method::BasicNack(amqp_wire::BasicNack {
                    delivery_tag: seq,
                    multiple: false,
                    requeue: false,
                }));
                c.confirmed_upto = seq;
                ack_upto = seq;
            }
            send_ack(&self.shared, c.confirmed_upto, ack_upto);
            c.confirmed_upto = ack_upto;
        }
        if std::mem::take(&mut self.needs_dispatch) {
            self.dispatch();
        }
    }

    /// Lets every queue this channel consumes from deliver again.
    pub fn dispatch(&self) {
        for c in self.consumers.values() {
            c.queue.dispatch();
        }
    }

    /// Releases everything the channel holds: consumers are cancelled and every unacked
    /// message goes back to its queue, in order.
    pub fn cleanup(&mut self, ctx: &ConnCtx) {
        // Closed first, so nothing is delivered to this channel any more; then the unacked
        // messages go back, ahead of anything newer, before the consumers are removed (which
        // lets the queue hand the next messages to another consumer, e.g. a single active
        // consumer's successor).
        self.shared.closed.store(true, Ordering::Relaxed);
        let unacked: Vec<Unacked> = self.shared.deliveries.lock().unacked.drain().collect();
        requeue(unacked);
        for (tag, c) in self.consumers.drain() {
            self.shared.stats.remove_consumer(tag.as_str());
            ctx.vhost
                .remove_consumer(&c.queue, self.shared.uid, tag.as_str());
        }
        if let Some(name) = self.reply_queue.take() {
            ctx.vhost.remove_reply_queue(&name);
        }
        self.publish = None;
        self.tx = None;
    }
}

/// Confirms every publish after `confirmed` up to `upto` with one `basic.ack`.
fn send_ack(shared: &ChannelShared, confirmed: u64, upto: u64) {
    if upto > confirmed {
        shared.stats.count_confirms(upto - confirmed);
        shared.send(&Method::BasicAck(amqp_wire::BasicAck {
            delivery_tag: upto,
            multiple: upto - confirmed > 1,
        }));
    }
}

/// Gives messages back to their queues, one call per run of messages from the same queue.
pub(super) fn requeue(unacked: Vec<Unacked>) {
    for_each_run(unacked, |q, run| q.requeue(run));
}

/// Hands the messages back to their queues with `f`, one call per run of messages from the same
/// queue (they come in delivery order, usually all from one queue).
pub(super) fn for_each_run(unacked: Vec<Unacked>, f: impl Fn(&Arc<Queue>, Vec<QueuedMessage>)) {
    let mut it = unacked.into_iter().peekable();
    while let Some(first) = it.next() {
        let queue = Arc::clone(&first.queue);
        let mut run = vec![first.message];
        while let Some(next) = it.next_if(|u| Arc::ptr_eq(&u.queue, &queue)) {
            run.push(next.message);
        }
        f(&queue, run);
    }
}
