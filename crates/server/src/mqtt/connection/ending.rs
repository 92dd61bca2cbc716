//! The end of an MQTT connection: detaching from the session, the will, and the session's
//! end or keeping (its expiry).

use super::*;

impl Conn {
    /// Detaches from the session, publishes the will if due, and ends or keeps the session.
    pub(super) fn finish(&mut self, end: End) {
        let session = Arc::clone(&self.session);
        let (queues, expiry) = {
            let mut core = session.core.lock();
            core.attached = None;
            (self.session_queues(&core), core.expiry)
        };
        if expiry != 0 {
            // A read batch that ended the connection (DISCONNECT, a protocol error after a QoS 2
            // PUBLISH) returned before the packet loop wrote its inbound QoS 2 ids: write them
            // now, or a resend after a restart would be routed again. Only a persistent
            // session's ids are ever dirty; a failed write is logged and the ids stay in memory.
            super::super::persist::save_inbound_qos2(&session);
        }
        let own = session.core.lock().queue.clone();
        for q in &queues {
            // A shared group's queue is auto-delete: a session that outlives this connection
            // stays its consumer (without credit while detached), or the queue and its binding
            // would go with the last member online. Ending the session removes it (`discard`).
            let shared = !own.as_ref().is_some_and(|o| Arc::ptr_eq(o, q));
            if expiry != 0 && shared {
                continue;
            }
            self.session
                .vhost
                .remove_consumer(q, session.uid, &session.client_id);
        }
        self.server
            .mqtt
            .stats
            .connected
            .fetch_sub(1, Ordering::Relaxed);
        let generation = session.generation.load(Ordering::Relaxed);
        let will = match end {
            End::Disconnect { with_will: false } => None,
            _ => self.will.take(),
        };
        // The will is a PUBLISH: it needs the same permissions (RabbitMQ checks them too).
        self.refresh_authz();
        let will = will.filter(|w| {
            super::super::authz::check_publish(&self.authz, &self.exchange, &w.topic).is_ok()
        });
        if let Some(will) = will {
            let delay = will.properties.will_delay_interval.unwrap_or(0).min(expiry);
            let (vhost, exchange) = (Arc::clone(&self.session.vhost), Arc::clone(&self.exchange));
            // MQTT across the cluster: a retained will is set on every node (`mqtt/cluster.rs`).
            let server = Arc::clone(&self.server);
            let publish_will = move || {
                let retained = will
                    .retain
                    .then(|| super::super::topic::to_routing_key(will.topic.as_str()));
                publish_will(&vhost, &exchange, *will, session.uid);
                if let Some(key) = retained {
                    super::super::cluster::retained(&server, &vhost, &key);
                }
            };
            if delay == 0 {
                publish_will();
            } else {
                // [MQTT-3.1.3-9]: a delayed will is not sent if the session resumes in time.
                let session = Arc::clone(&self.session);
                tokio::spawn(async move {
                    sleep(Duration::from_secs(u64::from(delay))).await;
                    if session.generation.load(Ordering::Relaxed) == generation {
                        publish_will();
                    }
                });
            }
        }
        let registry_owner = Arc::clone(&self.server);
        // A deleted vhost's session ends now: no expiry timer may keep it (and the vhost) alive.
        let expiry = if self.session.vhost.is_deleted() {
            0
        } else {
            expiry
        };
        match expiry {
            0 => registry_owner.mqtt.registry.end(&self.session),
            u32::MAX => {}
            secs => {
                let session = Arc::clone(&self.session);
                tokio::spawn(async move {
                    sleep(Duration::from_secs(u64::from(secs))).await;
                    let idle = session.generation.load(Ordering::Relaxed) == generation
                        && session.lease.is_free();
                    if idle {
                        registry_owner.mqtt.registry.end(&session);
                    }
                });
            }
        }
        tracing::debug!(peer = %self.peer(), client_id = %self.session.client_id, ?end, "MQTT client gone");
    }
}

fn publish_will(vhost: &VHost, exchange: &Arc<Exchange>, will: LastWill, origin: u64) {
    let w = will.properties;
    let props = PublishProperties {
        payload_format_indicator: w.payload_format_indicator,
        message_expiry_interval: w.message_expiry_interval,
        content_type: w.content_type,
        response_topic: w.response_topic,
        correlation_data: w.correlation_data,
        user_properties: w.user_properties,
        ..PublishProperties::default()
    };
    super::super::handlers::publish_message(
        vhost,
        exchange,
        &will.topic,
        will.qos,
        will.retain,
        &props,
        Bytes::copy_from_slice(&will.payload),
        origin,
    );
}
