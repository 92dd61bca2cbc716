//! Permissions and limits of MQTT clients, as RabbitMQ's MQTT plugin maps them onto AMQP
//! resources (`rabbit_mqtt_processor.erl`):
//!
//! - CONNECT: the vhost's and the user's connection limits (CONNACK 0x97 Quota exceeded in
//!   5.0, 0x05 Not authorized in 3.1.1, as `connect_reason_code_to_return_code`), then access
//!   to the vhost (0x87 / 0x05).
//! - SUBSCRIBE: creating the session (or shared) queue needs configure on it (and room under
//!   `max-queues`), consuming it read; the binding needs write on the queue, read on the
//!   exchange (`amq.topic` or `mqtt_exchange`) and the topic read permission on the binding
//!   key (the filter mapped as `topic.rs` maps it). A refusal answers 0x87 in SUBACK (0x80 in
//!   3.1.1).
//! - UNSUBSCRIBE: the binding's permissions again (0x87 in 5.0's UNSUBACK).
//! - PUBLISH (and the will): write on the exchange and the topic write permission on the
//!   routing key.
//!
//! RabbitMQ's `mqtt.disconnect_on_unauthorized` (default true, `mqtt_disconnect_on_unauthorized`
//! here) closes the connection after a refused PUBLISH or SUBSCRIBE (after the SUBACK); when
//! false, a refused QoS 1/2 PUBLISH is answered 0x87 (a plain PUBACK in 3.1.1, which has no
//! reason codes) and dropped, a QoS 0 one dropped, and the connection stays.

use super::connection::Conn;
use super::topic;
use crate::authz::{Authz, Kind, Refused};
use crate::limits::{self, ConnectionSlots};
use crate::ServerState;
use mqtt_wire::{ProtocolVersion, ReasonCode, TopicName};
use pigeon_broker::permission::Access;
use pigeon_broker::VHost;
use std::sync::Arc;

/// Admits a client to `vhost` as `user`: the connection limits first, then access to the
/// vhost. Refusals are logged here; the reason code is the CONNACK's.
pub(super) fn admit(
    server: &ServerState,
    vhost: &VHost,
    user: &str,
    client_id: &str,
    version: ProtocolVersion,
) -> Result<(Arc<Authz>, ConnectionSlots), ReasonCode> {
    let access = server.broker.access();
    let slots = server
        .limits
        .open_connection(access, vhost.name(), user)
        .map_err(|e| {
            tracing::warn!(client_id, reason = %e, "MQTT connection refused: limit reached");
            if version == ProtocolVersion::V5 {
                ReasonCode::QuotaExceeded
            } else {
                ReasonCode::NotAuthorized
            }
        })?;
    let authz = Authz::compile_shared(&server.grants, access, user, vhost.name(), Some(client_id));
    authz.check_vhost().map_err(|_| ReasonCode::NotAuthorized)?;
    Ok((authz, slots))
}

/// What a subscription needs of its queue and its binding.
pub(super) struct SubscribeCheck<'a> {
    /// The queue the subscription binds (the session's or the shared group's).
    pub queue: &'a str,
    /// Whether that queue exists already (else it is declared: configure, max-queues).
    pub queue_exists: bool,
    /// The binding key (the filter as a binding pattern).
    pub pattern: &'a str,
}

impl Conn {
    /// Recompiles the permissions if they changed since (one atomic load otherwise).
    pub(super) fn refresh_authz(&mut self) {
        Authz::refresh_for(
            &mut self.authz,
            self.server.broker.access(),
            Some(&self.session.client_id),
        );
    }

    /// Whether the client may publish to `topic_name` (write on the exchange, topic write on
    /// the routing key). The last topic allowed is remembered with the permissions'
    /// generation, so a client publishing to one topic does no regex match.
    pub(super) fn check_publish(&mut self, topic_name: &TopicName) -> Result<(), Refused> {
        self.refresh_authz();
        let generation = self.authz.generation();
        let publishing = self.publishing();
        if matches!(&publishing.allowed, Some((g, t)) if *g == generation && t == topic_name) {
            return Ok(());
        }
        check_publish(&self.authz, &self.exchange, topic_name)?;
        self.publishing().allowed = Some((generation, topic_name.clone()));
        Ok(())
    }

    /// Checks a new subscription (see the module's documentation). `Err` carries the SUBACK
    /// reason code.
    pub(super) fn check_subscribe(&mut self, c: &SubscribeCheck<'_>) -> Result<(), ReasonCode> {
        self.refresh_authz();
        let authz = &self.authz;
        let refused = |_: Refused| ReasonCode::NotAuthorized;
        if !c.queue_exists {
            authz
                .check(Access::Configure, Kind::Queue, c.queue)
                .map_err(refused)?;
            limits::check_queue_limit(self.server.broker.access(), &self.session.vhost, c.queue).map_err(
                |e| {
                    tracing::warn!(client_id = %self.session.client_id, reason = %e, "MQTT subscription refused: limit reached");
                    ReasonCode::QuotaExceeded
                },
            )?;
        }
        authz
            .check(Access::Read, Kind::Queue, c.queue)
            .map_err(refused)?;
        self.check_binding(c.queue, c.pattern).map_err(refused)
    }

    /// A binding of the exchange to `queue` with `pattern`, made or removed: write on the
    /// queue, read on the exchange, topic read on the pattern.
    pub(super) fn check_binding(&self, queue: &str, pattern: &str) -> Result<(), Refused> {
        let authz = &self.authz;
        authz.check(Access::Write, Kind::Queue, queue)?;
        authz.check(Access::Read, Kind::Exchange, &self.exchange.name)?;
        authz.check_topic(Access::Read, &self.exchange, pattern)
    }

    /// Whether a refused PUBLISH or SUBSCRIBE ends the connection.
    pub(super) fn disconnect_on_unauthorized(&self) -> bool {
        self.server.config.mqtt_disconnect_on_unauthorized
    }
}

/// Write on the exchange and topic write on the routing key of `topic_name` (also for wills).
pub(super) fn check_publish(
    authz: &Authz,
    exchange: &pigeon_broker::Exchange,
    topic_name: &TopicName,
) -> Result<(), Refused> {
    authz.check(Access::Write, Kind::Exchange, &exchange.name)?;
    if authz.has_topic_permissions() {
        let key = topic::to_routing_key(topic_name.as_str());
        authz.check_topic(Access::Write, exchange, &key)?;
    }
    Ok(())
}
