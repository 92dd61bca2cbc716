//! The publishing side of the bench's stream client.
//!
//! Messages are encoded straight into the connection's write buffer, many to one `Publish`
//! frame (`--batch`; the broker stores each frame as one chunk): the frame's size and count are
//! written as placeholders and patched when the frame is sealed, which happens when it holds
//! `batch` entries, when it would outgrow the frame limit, and before anything is written.
//! With `--sub-entry N`, N messages go into one uncompressed sub-batch entry first (one
//! publishing id for all N, as the stream clients' sub-entry batching does).
//!
//! Each entry gets the next publishing id (1, 2, 3, ...): a message without sub-entries, a
//! whole sub-batch with them ([`IdConfirms`] weighs each id by its messages). The broker
//! confirms every publishing id once (PublishConfirm) or refuses it (PublishError, counted as
//! a nack).
//!
//! The send time of confirm latency is taken once per frame: [`StreamPublisher::publish_run`]
//! (the stream workload's way in) writes a run of messages stamped with one time, the trait's
//! `publish` (one message at a time) stamps a frame when it opens it.

use super::confirms::IdConfirms;
use super::conn::{expect_ok, Conn};
use super::message;
use crate::client::{Confirms, Publisher};
use crate::stamp::Stamp;
use bytes::{BufMut, BytesMut};
use hdrhistogram::Histogram;
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
}

/// A run of messages for [`StreamPublisher::publish_run`]: `count` messages of producer
/// `producer`, sequence numbers from `first_seq`, all handed over at `sent` (`sent_ns` since
/// the run started).
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub producer: u16,
    pub first_seq: u64,
    pub count: u64,
    pub sent: Instant,
    pub sent_ns: u64,
}

/// A connection publishing to one stream.
pub struct StreamPublisher {
    conn: Conn,
    window: usize,
    batching: Batching,
    frame: Option<OpenFrame>,
    sub: OpenSubBatch,
    /// When the messages of the next frame opened were handed over.
    handed_over: Instant,
    confirms: IdConfirms,
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
        Ok(Self::new(conn, window, batching))
    }

    fn new(conn: Conn, window: usize, batching: Batching) -> StreamPublisher {
        StreamPublisher {
            conn,
            window: window.max(1),
            batching,
            frame: None,
            sub: OpenSubBatch::default(),
            handed_over: Instant::now(),
            confirms: IdConfirms::new(1),
        }
    }

    /// Messages unconfirmed.
    pub(super) fn unsettled(&self) -> usize {
        self.confirms.unsettled
    }

    /// The most messages unconfirmed.
    pub(super) fn window(&self) -> usize {
        self.window
    }

    /// Messages per frame, at most.
    pub(super) fn messages_per_frame(&self) -> u64 {
        u64::from(self.batching.frame.max(1))
            * u64::from(self.batching.sub_entry.unwrap_or(1).max(1))
    }

    /// Appends the next publishing id to the open frame (opening one if needed), sealing
    /// the frame first if `entry_len` more bytes would outgrow the frame limit.
    fn start_entry(&mut self, entry_len: usize, messages: u16) {
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
        if self.frame.is_none() {
            self.confirms.frame(self.handed_over);
            let out = &mut self.conn.wire.out;
            let at = out.len();
            out.put_u32(0);
            out.put_u16(key::PUBLISH);
            out.put_u16(1);
            out.put_u8(PUBLISHER_ID);
            out.put_u32(0);
            self.frame = Some(OpenFrame { at, entries: 0 });
        }
        if let Some(f) = &mut self.frame {
            f.entries += 1;
        }
        let id = self.confirms.published(messages);
        self.conn.wire.out.put_u64(id);
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
        let records = std::mem::take(&mut self.sub.records);
        self.start_entry(11 + records.len(), self.sub.count);
        message::encode_sub_batch(&records, self.sub.count, &mut self.conn.wire.out);
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

    /// Adds one message to the open frame or sub-batch.
    fn add(&mut self, body: &[u8]) -> anyhow::Result<()> {
        let len = message::encoded_len(body.len());
        let len32 = u32::try_from(len)?;
        match self.batching.sub_entry {
            None => {
                self.start_entry(4 + len, 1);
                let out = &mut self.conn.wire.out;
                out.put_u32(len32);
                message::encode(body, out);
                self.end_entry();
            }
            Some(n) => {
                self.sub.records.put_u32(len32);
                message::encode(body, &mut self.sub.records);
                self.sub.count += 1;
                if self.sub.count >= n {
                    self.seal_sub_batch();
                }
            }
        }
        Ok(())
    }

    /// Writes out what has gathered once it is worth a write, and takes in the confirms that
    /// came meanwhile.
    async fn write_if_full(&mut self) -> anyhow::Result<()> {
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

    /// Publishes a run of messages with bodies like `body` (at least [`Stamp::LEN`] bytes),
    /// each stamped with the run's send time, its producer and its sequence number.
    pub(super) async fn publish_run(&mut self, body: &mut [u8], run: Run) -> anyhow::Result<()> {
        // Whatever is open belongs to this run's time from now on; the workload never leaves
        // anything open between runs (the run ends sealed).
        self.handed_over = run.sent;
        if self.batching.sub_entry.is_none() {
            self.simple_run(body, run)?;
        } else {
            for seq in run.first_seq..run.first_seq + run.count {
                Stamp {
                    sent_ns: run.sent_ns,
                    producer: run.producer,
                    seq,
                }
                .write_to(body);
                self.add(body)?;
            }
        }
        // The run goes out in whole entries and frames: its messages never wait for the next
        // run's (a run shorter than a frame is a window or a rate limit speaking).
        self.seal_all();
        self.write_if_full().await
    }

    /// A run without sub-entries: each entry is the same bytes but for its publishing id and
    /// stamp, so it is copied from one template and patched, frame by frame.
    fn simple_run(&mut self, body: &[u8], run: Run) -> anyhow::Result<()> {
        self.seal_all();
        // The template: publishing id, entry size, the data section's head, the body.
        let len = message::encoded_len(body.len());
        let mut entry = BytesMut::with_capacity(12 + len);
        entry.put_u64(0);
        entry.put_u32(u32::try_from(len)?);
        message::encode(body, &mut entry);
        let stamp_at = entry.len() - body.len();
        let limit = match self.conn.frame_max {
            0 => usize::MAX,
            n => n as usize,
        };
        // Entries per frame: the batch, and what the frame limit (which does not count the
        // 4-byte size prefix) leaves room for, but always at least one.
        let fits = (limit.saturating_sub(FRAME_HEAD - 4) / entry.len()).max(1);
        let per_frame = (self.batching.frame.max(1) as usize).min(fits) as u64;
        let mut seq = run.first_seq;
        let end = run.first_seq + run.count;
        while seq < end {
            let n = per_frame.min(end - seq);
            self.start_entry(entry.len() - 8, 1);
            // `start_entry` opened the frame and wrote the first id; the rest are ours.
            let out = &mut self.conn.wire.out;
            out.truncate(out.len() - 8);
            let first_id = self.confirms.next_id() - 1;
            self.confirms.published_many(n - 1);
            out.reserve(entry.len() * n as usize);
            for i in 0..n {
                let at = out.len();
                out.extend_from_slice(&entry);
                let e = &mut out[at..];
                e[..8].copy_from_slice(&(first_id + i).to_be_bytes());
                Stamp {
                    sent_ns: run.sent_ns,
                    producer: run.producer,
                    seq: seq + i,
                }
                .write_to(&mut e[stamp_at..]);
            }
            if let Some(f) = &mut self.frame {
                f.entries = u32::try_from(n)?;
            }
            self.seal_frame();
            seq += n;
        }
        Ok(())
    }

    /// Handles what the broker sent: confirms and errors.
    fn process(&mut self) -> anyhow::Result<()> {
        while let Some(command) = self.conn.decode()? {
            match command {
                Command::PublishConfirm(c) => {
                    self.confirms.settle(c.publishing_ids, true, Instant::now());
                }
                Command::PublishError(e) => {
                    let ids = e.errors.iter().map(|f| f.publishing_id);
                    self.confirms.settle(ids, false, Instant::now());
                }
                Command::MetadataUpdate(m) => {
                    anyhow::bail!("stream {} is gone ({:?})", m.stream.as_str(), m.code)
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Writes out everything, then reads until the broker has settled all but `room` messages.
    pub(super) async fn settle_until(&mut self, room: usize) -> anyhow::Result<Confirms> {
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

    /// The confirms handled since the last call, without waiting.
    pub(super) fn take_confirms(&mut self) -> Confirms {
        self.confirms.take()
    }
}

impl Publisher for StreamPublisher {
    async fn reserve(&mut self) -> anyhow::Result<Confirms> {
        self.settle_until(self.window - 1).await
    }

    async fn publish(&mut self, body: &[u8]) -> anyhow::Result<()> {
        if self.frame.is_none() {
            self.handed_over = Instant::now();
        }
        self.add(body)?;
        self.write_if_full().await
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
        StreamPublisher::new(Conn::for_tests(wire, frame_max), 1000, batching)
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
    async fn a_run_is_stamped_with_one_time_and_consecutive_sequence_numbers() {
        let batching = Batching {
            frame: 4,
            sub_entry: None,
        };
        let mut p = publisher(batching, 0).await;
        let sent = Instant::now();
        let mut body = vec![0xEE; 20];
        let run = Run {
            producer: 3,
            first_seq: 10,
            count: 6,
            sent,
            sent_ns: 12_345,
        };
        p.publish_run(&mut body, run).await.unwrap();
        assert_eq!(p.unsettled(), 6);
        let found = frames(&mut p);
        assert_eq!(
            found.iter().map(Publish::len).collect::<Vec<_>>(),
            vec![4, 2]
        );
        let all: Vec<PublishedMessage> = found.iter().flat_map(Publish::messages).collect();
        for (i, m) in all.iter().enumerate() {
            assert_eq!(m.publishing_id, i as u64 + 1);
            let Entry::Simple(stored) = &m.entry else {
                panic!("not a simple entry");
            };
            let body = message::body(stored.clone());
            assert_eq!(body.len(), 20);
            let stamp = Stamp::read_from(&body).unwrap();
            assert_eq!(
                (stamp.sent_ns, stamp.producer, stamp.seq),
                (12_345, 3, 10 + i as u64)
            );
            assert!(body[Stamp::LEN..].iter().all(|&b| b == 0xEE));
        }
        // Both frames carry the run's time: a confirm of ids 5 and 6 is one sample of two.
        p.confirms
            .settle([5, 6], true, sent + std::time::Duration::from_millis(3));
        assert_eq!(p.confirms.latency_us.len(), 2);
        assert_eq!(p.confirms.latency_us.count_between(2990, 3010), 2);
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
        p.confirms.settle([2], true, Instant::now());
        assert_eq!(p.confirms.take().acked, 3);
        p.confirms.settle([2], true, Instant::now());
        assert_eq!(p.confirms.take().acked, 0, "settled once");
        p.confirms.settle([3], false, Instant::now());
        assert_eq!(p.confirms.take().nacked, 1);
        assert_eq!(p.confirms.unsettled, 3);
    }
}
