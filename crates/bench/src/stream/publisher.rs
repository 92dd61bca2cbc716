//! The publishing side of the bench's stream client.
//!
//! Messages are encoded straight into the connection's write buffer, many to one `Publish`
//! frame (`--batch`; the broker stores each frame as one chunk): the frame's size and count are
//! written as placeholders and patched when the frame is sealed, which happens when it holds
//! `batch` entries, when it would outgrow the frame limit, and before anything is written.
//! With `--sub-entry N`, N messages go into one uncompressed sub-batch entry first (one
//! publishing id for all N, as the stream clients' sub-entry batching does).
//!
//! Each message gets a tag (1, 2, 3, ...) for confirm tracking ([`ConfirmTracker`]); without
//! sub-entries its publishing id is its tag, with them each sub-batch's id is mapped to its
//! range of tags until confirmed. The broker confirms every publishing id once (PublishConfirm)
//! or refuses it (PublishError, counted as a nack).

use super::conn::{expect_ok, Conn};
use super::message;
use crate::client::{Confirms, Publisher};
use crate::confirms::ConfirmTracker;
use bytes::{BufMut, BytesMut};
use hdrhistogram::Histogram;
use std::collections::HashMap;
use std::time::Instant;
use stream_wire::{key, Command, DeclarePublisher, Str};

/// Written once this many bytes have gathered.
pub const WRITE_BATCH: usize = 64 * 1024;
/// The publisher id on its connection (each publisher has a connection of its own).
const PUBLISHER_ID: u8 = 1;
/// Bytes of a `Publish` frame before its messages: size, key, version, publisher id, count.
const FRAME_HEAD: usize = 4 + 2 + 2 + 1 + 4;

/// How a publisher batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// Entries per `Publish` frame, at most.
    pub frame: u32,
    /// Messages per sub-batch entry; `None` for one entry per message.
    pub sub_entry: Option<u16>,
}

/// The frame being filled in the write buffer.
#[derive(Debug, Clone, Copy)]
struct OpenFrame {
    /// Where it starts in the write buffer.
    at: usize,
    entries: u32,
}

/// The sub-batch being filled (with `--sub-entry`).
#[derive(Debug, Default)]
struct OpenSubBatch {
    /// Its messages as simple entries.
    records: BytesMut,
    count: u16,
    /// The tag of its first message.
    first_tag: u64,
}

/// A connection publishing to one stream.
pub struct StreamPublisher {
    conn: Conn,
    window: usize,
    batching: Batching,
    frame: Option<OpenFrame>,
    sub: OpenSubBatch,
    /// The next message's tag.
    next_tag: u64,
    /// With sub-entries: the next sub-batch's publishing id, and each unconfirmed one's tags.
    next_id: u64,
    sub_batches: HashMap<u64, (u64, u16)>,
    confirms: ConfirmTracker,
}

impl StreamPublisher {
    /// Declares publisher 1 on `stream` (no reference: no de-duplication, as in PerfTest).
    pub(super) async fn open(
        mut conn: Conn,
        stream: &str,
        window: usize,
        batching: Batching,
    ) -> anyhow::Result<StreamPublisher> {
        let correlation_id = conn.correlation();
        let answer = conn
            .rpc(DeclarePublisher {
                correlation_id,
                publisher_id: PUBLISHER_ID,
                reference: Str::from_static(""),
                stream: Str::new(stream)?,
            })
            .await?;
        expect_ok(&answer, "DeclarePublisher")?;
        Ok(StreamPublisher {
            conn,
            window: window.max(1),
            batching,
            frame: None,
            sub: OpenSubBatch::default(),
            next_tag: 1,
            next_id: 1,
            sub_batches: HashMap::new(),
            confirms: ConfirmTracker::default(),
        })
    }

    /// Appends one entry's publishing id to the open frame (opening one if needed), sealing
    /// the frame first if `entry_len` more bytes would outgrow the frame limit.
    fn start_entry(&mut self, publishing_id: u64, entry_len: usize) {
        let limit = match self.conn.frame_max {
            0 => usize::MAX,
            n => n as usize,
        };
        if let Some(f) = self.frame {
            // The limit counts the frame without its 4-byte size prefix.
            if self.conn.wire.out.len() - f.at - 4 + 8 + entry_len > limit {
                self.seal_frame();
            }
        }
        let out = &mut self.conn.wire.out;
        let frame = self.frame.get_or_insert_with(|| {
            let at = out.len();
            out.put_u32(0);
            out.put_u16(key::PUBLISH);
            out.put_u16(1);
            out.put_u8(PUBLISHER_ID);
            out.put_u32(0);
            OpenFrame { at, entries: 0 }
        });
        frame.entries += 1;
        out.put_u64(publishing_id);
    }

    /// Patches the open frame's size and count.
    fn seal_frame(&mut self) {
        let Some(f) = self.frame.take() else {
            return;
        };
        let out = &mut self.conn.wire.out;
        let size = u32::try_from(out.len() - f.at - 4).unwrap_or(u32::MAX);
        out[f.at..f.at + 4].copy_from_slice(&size.to_be_bytes());
        out[f.at + FRAME_HEAD - 4..f.at + FRAME_HEAD].copy_from_slice(&f.entries.to_be_bytes());
    }

    /// Moves the open sub-batch into the frame as one entry.
    fn seal_sub_batch(&mut self) {
        if self.sub.count == 0 {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let records = std::mem::take(&mut self.sub.records);
        self.start_entry(id, 11 + records.len());
        message::encode_sub_batch(&records, self.sub.count, &mut self.conn.wire.out);
        self.sub_batches
            .insert(id, (self.sub.first_tag, self.sub.count));
        // Keep the allocation for the next sub-batch.
        self.sub.records = records;
        self.sub.records.clear();
        self.sub.count = 0;
        self.end_entry();
    }

    /// Seals the frame once it holds its share of entries.
    fn end_entry(&mut self) {
        if self.frame.is_some_and(|f| f.entries >= self.batching.frame) {
            self.seal_frame();
        }
    }

    /// Seals whatever is open, so the write buffer holds only whole frames.
    fn seal_all(&mut self) {
        self.seal_sub_batch();
        self.seal_frame();
    }

    /// Handles what the broker sent: confirms and errors.
    fn process(&mut self) -> anyhow::Result<()> {
        while let Some(command) = self.conn.decode()? {
            let now = Instant::now();
            match command {
                Command::PublishConfirm(c) => {
                    for id in c.publishing_ids {
                        self.settle(id, true, now);
                    }
                }
                Command::PublishError(e) => {
                    for failed in e.errors {
                        self.settle(failed.publishing_id, false, now);
                    }
                }
                Command::MetadataUpdate(m) => {
                    anyhow::bail!("stream {} is gone ({:?})", m.stream.as_str(), m.code)
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn settle(&mut self, id: u64, acked: bool, now: Instant) {
        if self.batching.sub_entry.is_none() {
            self.confirms.settle(id, false, acked, now);
        } else if let Some((first, count)) = self.sub_batches.remove(&id) {
            for tag in first..first + u64::from(count) {
                self.confirms.settle(tag, false, acked, now);
            }
        }
    }

    /// Writes out everything, then reads until the broker has settled all but `room` messages.
    async fn settle_until(&mut self, room: usize) -> anyhow::Result<Confirms> {
        self.process()?;
        if self.confirms.unsettled > room {
            self.seal_all();
            while self.confirms.unsettled > room {
                self.conn.wire.receive().await?;
                self.process()?;
            }
        }
        Ok(self.confirms.take())
    }
}

impl Publisher for StreamPublisher {
    async fn reserve(&mut self) -> anyhow::Result<Confirms> {
        self.settle_until(self.window - 1).await
    }

    async fn publish(&mut self, body: &[u8]) -> anyhow::Result<()> {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.confirms.published(Instant::now());
        let len = message::encoded_len(body.len());
        let len32 = u32::try_from(len)?;
        match self.batching.sub_entry {
            None => {
                self.start_entry(tag, 4 + len);
                let out = &mut self.conn.wire.out;
                out.put_u32(len32);
                message::encode(body, out);
                self.end_entry();
            }
            Some(n) => {
                if self.sub.count == 0 {
                    self.sub.first_tag = tag;
                }
                self.sub.records.put_u32(len32);
                message::encode(body, &mut self.sub.records);
                self.sub.count += 1;
                if self.sub.count >= n {
                    self.seal_sub_batch();
                }
            }
        }
        if self.conn.wire.out.len() >= WRITE_BATCH {
            self.seal_frame();
            self.conn.wire.send().await?;
            // Take in the confirms that have come meanwhile: a write that did not have to wait
            // read nothing, and confirms left in the socket until the window fills would make
            // the window fill and drain in bursts (and confirm latency look worse than it is).
            while self.conn.wire.receive_now()? {}
            self.process()?;
        }
        Ok(())
    }

    async fn write_out(&mut self) -> anyhow::Result<()> {
        self.seal_all();
        self.conn.wire.send().await?;
        self.process()
    }

    async fn flush(&mut self) -> anyhow::Result<Confirms> {
        self.seal_all();
        self.conn.wire.send().await?;
        self.settle_until(0).await
    }

    fn take_confirm_latency(&mut self) -> Option<Histogram<u64>> {
        let empty = crate::tally::latency_histogram();
        Some(std::mem::replace(&mut self.confirms.latency_us, empty))
    }

    async fn close(mut self) -> anyhow::Result<()> {
        self.seal_all();
        self.conn.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Wire;
    use bytes::Bytes;
    use stream_wire::{decode, Entry, Publish, PublishedMessage, SubBatch};

    /// A publisher on a real socket to a listener nobody reads: only its buffers matter here.
    async fn publisher(batching: Batching, frame_max: u32) -> StreamPublisher {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let wire = Wire::connect("127.0.0.1", addr.port(), None, 4096, None)
            .await
            .unwrap();
        StreamPublisher {
            conn: Conn::for_tests(wire, frame_max),
            window: 1000,
            batching,
            frame: None,
            sub: OpenSubBatch::default(),
            next_tag: 1,
            next_id: 1,
            sub_batches: HashMap::new(),
            confirms: ConfirmTracker::default(),
        }
    }

    fn frames(p: &mut StreamPublisher) -> Vec<Publish> {
        p.seal_all();
        let mut out = std::mem::take(&mut p.conn.wire.out);
        let mut found = Vec::new();
        while let Some(command) = decode(&mut out, 0).unwrap() {
            let Command::Publish(publish) = command else {
                panic!("not a publish: {command:?}");
            };
            found.push(publish);
        }
        assert!(out.is_empty());
        found
    }

    fn amqp(body: &[u8]) -> Bytes {
        let mut m = BytesMut::new();
        message::encode(body, &mut m);
        m.freeze()
    }

    #[tokio::test]
    async fn messages_are_batched_into_frames_numbered_by_tag() {
        let batching = Batching {
            frame: 3,
            sub_entry: None,
        };
        let mut p = publisher(batching, 0).await;
        for i in 0..7u8 {
            p.publish(&[i; 16]).await.unwrap();
        }
        let found = frames(&mut p);
        assert_eq!(
            found.iter().map(Publish::len).collect::<Vec<_>>(),
            vec![3, 3, 1]
        );
        let all: Vec<PublishedMessage> = found.iter().flat_map(Publish::messages).collect();
        for (i, m) in all.iter().enumerate() {
            assert_eq!(
                *m,
                PublishedMessage::simple(i as u64 + 1, amqp(&[i as u8; 16]))
            );
        }
        assert_eq!(p.confirms.unsettled, 7);
    }

    #[tokio::test]
    async fn a_frame_never_outgrows_the_frame_limit() {
        let batching = Batching {
            frame: 1000,
            sub_entry: None,
        };
        // Each entry: id 8 + size 4 + 21 bytes of message = 33; the head is 13 minus the
        // 4-byte size prefix the limit does not count.
        let mut p = publisher(batching, 9 + 33 * 2).await;
        for _ in 0..5 {
            p.publish(&[0; 16]).await.unwrap();
        }
        let counts: Vec<u32> = frames(&mut p).iter().map(Publish::len).collect();
        assert_eq!(counts, vec![2, 2, 1]);
    }

    #[tokio::test]
    async fn sub_entries_share_one_publishing_id_and_settle_together() {
        let batching = Batching {
            frame: 2,
            sub_entry: Some(3),
        };
        let mut p = publisher(batching, 0).await;
        for i in 0..7u8 {
            p.publish(&[i; 16]).await.unwrap();
        }
        let found = frames(&mut p);
        let all: Vec<PublishedMessage> = found.iter().flat_map(Publish::messages).collect();
        assert_eq!(found.len(), 2, "three sub-batches, two per frame");
        let ids: Vec<u64> = all.iter().map(|m| m.publishing_id).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        let Entry::SubBatch(SubBatch { records, body, .. }) = &all[2].entry else {
            panic!("not a sub-batch");
        };
        assert_eq!(*records, 1, "the last sub-batch is partial");
        assert_eq!(body.len(), 4 + 21);
        p.settle(2, true, Instant::now());
        assert_eq!(p.confirms.take().acked, 3);
        p.settle(2, true, Instant::now());
        assert_eq!(p.confirms.take().acked, 0, "settled once");
        p.settle(3, false, Instant::now());
        assert_eq!(p.confirms.take().nacked, 1);
        assert_eq!(p.confirms.unsettled, 3);
    }
}
