//! Classic queues homed on another node of the cluster (cluster/forward.rs): while the home
//! node is down the queue is unavailable, and declaring it or consuming from it through
//! another node fails as in RabbitMQ: 404 NOT_FOUND "home node 'rabbit@a' of durable queue
//! 'q' in vhost '/' is down or inaccessible" (rabbit_amqqueue `not_found_or_absent`, the
//! `{absent, Q, nodedown}` case; the text as RabbitMQ clients report it).

use super::channel::ConnCtx;
use super::delivery::AmqpConsumer;
use super::error::{AmqpError, AmqpResult};
use crate::cluster::forward::Forwarder;
use crate::cluster::remote_consumer::LocalConsumer;
use amqp_wire::ReplyCode;
use pigeon_broker::{ConsumerEntry, ConsumerSink, Queue};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Refuses the use of `queue` while its home node is down.
pub(super) fn check_home(queue: &Queue) -> AmqpResult {
    let Some(home) = queue.remote() else {
        return Ok(());
    };
    if home.available() {
        return Ok(());
    }
    Err(AmqpError::new(
        ReplyCode::NotFound,
        format!(
            "home node '{}' of durable queue '{}' in vhost '{}' is down or inaccessible",
            home.node(),
            queue.name(),
            queue.vhost_name()
        ),
    ))
}

/// A consumer registered on `queue`, a proxy of a queue homed on another node: attached there
/// too, with its prefetch (cluster/remote_consumer.rs). Its deliveries come through the
/// cluster link and are handed to it with this channel's own delivery tags.
pub(super) fn attach(
    ctx: &ConnCtx,
    queue: &Arc<Queue>,
    sink: &Arc<AmqpConsumer>,
    entry: &ConsumerEntry,
) {
    let Some(home) = queue.remote() else {
        return;
    };
    let home = home.node();
    let Some(cluster) = &ctx.cluster else {
        return;
    };
    let Some(forwarder) = Forwarder::of(cluster) else {
        return;
    };
    let deliver_to = Arc::clone(sink);
    let cancel = Arc::clone(sink);
    let consumer = LocalConsumer {
        proxy: Arc::clone(queue),
        home: home.to_string(),
        owner: entry.owner,
        tag: entry.tag.to_string(),
        deliver: Box::new(move |proxy, message| {
            let sink = &deliver_to;
            if sink.channel.closed.load(Ordering::Relaxed) {
                return false;
            }
            // The home node kept within the prefetch; the credit is taken here whatever the
            // outbound buffer says (the message is here already), as `try_reserve` would.
            if !sink.try_reserve() && !sink.no_ack {
                sink.unacked.fetch_add(1, Ordering::Relaxed);
                sink.channel.unacked.fetch_add(1, Ordering::Relaxed);
            }
            sink.deliver(proxy, message);
            true
        }),
        cancelled: Box::new(move || cancel.cancelled()),
    };
    forwarder.attach_consumer(consumer, entry, sink.prefetch, sink.no_ack);
}
