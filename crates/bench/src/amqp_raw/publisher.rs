//! The publishing side of the bench's own AMQP client: basic.publish frames written in batches,
//! and publisher confirms tracked by delivery tag with their latency.

use super::{expect, Conn, BASIC_CLASS, WRITE_BATCH};
use crate::client::{Confirms, PublishOptions, Publisher};
use amqp_wire::{
    encode_body_frames, encode_header_frame, encode_method_frame, BasicProperties, BasicPublish,
    ConfirmSelect, Method, ShortString,
};
use anyhow::Context;
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::time::Instant;

/// Publisher confirms by delivery tag: tags are numbered from 1 in publish order, and each ack
/// or nack settles one tag or, with `multiple`, every tag up to it.
#[derive(Debug)]
struct ConfirmTracker {
    /// The oldest unsettled tag (everything below is settled).
    base: u64,
    /// For tags `base`, `base + 1`, ...: when the unsettled ones were published; `None` once
    /// settled.
    pending: VecDeque<Option<Instant>>,
    /// How many of `pending` are unsettled.
    unsettled: usize,
    /// Confirms counted since the workload last asked.
    found: Confirms,
    /// Confirm latencies (publish call to the ack or nack settling it), microseconds.
    latency_us: Histogram<u64>,
}

impl Default for ConfirmTracker {
    fn default() -> Self {
        ConfirmTracker {
            base: 1,
            pending: VecDeque::new(),
            unsettled: 0,
            found: Confirms::default(),
            latency_us: crate::tally::latency_histogram(),
        }
    }
}

impl ConfirmTracker {
    /// Records one more publish, made at `at`.
    fn published(&mut self, at: Instant) {
        self.pending.push_back(Some(at));
        self.unsettled += 1;
    }

    /// Settles `tag` (and with `multiple`, every tag below it; tag 0 with `multiple` is every
    /// tag published so far), as acked or nacked, the answer having arrived at `now`.
    fn settle(&mut self, tag: u64, multiple: bool, acked: bool, now: Instant) {
        let next = self.base + self.pending.len() as u64;
        let (from, to) = match (multiple, tag) {
            (true, 0) => (self.base, next),
            (true, t) => (self.base, t.saturating_add(1).min(next)),
            (false, t) => (t.max(self.base), t.saturating_add(1).min(next)),
        };
        for t in from..to {
            let Some(slot) = self.pending.get_mut((t - self.base) as usize) else {
                break;
            };
            if let Some(sent) = slot.take() {
                self.unsettled -= 1;
                let us = now.saturating_duration_since(sent).as_micros();
                self.latency_us
                    .saturating_record(u64::try_from(us).unwrap_or(u64::MAX));
                if acked {
                    self.found.acked += 1;
                } else {
                    self.found.nacked += 1;
                }
            }
        }
        while self.pending.front() == Some(&None) {
            self.pending.pop_front();
            self.base += 1;
        }
    }

    fn take(&mut self) -> Confirms {
        std::mem::take(&mut self.found)
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn confirms(t: &mut ConfirmTracker) -> (u64, u64, usize) {
        let c = t.take();
        (c.acked, c.nacked, t.unsettled)
    }

    #[test]
    fn single_and_multiple_confirms_settle_each_tag_once() {
        let now = Instant::now();
        let mut t = ConfirmTracker::default();
        for _ in 0..10 {
            t.published(now);
        }
        t.settle(3, false, true, now);
        t.settle(2, false, false, now);
        assert_eq!(confirms(&mut t), (1, 1, 8));
        t.settle(5, true, true, now); // 1, 4, 5: 2 and 3 were settled already
        assert_eq!(confirms(&mut t), (3, 0, 5));
        assert_eq!(t.base, 6);
        t.settle(5, false, true, now); // again: ignored
        t.settle(99, false, true, now); // never published: ignored
        assert_eq!(confirms(&mut t), (0, 0, 5));
        t.settle(0, true, false, now); // everything so far
        assert_eq!(confirms(&mut t), (0, 5, 0));
        assert!(t.pending.is_empty());
        t.published(now);
        t.settle(11, true, true, now);
        assert_eq!(confirms(&mut t), (1, 0, 0));
    }

    #[test]
    fn each_settled_tag_records_one_confirm_latency() {
        use std::time::Duration;
        let start = Instant::now();
        let mut t = ConfirmTracker::default();
        for i in 0..10 {
            t.published(start + Duration::from_micros(i));
        }
        let later = start + Duration::from_millis(2);
        t.settle(4, false, true, later);
        assert_eq!(t.latency_us.len(), 1);
        t.settle(4, false, true, later); // already settled: no second sample
        t.settle(6, true, false, later); // 1, 2, 3, 5, 6: nacks count too
        assert_eq!(t.latency_us.len(), 6);
        // An answer before the publish (clock trouble) records 0, not a huge value.
        t.settle(7, false, true, start);
        assert_eq!(t.latency_us.len(), 7);
        assert_eq!(t.latency_us.min(), 0);
        t.settle(0, true, true, later); // the rest: 8, 9, 10
        assert_eq!(t.latency_us.len(), 10);
        assert_eq!(t.unsettled, 0);
        assert!(t.latency_us.max() <= 2_000 + 2, "{}", t.latency_us.max());
    }
}
