//! MQTT shared subscriptions across the cluster (issue 13 item 5, docs/clustering.md "MQTT in
//! a cluster"): the sessions' side. A share group is one queue on one node (its owner); a
//! member here of a group owned elsewhere consumes from this node's proxy of it, attached at
//! the owner as a remote consumer. What crosses the cluster link is `cluster/mqtt_shared.rs`.
//!
//! Every call is a `None` check without a `[cluster]` table.

use super::session::Session;
use super::sink::MqttSink;
use crate::cluster::forward::Forwarder;
use crate::cluster::mqtt_shared::SharedGroup;
use crate::cluster::remote_consumer::LocalConsumer;
use crate::ServerState;
use pigeon_broker::queue::quorum::ReplicaConfirm;
use pigeon_broker::{ConsumerEntry, ConsumerSink, Delivered, Outcome, Queue, VHost};
use std::sync::Arc;

fn forwarder(server: &ServerState) -> Option<Arc<Forwarder>> {
    Forwarder::of(server.cluster.as_ref()?)
}

/// The group `queue` as this node's sessions see it.
fn group(server: &ServerState, vhost: &VHost, queue: &str, pattern: &str) -> SharedGroup {
    SharedGroup {
        vhost: vhost.name().to_string(),
        queue: queue.to_string(),
        exchange: server.config.mqtt_exchange.clone(),
        pattern: pattern.to_string(),
        owner: String::new(),
        max_length: u64::try_from(server.config.mqtt_max_queued_messages).unwrap_or(u64::MAX),
        created: false,
    }
}

/// The queue a session here joining the share group `queue` (bound with `pattern`) consumes
/// from, when the group is owned by another node: this node's proxy of it. `None`: the group's
/// queue is (or will be) this node's own, made by the single-node code.
pub(super) fn join(
    server: &ServerState,
    vhost: &VHost,
    queue: &str,
    pattern: &str,
) -> Option<Arc<Queue>> {
    let f = forwarder(server)?;
    f.shared_join(vhost, group(server, vhost, queue, pattern))
}

/// `session` became a consumer of `queue`: if that is the proxy of a group owned elsewhere,
/// it is attached there, with the receive maximum as its window.
pub(super) fn attach(server: &ServerState, session: &Arc<Session>, queue: &Arc<Queue>) {
    let Some(home) = queue.remote() else {
        return;
    };
    if !queue
        .name()
        .starts_with(crate::cluster::mqtt_shared::PREFIX)
    {
        return;
    }
    let Some(f) = forwarder(server) else {
        return;
    };
    let sink = MqttSink {
        session: Arc::clone(session),
    };
    let session = Arc::clone(session);
    let consumer = LocalConsumer {
        proxy: Arc::clone(queue),
        home: home.node().to_string(),
        owner: session.uid,
        tag: session.client_id.to_string(),
        deliver: Box::new(move |proxy, message| {
            // A session that left the group meanwhile does not take it: back to the group.
            let member = sink
                .session
                .core
                .lock()
                .subscriptions
                .iter()
                .any(|s| Arc::ptr_eq(&s.queue, proxy));
            if !member {
                return false;
            }
            let seq = message.seq;
            if let Delivered::Settled = sink.deliver(proxy, message) {
                // QoS 0, expired, or too large for the client: done at the owner too.
                if let Some(home) = proxy.remote() {
                    home.settle(proxy, vec![seq], Outcome::Ack);
                }
            }
            true
        }),
        cancelled: Box::new(|| {}),
    };
    let entry = ConsumerEntry {
        tag: Arc::clone(&session.client_id),
        owner: session.uid,
        exclusive: false,
        priority: 0,
        sink: Arc::new(MqttSink {
            session: Arc::clone(&session),
        }),
    };
    let window = u32::from(server.config.mqtt_receive_maximum);
    f.attach_consumer(consumer, &entry, window, false);
}

/// The share groups among `keys` that `session` joined: announced to every node that is up
/// (parts of `done`, which the SUBACK waits for). The groups owned here and gone are announced
/// gone first.
pub(super) fn subscribed(
    server: &ServerState,
    f: &Forwarder,
    session: &Session,
    keys: &[String],
    done: &Arc<ReplicaConfirm>,
) {
    f.shared_sweep();
    let groups: Vec<(String, Option<String>, String)> = {
        let core = session.core.lock();
        core.subscriptions
            .iter()
            .filter(|s| s.group.is_some() && keys.contains(&s.key))
            .map(|s| {
                let owner = s.queue.remote().map(|h| h.node().to_string());
                (s.queue.name().to_string(), owner, s.pattern.clone())
            })
            .collect()
    };
    for (queue, owner, pattern) in groups {
        let g = SharedGroup {
            owner: owner.unwrap_or_else(|| f.me().to_string()),
            ..group(server, &session.vhost, &queue, &pattern)
        };
        if let Some(remote) = f.shared_announce(&session.vhost, g) {
            done.add_part();
            let part = Arc::clone(done);
            remote.on_done(Arc::new(move || part.finish(true)));
        }
    }
}

/// A member left a group here (or a session ended): a group owned here whose queue went with
/// its last member is announced gone.
pub(super) fn left(server: &ServerState) {
    if let Some(f) = forwarder(server) {
        f.shared_sweep();
    }
}

/// The members here of the groups behind `proxies` attach again (their owner came back or
/// restarted and may have lost its remote consumers). A member still attached is attached
/// again under a new id before its old one is cancelled, so that the owner's auto-delete queue
/// never finds itself without a consumer meanwhile (it was deleted there when a Sync came
/// while its only member was a remote one, and the group got nothing until the next Sync);
/// one whose consumer went when its node found the owner down becomes a consumer again.
pub(crate) fn reattach(server: &ServerState, proxies: &[Arc<Queue>]) {
    if proxies.is_empty() {
        return;
    }
    let Some(f) = forwarder(server) else {
        return;
    };
    let window = u32::from(server.config.mqtt_receive_maximum);
    for proxy in proxies {
        let attached = f.reattach_consumers(proxy, window);
        tracing::debug!(
            queue = proxy.name(),
            again = attached.len(),
            "cluster: shared subscription members attach again"
        );
        for session in server.mqtt.registry.all(None) {
            let member = session
                .core
                .lock()
                .subscriptions
                .iter()
                .any(|s| s.group.is_some() && Arc::ptr_eq(&s.queue, proxy));
            let again = attached
                .iter()
                .any(|(owner, tag)| *owner == session.uid && **tag == *session.client_id);
            if member && !again {
                consume(server, &session, proxy);
            }
        }
    }
}

/// `session`, a member of the group behind `queue`, consumes from it (again), attached at its
/// owner if that is another node.
fn consume(server: &ServerState, session: &Arc<Session>, queue: &Arc<Queue>) {
    queue.remove_consumer(session.uid, &session.client_id);
    let entry = ConsumerEntry {
        tag: Arc::clone(&session.client_id),
        owner: session.uid,
        exclusive: false,
        priority: 0,
        sink: Arc::new(MqttSink {
            session: Arc::clone(session),
        }),
    };
    if queue.add_consumer(entry, || {}).is_ok() {
        attach(server, session, queue);
    }
}

/// The group behind `old` moves to another queue (its owner changed,
/// `cluster/mqtt_shared_move.rs`): the sessions here that are its members stop consuming from
/// `old` (cancelled at its owner if that is another node). Returned for [`adopt_members`].
pub(crate) fn detach_members(server: &ServerState, old: &Arc<Queue>) -> Vec<Arc<Session>> {
    let members: Vec<Arc<Session>> = server
        .mqtt
        .registry
        .all(None)
        .into_iter()
        .filter(|session| {
            session
                .core
                .lock()
                .subscriptions
                .iter()
                .any(|s| s.group.is_some() && Arc::ptr_eq(&s.queue, old))
        })
        .collect();
    for session in &members {
        old.remove_consumer(session.uid, &session.client_id);
    }
    members
}

/// The `members` of a moved group (from [`detach_members`]) subscribe through `new`, the
/// group's queue or proxy now, and consume from it. What a member holds from the old queue is
/// settled there (acknowledged, or lost if given back: that queue is gone).
pub(crate) fn adopt_members(server: &ServerState, members: &[Arc<Session>], new: &Arc<Queue>) {
    let name = new.name();
    for session in members {
        if session.vhost.name() != new.vhost_name() {
            continue;
        }
        let moved = {
            let mut core = session.core.lock();
            let mut moved = false;
            for s in core.subscriptions.iter_mut() {
                if s.group.is_some() && s.queue.name() == name {
                    s.queue = Arc::clone(new);
                    moved = true;
                }
            }
            moved
        };
        if moved {
            consume(server, session, new);
        }
    }
}
