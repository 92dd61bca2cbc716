//! The basic, confirm and tx classes: publishing, consuming, acknowledging.

use super::channel::{
    for_each_run, requeue, Channel, Confirms, ConnCtx, ConsumerRecord, Publish, Tx, TxAck,
};
use super::codec::AMQP_CODEC;
use super::delivery::{short, AmqpConsumer, Unacked};
use super::error::{AmqpError, AmqpResult};
use crate::authz::Kind;
use amqp_wire::{
    BasicCancelOk, BasicConsumeOk, BasicGetEmpty, BasicQosOk, BasicRecoverOk, BasicReturn,
    ConfirmSelectOk, Method, ReplyCode, ShortString, TxCommitOk, TxRollbackOk, TxSelectOk,
};
use bytes::{Bytes, BytesMut};
use pigeon_broker::permission::Access;
use pigeon_broker::{
    ConsumerEntry, Exchange, Message, Properties, Published, Queue, QueuedMessage,
};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// RabbitMQ's direct reply-to pseudo-queue.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
/// The `reply-to` property flag (bit 9), in the first byte of the flags.
const FLAG_REPLY_TO_HIGH: u8 = 0x02;

/// What happens to the messages an ack, nack or reject names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Settle {
    Ack,
    Requeue,
    Discard,
}

impl Channel {
    pub(super) fn handle_basic(&mut self, ctx: &ConnCtx, method: &Method) -> AmqpResult {
        match method {
            Method::BasicPublish(m) => {
                if m.immediate {
                    return Err(AmqpError::new(ReplyCode::NotImplemented, "immediate=true"));
                }
                self.check_publish_exchange(ctx, &m.exchange)?;
                let exchange = ctx.vhost.exchange_for_publish(m.exchange.as_str())?;
                self.check_publish_topic(ctx, &exchange, m)?;
                self.publish = Some(Publish {
                    exchange,
                    routing_key: m.routing_key.clone(),
                    mandatory: m.mandatory,
                    header: None,
                    body: BytesMut::new(),
                });
            }
            Method::BasicQos(m) => {
                let count = u32::from(m.prefetch_count);
                if m.global {
                    self.shared.global_prefetch.store(count, Ordering::Relaxed);
                    self.shared
                        .stats
                        .global_prefetch
                        .store(count, Ordering::Relaxed);
                } else {
                    self.prefetch = count;
                    self.shared.stats.prefetch.store(count, Ordering::Relaxed);
                }
                self.needs_dispatch = true;
                self.shared.send(&Method::BasicQosOk(BasicQosOk {}));
            }
            Method::BasicConsume(m) => self.consume(ctx, m)?,
            Method::BasicCancel(m) => {
                if let Some(c) = self.consumers.remove(&m.consumer_tag) {
                    self.shared.stats.remove_consumer(m.consumer_tag.as_str());
                    ctx.vhost
                        .remove_consumer(&c.queue, self.shared.uid, m.consumer_tag.as_str());
                    if self.reply_queue.as_deref() == Some(c.queue.name()) {
                        ctx.vhost.remove_reply_queue(c.queue.name());
                        self.reply_queue = None;
                    }
                }
                if !m.no_wait {
                    self.shared.send(&Method::BasicCancelOk(BasicCancelOk {
                        consumer_tag: m.consumer_tag.clone(),
                    }));
                }
            }
            Method::BasicGet(m) => {
                let name = self.queue_name(&m.queue)?.to_string();
                let name = name.as_str();
                ctx.authz.check(Access::Read, Kind::Queue, name)?;
                let q = ctx.vhost.queue_for(name, ctx.conn_id)?;
                super::remote::check_home(&q)?;
                // Homed on another node: asked of the home (metafinish).
                if self.remote_get(ctx, method, &q, m.no_ack) {
                    return Ok(());
                }
                if q.is_quorum() {
                    // Through the group, answered once committed (`quorum_wait.rs`).
                    self.quorum_get(method, q, m.no_ack);
                    return Ok(());
                }
                if q.is_stream() {
                    // rabbit_stream_queue `dequeue`.
                    return Err(AmqpError::new(
                        ReplyCode::NotImplemented,
                        format!(
                            "basic.get not supported by stream queues queue '{name}' in vhost '{}'",
                            ctx.vhost.name()
                        ),
                    ));
                }
                match q.get(m.no_ack) {
                    Some((message, left)) => self.shared.deliver_get(&q, message, left, m.no_ack),
                    None => {
                        self.shared.stats.count_get_empty();
                        self.shared.send(&Method::BasicGetEmpty(BasicGetEmpty {}));
                    }
                }
            }
            Method::BasicAck(m) => self.ack(TxAck::Ack {
                tag: m.delivery_tag,
                multiple: m.multiple,
            })?,
            Method::BasicNack(m) => self.ack(TxAck::Nack {
                tag: m.delivery_tag,
                multiple: m.multiple,
                requeue: m.requeue,
            })?,
            Method::BasicReject(m) => self.ack(TxAck::Nack {
                tag: m.delivery_tag,
                multiple: false,
                requeue: m.requeue,
            })?,
            Method::BasicRecover(_) | Method::BasicRecoverAsync(_) => {
                // RabbitMQ redelivers with requeue semantics whatever the flag says. recover-ok
                // goes first: clients expect the redeliveries after it.
                if matches!(method, Method::BasicRecover(_)) {
                    self.shared.send(&Method::BasicRecoverOk(BasicRecoverOk {}));
                }
                let all: Vec<Unacked> = self.shared.deliveries.lock().unacked.drain().collect();
                for u in &all {
                    self.shared.release(&u.credit);
                }
                requeue(all);
            }
            Method::ConfirmSelect(m) => {
                if self.tx.is_some() {
                    return Err(AmqpError::new(
                        ReplyCode::PreconditionFailed,
                        "cannot switch from tx to confirm mode",
                    ));
                }
                self.confirms.get_or_insert_with(Confirms::default);
                self.shared
                    .stats
                    .confirm_mode
                    .store(true, Ordering::Relaxed);
                if !m.no_wait {
                    self.shared
                        .send(&Method::ConfirmSelectOk(ConfirmSelectOk {}));
                }
            }
            Method::TxSelect(_) => {
                if self.confirms.is_some() {
                    return Err(AmqpError::new(
                        ReplyCode::PreconditionFailed,
                        "cannot switch from confirm to tx mode",
                    ));
                }
                self.tx.get_or_insert_with(Tx::default);
                self.shared
                    .stats
                    .transactional
                    .store(true, Ordering::Relaxed);
                self.shared.send(&Method::TxSelectOk(TxSelectOk {}));
            }
            Method::TxCommit(_) => {
                let tx = self.tx.as_mut().ok_or_else(not_transactional)?;
                let Tx { publishes, acks } = std::mem::take(tx);
                let mut stored = false;
                // Quorum queues' commits and other nodes' queues (`quorum_wait.rs`).
                let mut waits = super::quorum_wait::TxWaits::default();
                for (exchange, message, mandatory, cc) in publishes {
                    // Held messages store their key (`finish_publish`).
                    let key = message.routing_key().unwrap_or_default().to_owned();
                    let published = self.route(ctx, &exchange, message, &key, mandatory, &cc);
                    stored |= published.stored;
                    waits.add(&published);
                }
                // tx.commit-ok means the published messages are on disk.
                if let (true, Some(store)) = (stored, &ctx.store) {
                    // Never a commit-ok for what is not on disk: the connection closes.
                    store.wait_synced(store.current_epoch()).map_err(|e| {
                        AmqpError::new(
                            ReplyCode::InternalError,
                            format!("cannot store the transaction's messages: {e}"),
                        )
                    })?;
                }
                for op in acks {
                    self.apply_ack(op)?;
                }
                if !self.tx_commit_wait(method, waits) {
                    self.shared.send(&Method::TxCommitOk(TxCommitOk {}));
                }
            }
            Method::TxRollback(_) => {
                let tx = self.tx.as_mut().ok_or_else(not_transactional)?;
                *tx = Tx::default();
                self.shared.send(&Method::TxRollbackOk(TxRollbackOk {}));
            }
            other => {
                return Err(AmqpError::new(
                    ReplyCode::CommandInvalid,
                    format!("unexpected method {} on a channel", other.name()),
                ))
            }
        }
        Ok(())
    }

    fn consume(&mut self, ctx: &ConnCtx, m: &amqp_wire::BasicConsume) -> AmqpResult {
        let q = if m.queue.as_str() == DIRECT_REPLY_TO {
            self.direct_reply_queue(ctx, m)?
        } else {
            let name = self.queue_name(&m.queue)?;
            ctx.authz.check(Access::Read, Kind::Queue, name)?;
            ctx.vhost.queue_for(name, ctx.conn_id)?
        };
        super::remote::check_home(&q)?;
        if q.is_quorum() && self.shared.global_prefetch.load(Ordering::Relaxed) > 0 {
            // rabbit_quorum_queue `consume` with the channel's limiter active (global QoS):
            // `global_qos_not_supported_for_queue_type`, which rabbit_channel reports so.
            return Err(AmqpError::new(
                ReplyCode::NotImplemented,
                format!(
                    "queue '{}' in vhost '{}' does not support global qos",
                    q.name(),
                    ctx.vhost.name()
                ),
            ));
        }
        let stream_start = if q.is_stream() {
            Some(super::streams::check_consume(
                &q,
                ctx.vhost.name(),
                m,
                self.prefetch,
                self.shared.global_prefetch.load(Ordering::Relaxed),
            )?)
        } else {
            None
        };
        let tag = if m.consumer_tag.is_empty() {
            ShortString::from(ctx.vhost.unique_name("amq.ctag-"))
        } else {
            m.consumer_tag.clone()
        };
        // Consumers cancelled by the server (their queue was deleted) free their tags.
        let stats = &self.shared.stats;
        self.consumers.retain(|tag, c| {
            let cancelled = c.sink.cancelled.load(Ordering::Relaxed);
            if cancelled {
                stats.remove_consumer(tag.as_str());
            }
            !cancelled
        });
        if self.consumers.contains_key(&tag) {
            return Err(AmqpError::new(
                ReplyCode::NotAllowed,
                format!("attempt to reuse consumer tag '{tag}'"),
            ));
        }
        let sink = Arc::new(AmqpConsumer {
            tag: tag.clone(),
            channel: Arc::clone(&self.shared),
            no_ack: m.no_ack,
            prefetch: self.prefetch,
            unacked: Arc::new(AtomicU32::new(0)),
            cancel_notify: ctx.cancel_notify,
            cancelled: AtomicBool::new(false),
        });
        let priority = match m.arguments.get("x-priority") {
            None => 0,
            Some(v) => v
                .as_i64()
                .and_then(|p| i32::try_from(p).ok())
                .ok_or_else(|| {
                    AmqpError::new(ReplyCode::PreconditionFailed, "invalid arg 'x-priority'")
                })?,
        };
        let entry = ConsumerEntry {
            tag: Arc::from(tag.as_str()),
            owner: self.shared.uid,
            exclusive: m.exclusive,
            priority,
            sink: Arc::clone(&sink) as _,
        };
        let shared = Arc::clone(&self.shared);
        let ok_tag = tag.clone();
        let no_wait = m.no_wait;
        let on_added = move || {
            if !no_wait {
                shared.send(&Method::BasicConsumeOk(BasicConsumeOk {
                    consumer_tag: ok_tag,
                }));
            }
        };
        // A quorum queue with no member here is served by a member node's replica: the queue
        // attaches the consumer there itself (`cluster/quorum/outsider.rs`).
        let remote_entry = q.remote().is_some().then(|| entry.clone());
        match stream_start {
            Some(start) => q.add_stream_consumer(entry, &start, on_added)?,
            None => q.add_consumer(entry, on_added)?,
        }
        // A queue homed on another node: the consumer is attached there (cluster).
        if let Some(entry) = remote_entry {
            super::remote::attach(ctx, &q, &sink, &entry);
        }
        self.shared.stats.add_consumer(
            tag.as_str(),
            q.name(),
            !m.no_ack,
            m.exclusive,
            self.prefetch,
        );
        self.consumers
            .insert(tag, ConsumerRecord { queue: q, sink });
        Ok(())
    }

    /// basic.publish needs write on the exchange (the default one as `amq.default`). The last
    /// exchange allowed is remembered with the permissions' generation, so a publisher that
    /// keeps to one exchange compares a name instead of matching a regex.
    fn check_publish_exchange(&mut self, ctx: &ConnCtx, exchange: &ShortString) -> AmqpResult {
        let generation = ctx.authz.generation();
        if matches!(&self.publish_allowed, Some((g, x)) if *g == generation && x == exchange) {
            return Ok(());
        }
        ctx.authz
            .check(Access::Write, Kind::Exchange, exchange.as_str())?;
        self.publish_allowed = Some((generation, exchange.clone()));
        Ok(())
    }

    /// On a topic exchange, the topic write permission on the routing key (rabbit_channel
    /// `check_write_permitted_on_topics`); the last key allowed is remembered likewise.
    fn check_publish_topic(
        &mut self,
        ctx: &ConnCtx,
        exchange: &Exchange,
        m: &amqp_wire::BasicPublish,
    ) -> AmqpResult {
        if !ctx.authz.has_topic_permissions() {
            return Ok(());
        }
        let generation = ctx.authz.generation();
        if matches!(&self.topic_allowed, Some((g, x, k))
            if *g == generation && x == &m.exchange && k == &m.routing_key)
        {
            return Ok(());
        }
        ctx.authz
            .check_topic(Access::Write, exchange, m.routing_key.as_str())?;
        self.topic_allowed = Some((generation, m.exchange.clone(), m.routing_key.clone()));
        Ok(())
    }

    /// The channel's direct reply-to pseudo-queue, created for a no-ack consume of
    /// `amq.rabbitmq.reply-to` (RabbitMQ's direct reply-to).
    fn direct_reply_queue(
        &mut self,
        ctx: &ConnCtx,
        m: &amqp_wire::BasicConsume,
    ) -> AmqpResult<Arc<Queue>> {
        if !m.no_ack {
            return Err(AmqpError::new(
                ReplyCode::PreconditionFailed,
                "reply consumer cannot acknowledge",
            ));
        }
        if self.reply_queue.is_some() {
            return Err(AmqpError::new(
                ReplyCode::PreconditionFailed,
                "reply consumer already set",
            ));
        }
        let name = ctx.vhost.unique_name("amq.rabbitmq.reply-to.");
        let q = ctx.vhost.add_reply_queue(&name)?;
        self.reply_queue = Some(name);
        Ok(q)
    }

    /// Completes a publish once its body is whole: route it now, or hold it for tx.commit.
    pub(super) fn finish_publish(&mut self, ctx: &ConnCtx, body: Bytes) -> AmqpResult {
        let Some(p) = self.publish.take() else {
            return Ok(());
        };
        let mut props = p.header.map(|h| h.1).unwrap_or_default();
        // Direct reply-to: `reply_to` names this channel's pseudo-queue.
        if props.first().is_some_and(|f| f & FLAG_REPLY_TO_HIGH != 0) {
            if let Ok(mut bp) = amqp_wire::BasicProperties::decode(&props) {
                if bp
                    .reply_to
                    .as_ref()
                    .is_some_and(|r| r.as_str() == DIRECT_REPLY_TO)
                {
                    let Some(name) = self.reply_queue.clone() else {
                        return Err(AmqpError::new(
                            ReplyCode::PreconditionFailed,
                            "fast reply consumer does not exist",
                        ));
                    };
                    bp.reply_to = Some(ShortString::from(name));
                    props = bp.to_bytes();
                }
            }
        }
        let cc = super::sender_selected::extra_keys(&mut props)?;
        // The CC and BCC keys route like the routing key, so they need its topic write
        // permission too: RabbitMQ 4.0 checks every routing key of the message
        // (rabbit_channel `check_write_permitted_on_topics`, commit dc9ebc5b; 3.x checked only
        // the routing key, letting CC bypass a topic permission).
        if !cc.is_empty() && ctx.authz.has_topic_permissions() {
            for key in &cc {
                ctx.authz.check_topic(Access::Write, &p.exchange, key)?;
            }
        }
        let properties = Properties::new(props, &AMQP_CODEC);
        let message = if p.exchange.name.is_empty() && cc.is_empty() && self.tx.is_none() {
            // Routed to the queue its key names, and only there: the key is not stored in the
            // message (docs/performance.md, "Memory per message").
            Message::to_named_queue(properties, body, ctx.conn_id)
        } else {
            let key = p.routing_key.as_str();
            Message::new(&*p.exchange.name, key, properties, body, ctx.conn_id)
        };
        if let Some(tx) = self.tx.as_mut() {
            tx.publishes.push((p.exchange, message, p.mandatory, cc));
            return Ok(());
        }
        let routed = self.route(
            ctx,
            &p.exchange,
            message,
            p.routing_key.as_str(),
            p.mandatory,
            &cc,
        );
        if let Some(c) = self.confirms.as_mut() {
            c.last_seq += 1;
            // Nothing is confirmed before it is on disk (group commit: the store's epoch).
            let epoch = if routed.stored {
                ctx.current_epoch()
            } else {
                0
            };
            c.waiting
                .push_back((c.last_seq, epoch, !routed.rejected, routed.replicated));
            // Queues homed on other nodes confirm through the cluster (cluster/forward.rs).
            if let Some(remote) = routed.remote {
                c.remote.push_back((c.last_seq, remote));
            }
        }
        Ok(())
    }

    /// Routes a message; a mandatory one that reaches no queue comes back as basic.return.
    fn route(
        &mut self,
        ctx: &ConnCtx,
        exchange: &Arc<Exchange>,
        message: Message,
        routing_key: &str,
        mandatory: bool,
        cc: &[String],
    ) -> Published {
        let routed = ctx.vhost.publish_cc(exchange, &message, routing_key, cc);
        self.reached.add(&routed.reached);
        self.charged += crate::memory::message_cost(message.body_len());
        let returned = routed.queues == 0 && mandatory;
        self.shared.stats.count_publish(
            routed.queues,
            returned,
            self.confirms.is_some(),
            message.body_len(),
        );
        if returned {
            let ret = Method::BasicReturn(BasicReturn {
                reply_code: ReplyCode::NoRoute.code(),
                reply_text: ShortString::from_static("NO_ROUTE"),
                exchange: short(message.exchange()),
                routing_key: short(routing_key),
            });
            let returned = QueuedMessage {
                message,
                seq: 0,
                redelivered: false,
                expires_at: None,
                delivery_count: 0,
                persisted: false,
            };
            self.shared.send_with_content(&ret, &returned, false);
        }
        routed
    }

    fn ack(&mut self, op: TxAck) -> AmqpResult {
        if self.tx.is_some() {
            let (tag, multiple) = match op {
                TxAck::Ack { tag, multiple } | TxAck::Nack { tag, multiple, .. } => (tag, multiple),
            };
            self.check_tag(tag, multiple)?;
            if let Some(tx) = self.tx.as_mut() {
                tx.acks.push(op);
            }
            return Ok(());
        }
        self.apply_ack(op)
    }

    fn check_tag(&self, tag: u64, multiple: bool) -> AmqpResult {
        let d = self.shared.deliveries.lock();
        let at = d.unacked.partition_point(|u| u.tag < tag);
        if (multiple && tag == 0) || d.unacked.get(at).is_some_and(|u| u.tag == tag) {
            return Ok(());
        }
        Err(unknown_tag(tag))
    }

    fn apply_ack(&mut self, op: TxAck) -> AmqpResult {
        let (tag, multiple, settle) = match op {
            TxAck::Ack { tag, multiple } => (tag, multiple, Settle::Ack),
            TxAck::Nack {
                tag,
                multiple,
                requeue,
            } => (
                tag,
                multiple,
                if requeue {
                    Settle::Requeue
                } else {
                    Settle::Discard
                },
            ),
        };
        let taken: Vec<Unacked> = {
            let mut d = self.shared.deliveries.lock();
            // Ordered by tag: the entry is at the partition point, if it is there at all.
            let i = d.unacked.partition_point(|u| u.tag < tag);
            let found = d.unacked.get(i).is_some_and(|u| u.tag == tag);
            match (multiple, found) {
                (true, _) if tag == 0 => d.unacked.drain().collect(),
                (true, true) => d.unacked.drain_front(i + 1),
                (false, true) => d.unacked.remove(i).into_iter().collect(),
                (_, false) => return Err(unknown_tag(tag)),
            }
        };
        for u in &taken {
            self.shared.release(&u.credit);
        }
        self.needs_dispatch = true;
        match settle {
            Settle::Requeue => requeue(taken),
            Settle::Ack => {
                self.shared.stats.count_acks(taken.len() as u64);
                settle_runs(&taken)
            }
            Settle::Discard => for_each_run(taken, |q, run| q.reject(run)),
        }
        Ok(())
    }
}

/// Tells each queue how many of its messages were settled, one call per run.
fn settle_runs(taken: &[Unacked]) {
    let mut i = 0;
    while i < taken.len() {
        let q = &taken[i].queue;
        let run = taken[i..]
            .iter()
            .take_while(|u| Arc::ptr_eq(&u.queue, q))
            .count();
        q.settle(taken[i..i + run].iter().map(|u| &u.message));
        i += run;
    }
}

fn unknown_tag(tag: u64) -> AmqpError {
    AmqpError::new(
        ReplyCode::PreconditionFailed,
        format!("unknown delivery tag {tag}"),
    )
}

fn not_transactional() -> AmqpError {
    AmqpError::new(
        ReplyCode::PreconditionFailed,
        "channel is not transactional",
    )
}
