//! Delivering to an MQTT session: the broker's consumer sink, and PUBLISH encoding.
//!
//! A sink runs on the publisher's task with the queue's lock held. It picks the QoS (the
//! lower of the message's and the best matching subscription's), allocates a packet id for
//! QoS 1/2, records the message in flight and encodes the PUBLISH straight into the attached
//! connection's outbound buffer. Credit is the client's receive maximum minus what is in
//! flight [MQTT-3.3.4-9], and room in the outbound buffer.

use super::convert;
use super::session::{Inflight, Session};
use super::topic;
use crate::outbound::Outbound;
use mqtt_wire::{encode, Packet, ProtocolVersion, Publish, QoS, TopicName};
use pigeon_broker::{ConsumerSink, Delivered, Queue, QueuedMessage};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The connection a session is attached to, as its deliveries see it.
pub struct Attached {
    /// Its protocol version.
    pub version: ProtocolVersion,
    /// The largest packet the client accepts (5.0 Maximum Packet Size, a four-byte integer).
    pub max_packet_size: u32,
    /// QoS 1/2 messages the client accepts in flight (5.0 Receive Maximum, two bytes).
    pub receive_maximum: u16,
    /// The connection's registry entry, for its message counters (allocated at the first
    /// count, see `registry::Entry::counters`).
    pub(crate) entry: Arc<crate::registry::Entry>,
    /// Topic aliases the client accepts from us (5.0 Topic Alias Maximum).
    pub alias_max: u16,
    /// Topic aliases assigned on this connection; allocated at the first (5.0 clients that
    /// accept aliases only), as every session of a connected client holds an `Attached`.
    // Boxed on purpose: 8 bytes instead of 48 in every online session.
    #[allow(clippy::box_collection)]
    pub aliases: Option<Box<HashMap<String, u16>>>,
}

impl Attached {
    /// Its outbound buffer (the registry entry's: not kept twice, 8 bytes of every online
    /// session).
    pub fn out(&self) -> &Arc<Outbound> {
        &self.entry.out
    }

    /// Encodes a PUBLISH for this connection: topic alias, size limit. Returns false when the
    /// packet is larger than the client accepts and was dropped [MQTT-3.1.2-25].
    pub fn send_publish(&mut self, mut publish: Publish) -> bool {
        // A new alias is only remembered once its PUBLISH is actually sent: the client must
        // have seen the topic before it is referred to by alias alone.
        let mut new_alias = None;
        if self.version != ProtocolVersion::V5 {
            publish.properties = Default::default();
        } else if self.alias_max > 0 {
            if let Some(name) = publish.topic.as_ref().map(|t| t.as_str().to_string()) {
                let aliases = self.aliases.get_or_insert_with(Default::default);
                match aliases.get(&name) {
                    Some(&alias) => {
                        publish.properties.topic_alias = Some(alias);
                        publish.topic = None;
                    }
                    None if aliases.len() < usize::from(self.alias_max) => {
                        let alias = aliases.len() as u16 + 1;
                        publish.properties.topic_alias = Some(alias);
                        new_alias = Some((name, alias));
                    }
                    None => {}
                }
            }
        }
        let (dup, qos) = (publish.dup, publish.qos);
        let packet = Packet::Publish(publish);
        if packet.encoded_len(self.version) > self.max_packet_size as usize {
            self.entry
                .counters()
                .dropped
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!("PUBLISH larger than the client's maximum packet size, dropped");
            return false;
        }
        if let Some((name, alias)) = new_alias {
            self.aliases
                .get_or_insert_with(Default::default)
                .insert(name, alias);
        }
        let version = self.version;
        self.out().send(|buf| {
            if let Err(e) = encode(&packet, version, buf) {
                tracing::warn!(error = %e, "cannot encode PUBLISH");
            }
        });
        // QoS 0 is settled on sending, as RabbitMQ counts it (consume_auto_ack).
        let counters = self.entry.counters();
        counters.on_deliver(false, qos == QoS::AtMostOnce, dup);
        counters.sent_qos[qos as usize].fetch_add(1, Ordering::Relaxed);
        true
    }
}

/// A session's consumer on one queue (its own, or a shared subscription's).
pub struct MqttSink {
    /// The session.
    pub session: Arc<Session>,
}

impl ConsumerSink for MqttSink {
    fn try_reserve(&self) -> bool {
        let core = self.session.core.lock();
        match &core.attached {
            Some(a) => a.out().has_room() && core.inflight.len() < usize::from(a.receive_maximum),
            None => false,
        }
    }

    fn deliver(&self, queue: &Arc<Queue>, message: QueuedMessage) -> Delivered {
        let mut core = self.session.core.lock();
        let m = &message.message;
        let name = topic::from_routing_key(m.routing_key_in(queue.name()));
        let own = m.origin() == self.session.uid;
        let Some((sub_qos, ids, rap)) = core.matching(queue, &name, own) else {
            return Delivered::Settled;
        };
        let v5 = core
            .attached
            .as_ref()
            .is_some_and(|a| a.version == ProtocolVersion::V5);
        let out = convert::outgoing(m.properties_raw(), m.age(), v5);
        if out.expired {
            return Delivered::Settled;
        }
        let Ok(topic) = TopicName::new(name) else {
            return Delivered::Settled;
        };
        let qos = out.qos.min(sub_qos);
        let mut properties = out.properties;
        properties.subscription_identifiers = ids;
        let mut publish = Publish {
            // A message given back (after a reconnect or a restart) is flagged as a resend.
            dup: message.redelivered && qos != QoS::AtMostOnce,
            qos,
            // [MQTT-3.3.1-9]: live deliveries clear RETAIN unless retain-as-published.
            retain: rap && out.retain,
            topic: Some(topic),
            packet_id: None,
            properties,
            payload: m.body_bytes(),
        };
        if qos == QoS::AtMostOnce {
            if let Some(a) = core.attached.as_mut() {
                a.send_publish(publish);
            }
            return Delivered::Settled;
        }
        let Some(packet_id) = core.allocate_packet_id() else {
            return Delivered::Settled;
        };
        publish.packet_id = Some(packet_id);
        let too_large = core
            .attached
            .as_mut()
            .is_some_and(|a| !a.send_publish(publish.clone()));
        if too_large {
            // [MQTT-3.1.2-25]: discarded as if its delivery had completed; kept in flight it
            // would hold a receive-maximum slot for good and be "resent" at every reconnect.
            return Delivered::Settled;
        }
        core.inflight.push_back(Inflight {
            packet_id,
            publish,
            source: Some((Arc::clone(queue), message)),
            released: false,
        });
        Delivered::Pending
    }

    fn cancelled(&self) {}
}
