//! The bench's MQTT client: tokio and `mqtt-wire`, MQTT 3.1.1 or 5.0, a client of any broker.
//!
//! Each producer and consumer is one MQTT client with a clean session. A publisher sends to one
//! topic at the run's QoS and, for QoS 1 and 2, keeps at most `--inflight` messages unfinished
//! (PUBACK, or PUBREC + PUBREL + PUBCOMP), fewer if an MQTT 5 broker's Receive Maximum says so.
//! A subscriber subscribes at the same QoS and answers each delivery as its QoS requires; at
//! QoS 2 it hands a message out when it arrives and drops a repeat of a packet identifier that
//! has not been released yet (the spec's "method A"), so a duplicate in the report is one the
//! broker delivered as a new message.
//!
//! Same shape as the raw AMQP client (`net.rs`): no background task, one write buffer written
//! when [`WRITE_BATCH`] bytes have gathered or before a wait, acks waiting in it until the
//! subscriber next reads. A publisher encodes its first PUBLISH with `mqtt-wire` and keeps it as
//! a template: later ones copy it, patching the packet identifier and the body.
//!
//! Keep-alive: a connection sends PINGREQ every half keep-alive while it waits to read; a busy
//! publisher sends enough that brokers never miss it.//!
//! This file holds the connection (`Session`) and the client; `publisher` and `consumer` the two
//! roles.

mod consumer;
mod publisher;

use consumer::MqttConsumer;
use publisher::MqttPublisher;

use super::client::{Client, ConsumeOptions, PublishOptions};
use super::net::{BrokerUrl, Wire, BULK};
use super::tls::TlsClient;
use anyhow::Context;
use bytes::Bytes;
use mqtt_wire::{
    decode, encode, Connect, Disconnect, Packet, ProtocolVersion, QoS, ReasonCode, MAX_PACKET_SIZE,
};
use std::net::IpAddr;
use std::pin::Pin;
use std::time::Duration;
use tokio::time::{Instant, Sleep};

/// Publishes are written once this many bytes have gathered.
pub const WRITE_BATCH: usize = 32 * 1024;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// `mqtt://[user[:password]@]host[:port]`.
    pub url: BrokerUrl,
    /// 3.1.1 or 5.0.
    pub version: ProtocolVersion,
    /// QoS of every PUBLISH and every subscription.
    pub qos: QoS,
    /// Keep-alive in seconds, in CONNECT; 0 for none.
    pub keep_alive: u16,
    /// Appended to each client identifier so that two runs never share one.
    pub run: String,
    /// TLS, for an `mqtts://` URL.
    pub tls: Option<TlsClient>,
}

impl MqttConfig {
    /// The client identifier for a connection the workload calls `name`.
    fn client_id(&self, name: &str) -> String {
        format!("{}-{}", name.replace(' ', "-"), self.run)
    }
}

/// One MQTT connection after CONNACK.
pub struct Session {
    wire: Wire,
    version: ProtocolVersion,
    /// PINGREQ interval, when there is a keep-alive.
    ping_every: Option<Duration>,
    ping: Pin<Box<Sleep>>,
    /// The broker's Receive Maximum (5.0), or 65535.
    receive_maximum: u16,
    /// The highest QoS the broker takes (5.0), or 2.
    maximum_qos: QoS,
}

impl Session {
    /// Connects, sends CONNECT with a clean session and waits for a successful CONNACK.
    pub async fn open(
        config: &MqttConfig,
        client_id: &str,
        source: Option<IpAddr>,
        read_chunk: usize,
    ) -> anyhow::Result<Session> {
        let url = &config.url;
        let wire =
            Wire::connect(&url.host, url.port, source, read_chunk, config.tls.as_ref()).await?;
        let ping_every =
            (config.keep_alive > 0).then(|| Duration::from_secs(u64::from(config.keep_alive)) / 2);
        let mut session = Session {
            wire,
            version: config.version,
            ping_every,
            ping: Box::pin(tokio::time::sleep(ping_every.unwrap_or(Duration::ZERO))),
            receive_maximum: u16::MAX,
            maximum_qos: QoS::ExactlyOnce,
        };
        let mut connect = Connect::new(config.version, client_id, config.keep_alive);
        connect.username = url.user.clone();
        connect.password = url.password.clone().map(Bytes::from);
        session.send(connect)?;
        loop {
            match session.next_packet().await.context("waiting for CONNACK")? {
                Packet::ConnAck(ack) if ack.code == ReasonCode::Success => {
                    let p = ack.properties;
                    session.receive_maximum = p.receive_maximum.unwrap_or(u16::MAX);
                    session.maximum_qos = p.maximum_qos.unwrap_or(QoS::ExactlyOnce);
                    return Ok(session);
                }
                Packet::ConnAck(ack) => {
                    let why = ack.properties.reason_string.unwrap_or_default();
                    anyhow::bail!("the broker refused the connection: {:?} {why}", ack.code);
                }
                Packet::Auth(_) => anyhow::bail!("the broker wants extended authentication"),
                other => disconnected(other)?,
            }
        }
    }

    /// Buffers a packet.
    fn send(&mut self, packet: impl Into<Packet>) -> anyhow::Result<()> {
        encode(&packet.into(), self.version, &mut self.wire.out).context("encoding a packet")
    }

    /// Decodes one packet from what has been read, if a whole one is there.
    fn decode(&mut self) -> anyhow::Result<Option<Packet>> {
        Ok(decode(
            &mut self.wire.rbuf,
            Some(self.version),
            MAX_PACKET_SIZE,
        )?)
    }

    /// Waits until more bytes are read, writing what is buffered and pinging meanwhile.
    async fn receive(&mut self) -> anyhow::Result<()> {
        let Some(every) = self.ping_every else {
            return Ok(self.wire.receive().await?);
        };
        loop {
            tokio::select! {
                biased;
                read = self.wire.receive() => return Ok(read?),
                () = &mut self.ping => {
                    self.send(Packet::PingReq)?;
                    self.ping.as_mut().reset(Instant::now() + every);
                }
            }
        }
    }

    /// The next packet, reading as needed.
    async fn next_packet(&mut self) -> anyhow::Result<Packet> {
        loop {
            if let Some(packet) = self.decode()? {
                return Ok(packet);
            }
            self.receive().await?;
        }
    }

    /// Sends DISCONNECT and writes it out; the socket closes when the session is dropped.
    pub async fn disconnect(mut self) -> anyhow::Result<()> {
        self.send(Disconnect::new(ReasonCode::NORMAL_DISCONNECTION))?;
        self.wire.send().await?;
        Ok(())
    }

    /// Keeps an idle connection alive (pings) until the broker ends it; returns why it did.
    pub async fn hold(&mut self) -> anyhow::Error {
        loop {
            match self.next_packet().await {
                Ok(Packet::Disconnect(d)) => return disconnect_error(&d),
                Ok(_) => {}
                Err(e) => return e,
            }
        }
    }
}

/// The error for a DISCONNECT from the broker; for any other packet, Ok (ignore it).
fn disconnected(packet: Packet) -> anyhow::Result<()> {
    match packet {
        Packet::Disconnect(d) => Err(disconnect_error(&d)),
        _ => Ok(()),
    }
}

fn disconnect_error(d: &Disconnect) -> anyhow::Error {
    let why = d.properties.reason_string.clone().unwrap_or_default();
    anyhow::anyhow!("the broker disconnected us: {:?} {why}", d.reason)
}

/// A connection of the bench's MQTT client, before it publishes or subscribes.
pub struct Mqtt {
    session: Session,
    qos: QoS,
}
impl Client for Mqtt {
    type Config = MqttConfig;
    type Publisher = MqttPublisher;
    type Consumer = MqttConsumer;

    async fn connect(config: &MqttConfig, name: &str) -> anyhow::Result<Self> {
        let session = Session::open(config, &config.client_id(name), None, BULK).await?;
        if config.qos > session.maximum_qos {
            anyhow::bail!("the broker takes QoS {} at most", session.maximum_qos as u8);
        }
        Ok(Mqtt {
            session,
            qos: config.qos,
        })
    }

    async fn declare_queue(&mut self, _name: &str, _durable: bool) -> anyhow::Result<()> {
        Ok(())
    }

    async fn delete_queue(&mut self, _name: &str) -> anyhow::Result<()> {
        Ok(())
    }

    async fn declare_exchange(&mut self, name: &str, _kind: &str) -> anyhow::Result<()> {
        anyhow::bail!("MQTT has no exchanges (declaring {name})")
    }

    async fn delete_exchange(&mut self, name: &str) -> anyhow::Result<()> {
        anyhow::bail!("MQTT has no exchanges (deleting {name})")
    }

    async fn bind_queue(&mut self, queue: &str, _exchange: &str, _key: &str) -> anyhow::Result<()> {
        anyhow::bail!("MQTT has no queues to bind (binding {queue})")
    }

    async fn publisher(
        self,
        target: &str,
        options: PublishOptions,
    ) -> anyhow::Result<MqttPublisher> {
        MqttPublisher::open(self.session, self.qos, target, options)
    }

    async fn consumer(
        self,
        source: &str,
        _options: ConsumeOptions,
    ) -> anyhow::Result<MqttConsumer> {
        MqttConsumer::subscribe(self.session, self.qos, source).await
    }

    async fn close(self) -> anyhow::Result<()> {
        self.session.disconnect().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_carry_the_run() {
        let config = MqttConfig {
            url: BrokerUrl::parse("mqtt://h", &[("mqtt", 1883)]).unwrap(),
            version: ProtocolVersion::V3_1_1,
            qos: QoS::AtMostOnce,
            keep_alive: 60,
            run: "abc-1".into(),
            tls: None,
        };
        assert_eq!(
            config.client_id("pigeon-bench producer 3"),
            "pigeon-bench-producer-3-abc-1"
        );
    }
}
