//! MQTT across the cluster (issue 13 item 5, docs/clustering.md "MQTT in a cluster"): the
//! sessions' side. What crosses the cluster link and what the other nodes do with it is
//! `cluster/mqtt.rs`.
//!
//! - A session's subscriptions are announced to the other nodes whenever they change
//!   ([`announce`]: SUBSCRIBE, UNSUBSCRIBE, the session's end), so that a publish on any node
//!   reaches the session's queue here. The SUBACK waits until every node that is up has them.
//! - A retained message set or cleared here is set or cleared on every node ([`retained`]).
//! - A CONNECT asks the other nodes to let go of its client id ([`take_over`]): the connection
//!   there gets DISCONNECT 0x8E, and a persistent session comes here with its subscriptions,
//!   its queued messages and its inbound QoS 2 ids ([`hand_over`] there, [`Conn::install`]
//!   here).
//!
//! Nothing here is on a connection's idle path: every call is a `None` check without a
//! `[cluster]` table, and nothing is kept per connection (the registry of remote
//! subscriptions is the cluster's, per session queue).

use super::connection::Conn;
use super::session::{Session, Subscription};
use crate::cluster::mqtt::{QueueSubs, SessionState, SubState};
use crate::ServerState;
use mqtt_wire::{QoS, RetainHandling, SubscriptionOptions};
use pigeon_broker::queue::quorum::ReplicaConfirm;
use pigeon_broker::{Destination, Table, VHost};
use pigeon_cluster::MetaCommand;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long a node asked for a client id waits for its connection there to let go.
const HAND_OVER_TIMEOUT: Duration = Duration::from_secs(5);

fn forwarder(server: &ServerState) -> Option<Arc<crate::cluster::forward::Forwarder>> {
    crate::cluster::forward::Forwarder::of(server.cluster.as_ref()?)
}

/// The bindings of `session`'s own queue as the other nodes route to it (shared
/// subscriptions stay with their node's group queue).
fn subs_of(session: &Session, exchange: &str) -> QueueSubs {
    let core = session.core.lock();
    let queue = core.queue.as_ref();
    let mut patterns: Vec<String> = match queue {
        Some(q) => core
            .subscriptions
            .iter()
            .filter(|s| s.group.is_none() && Arc::ptr_eq(&s.queue, q))
            .map(|s| s.pattern.clone())
            .collect(),
        None => Vec::new(),
    };
    patterns.sort();
    patterns.dedup();
    QueueSubs {
        vhost: session.vhost.name().to_string(),
        queue: queue.map_or_else(
            || format!("mqtt-session-{}", session.client_id),
            |q| q.name().to_string(),
        ),
        exchange: exchange.to_string(),
        patterns,
        durable: queue.is_some_and(|q| q.options().durable),
        replicated: queue.is_some_and(|q| q.is_quorum()),
    }
}

/// Tells the other nodes `session`'s subscriptions (after a SUBSCRIBE, an UNSUBSCRIBE, its
/// end). `Some`: done once every node that is up has them (a SUBACK waits for it).
pub(super) fn announce(server: &ServerState, session: &Session) -> Option<Arc<ReplicaConfirm>> {
    let f = forwarder(server)?;
    let subs = subs_of(session, &server.config.mqtt_exchange);
    let remote = f.announce_subs(subs)?;
    let done = ReplicaConfirm::new();
    let finish = Arc::clone(&done);
    // Whether a peer answered or not: a peer that is down learns them when it is back.
    remote.on_done(Arc::new(move || finish.finish(true)));
    Some(done)
}

/// Waits until `done` is.
pub(super) async fn settled(done: Arc<ReplicaConfirm>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    done.on_done(Box::new(move || {
        let _ = tx.send(());
    }));
    let _ = rx.await;
}

/// Every session queue of this node, for a peer's Sync.
pub(crate) fn local_subs(server: &ServerState) -> Vec<QueueSubs> {
    server
        .mqtt
        .registry
        .all(None)
        .iter()
        .filter(|s| s.core.lock().queue.is_some())
        .map(|s| subs_of(s, &server.config.mqtt_exchange))
        .filter(|s| !s.patterns.is_empty())
        .collect()
}

/// Sessions ended here (a clean session's connection gone, an expiry, a discard) are
/// announced: the other nodes drop their proxies of the session's queue.
pub(crate) fn install_hooks(server: &Arc<ServerState>) {
    let weak = Arc::downgrade(server);
    server.mqtt.registry.on_end(Box::new(move |session| {
        if let Some(server) = weak.upgrade() {
            discarded(&server, session);
        }
    }));
}

/// `session` ended here (or was discarded by a clean start): the other nodes stop routing to
/// its queue and, unless it is moving to another node, the metadata group forgets it.
pub(super) fn discarded(server: &ServerState, session: &Session) {
    let Some(f) = forwarder(server) else {
        return;
    };
    announce(server, session);
    // Shared subscriptions across nodes (helper mqttshared): a group gone with it.
    super::cluster_shared::left(server);
    let (vhost, client_id) = (session.vhost.name(), &*session.client_id);
    if f.mqtt_replicated_has(vhost, client_id) && !f.mqtt_handing_over(vhost, client_id) {
        let drop = MetaCommand::MqttDropSession {
            vhost: vhost.to_string(),
            client_id: client_id.to_string(),
        };
        f.mqtt_propose(drop, None);
    }
    // Its quorum queue, which every node has, through the group (cluster/mqtt_failover.rs).
    if !f.mqtt_handing_over(vhost, client_id) {
        f.session_ended(&session.vhost, client_id);
    }
}

fn sub_state(s: &Subscription) -> SubState {
    SubState {
        key: s.key.clone(),
        filter: s.filter.clone(),
        pattern: s.pattern.clone(),
        qos: s.options.qos as u8,
        no_local: s.options.no_local,
        retain_as_published: s.options.retain_as_published,
        retain_handling: s.options.retain_handling as u8,
        id: s.id,
    }
}

/// A session subscribed to `keys`: announced to the other nodes and, for a persistent
/// session, written through the metadata group (item 2), so that every node knows them.
/// `Some`: done once both are (the SUBACK waits for it).
pub(super) fn subscribed(
    server: &ServerState,
    session: &Session,
    keys: &[String],
) -> Option<Arc<ReplicaConfirm>> {
    let f = forwarder(server)?;
    let done = ReplicaConfirm::new();
    if let Some(announced) = announce(server, session) {
        done.add_part();
        let part = Arc::clone(&done);
        announced.on_done(Box::new(move || part.finish(true)));
    }
    let commands: Vec<MetaCommand> = {
        let core = session.core.lock();
        if core.expiry == 0 {
            Vec::new()
        } else {
            core.subscriptions
                .iter()
                .filter(|s| s.group.is_none() && keys.contains(&s.key))
                .map(|s| MetaCommand::MqttSubscribe {
                    vhost: session.vhost.name().to_string(),
                    client_id: session.client_id.to_string(),
                    filter: s.key.clone(),
                    options: crate::cluster::mqtt_sessions::options_json(&sub_state(s)),
                })
                .collect()
        }
    };
    for c in commands {
        done.add_part();
        f.mqtt_propose(c, Some(Arc::clone(&done)));
    }
    // Shared subscriptions across nodes (helper mqttshared): the groups joined.
    super::cluster_shared::subscribed(server, &f, session, keys, &done);
    done.finish(true);
    Some(done)
}

/// A session unsubscribed from `keys`: those the metadata group has go.
pub(super) fn unsubscribed(server: &ServerState, session: &Session, keys: &[String]) {
    let Some(f) = forwarder(server) else {
        return;
    };
    // Shared subscriptions across nodes (helper mqttshared): a group gone with the last member.
    super::cluster_shared::left(server);
    let (vhost, client_id) = (session.vhost.name(), &*session.client_id);
    let known: Vec<String> = f
        .mqtt_replicated(vhost, client_id)
        .into_iter()
        .map(|s| s.key)
        .collect();
    let kept: Vec<String> = {
        let core = session.core.lock();
        core.subscriptions.iter().map(|s| s.key.clone()).collect()
    };
    for key in keys {
        if known.contains(key) && !kept.contains(key) {
            let unsubscribe = MetaCommand::MqttUnsubscribe {
                vhost: vhost.to_string(),
                client_id: client_id.to_string(),
                filter: key.clone(),
            };
            f.mqtt_propose(unsubscribe, None);
        }
    }
}

/// A retained message set or cleared here (`key`, a routing key): the other nodes too.
pub(super) fn retained(server: &ServerState, vhost: &VHost, key: &str) {
    let Some(f) = forwarder(server) else {
        return;
    };
    let message = vhost.retained.get(key);
    f.announce_retained(vhost.name(), key, message.as_ref());
}

/// At CONNECT: the other nodes let go of `client_id`; a persistent session one of them had
/// (unless `clean`) comes back to be installed here.
pub(super) async fn take_over(
    server: &ServerState,
    vhost: &str,
    client_id: &str,
    clean: bool,
) -> Option<SessionState> {
    let cluster = server.cluster.as_ref()?;
    crate::cluster::mqtt::take_over(cluster, vhost, client_id, clean).await
}

/// A peer's CONNECT of `client_id`: this node's connection of it is closed (DISCONNECT 0x8E
/// in MQTT 5, [MQTT-3.1.4-3]) and its session ends here; a persistent one's state is handed
/// over (unless the new connection starts clean).
pub(crate) async fn hand_over(
    server: &Arc<ServerState>,
    vhost: &str,
    client_id: &str,
    clean: bool,
) -> Option<SessionState> {
    let registry = &server.mqtt.registry;
    let session = registry.get(vhost, client_id)?;
    // As a takeover on one node (`connect.rs`): the holder sees `waiting` at its next turn.
    session.waiting.fetch_add(1, Ordering::SeqCst);
    if !session.lease.is_free() {
        if let Some(a) = session.core.lock().attached.as_ref() {
            a.out().wake();
        }
    }
    let acquired = registry.take_lease(&session, HAND_OVER_TIMEOUT).await;
    session.waiting.fetch_sub(1, Ordering::SeqCst);
    if !acquired {
        tracing::warn!(
            client_id,
            "MQTT session not handed over: its connection did not let go"
        );
        return None;
    }
    // Its connection may have ended it (a clean session) while we waited.
    let current = registry
        .get(vhost, client_id)
        .filter(|s| Arc::ptr_eq(s, &session));
    let state = match current {
        Some(_) if !clean => extract(&session),
        _ => None,
    };
    if current.is_some() {
        registry.end(&session);
    }
    registry.give_back_lease(&session);
    tracing::info!(
        client_id,
        moved = state.is_some(),
        "MQTT session taken over by another node"
    );
    state
}

/// A persistent session's state, its queue emptied (the session ends next).
fn extract(session: &Session) -> Option<SessionState> {
    let (subscriptions, queue, inflight, inbound_qos2) = {
        let mut core = session.core.lock();
        if core.expiry == 0 {
            return None;
        }
        let subscriptions: Vec<SubState> = core
            .subscriptions
            .iter()
            .filter(|s| s.group.is_none())
            .map(sub_state)
            .collect();
        let queue = core.queue.clone();
        if queue.as_ref().is_some_and(|q| q.is_quorum()) {
            // A replicated queue stays (every node has it): the next session uses it, and
            // this one must not delete it when it ends.
            core.queue = None;
            core.subscriptions.retain(|s| s.group.is_some());
        }
        (
            subscriptions,
            queue,
            std::mem::take(&mut core.inflight),
            core.inbound_qos2.iter().copied().collect::<Vec<u16>>(),
        )
    };
    let mut messages = Vec::new();
    // Those in flight first: they were delivered before the ones still queued.
    for i in inflight {
        if let Some((q, m)) = i.source {
            let own = queue.as_ref().is_some_and(|o| Arc::ptr_eq(o, &q));
            if own && !q.is_quorum() {
                messages.push(serde_bytes::ByteBuf::from(
                    crate::cluster::mqtt::encode_message(&m.message, q.name()),
                ));
                q.settle([&m]);
            } else {
                q.requeue([m]);
            }
        }
    }
    if let Some(q) = queue.filter(|q| !q.is_quorum()) {
        while let Some((m, _)) = q.get(true) {
            messages.push(serde_bytes::ByteBuf::from(
                crate::cluster::mqtt::encode_message(&m.message, q.name()),
            ));
        }
    }
    Some(SessionState {
        subscriptions,
        messages,
        inbound_qos2,
    })
}

impl Conn {
    /// Installs a session handed over by another node (before CONNACK and `attach`, so its
    /// messages wait for the connection): its subscriptions bound to this session's queue (a
    /// persistent one if this connection's `expiry` says so), its messages queued, its inbound
    /// QoS 2 ids kept; then announced (`Some`: done once the other nodes route to it).
    pub(super) fn install(
        &mut self,
        state: SessionState,
        expiry: u32,
    ) -> Option<Arc<ReplicaConfirm>> {
        self.session.core.lock().expiry = expiry;
        if let Some(f) = forwarder(&self.server) {
            // Another node's proxy of this session's queue is stale now: it lives here.
            let name = format!("mqtt-session-{}", self.session.client_id);
            f.mqtt_owned_here(self.session.vhost.name(), &name);
        }
        for s in state.subscriptions {
            let Some(queue) = self.subscription_queue(None, &s.filter) else {
                continue;
            };
            let bound = self.session.vhost.bind(
                self.exchange.name.as_ref(),
                Destination::Queue(Arc::clone(&queue)),
                &s.pattern,
                Table::new(),
            );
            if bound.is_err() {
                continue;
            }
            let Ok(qos) = QoS::try_from(s.qos) else {
                continue;
            };
            let mut options = SubscriptionOptions::new(qos);
            options.no_local = s.no_local;
            options.retain_as_published = s.retain_as_published;
            options.retain_handling = match s.retain_handling {
                1 => RetainHandling::SendIfNew,
                2 => RetainHandling::DoNotSend,
                _ => RetainHandling::SendAtSubscribe,
            };
            let sub = Subscription {
                key: s.key,
                filter: s.filter,
                pattern: s.pattern,
                options,
                id: s.id,
                queue,
                group: None,
            };
            let mut core = self.session.core.lock();
            match core.subscriptions.iter_mut().find(|x| x.key == sub.key) {
                Some(existing) => *existing = sub,
                None => core.subscriptions.push(sub),
            }
        }
        let queue = self.session.core.lock().queue.clone();
        if let Some(q) = queue {
            for record in state.messages {
                if let Some(m) = crate::cluster::mqtt::decode_message(record.into_vec()) {
                    q.enqueue(m);
                }
            }
        }
        {
            let mut core = self.session.core.lock();
            if !state.inbound_qos2.is_empty() {
                core.inbound_qos2.extend(state.inbound_qos2);
                core.inbound_qos2_dirty |= super::persist::keeps_inbound_qos2(&self.session, &core);
            }
        }
        super::persist::save(&self.session);
        super::persist::save_inbound_qos2(&self.session);
        announce(&self.server, &self.session)
    }
}
