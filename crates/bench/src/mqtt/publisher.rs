//! The publishing side of the bench's MQTT client: PUBLISH packets copied from a template, and
//! QoS 1 and 2 flows tracked per packet identifier with their confirm latency.

use super::{disconnected, Session, WRITE_BATCH};
use crate::client::{Confirms, PublishOptions, Publisher};
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use mqtt_wire::{
    decode, encode, Packet, ProtocolVersion, PubRel, Publish, QoS, ReasonCode, TopicName,
    MAX_PACKET_SIZE,
};

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
    /// A publisher to `target` at `qos` on `session`, with at most the confirm window (and the
    /// broker's Receive Maximum) unfinished.
    pub(super) fn open(
        session: Session,
        qos: QoS,
        target: &str,
        options: PublishOptions,
    ) -> anyhow::Result<MqttPublisher> {
        let topic = TopicName::new(target).map_err(|e| anyhow::anyhow!("topic {target}: {e:?}"))?;
        let window = match qos {
            QoS::AtMostOnce => None,
            _ => Some(
                options
                    .confirm_window
                    .unwrap_or(1)
                    .clamp(1, u32::from(session.receive_maximum.max(1))) as usize,
            ),
        };
        Ok(MqttPublisher {
            templates: Vec::new(),
            session,
            topic,
            qos,
            window,
            state: vec![FREE; if window.is_some() { 1 << 16 } else { 0 }],
            sent_us: vec![0; if window.is_some() { 1 << 16 } else { 0 }],
            epoch: std::time::Instant::now(),
            latency_us: crate::tally::latency_histogram(),
            in_flight: 0,
            next_id: 0,
            found: Confirms::default(),
        })
    }

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
            let empty = crate::tally::latency_histogram();
            std::mem::replace(&mut self.latency_us, empty)
        })
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
}
