//! The publishing side of the bench's own AMQP client: basic.publish frames written in batches,
//! and publisher confirms tracked by delivery tag with their latency.

use super::{expect, Conn, BASIC_CLASS, WRITE_BATCH};
use crate::client::{Confirms, PublishOptions, Publisher};
use crate::confirms::ConfirmTracker;
use amqp_wire::{
    encode_body_frames, encode_header_frame, encode_method_frame, BasicProperties, BasicPublish,
    ConfirmSelect, Method, ShortString,
};
use anyhow::Context;
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use std::time::Instant;

/// A connection publishing to one queue on channel 1.
pub struct RawPublisher {
    conn: Conn,
    channel: u16,
    /// basic.publish, encoded once.
    method_frame: Bytes,
    /// The content properties, encoded once.
    properties: Bytes,
    window: Option<usize>,
    confirms: ConfirmTracker,
}

impl RawPublisher {
    /// Opens channel 1 on `conn` (in confirm mode with a window) for publishing to `target`
    /// through `exchange`.
    pub(super) async fn open(
        mut conn: Conn,
        exchange: &str,
        target: &str,
        options: PublishOptions,
    ) -> anyhow::Result<RawPublisher> {
        let channel = 1;
        conn.open_channel(channel).await?;
        if options.confirm_window.is_some() {
            let select = ConfirmSelect { no_wait: false };
            expect(
                conn.rpc(channel, select).await.context("confirm.select")?,
                "confirm.select-ok",
                |m| matches!(m, Method::ConfirmSelectOk(_)),
            )?;
        }
        let publish = BasicPublish {
            exchange: ShortString::new(exchange)?,
            routing_key: ShortString::new(target)?,
            ..BasicPublish::default()
        };
        let mut method_frame = BytesMut::new();
        encode_method_frame(channel, &publish.into(), &mut method_frame);
        let properties = BasicProperties {
            delivery_mode: Some(if options.persistent { 2 } else { 1 }),
            ..BasicProperties::default()
        };
        Ok(RawPublisher {
            conn,
            channel,
            method_frame: method_frame.freeze(),
            properties: properties.to_bytes(),
            window: options.confirm_window.map(|w| w as usize),
            confirms: ConfirmTracker::default(),
        })
    }

    /// Handles what the broker sent: confirms, and errors.
    fn process(&mut self) -> anyhow::Result<()> {
        while let Some(frame) = self.conn.decode()? {
            match self.conn.screen(frame)? {
                Some((_, Method::BasicAck(ack))) => {
                    let now = Instant::now();
                    self.confirms
                        .settle(ack.delivery_tag, ack.multiple, true, now);
                }
                Some((_, Method::BasicNack(nack))) => {
                    let now = Instant::now();
                    self.confirms
                        .settle(nack.delivery_tag, nack.multiple, false, now);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Reads until the broker has settled all but `room` messages.
    async fn settle_until(&mut self, room: usize) -> anyhow::Result<Confirms> {
        self.process()?;
        while self.confirms.unsettled > room {
            self.conn.wire.receive().await?;
            self.process()?;
        }
        Ok(self.confirms.take())
    }
}

impl Publisher for RawPublisher {
    async fn reserve(&mut self) -> anyhow::Result<Confirms> {
        match self.window {
            Some(window) => self.settle_until(window.saturating_sub(1)).await,
            None => Ok(Confirms::default()),
        }
    }

    async fn publish(&mut self, body: &[u8]) -> anyhow::Result<()> {
        // The publish call's time, as close to the workload's stamp as can be.
        let at = self.window.map(|_| Instant::now());
        let out = &mut self.conn.wire.out;
        out.extend_from_slice(&self.method_frame);
        encode_header_frame(
            self.channel,
            BASIC_CLASS,
            body.len() as u64,
            &self.properties,
            out,
        );
        encode_body_frames(self.channel, body, self.conn.frame_max, out);
        if let Some(at) = at {
            self.confirms.published(at);
        }
        if out.len() >= WRITE_BATCH {
            self.conn.wire.send().await?;
            self.process()?;
        }
        Ok(())
    }

    async fn write_out(&mut self) -> anyhow::Result<()> {
        self.conn.wire.send().await?;
        self.process()
    }

    async fn pause_until(&mut self, due: tokio::time::Instant) -> anyhow::Result<Confirms> {
        self.process()?;
        while self.confirms.unsettled > 0 {
            tokio::select! {
                () = tokio::time::sleep_until(due) => return Ok(self.confirms.take()),
                // Cancelling `receive` at its await loses nothing: it only waits for readiness.
                received = self.conn.wire.receive() => {
                    received?;
                    self.process()?;
                }
            }
        }
        tokio::time::sleep_until(due).await;
        Ok(self.confirms.take())
    }

    async fn flush(&mut self) -> anyhow::Result<Confirms> {
        self.conn.wire.send().await?;
        self.settle_until(0).await
    }

    fn take_confirm_latency(&mut self) -> Option<Histogram<u64>> {
        self.window.map(|_| {
            let empty = crate::tally::latency_histogram();
            std::mem::replace(&mut self.confirms.latency_us, empty)
        })
    }

    async fn close(self) -> anyhow::Result<()> {
        self.conn.close().await
    }
}
