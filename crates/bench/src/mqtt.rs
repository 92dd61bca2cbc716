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
//! publisher sends enough that brokers never miss it.

use super::client::{Client, Confirms, ConsumeOptions, Consumer, PublishOptions, Publisher};
use super::net::{BrokerUrl, Wire, BULK};
use super::tls::TlsClient;
use anyhow::Context;
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use mqtt_wire::{
    decode, encode, Connect, Disconnect, Packet, ProtocolVersion, PubAck, PubComp, PubRec, PubRel,
    Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions, TopicFilter, TopicName,
    MAX_PACKET_SIZE,
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
        let topic = TopicName::new(target).map_err(|e| anyhow::anyhow!("topic {target}: {e:?}"))?;
        let window = match self.qos {
            QoS::AtMostOnce => None,
            _ => Some(
                options
                    .confirm_window
                    .unwrap_or(1)
                    .clamp(1, u32::from(self.session.receive_maximum.max(1)))
                    as usize,
            ),
        };
        Ok(MqttPublisher {
            templates: Vec::new(),
            session: self.session,
            topic,
            qos: self.qos,
            window,
            state: vec![FREE; if window.is_some() { 1 << 16 } else { 0 }],
            sent_us: vec![0; if window.is_some() { 1 << 16 } else { 0 }],
            epoch: std::time::Instant::now(),
            latency_us: super::tally::latency_histogram(),
            in_flight: 0,
            next_id: 0,
            found: Confirms::default(),
        })
    }

    async fn consumer(
        mut self,
        source: &str,
        _options: ConsumeOptions,
    ) -> anyhow::Result<MqttConsumer> {
        let filter = TopicFilter::new(source)
            .map_err(|e| anyhow::anyhow!("topic filter {source}: {e:?}"))?;
        let subscribe = Subscribe {
            packet_id: 1,
            properties: Default::default(),
            filters: vec![(filter, SubscriptionOptions::new(self.qos))],
        };
        self.session.send(subscribe)?;
        loop {
            match self
                .session
                .next_packet()
                .await
                .context("waiting for SUBACK")?
            {
                Packet::SubAck(ack) if ack.packet_id == 1 => {
                    match ack.reasons.first().and_then(|r| r.granted_qos()) {
                        Some(granted) if granted < self.qos => tracing::warn!(
                            "the broker granted QoS {} instead of {}",
                            granted as u8,
                            self.qos as u8
                        ),
                        Some(_) => {}
                        None => anyhow::bail!(
                            "the broker refused the subscription to {source}: {:?}",
                            ack.reasons
                        ),
                    }
                    break;
                }
                other => disconnected(other)?,
            }
        }
        Ok(MqttConsumer {
            session: self.session,
            unreleased: vec![0; (1 << 16) / 64],
        })
    }

    async fn close(self) -> anyhow::Result<()> {
        self.session.disconnect().await
    }
}

/// Packet identifier states of a publisher.
const FREE: u8 = 0;
const AWAIT_PUBACK: u8 = 1;
const AWAIT_PUBREC: u8 = 2;
const AWAIT_PUBCOMP: u8 = 3;

/// A PUBLISH encoded once: the bytes before the payload, and where the packet identifier sits.
struct Template {
    head: Vec<u8>,
    id_at: Option<usize>,
}

impl Template {
    /// The template for `size`-byte bodies, checked by decoding a message built from it; `None`
    /// if the encoding is not what the patching expects (then every message is encoded whole).
    fn new(topic: &TopicName, qos: QoS, version: ProtocolVersion, size: usize) -> Option<Template> {
        let with_id = qos != QoS::AtMostOnce;
        let mut publish = Publish::new(topic.clone(), Bytes::from(vec![0; size]));
        publish.qos = qos;
        publish.packet_id = with_id.then_some(1);
        let mut first = BytesMut::new();
        encode(&Packet::Publish(publish.clone()), version, &mut first).ok()?;
        let head_len = first.len().checked_sub(size)?;
        // 5.0 puts the property length (0: one byte) between the identifier and the payload.
        let props = usize::from(version == ProtocolVersion::V5);
        let id_at = match with_id {
            true => Some(head_len.checked_sub(2 + props)?),
            false => None,
        };
        let template = Template {
            head: first.get(..head_len)?.to_vec(),
            id_at,
        };
        // Build one with another identifier and body and check it decodes to what it should.
        let body: Vec<u8> = (0..size).map(|i| i as u8).collect();
        publish.packet_id = with_id.then_some(0xBEEF);
        publish.payload = Bytes::from(body.clone());
        let mut built = BytesMut::new();
        template.write(&mut built, with_id.then_some(0xBEEF), &body);
        match decode(&mut built, Some(version), MAX_PACKET_SIZE) {
            Ok(Some(Packet::Publish(p))) if p == publish && built.is_empty() => Some(template),
            _ => None,
        }
    }

    fn write(&self, out: &mut BytesMut, id: Option<u16>, body: &[u8]) {
        let start = out.len();
        out.extend_from_slice(&self.head);
        if let (Some(at), Some(id)) = (self.id_at, id) {
            if let Some(slot) = out.get_mut(start + at..start + at + 2) {
                slot.copy_from_slice(&id.to_be_bytes());
            }
        }
        out.extend_from_slice(body);
    }
}

/// A connection publishing to one topic.
pub struct MqttPublisher {
    session: Session,
    topic: TopicName,
    qos: QoS,
    /// Templates by body size (the workload uses one size: one entry); `None` where a size
    /// could not have one.
    templates: Vec<(usize, Option<Template>)>,
    /// At most this many unfinished QoS 1 or 2 messages; `None` at QoS 0.
    window: Option<usize>,
    /// Per packet identifier: FREE or what it waits for (empty at QoS 0).
    state: Vec<u8>,
    /// Per packet identifier: when its PUBLISH was made, in microseconds since `epoch`, modulo
    /// 2^32 (over 71 minutes; an in-flight message is never that old in a run that is not
    /// stalled, and wrapping arithmetic undoes the modulo). Empty at QoS 0.
    sent_us: Vec<u32>,
    epoch: std::time::Instant,
    /// Confirm latencies, microseconds: publish call to PUBACK (QoS 1) or PUBCOMP (QoS 2), or
    /// to the error reason code that ended the message.
    latency_us: Histogram<u64>,
    in_flight: usize,
    next_id: u16,
    found: Confirms,
}

impl MqttPublisher {
    /// A free packet identifier, marked as waiting for its first answer.
    fn take_id(&mut self) -> anyhow::Result<u16> {
        if self.in_flight >= usize::from(u16::MAX) {
            anyhow::bail!("no packet identifier left");
        }
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            let id = self.next_id;
            if id != 0 && self.state[usize::from(id)] == FREE {
                self.state[usize::from(id)] = match self.qos {
                    QoS::ExactlyOnce => AWAIT_PUBREC,
                    _ => AWAIT_PUBACK,
                };
                self.in_flight += 1;
                return Ok(id);
            }
        }
    }

    /// Microseconds since `epoch`, modulo 2^32.
    fn now_us(&self) -> u32 {
        self.epoch.elapsed().as_micros() as u32
    }

    fn finish(&mut self, id: u16, reason: ReasonCode) {
        self.state[usize::from(id)] = FREE;
        self.in_flight -= 1;
        let sent = self.sent_us[usize::from(id)];
        let latency = self.now_us().wrapping_sub(sent);
        self.latency_us.saturating_record(u64::from(latency));
        if reason.is_error() {
            self.found.nacked += 1;
        } else {
            self.found.acked += 1;
        }
    }

    /// Handles what the broker sent: acknowledgements, and errors.
    fn process(&mut self) -> anyhow::Result<()> {
        while let Some(packet) = self.session.decode()? {
            let state = |s: &Self, id: u16| s.state.get(usize::from(id)).copied();
            match packet {
                Packet::PubAck(a) if state(self, a.packet_id) == Some(AWAIT_PUBACK) => {
                    self.finish(a.packet_id, a.reason);
                }
                Packet::PubRec(r) => match state(self, r.packet_id) {
                    Some(AWAIT_PUBREC) if r.reason.is_error() => self.finish(r.packet_id, r.reason),
                    Some(AWAIT_PUBREC | AWAIT_PUBCOMP) => {
                        self.state[usize::from(r.packet_id)] = AWAIT_PUBCOMP;
                        self.session.send(PubRel::new(r.packet_id))?;
                    }
                    _ => {}
                },
                Packet::PubComp(c) if state(self, c.packet_id) == Some(AWAIT_PUBCOMP) => {
                    self.finish(c.packet_id, c.reason);
                }
                other => disconnected(other)?,
            }
        }
        Ok(())
    }

    /// Reads until at most `room` messages are unfinished.
    async fn settle_until(&mut self, room: usize) -> anyhow::Result<Confirms> {
        self.process()?;
        while self.in_flight > room {
            self.session.receive().await?;
            self.process()?;
        }
        Ok(std::mem::take(&mut self.found))
    }

    fn template(&mut self, size: usize) -> Option<&Template> {
        let index = match self.templates.iter().position(|(s, _)| *s == size) {
            Some(i) => i,
            None => {
                let t = Template::new(&self.topic, self.qos, self.session.version, size);
                self.templates.push((size, t));
                self.templates.len() - 1
            }
        };
        self.templates.get(index)?.1.as_ref()
    }
}

impl Publisher for MqttPublisher {
    async fn reserve(&mut self) -> anyhow::Result<Confirms> {
        match self.window {
            Some(window) => self.settle_until(window.saturating_sub(1)).await,
            None => Ok(Confirms::default()),
        }
    }

    async fn publish(&mut self, body: &[u8]) -> anyhow::Result<()> {
        let id = match self.qos {
            QoS::AtMostOnce => None,
            _ => {
                let id = self.take_id()?;
                self.sent_us[usize::from(id)] = self.now_us();
                Some(id)
            }
        };
        let mut out = std::mem::take(&mut self.session.wire.out);
        match self.template(body.len()) {
            Some(template) => template.write(&mut out, id, body),
            None => {
                let mut publish = Publish::new(self.topic.clone(), Bytes::copy_from_slice(body));
                publish.qos = self.qos;
                publish.packet_id = id;
                encode(&Packet::Publish(publish), self.session.version, &mut out)?;
            }
        }
        self.session.wire.out = out;
        if self.session.wire.out.len() >= WRITE_BATCH {
            self.session.wire.send().await?;
            self.process()?;
        }
        Ok(())
    }

    async fn write_out(&mut self) -> anyhow::Result<()> {
        self.session.wire.send().await?;
        self.process()
    }

    async fn flush(&mut self) -> anyhow::Result<Confirms> {
        self.session.wire.send().await?;
        self.settle_until(0).await
    }

    fn take_confirm_latency(&mut self) -> Option<Histogram<u64>> {
        self.window.map(|_| {
            let empty = super::tally::latency_histogram();
            std::mem::replace(&mut self.latency_us, empty)
        })
    }

    async fn close(self) -> anyhow::Result<()> {
        self.session.disconnect().await
    }
}

/// A connection subscribed to one topic.
pub struct MqttConsumer {
    session: Session,
    /// QoS 2 packet identifiers received and not yet released (PUBREL), one bit each.
    unreleased: Vec<u64>,
}

impl MqttConsumer {
    fn unreleased(&mut self, id: u16) -> (&mut u64, u64) {
        let (word, bit) = (usize::from(id) / 64, id % 64);
        (&mut self.unreleased[word], 1u64 << bit)
    }
}

impl Consumer for MqttConsumer {
    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        loop {
            while let Some(packet) = self.session.decode()? {
                match packet {
                    Packet::Publish(p) => match (p.qos, p.packet_id) {
                        (QoS::AtLeastOnce, Some(id)) => {
                            self.session.send(PubAck::new(id))?;
                            return Ok(Some(p.payload));
                        }
                        (QoS::ExactlyOnce, Some(id)) => {
                            self.session.send(PubRec::new(id))?;
                            let (word, mask) = self.unreleased(id);
                            if *word & mask != 0 {
                                continue; // a resend of one we already have
                            }
                            *word |= mask;
                            return Ok(Some(p.payload));
                        }
                        _ => return Ok(Some(p.payload)),
                    },
                    Packet::PubRel(r) => {
                        let (word, mask) = self.unreleased(r.packet_id);
                        *word &= !mask;
                        self.session.send(PubComp::new(r.packet_id))?;
                    }
                    other => disconnected(other)?,
                }
            }
            if self.session.wire.out.len() >= WRITE_BATCH {
                self.session.wire.send().await?;
            }
            self.session.receive().await?;
        }
    }

    async fn ack(&mut self, _multiple: bool) -> anyhow::Result<()> {
        Ok(())
    }

    async fn cancel(&mut self) -> anyhow::Result<()> {
        Ok(())
    }

    async fn close(self) -> anyhow::Result<()> {
        self.session.disconnect().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_patch_identifier_and_body_for_every_version_and_qos() {
        let topic = TopicName::new("pigeon-bench/run/0").unwrap();
        for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
            for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
                for size in [16, 200, 70_000] {
                    let t = Template::new(&topic, qos, version, size);
                    let t = t.unwrap_or_else(|| panic!("{version:?} {qos:?} {size}"));
                    let mut out = BytesMut::new();
                    let body = vec![7; size];
                    let id = (qos != QoS::AtMostOnce).then_some(513);
                    t.write(&mut out, id, &body);
                    let Some(Packet::Publish(p)) =
                        decode(&mut out, Some(version), MAX_PACKET_SIZE).unwrap()
                    else {
                        panic!("not a publish");
                    };
                    assert_eq!((p.packet_id, p.qos, &p.payload[..]), (id, qos, &body[..]));
                }
            }
        }
    }

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
