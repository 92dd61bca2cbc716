//! The subscribing side of the bench's MQTT client: each delivery answered as its QoS requires,
//! QoS 2 repeats dropped until released.

use super::{disconnected, Session, WRITE_BATCH};
use crate::client::Consumer;
use anyhow::Context;
use bytes::Bytes;
use mqtt_wire::{
    Packet, PubAck, PubComp, PubRec, QoS, Subscribe, SubscriptionOptions, TopicFilter,
};

/// A connection subscribed to one topic.
pub struct MqttConsumer {
    session: Session,
    /// QoS 2 packet identifiers received and not yet released (PUBREL), one bit each.
    unreleased: Vec<u64>,
}

impl MqttConsumer {
    /// Subscribes `session` to `source` at `qos` and waits for the SUBACK.
    pub(super) async fn subscribe(
        mut session: Session,
        qos: QoS,
        source: &str,
    ) -> anyhow::Result<MqttConsumer> {
        let filter = TopicFilter::new(source)
            .map_err(|e| anyhow::anyhow!("topic filter {source}: {e:?}"))?;
        let subscribe = Subscribe {
            packet_id: 1,
            properties: Default::default(),
            filters: vec![(filter, SubscriptionOptions::new(qos))],
        };
        session.send(subscribe)?;
        loop {
            match session.next_packet().await.context("waiting for SUBACK")? {
                Packet::SubAck(ack) if ack.packet_id == 1 => {
                    match ack.reasons.first().and_then(|r| r.granted_qos()) {
                        Some(granted) if granted < qos => tracing::warn!(
                            "the broker granted QoS {} instead of {}",
                            granted as u8,
                            qos as u8
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
            session,
            unreleased: vec![0; (1 << 16) / 64],
        })
    }

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
