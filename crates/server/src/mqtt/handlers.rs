//! What an MQTT connection does with each packet after CONNECT.

use super::authz::SubscribeCheck;
use super::connection::{Conn, End};
use super::session::{Inflight, Subscription};
use super::{convert, topic};
use bytes::Bytes;
use mqtt_wire::{
    Packet, PubAck, PubComp, PubRec, PubRel, Publish, PublishProperties, QoS, ReasonCode,
    RetainHandling, SubAck, Subscribe, TopicName, UnsubAck, Unsubscribe,
};
use pigeon_broker::{
    Destination, Exchange, Message, Properties, Published, QueueOptions, Table, VHost, Value,
};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// Routes a message published over MQTT (a PUBLISH or a will) and stores it if retained.
#[allow(clippy::too_many_arguments)]
pub(super) fn publish_message(
    vhost: &VHost,
    exchange: &Arc<Exchange>,
    topic_name: &TopicName,
    qos: QoS,
    retain: bool,
    properties: &PublishProperties,
    payload: Bytes,
    origin: u64,
) -> Published {
    let key = topic::to_routing_key(topic_name.as_str());
    let props = convert::amqp_properties(qos, retain, properties);
    let message = Message::new(
        &*exchange.name,
        &key,
        Properties::new(props, &crate::amqp::AMQP_CODEC),
        payload,
        origin,
    );
    if retain {
        // [MQTT-3.3.1-5..7]: a retained PUBLISH replaces the topic's retained message; an
        // empty payload clears it (and is still delivered to current subscribers).
        let keep = (message.body_len() > 0).then(|| message.clone());
        vhost.retained.set(&key, keep);
    }
    vhost.publish(exchange, &message)
}

/// Queue arguments limiting a session queue: beyond the limit the oldest messages are dropped
/// (`x-overflow` drop-head, the default).
fn max_length(limit: usize) -> Table {
    Table(vec![(
        "x-max-length".to_string(),
        Value::Int(i64::try_from(limit).unwrap_or(i64::MAX)),
    )])
}

impl Conn {
    /// Handles one packet; `Err` ends the connection.
    pub(super) fn handle(&mut self, packet: Packet) -> Result<(), End> {
        match packet {
            Packet::Publish(p) => self.publish(p)?,
            Packet::PubAck(a) => {
                // Lock order: a queue calls the session's sink with its own lock held, so the
                // session lock is never held while calling into a queue (settle after it).
                let acked = {
                    let mut core = self.session.core.lock();
                    let at = core
                        .inflight
                        .iter()
                        .position(|i| i.packet_id == a.packet_id && !i.released);
                    at.and_then(|i| core.inflight.remove(i))
                };
                if let Some(acked) = acked {
                    let counters = self.reg.entry.counters();
                    counters.acknowledged.fetch_add(1, Ordering::Relaxed);
                    if let Some((q, m)) = acked.source {
                        q.settle([&m]);
                    }
                    self.needs_dispatch = true;
                }
            }
            Packet::PubRec(r) => {
                let mut core = self.session.core.lock();
                let found = core
                    .inflight
                    .iter()
                    .position(|i| i.packet_id == r.packet_id);
                let Some(i) = found else {
                    drop(core);
                    let mut rel = PubRel::new(r.packet_id);
                    rel.reason = ReasonCode::PacketIdentifierNotFound;
                    self.send(&Packet::PubRel(rel));
                    return Ok(());
                };
                // The message is delivered as far as the queue is concerned; what is left is
                // the release handshake. (Settled once the session lock is released.)
                let source = core.inflight.get_mut(i).and_then(|i| i.source.take());
                if r.reason.is_error() {
                    core.inflight.remove(i);
                    self.needs_dispatch = true;
                } else if let Some(i) = core.inflight.get_mut(i) {
                    i.released = true;
                }
                drop(core);
                if let Some((q, m)) = source {
                    q.settle([&m]);
                }
                if !r.reason.is_error() {
                    self.send(&Packet::PubRel(PubRel::new(r.packet_id)));
                }
            }
            Packet::PubComp(c) => {
                let mut core = self.session.core.lock();
                let found = core
                    .inflight
                    .iter()
                    .position(|i| i.packet_id == c.packet_id && i.released);
                if let Some(i) = found {
                    core.inflight.remove(i);
                    self.needs_dispatch = true;
                }
            }
            Packet::PubRel(r) => {
                let (known, kept) = {
                    let mut core = self.session.core.lock();
                    let known = core.inbound_qos2.remove(&r.packet_id);
                    let kept = known && super::persist::keeps_inbound_qos2(&self.session, &core);
                    core.inbound_qos2_dirty |= kept;
                    (known, kept)
                };
                let mut comp = PubComp::new(r.packet_id);
                if !known {
                    comp.reason = ReasonCode::PacketIdentifierNotFound;
                }
                // A kept id is removed from the store before PUBCOMP: after PUBCOMP the client
                // may reuse it for a new message, which must not pass for a resend.
                if kept {
                    self.publishing()
                        .pending_acks
                        .push_back((0, Packet::PubComp(comp), None));
                } else {
                    self.send(&Packet::PubComp(comp));
                }
            }
            Packet::Subscribe(s) => self.subscribe(s)?,
            Packet::Unsubscribe(u) => self.unsubscribe(u),
            Packet::PingReq => self.send(&Packet::PingResp),
            Packet::Disconnect(d) => {
                if let Some(expiry) = d.properties.session_expiry_interval {
                    if self.connect_expiry_zero && expiry != 0 {
                        // [MQTT-3.14.2-2]
                        self.disconnect(ReasonCode::ProtocolError);
                        return Err(End::Abnormal);
                    }
                    self.session.core.lock().expiry = expiry;
                    super::persist::save(&self.session);
                }
                return Err(End::Disconnect {
                    with_will: d.reason == ReasonCode::DisconnectWithWillMessage,
                });
            }
            Packet::Auth(_) => {
                self.disconnect(ReasonCode::BadAuthenticationMethod);
                return Err(End::Abnormal);
            }
            other => {
                // A second CONNECT [MQTT-3.1.0-2] or a server-to-client packet.
                tracing::info!(peer = %self.peer(), packet = ?other.packet_type(), "unexpected packet, closing");
                self.disconnect(ReasonCode::ProtocolError);
                return Err(End::Abnormal);
            }
        }
        Ok(())
    }

    fn publish(&mut self, p: Publish) -> Result<(), End> {
        self.publisher = true;
        // MQTT 5 topic alias [MQTT-3.3.2-7..12].
        let topic_name = match (p.properties.topic_alias, p.topic) {
            (Some(a), _) if a == 0 || a > self.server.config.mqtt_topic_alias_maximum => {
                self.disconnect(ReasonCode::TopicAliasInvalid);
                return Err(End::Abnormal);
            }
            (Some(a), Some(t)) if !t.as_str().is_empty() => {
                self.publishing().aliases.insert(a, t.clone());
                t
            }
            (Some(a), _) => match self.publishing().aliases.get(&a) {
                Some(t) => t.clone(),
                None => {
                    self.disconnect(ReasonCode::ProtocolError);
                    return Err(End::Abnormal);
                }
            },
            (None, Some(t)) if !t.as_str().is_empty() => t,
            (None, _) => {
                self.disconnect(ReasonCode::ProtocolError);
                return Err(End::Abnormal);
            }
        };
        if self.check_publish(&topic_name).is_err() {
            return self.refuse_publish(p.qos, p.packet_id);
        }
        // The PUBREC must wait until the packet id is in the store (persistent session).
        let mut id_to_write = false;
        if p.qos == QoS::ExactlyOnce {
            let id = p.packet_id.unwrap_or(0);
            let mut core = self.session.core.lock();
            // Exactly once: a PUBLISH resent before PUBREL is acknowledged, not routed again.
            if core.inbound_qos2.contains(&id) {
                let wait = core.inbound_qos2_dirty || self.acks_waiting() > 0;
                drop(core);
                let rec = Packet::PubRec(PubRec::new(id));
                if wait {
                    self.publishing().pending_acks.push_back((0, rec, None));
                } else {
                    self.send(&rec);
                }
                return Ok(());
            }
            if self.receive_maximum_reached(core.inbound_qos2.len()) {
                drop(core);
                self.disconnect(ReasonCode::ReceiveMaximumExceeded);
                return Err(End::Abnormal);
            }
            core.inbound_qos2.insert(id);
            id_to_write = super::persist::keeps_inbound_qos2(&self.session, &core);
            core.inbound_qos2_dirty |= id_to_write;
        }
        let mut properties = p.properties;
        properties.topic_alias = None;
        let published = publish_message(
            &self.session.vhost,
            &self.exchange,
            &topic_name,
            p.qos,
            p.retain,
            &properties,
            // A slice would pin the connection's read buffer: a large payload is copied.
            Message::body_from_buffer(p.payload.clone()),
            self.session.uid,
        );
        if p.retain {
            // MQTT across the cluster (`mqtt/cluster.rs`): every node's retained store.
            let key = topic::to_routing_key(topic_name.as_str());
            super::cluster::retained(&self.server, &self.session.vhost, &key);
        }
        let counters = self.reg.entry.counters();
        counters.on_publish(
            published.queues,
            false,
            p.qos != QoS::AtMostOnce,
            p.payload.len(),
        );
        counters.received_qos[p.qos as usize].fetch_add(1, Ordering::Relaxed);
        // Once per connection (the permission check may have made `publishing` already).
        if !self.reg.entry.publisher.load(Ordering::Relaxed) {
            self.reg.entry.publisher.store(true, Ordering::Relaxed);
        }
        let cost = crate::memory::message_cost(p.payload.len());
        let publishing = self.publishing.get_or_insert_with(Default::default);
        publishing.gathered.add(&published.reached);
        publishing.charged += cost;
        if publishing.charged >= crate::memory::LOCAL_CHUNK {
            crate::memory::charge(&self.server, std::mem::take(&mut publishing.charged));
        }
        if p.qos != QoS::AtMostOnce {
            counters.confirmed.fetch_add(1, Ordering::Relaxed);
        }
        let ack = match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => Packet::PubAck(PubAck::new(id)),
            (QoS::ExactlyOnce, Some(id)) => Packet::PubRec(PubRec::new(id)),
            _ => return Ok(()),
        };
        // A QoS 1/2 message written to disk is acknowledged once it is synced; acks stay in
        // order behind any that wait.
        let epoch = match (&self.server.store, published.stored) {
            (Some(store), true) => store.current_epoch(),
            _ => 0,
        };
        // Queues homed on other nodes of the cluster acknowledge through it (cluster/forward.rs).
        let remote = published.remote.clone();
        if epoch == 0
            && self.acks_waiting() == 0
            && !id_to_write
            && remote.is_none()
            && published.replicated.is_none()
        {
            self.send(&ack);
        } else {
            if let (Some(remote), Some(id)) = (remote, p.packet_id) {
                self.publishing().remote.insert(id, remote);
            }
            self.publishing()
                .pending_acks
                .push_back((epoch, ack, published.replicated.clone()));
        }
        Ok(())
    }

    /// A PUBLISH the permissions refuse (logged by `authz.rs`): the connection closes, or,
    /// with `mqtt_disconnect_on_unauthorized` off, it is dropped with reason 0x87 for QoS 1/2
    /// (rabbit_mqtt_processor `publish_to_queues_with_checks`; QoS 2 gets a PUBREC, which
    /// ends the exchange when its reason is an error [MQTT-4.3.3]).
    fn refuse_publish(&mut self, qos: QoS, packet_id: Option<u16>) -> Result<(), End> {
        if self.disconnect_on_unauthorized() {
            self.disconnect(ReasonCode::NotAuthorized);
            return Err(End::Abnormal);
        }
        let ack = match (qos, packet_id) {
            (QoS::AtLeastOnce, Some(id)) => {
                let mut a = PubAck::new(id);
                a.reason = ReasonCode::NotAuthorized;
                Packet::PubAck(a)
            }
            (QoS::ExactlyOnce, Some(id)) => {
                let mut r = PubRec::new(id);
                r.reason = ReasonCode::NotAuthorized;
                Packet::PubRec(r)
            }
            _ => return Ok(()),
        };
        // In order behind acknowledgements still waiting for the store.
        if self.acks_waiting() == 0 {
            self.send(&ack);
        } else {
            self.publishing().pending_acks.push_back((0, ack, None));
        }
        Ok(())
    }

    /// Whether the client has as many QoS 1/2 PUBLISHes unacknowledged as the Receive Maximum
    /// allows [MQTT-3.3.4-9]: QoS 2 ids awaiting PUBREL (`inbound_qos2`) plus the PUBACK and
    /// PUBCOMP still waiting here (a waiting PUBREC's id is already in `inbound_qos2`).
    fn receive_maximum_reached(&self, inbound_qos2: usize) -> bool {
        let max = usize::from(self.server.config.mqtt_receive_maximum);
        if inbound_qos2 + self.acks_waiting() < max {
            return false;
        }
        let waiting = self
            .publishing
            .iter()
            .flat_map(|p| p.pending_acks.iter())
            .filter(|(_, p, _)| !matches!(p, Packet::PubRec(_)))
            .count();
        inbound_qos2 + waiting >= max
    }

    fn subscribe(&mut self, s: Subscribe) -> Result<(), End> {
        let mut reasons = Vec::with_capacity(s.filters.len());
        // MQTT across the cluster: the filters, for the metadata group (`mqtt/cluster.rs`).
        let keys: Vec<String> = s
            .filters
            .iter()
            .map(|(f, _)| f.as_str().to_string())
            .collect();
        let mut unauthorized = false;
        let mut retained = Vec::new();
        for (filter, options) in s.filters {
            let key = filter.as_str().to_string();
            let (group, match_filter) = match filter.shared() {
                Some(sh) => (Some(sh.group.to_string()), sh.filter.to_string()),
                None => (None, filter.as_str().to_string()),
            };
            if self
                .server
                .config
                .mqtt_deny_subscribe
                .iter()
                .any(|d| d == filter.as_str() || d == &match_filter)
            {
                // 0x80 in both versions, as the Paho conformance suite and Mosquitto's ACLs
                // answer.
                reasons.push(ReasonCode::UnspecifiedError);
                continue;
            }
            let pattern = topic::to_binding_pattern(&match_filter);
            let (queue_name, queue_exists) =
                self.subscription_queue_name(group.as_deref(), &match_filter);
            let check = SubscribeCheck {
                queue: &queue_name,
                queue_exists,
                pattern: &pattern,
            };
            if let Err(code) = self.check_subscribe(&check) {
                unauthorized |= code == ReasonCode::NotAuthorized;
                reasons.push(code);
                continue;
            }
            let Some(queue) = self.subscription_queue(group.as_deref(), &match_filter) else {
                reasons.push(ReasonCode::UnspecifiedError);
                continue;
            };
            let bound = self.session.vhost.bind(
                self.exchange.name.as_ref(),
                Destination::Queue(Arc::clone(&queue)),
                &pattern,
                Table::new(),
            );
            if bound.is_err() {
                reasons.push(ReasonCode::UnspecifiedError);
                continue;
            }
            let granted = options.qos.min(QoS::ExactlyOnce);
            let is_new = {
                let mut core = self.session.core.lock();
                let sub = Subscription {
                    key: key.clone(),
                    filter: match_filter.clone(),
                    pattern: pattern.clone(),
                    options,
                    id: s.properties.subscription_identifier,
                    queue: Arc::clone(&queue),
                    group: group.clone(),
                };
                match core.subscriptions.iter_mut().find(|x| x.key == key) {
                    Some(existing) => {
                        *existing = sub;
                        false
                    }
                    None => {
                        core.subscriptions.push(sub);
                        true
                    }
                }
            };
            if group.is_some() && is_new {
                self.consume(&queue);
            }
            reasons.push(ReasonCode::granted(granted));
            // [MQTT-3.3.1-9], 5.0 retain handling; shared subscriptions get no retained messages.
            let send_retained = group.is_none()
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => is_new,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                for m in self.session.vhost.retained.matching(&pattern) {
                    // Retained messages come from MQTT publishes, which store their key.
                    let name = topic::from_routing_key(m.routing_key().unwrap_or_default());
                    if topic::matches(&match_filter, &name) {
                        retained.push((m, granted, s.properties.subscription_identifier));
                    }
                }
            }
        }
        super::persist::save(&self.session);
        let suback = Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: Default::default(),
            reasons,
        });
        // MQTT across the cluster (`mqtt/cluster.rs`): the SUBACK waits until the other nodes
        // route to the session's queue, so that a publish anywhere after it reaches it, and
        // until a persistent session's subscriptions are committed by the metadata group.
        match super::cluster::subscribed(&self.server, &self.session, &keys) {
            Some(done) => self
                .publishing()
                .pending_acks
                .push_back((0, suback, Some(done))),
            None => self.send(&suback),
        }
        if unauthorized && self.disconnect_on_unauthorized() {
            // After the SUBACK, and without the retained messages (rabbit_mqtt_processor
            // SUBSCRIBE with disconnect_on_unauthorized).
            self.disconnect(ReasonCode::NotAuthorized);
            return Err(End::Abnormal);
        }
        for (m, granted, id) in retained {
            self.send_retained(&m, granted, id);
        }
        Ok(())
    }

    /// The queue a subscription would bind, and whether it exists already.
    fn subscription_queue_name(&self, group: Option<&str>, filter: &str) -> (String, bool) {
        if group.is_none() {
            if let Some(q) = self.session.core.lock().queue.as_ref() {
                return (q.name().to_string(), true);
            }
        }
        let name = self.new_queue_name(group, filter);
        let exists = self.session.vhost.queue(&name).is_ok();
        (name, exists)
    }

    /// The name of a shared group's queue, or of the session's own.
    fn new_queue_name(&self, group: Option<&str>, filter: &str) -> String {
        match group {
            Some(group) => format!("mqtt-shared-{group}-{filter}"),
            None => format!("mqtt-session-{}", self.session.client_id),
        }
    }

    /// The queue a subscription binds: the session's own (created on first use) or the shared
    /// group's.
    pub(super) fn subscription_queue(
        &mut self,
        group: Option<&str>,
        filter: &str,
    ) -> Option<Arc<pigeon_broker::Queue>> {
        let config = &self.server.config;
        if let Some(group) = group {
            let name = self.new_queue_name(Some(group), filter);
            // MQTT across the cluster: a group is one queue on one node; a member here of a
            // group owned elsewhere consumes from this node's proxy (`mqtt/cluster_shared.rs`).
            let pattern = topic::to_binding_pattern(filter);
            if let Some(q) =
                super::cluster_shared::join(&self.server, &self.session.vhost, &name, &pattern)
            {
                return Some(q);
            }
            let options = QueueOptions {
                auto_delete: true,
                arguments: max_length(config.mqtt_max_queued_messages),
                ..QueueOptions::default()
            };
            return self
                .session
                .vhost
                .declare_queue(&name, false, options, 0)
                .ok()
                .map(|d| d.queue);
        }
        if let Some(q) = self.session.core.lock().queue.clone() {
            return Some(q);
        }
        let name = self.new_queue_name(None, filter);
        // A persistent session's queue is durable: its QoS 1/2 messages survive a restart.
        let persistent = self.session.core.lock().expiry != 0;
        let mut options = QueueOptions {
            durable: persistent,
            arguments: max_length(config.mqtt_max_queued_messages),
            ..QueueOptions::default()
        };
        // `mqtt_durable_queue_type = quorum` (RabbitMQ's `mqtt.durable_queue_type`): a new
        // persistent session's queue is a quorum queue (helper quorumone).
        // A quorum session queue that exists is the session's again (a cluster's nodes all
        // have it: declared through the metadata group at CONNECT, `cluster/mqtt_failover.rs`,
        // or left by the session's previous node), declared as it is.
        let existing = self.session.vhost.queue(&name).ok();
        let quorum = persistent
            && self.server.store.is_some()
            && existing.as_ref().map_or(
                config.mqtt_durable_queue_type.as_deref() == Some("quorum"),
                |q| q.is_quorum(),
            );
        if quorum {
            let kind = pigeon_broker::Value::Str(bytes::Bytes::from_static(b"quorum"));
            options.arguments.0.push(("x-queue-type".into(), kind));
        }
        let q = self
            .session
            .vhost
            .declare_queue(&name, false, options, 0)
            .ok()?
            .queue;
        if let (true, None, Some(local)) = (quorum, &existing, &self.server.declares.local) {
            local.declared(self.session.vhost.name(), &name);
        }
        self.session.core.lock().queue = Some(Arc::clone(&q));
        self.consume(&q);
        Some(q)
    }

    /// Sends a retained message on subscribe, with the retain flag set.
    fn send_retained(&self, m: &Message, granted: QoS, id: Option<u32>) {
        let v5 = self.version == mqtt_wire::ProtocolVersion::V5;
        let out = convert::outgoing(m.properties_raw(), m.age(), v5);
        let key = m.routing_key().unwrap_or_default();
        let Ok(topic_name) = TopicName::new(topic::from_routing_key(key)) else {
            return;
        };
        if out.expired {
            return;
        }
        let qos = out.qos.min(granted);
        let mut properties = out.properties;
        properties.subscription_identifiers.extend(id);
        let mut publish = Publish {
            dup: false,
            qos,
            retain: true,
            topic: Some(topic_name),
            packet_id: None,
            properties,
            payload: m.body_bytes(),
        };
        let mut core = self.session.core.lock();
        if qos != QoS::AtMostOnce {
            let Some(id) = core.allocate_packet_id() else {
                return;
            };
            publish.packet_id = Some(id);
        }
        let sent = match core.attached.as_mut() {
            Some(a) => a.send_publish(publish.clone()),
            None => true,
        };
        // One too large for the client is dropped [MQTT-3.1.2-25], not left in flight.
        if let (true, Some(id)) = (sent, publish.packet_id) {
            core.inflight.push_back(Inflight {
                packet_id: id,
                publish,
                source: None,
                released: false,
            });
        }
    }

    fn unsubscribe(&mut self, u: Unsubscribe) {
        let mut reasons = Vec::with_capacity(u.filters.len());
        // MQTT across the cluster: the filters, for the metadata group (`mqtt/cluster.rs`).
        let keys: Vec<String> = u.filters.iter().map(|f| f.as_str().to_string()).collect();
        for filter in u.filters {
            let removed = {
                let mut core = self.session.core.lock();
                let at = core
                    .subscriptions
                    .iter()
                    .position(|s| s.key == filter.as_str());
                at.map(|i| core.subscriptions.remove(i))
            };
            let Some(sub) = removed else {
                reasons.push(ReasonCode::NoSubscriptionExisted);
                continue;
            };
            // Removing the binding needs what making it did (rabbit_mqtt_processor
            // `binding_action_with_checks`); a refusal keeps the subscription.
            self.refresh_authz();
            if sub.group.is_none() && self.check_binding(sub.queue.name(), &sub.pattern).is_err() {
                self.session.core.lock().subscriptions.push(sub);
                reasons.push(ReasonCode::NotAuthorized);
                continue;
            }
            if sub.group.is_some() {
                // The group's queue and its binding belong to every member: leaving removes
                // only this session's consumer (the last one out deletes the auto-delete queue,
                // binding included).
                self.session.vhost.remove_consumer(
                    &sub.queue,
                    self.session.uid,
                    &self.session.client_id,
                );
            } else {
                let _ = self.session.vhost.unbind(
                    self.exchange.name.as_ref(),
                    Destination::Queue(Arc::clone(&sub.queue)),
                    &sub.pattern,
                    Table::new(),
                );
            }
            reasons.push(ReasonCode::Success);
        }
        super::persist::save(&self.session);
        // MQTT across the cluster (`mqtt/cluster.rs`): the other nodes unbind too.
        super::cluster::announce(&self.server, &self.session);
        super::cluster::unsubscribed(&self.server, &self.session, &keys);
        self.send(&Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: Default::default(),
            reasons,
        }));
    }
}
