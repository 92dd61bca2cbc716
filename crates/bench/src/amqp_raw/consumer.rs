//! The consuming side of the bench's own AMQP client: deliveries decoded straight from the read
//! buffer, acks batched in the write buffer.

use super::{expect, Conn, WRITE_BATCH};
use crate::client::{ConsumeOptions, Consumer};
use amqp_wire::{
    BasicAck, BasicCancel, BasicCancelOk, BasicConsume, BasicQos, Frame, Method, ShortString,
};
use anyhow::Context;
use bytes::{Bytes, BytesMut};

/// Where a consumer is in the frames of one delivery.
enum Delivery {
    /// Between deliveries.
    None,
    /// After basic.deliver, waiting for the content header.
    Header { tag: u64 },
    /// Collecting `remaining` more body bytes.
    Body {
        tag: u64,
        remaining: u64,
        parts: BytesMut,
    },
}

/// A connection consuming one queue on channel 1.
pub struct RawConsumer {
    conn: Conn,
    channel: u16,
    tag: ShortString,
    delivery: Delivery,
    /// Delivery tag of the last message returned.
    last_tag: u64,
}

impl RawConsumer {
    /// Opens channel 1 on `conn` (with the prefetch) and consumes `source` there.
    pub(super) async fn open(
        mut conn: Conn,
        source: &str,
        options: ConsumeOptions,
    ) -> anyhow::Result<RawConsumer> {
        let channel = 1;
        conn.open_channel(channel).await?;
        if options.prefetch > 0 {
            let qos = BasicQos {
                prefetch_count: options.prefetch,
                ..BasicQos::default()
            };
            expect(
                conn.rpc(channel, qos).await.context("basic.qos")?,
                "basic.qos-ok",
                |m| matches!(m, Method::BasicQosOk(_)),
            )?;
        }
        let consume = BasicConsume {
            queue: ShortString::new(source)?,
            no_ack: !options.manual_ack,
            ..BasicConsume::default()
        };
        let tag = match conn.rpc(channel, consume).await.context("basic.consume")? {
            Method::BasicConsumeOk(ok) => ok.consumer_tag,
            other => anyhow::bail!("expected basic.consume-ok, got {}", other.name()),
        };
        Ok(RawConsumer {
            conn,
            channel,
            tag,
            delivery: Delivery::None,
            last_tag: 0,
        })
    }

    /// Takes one frame; returns a body when it completes a delivery, `Err` on a broker error,
    /// and `Ok(Some(None))` when the broker cancelled the consumer.
    fn take(&mut self, frame: Frame) -> anyhow::Result<Option<Option<Bytes>>> {
        let complete = |consumer: &mut RawConsumer, tag: u64, body: Bytes| {
            consumer.last_tag = tag;
            consumer.delivery = Delivery::None;
            Ok(Some(Some(body)))
        };
        match frame {
            Frame::Header { body_size, .. } => {
                if let Delivery::Header { tag } = self.delivery {
                    if body_size == 0 {
                        return complete(self, tag, Bytes::new());
                    }
                    self.delivery = Delivery::Body {
                        tag,
                        remaining: body_size,
                        parts: BytesMut::new(),
                    };
                }
                Ok(None)
            }
            Frame::Body { payload, .. } => {
                let Delivery::Body {
                    tag,
                    remaining,
                    parts,
                } = &mut self.delivery
                else {
                    return Ok(None);
                };
                let tag = *tag;
                let len = payload.len() as u64;
                if parts.is_empty() && len >= *remaining {
                    // The usual case: the whole body in one frame, handed out without a copy.
                    return complete(self, tag, payload);
                }
                parts.extend_from_slice(&payload);
                *remaining = remaining.saturating_sub(len);
                if *remaining == 0 {
                    let body = std::mem::take(parts).freeze();
                    return complete(self, tag, body);
                }
                Ok(None)
            }
            frame => match self.conn.screen(frame)? {
                Some((_, Method::BasicDeliver(deliver))) => {
                    self.delivery = Delivery::Header {
                        tag: deliver.delivery_tag,
                    };
                    Ok(None)
                }
                Some((channel, Method::BasicCancel(cancel))) => {
                    if !cancel.no_wait {
                        let ok = BasicCancelOk {
                            consumer_tag: cancel.consumer_tag,
                        };
                        self.conn.send_method(channel, ok);
                    }
                    Ok(Some(None))
                }
                _ => Ok(None),
            },
        }
    }
}

impl Consumer for RawConsumer {
    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        loop {
            while let Some(frame) = self.conn.decode()? {
                if let Some(delivered) = self.take(frame)? {
                    return Ok(delivered);
                }
            }
            self.conn.wire.receive().await?;
        }
    }

    async fn ack(&mut self, multiple: bool) -> anyhow::Result<()> {
        if self.last_tag == 0 {
            return Ok(());
        }
        let ack = BasicAck {
            delivery_tag: self.last_tag,
            multiple,
        };
        self.conn.send_method(self.channel, ack);
        if self.conn.wire.out.len() >= WRITE_BATCH {
            self.conn.wire.send().await?;
        }
        Ok(())
    }

    async fn cancel(&mut self) -> anyhow::Result<()> {
        let cancel = BasicCancel {
            consumer_tag: self.tag.clone(),
            no_wait: false,
        };
        self.conn.send_method(self.channel, cancel);
        // Deliveries already on their way are dropped (unacked ones go back to the queue).
        loop {
            let frame = self.conn.next_frame().await?;
            if let Some((_, Method::BasicCancelOk(_))) = self.conn.screen(frame)? {
                return Ok(());
            }
        }
    }

    async fn close(self) -> anyhow::Result<()> {
        self.conn.close().await
    }
}
