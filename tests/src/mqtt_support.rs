//! The harness of the MQTT behaviour tests: an in-process Pigeon with its MQTT listener, rumqttc
//! clients for 3.1.1 ([`Mqtt4`]) and 5.0 ([`Mqtt5`]) whose event loops run on their own task,
//! and a [`Raw`] client built on the project's `mqtt-wire` for what the protocol allows but a
//! library client hides (DUP flags, packet ids, resends, malformed input).
//!
//! MQTT tests always run against Pigeon, also in reference mode: the external broker named by
//! [`crate::EXTERNAL_URL_VAR`] is an AMQP one. Every wait goes through [`crate::within`]
//! (or, for an answer behind a long drain, an explicit longer limit: [`Raw::next_within`]).

use bytes::{Bytes, BytesMut};
use mqtt_wire::{
    decode, encode, ConnAck, Connect, Packet, ProtocolVersion, Publish, QoS, Subscribe,
    SubscriptionOptions, TopicFilter, TopicName,
};
use pigeon_server::ServerConfig;
use rumqttc::v5;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{within, ByteStream};

mod raw;
pub use raw::*;

/// A Pigeon with MQTT enabled, on 127.0.0.1 ephemeral ports.
///
/// The broker runs on a runtime of its own, on its own thread: should it deadlock, the test's
/// runtime still runs its timers, and the test fails at its [`crate::within`] instead of hanging.
/// Dropping the value shuts the broker down.
pub struct MqttBroker {
    mqtt: SocketAddr,
    amqp: SocketAddr,
    broker: std::sync::Arc<pigeon_broker::Broker>,
    _stop: oneshot::Sender<()>,
}

impl MqttBroker {
    /// Starts Pigeon with [`ServerConfig::for_tests`].
    pub async fn start() -> MqttBroker {
        Self::start_with(ServerConfig::for_tests()).await
    }

    /// Starts Pigeon with a specific configuration (MQTT must be enabled).
    pub async fn start_with(config: ServerConfig) -> MqttBroker {
        let (ready_tx, ready) = oneshot::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("pigeon-broker".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("the broker's runtime");
                runtime.block_on(async move {
                    let server = pigeon_server::start(config)
                        .await
                        .expect("start Pigeon on 127.0.0.1:0");
                    let mqtt = server.mqtt_addr().expect("the MQTT listener is enabled");
                    let broker = std::sync::Arc::clone(server.broker());
                    let _ = ready_tx.send((mqtt, server.amqp_addr(), broker));
                    // Until the MqttBroker is dropped.
                    let _ = stopped.await;
                    server.shutdown().await;
                });
            })
            .expect("start the broker's thread");
        let (mqtt, amqp, broker) = within("Pigeon to start", ready)
            .await
            .expect("Pigeon started");
        MqttBroker {
            mqtt,
            amqp,
            broker,
            _stop: stop,
        }
    }

    /// The broker core (permissions and limits are set through `broker().access()`).
    pub fn broker(&self) -> &pigeon_broker::Broker {
        &self.broker
    }

    /// The AMQP listener's address.
    pub fn amqp_addr(&self) -> SocketAddr {
        self.amqp
    }

    /// The MQTT listener's address.
    pub fn addr(&self) -> SocketAddr {
        self.mqtt
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`, for the AMQP side of a crossing.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.amqp)
    }

    /// rumqttc 3.1.1 options for `client_id` (clean session, keep-alive 60 s).
    pub fn v4(&self, client_id: &str) -> rumqttc::MqttOptions {
        rumqttc::MqttOptions::new(client_id, "127.0.0.1", self.addr().port())
    }

    /// rumqttc 5.0 options for `client_id` (clean start, keep-alive 60 s).
    pub fn v5(&self, client_id: &str) -> v5::MqttOptions {
        v5::MqttOptions::new(client_id, "127.0.0.1", self.addr().port())
    }

    /// Connects a 3.1.1 client, failing the test if it is refused.
    pub async fn connect4(&self, client_id: &str) -> Mqtt4 {
        Mqtt4::connect(self.v4(client_id)).await
    }

    /// Connects a 5.0 client, failing the test if it is refused.
    pub async fn connect5(&self, client_id: &str) -> Mqtt5 {
        Mqtt5::connect(self.v5(client_id)).await
    }

    /// Sends `connect` on a new socket and returns the client with the CONNACK.
    pub async fn raw(&self, connect: Connect) -> (Raw, ConnAck) {
        Raw::connect(self.addr(), connect).await
    }
}

/// A rumqttc 3.1.1 client whose event loop runs on its own task.
pub struct Mqtt4 {
    /// Where requests go (publish, subscribe, ...).
    pub client: rumqttc::AsyncClient,
    /// The CONNACK's session present flag.
    pub session_present: bool,
    publishes: mpsc::UnboundedReceiver<rumqttc::Publish>,
    others: mpsc::UnboundedReceiver<Result<rumqttc::Packet, rumqttc::ConnectionError>>,
    task: JoinHandle<()>,
}

impl Mqtt4 {
    /// Connects, failing the test if the broker refuses.
    pub async fn connect(options: rumqttc::MqttOptions) -> Mqtt4 {
        Self::try_connect(options)
            .await
            .unwrap_or_else(|e| panic!("3.1.1 client refused: {e:?}"))
    }

    /// Connects, returning the error when the broker refuses (or closes).
    pub async fn try_connect(
        options: rumqttc::MqttOptions,
    ) -> Result<Mqtt4, rumqttc::ConnectionError> {
        let (client, mut eventloop) = rumqttc::AsyncClient::new(options, 100);
        let session_present = match within("CONNACK", eventloop.poll()).await? {
            rumqttc::Event::Incoming(rumqttc::Packet::ConnAck(ack)) => ack.session_present,
            other => panic!("expected CONNACK, got {other:?}"),
        };
        let (pub_tx, publishes) = mpsc::unbounded_channel();
        let (other_tx, others) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(rumqttc::Event::Incoming(rumqttc::Packet::Publish(p))) => {
                        let _ = pub_tx.send(p);
                    }
                    Ok(rumqttc::Event::Incoming(other)) => {
                        let _ = other_tx.send(Ok(other));
                    }
                    Ok(rumqttc::Event::Outgoing(_)) => {}
                    Err(e) => {
                        // Stop at the first error: polling again would reconnect.
                        let _ = other_tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        Ok(Mqtt4 {
            client,
            session_present,
            publishes,
            others,
            task,
        })
    }

    /// The next PUBLISH from the broker.
    pub async fn next_publish(&mut self) -> rumqttc::Publish {
        within("a PUBLISH (3.1.1)", self.publishes.recv())
            .await
            .expect("the 3.1.1 connection ended before the PUBLISH")
    }

    /// The payload of the next PUBLISH, as text.
    pub async fn next_text(&mut self) -> String {
        String::from_utf8_lossy(&self.next_publish().await.payload).into_owned()
    }

    /// The next packet from the broker that is not a PUBLISH (or the error that ended the
    /// connection), skipping PINGRESP.
    async fn next_other(&mut self) -> Result<rumqttc::Packet, rumqttc::ConnectionError> {
        loop {
            let next = within("a packet from the broker (3.1.1)", self.others.recv())
                .await
                .expect("the 3.1.1 event loop is gone");
            if !matches!(next, Ok(rumqttc::Packet::PingResp)) {
                return next;
            }
        }
    }

    /// Subscribes and waits for the SUBACK; returns its return codes.
    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: rumqttc::QoS,
    ) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client
            .subscribe(filter, qos)
            .await
            .expect("queue SUBSCRIBE");
        match self.next_other().await {
            Ok(rumqttc::Packet::SubAck(ack)) => ack.return_codes,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Unsubscribes and waits for the UNSUBACK.
    pub async fn unsubscribe(&mut self, filter: &str) {
        self.client
            .unsubscribe(filter)
            .await
            .expect("queue UNSUBSCRIBE");
        match self.next_other().await {
            Ok(rumqttc::Packet::UnsubAck(_)) => {}
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }

    /// Publishes and, for QoS 1 and 2, waits until the broker has acknowledged it (PUBACK,
    /// or PUBCOMP after PUBREC).
    pub async fn publish(&mut self, topic: &str, qos: rumqttc::QoS, retain: bool, payload: &[u8]) {
        self.client
            .publish(topic, qos, retain, payload.to_vec())
            .await
            .expect("queue PUBLISH");
        let done = |p: &rumqttc::Packet| match qos {
            rumqttc::QoS::AtMostOnce => true,
            rumqttc::QoS::AtLeastOnce => matches!(p, rumqttc::Packet::PubAck(_)),
            rumqttc::QoS::ExactlyOnce => matches!(p, rumqttc::Packet::PubComp(_)),
        };
        if qos == rumqttc::QoS::AtMostOnce {
            return;
        }
        loop {
            match self.next_other().await {
                Ok(p) if done(&p) => return,
                Ok(_) => {}
                Err(e) => panic!("connection ended before the publish was acknowledged: {e:?}"),
            }
        }
    }

    /// Waits for the connection to end (the broker closed it) and returns why.
    pub async fn closed(&mut self) -> rumqttc::ConnectionError {
        loop {
            if let Err(e) = self.next_other().await {
                return e;
            }
        }
    }

    /// Sends DISCONNECT and waits for the broker to close the connection.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.expect("queue DISCONNECT");
        self.closed().await;
    }

    /// Drops the socket without DISCONNECT (an abnormal end: the will is due).
    pub fn kill(self) {
        self.task.abort();
    }
}

/// A rumqttc 5.0 client whose event loop runs on its own task.
pub struct Mqtt5 {
    /// Where requests go (publish, subscribe, ...).
    pub client: v5::AsyncClient,
    /// The CONNACK.
    pub connack: v5::mqttbytes::v5::ConnAck,
    publishes: mpsc::UnboundedReceiver<v5::mqttbytes::v5::Publish>,
    others: mpsc::UnboundedReceiver<Result<v5::Incoming, v5::ConnectionError>>,
    task: JoinHandle<()>,
}

impl Mqtt5 {
    /// Connects, failing the test if the broker refuses.
    pub async fn connect(options: v5::MqttOptions) -> Mqtt5 {
        Self::try_connect(options)
            .await
            .unwrap_or_else(|e| panic!("5.0 client refused: {e:?}"))
    }

    /// Connects, returning the error when the broker refuses (or closes).
    pub async fn try_connect(options: v5::MqttOptions) -> Result<Mqtt5, v5::ConnectionError> {
        let (client, mut eventloop) = v5::AsyncClient::new(options, 100);
        let connack = match within("CONNACK", eventloop.poll()).await? {
            v5::Event::Incoming(v5::Incoming::ConnAck(ack)) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        };
        let (pub_tx, publishes) = mpsc::unbounded_channel();
        let (other_tx, others) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            // rumqttc reports a PUBLISH as it came, so one sent with a topic alias alone has an
            // empty topic: resolve it here from the aliases the broker set before.
            let mut aliases = std::collections::HashMap::new();
            loop {
                match eventloop.poll().await {
                    Ok(v5::Event::Incoming(v5::Incoming::Publish(mut p))) => {
                        if let Some(alias) = p.properties.as_ref().and_then(|p| p.topic_alias) {
                            if p.topic.is_empty() {
                                p.topic = aliases.get(&alias).cloned().unwrap_or_default();
                            } else {
                                aliases.insert(alias, p.topic.clone());
                            }
                        }
                        let _ = pub_tx.send(p);
                    }
                    Ok(v5::Event::Incoming(other)) => {
                        let _ = other_tx.send(Ok(other));
                    }
                    Ok(v5::Event::Outgoing(_)) => {}
                    Err(e) => {
                        let _ = other_tx.send(Err(e));
                        return;
                    }
                }
            }
        });
        Ok(Mqtt5 {
            client,
            connack,
            publishes,
            others,
            task,
        })
    }

    /// The CONNACK's session present flag.
    pub fn session_present(&self) -> bool {
        self.connack.session_present
    }

    /// The next PUBLISH from the broker.
    pub async fn next_publish(&mut self) -> v5::mqttbytes::v5::Publish {
        within("a PUBLISH (5.0)", self.publishes.recv())
            .await
            .expect("the 5.0 connection ended before the PUBLISH")
    }

    /// The payload of the next PUBLISH, as text.
    pub async fn next_text(&mut self) -> String {
        String::from_utf8_lossy(&self.next_publish().await.payload).into_owned()
    }

    async fn next_other(&mut self) -> Result<v5::Incoming, v5::ConnectionError> {
        loop {
            let next = within("a packet from the broker (5.0)", self.others.recv())
                .await
                .expect("the 5.0 event loop is gone");
            if !matches!(next, Ok(v5::Incoming::PingResp(_))) {
                return next;
            }
        }
    }

    /// Subscribes with full options and properties and waits for the SUBACK; returns its
    /// reason codes.
    pub async fn subscribe_with(
        &mut self,
        filter: v5::mqttbytes::v5::Filter,
        properties: Option<v5::mqttbytes::v5::SubscribeProperties>,
    ) -> Vec<v5::mqttbytes::v5::SubscribeReasonCode> {
        let request = match properties {
            Some(p) => {
                self.client
                    .subscribe_many_with_properties([filter], p)
                    .await
            }
            None => self.client.subscribe_many([filter]).await,
        };
        request.expect("queue SUBSCRIBE");
        match self.next_other().await {
            Ok(v5::Incoming::SubAck(ack)) => ack.return_codes,
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Subscribes to `filter` at `qos` and waits for the SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: v5::mqttbytes::QoS) {
        let codes = self.subscribe_with(filter5(filter, qos), None).await;
        assert!(
            matches!(
                codes[..],
                [v5::mqttbytes::v5::SubscribeReasonCode::Success(_)]
            ),
            "SUBACK for {filter}: {codes:?}"
        );
    }

    /// Unsubscribes and waits for the UNSUBACK.
    pub async fn unsubscribe(&mut self, filter: &str) {
        self.client
            .unsubscribe(filter)
            .await
            .expect("queue UNSUBSCRIBE");
        match self.next_other().await {
            Ok(v5::Incoming::UnsubAck(_)) => {}
            other => panic!("expected UNSUBACK, got {other:?}"),
        }
    }

    /// Publishes with `properties` and, for QoS 1 and 2, waits for the broker's PUBACK or
    /// PUBCOMP.
    pub async fn publish_with(
        &mut self,
        topic: &str,
        qos: v5::mqttbytes::QoS,
        retain: bool,
        payload: &[u8],
        properties: v5::mqttbytes::v5::PublishProperties,
    ) {
        self.client
            .publish_with_properties(topic, qos, retain, payload.to_vec(), properties)
            .await
            .expect("queue PUBLISH");
        if qos == v5::mqttbytes::QoS::AtMostOnce {
            return;
        }
        loop {
            match self.next_other().await {
                Ok(v5::Incoming::PubAck(_)) if qos == v5::mqttbytes::QoS::AtLeastOnce => return,
                Ok(v5::Incoming::PubComp(_)) if qos == v5::mqttbytes::QoS::ExactlyOnce => return,
                Ok(_) => {}
                Err(e) => panic!("connection ended before the publish was acknowledged: {e:?}"),
            }
        }
    }

    /// Publishes at QoS 1 and returns the PUBACK's reason code (MQTT 5 says why a publish
    /// was not taken: 0x80 when a queue it reached could not have it).
    pub async fn publish_qos1(
        &mut self,
        topic: &str,
        payload: &[u8],
    ) -> v5::mqttbytes::v5::PubAckReason {
        self.client
            .publish(
                topic,
                v5::mqttbytes::QoS::AtLeastOnce,
                false,
                payload.to_vec(),
            )
            .await
            .expect("queue PUBLISH");
        loop {
            match self.next_other().await {
                Ok(v5::Incoming::PubAck(ack)) => return ack.reason,
                Ok(_) => {}
                Err(e) => panic!("connection ended before the publish was acknowledged: {e:?}"),
            }
        }
    }

    /// Publishes without properties (see [`Mqtt5::publish_with`]).
    pub async fn publish(
        &mut self,
        topic: &str,
        qos: v5::mqttbytes::QoS,
        retain: bool,
        payload: &[u8],
    ) {
        self.publish_with(topic, qos, retain, payload, Default::default())
            .await;
    }

    /// Waits for the broker's DISCONNECT and returns its reason code (fails the test if the
    /// connection ends without one).
    pub async fn next_disconnect(&mut self) -> v5::mqttbytes::v5::DisconnectReasonCode {
        loop {
            match self.next_other().await {
                Ok(v5::Incoming::Disconnect(d)) => return d.reason_code,
                // rumqttc ends its event loop with the server's DISCONNECT as the error.
                Err(v5::ConnectionError::MqttState(v5::StateError::ServerDisconnect {
                    reason_code,
                    ..
                })) => return reason_code,
                Ok(_) => continue,
                Err(e) => panic!("closed without DISCONNECT: {e:?}"),
            }
        }
    }

    /// Waits for the connection to end and returns why.
    pub async fn closed(&mut self) -> v5::ConnectionError {
        loop {
            if let Err(e) = self.next_other().await {
                return e;
            }
        }
    }

    /// Sends DISCONNECT (normal disconnection) and waits for the broker to close.
    pub async fn disconnect(mut self) {
        self.client.disconnect().await.expect("queue DISCONNECT");
        self.closed().await;
    }

    /// Drops the socket without DISCONNECT.
    pub fn kill(self) {
        self.task.abort();
    }
}

/// A 5.0 subscription filter with default options.
pub fn filter5(path: &str, qos: v5::mqttbytes::QoS) -> v5::mqttbytes::v5::Filter {
    v5::mqttbytes::v5::Filter::new(path, qos)
}
