//! The consuming side of the bench's stream client: one subscription per connection, chunk
//! credit, and the messages of each delivered chunk handed out one by one, zero-copy.
//!
//! Credit counts chunks (PROTOCOL.adoc, "Credit"): the subscription starts with `credit`, and
//! each chunk received gives one back at once, as RabbitMQ's clients do, so the broker always
//! has `credit` chunks in flight. The credit goes out with the next read.

use super::conn::{expect_ok, Conn};
use super::message::{self, ChunkMessages};
use crate::client::Consumer;
use crate::tally::Tally;
use bytes::Bytes;
use stream_wire::{Command, Credit, Deliver, OffsetSpec, Properties, Str, Subscribe, Unsubscribe};

/// The subscription id on its connection (each consumer has a connection of its own).
const SUBSCRIPTION_ID: u8 = 1;

/// A connection consuming one stream.
pub struct StreamConsumer {
    conn: Conn,
    /// The messages of the chunk being handed out.
    chunk: Option<ChunkMessages>,
    /// Messages below this offset are skipped: a numeric offset's chunk starts before it.
    from: u64,
    /// Chunks, messages and bytes of chunks received.
    pub(super) counts: ChunkCounts,
}

/// What a consumer received, chunk by chunk.
#[derive(Debug, Default, Clone, Copy)]
pub struct ChunkCounts {
    /// Chunks delivered.
    pub chunks: u64,
    /// Messages in them (the chunks' record counts).
    pub records: u64,
    /// Bytes of chunk header and data delivered.
    pub bytes: u64,
}

impl StreamConsumer {
    /// Subscribes to `stream` from `offset` with `credit` chunks of initial credit.
    pub(super) async fn open(
        mut conn: Conn,
        stream: &str,
        offset: OffsetSpec,
        credit: u16,
    ) -> anyhow::Result<StreamConsumer> {
        let correlation_id = conn.correlation();
        let answer = conn
            .rpc(Subscribe {
                correlation_id,
                subscription_id: SUBSCRIPTION_ID,
                stream: Str::new(stream)?,
                offset,
                credit,
                properties: Properties::new(),
            })
            .await?;
        expect_ok(&answer, "Subscribe")?;
        Ok(StreamConsumer {
            conn,
            chunk: None,
            from: match offset {
                OffsetSpec::Offset(n) => n,
                _ => 0,
            },
            counts: ChunkCounts::default(),
        })
    }

    /// The next delivered chunk, its credit given back; `None` when the broker ended the
    /// subscription (the stream was deleted).
    pub(super) async fn next_chunk(&mut self) -> anyhow::Result<Option<Deliver>> {
        loop {
            while let Some(command) = self.conn.decode()? {
                if let Some(step) = self.take(command)? {
                    return Ok(step);
                }
            }
            self.conn.wire.receive().await?;
        }
    }

    /// Records every message of `chunk` at or after the subscription's offset in `tally`, as
    /// received at `now_ns`; returns how many it recorded.
    pub(super) fn tally_chunk(
        &self,
        chunk: &stream_wire::Chunk,
        tally: &mut Tally,
        now_ns: u64,
    ) -> anyhow::Result<u64> {
        let from = self.from;
        let mut recorded = 0;
        // Messages sent together (one frame, one stamp) arrive together: their latencies are
        // recorded as one run, one histogram update per run rather than per message.
        let mut run: Option<(u64, u64)> = None;
        let walked = message::walk(&chunk.data, chunk.header.chunk_id, |offset, m| {
            if offset < from {
                return;
            }
            recorded += 1;
            let Some(sent_ns) = tally.record_seen(message::body_of(m), now_ns) else {
                return;
            };
            run = match run {
                Some((sent, n)) if sent == sent_ns => Some((sent, n + 1)),
                Some((sent, n)) => {
                    tally.record_latency(now_ns, sent, n);
                    Some((sent_ns, 1))
                }
                None => Some((sent_ns, 1)),
            };
        });
        if let Some((sent, n)) = run {
            tally.record_latency(now_ns, sent, n);
        }
        walked.map_err(|e| anyhow::anyhow!("{}", e.0))?;
        Ok(recorded)
    }

    /// What a command means to the subscription: `Some(Some(chunk))` a delivery,
    /// `Some(None)` the end, `None` nothing.
    fn take(&mut self, command: Command) -> anyhow::Result<Option<Option<Deliver>>> {
        match command {
            Command::Deliver(d) if d.subscription_id == SUBSCRIPTION_ID => {
                self.conn.send(Credit {
                    subscription_id: SUBSCRIPTION_ID,
                    credit: 1,
                });
                self.counts.chunks += 1;
                self.counts.records += u64::from(d.chunk.header.num_records);
                self.counts.bytes += d.chunk.encoded_len() as u64;
                Ok(Some(Some(d)))
            }
            Command::CreditResponse(r) => {
                anyhow::bail!("the broker refused credit: {:?}", r.code)
            }
            Command::MetadataUpdate(_) => Ok(Some(None)),
            _ => Ok(None),
        }
    }
}

impl Consumer for StreamConsumer {
    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        loop {
            if let Some(walk) = &mut self.chunk {
                match walk.next() {
                    Some(Ok((offset, m))) if offset >= self.from => {
                        return Ok(Some(message::body(m)));
                    }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => anyhow::bail!("{}", e.0),
                    None => self.chunk = None,
                }
            }
            match self.next_chunk().await? {
                Some(d) => self.chunk = Some(ChunkMessages::new(&d.chunk)),
                None => return Ok(None),
            }
        }
    }

    async fn ack(&mut self, _multiple: bool) -> anyhow::Result<()> {
        Ok(())
    }

    async fn cancel(&mut self) -> anyhow::Result<()> {
        let correlation_id = self.conn.correlation();
        self.conn.send(Unsubscribe {
            correlation_id,
            subscription_id: SUBSCRIPTION_ID,
        });
        Ok(())
    }

    async fn close(self) -> anyhow::Result<()> {
        self.conn.close().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Wire;
    use bytes::BytesMut;
    use stream_wire::{decode, Chunk, Entry, MetadataUpdate, ResponseCode};

    /// A consumer on a real socket to a listener that sends nothing: frames are put straight
    /// into its read buffer.
    async fn consumer(from: u64) -> StreamConsumer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let wire = Wire::connect("127.0.0.1", addr.port(), None, 4096, None)
            .await
            .unwrap();
        StreamConsumer {
            conn: Conn::for_tests(wire, 0),
            chunk: None,
            from,
            counts: ChunkCounts::default(),
        }
    }

    fn deliver(chunk_id: u64, bodies: &[&[u8]]) -> BytesMut {
        let entries: Vec<Entry> = bodies
            .iter()
            .map(|b| {
                let mut m = BytesMut::new();
                message::encode(b, &mut m);
                Entry::Simple(m.freeze())
            })
            .collect();
        let mut out = BytesMut::new();
        Command::Deliver(Deliver {
            subscription_id: SUBSCRIPTION_ID,
            committed_chunk_id: None,
            chunk: Chunk::from_entries(0, 1, chunk_id, &entries),
        })
        .encode(&mut out);
        out
    }

    #[tokio::test]
    async fn each_chunk_gives_one_credit_back_and_hands_out_its_bodies_in_order() {
        let mut c = consumer(0).await;
        c.conn
            .wire
            .rbuf
            .extend_from_slice(&deliver(0, &[b"a", b"b"]));
        c.conn.wire.rbuf.extend_from_slice(&deliver(2, &[b"c"]));
        for want in ["a", "b", "c"] {
            assert_eq!(c.next().await.unwrap().unwrap(), want);
        }
        assert_eq!((c.counts.chunks, c.counts.records), (2, 3));
        let mut out = std::mem::take(&mut c.conn.wire.out);
        for _ in 0..2 {
            let credit = decode(&mut out, 0).unwrap().unwrap();
            assert_eq!(
                credit,
                Command::Credit(Credit {
                    subscription_id: SUBSCRIPTION_ID,
                    credit: 1
                })
            );
        }
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn a_chunk_is_tallied_message_by_message_from_the_subscription_offset() {
        let mut c = consumer(21).await;
        let bodies: Vec<Vec<u8>> = (0..4u64)
            .map(|seq| {
                let mut b = vec![0; 16];
                crate::stamp::Stamp {
                    sent_ns: 1_000_000,
                    producer: 0,
                    seq,
                }
                .write_to(&mut b);
                b
            })
            .collect();
        let refs: Vec<&[u8]> = bodies.iter().map(Vec::as_slice).collect();
        c.conn.wire.rbuf.extend_from_slice(&deliver(20, &refs));
        let d = c.next_chunk().await.unwrap().unwrap();
        let mut tally = Tally::new(1);
        // Offsets 20..24: the one before 21 is skipped.
        assert_eq!(c.tally_chunk(&d.chunk, &mut tally, 3_000_000).unwrap(), 3);
        assert_eq!(
            (tally.received, tally.duplicates, tally.malformed),
            (3, 0, 0)
        );
        assert_eq!(tally.latency_us.len(), 3);
        assert_eq!(tally.latency_us.count_between(1990, 2010), 3);
    }

    #[tokio::test]
    async fn messages_before_a_numeric_offset_are_skipped_and_a_deleted_stream_ends() {
        let mut c = consumer(11).await;
        c.conn
            .wire
            .rbuf
            .extend_from_slice(&deliver(10, &[b"x", b"y", b"z"]));
        let mut update = BytesMut::new();
        Command::MetadataUpdate(MetadataUpdate {
            code: ResponseCode::StreamNotAvailable,
            stream: Str::from_static("s"),
        })
        .encode(&mut update);
        c.conn.wire.rbuf.extend_from_slice(&update);
        assert_eq!(c.next().await.unwrap().unwrap(), "y");
        assert_eq!(c.next().await.unwrap().unwrap(), "z");
        assert_eq!(c.next().await.unwrap(), None);
    }
}
