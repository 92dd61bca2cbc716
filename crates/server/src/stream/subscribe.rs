//! Consuming: `Subscribe`, `Deliver` (v1, and v2 with the committed chunk id), `Credit`,
//! `Unsubscribe`.
//!
//! The read path does no per-message work: each subscription has a
//! [`pigeon_store::stream::StreamReader`] that yields the file range of the next committed
//! chunk (header and entries, stored exactly as `Deliver` carries them), and that range is
//! read from the page cache straight into the connection's outbound buffer behind the
//! `Deliver` frame's few header bytes. Credit counts chunks (PROTOCOL.adoc, "Credit"): one
//! chunk delivered takes one credit. When a reader has caught up, the stream's watcher list
//! wakes the connection once the flusher commits more, and delivery goes on.

use super::connection::{Conn, Next};
use super::offsets::store_spec;
use super::sac::{self, Sac, SacState};
use super::view::ConsumerView;
use crate::authz::Kind;
use bytes::BufMut;
use pigeon_broker::permission::Access;
use pigeon_broker::Queue;
use pigeon_store::stream::{BloomMatcher, ChunkRange, ReadOptions, StreamReader};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use stream_wire::{key, Credit, CreditResponse, Properties, ResponseCode, Subscribe, Unsubscribe};

/// One subscription of the connection.
pub(super) struct Subscription {
    pub(super) stream: String,
    pub(super) queue: Arc<Queue>,
    reader: StreamReader,
    /// Its filter, kept to restart the reader elsewhere.
    filter: Option<BloomMatcher>,
    /// Chunks it may still be sent.
    credit: u32,
    /// Its single-active-consumer group, if it is in one.
    pub(super) sac: Option<Sac>,
    /// Its counters, read by the management API.
    view: Arc<ConsumerView>,
}

impl Subscription {
    /// Reads from `spec` from now on (an activated single active consumer's answer).
    pub(super) fn restart_at(
        &mut self,
        spec: stream_wire::OffsetSpec,
    ) -> Result<(), pigeon_store::StoreError> {
        let Some(log) = self.queue.stream_log() else {
            return Ok(());
        };
        let options = ReadOptions {
            all_chunk_types: false,
            filter: self.filter.clone(),
        };
        self.reader = log.reader(store_spec(spec), options)?;
        self.view
            .offset
            .store(self.reader.next_offset(), Ordering::Relaxed);
        Ok(())
    }

    /// Whether it may be sent chunks (not a waiting member of a group).
    fn delivering(&self) -> bool {
        self.sac
            .as_ref()
            .is_none_or(|s| s.state == SacState::Active)
    }
}

impl Conn {
    pub(super) fn subscribe(&mut self, s: Subscribe) -> Next {
        let code = match self.try_subscribe(&s) {
            Ok(()) => ResponseCode::Ok,
            Err(code) => code,
        };
        self.respond(key::SUBSCRIBE, s.correlation_id, code);
        if code == ResponseCode::Ok {
            self.activate_promoted();
            self.deliver_all();
        }
        Next::Go
    }

    fn try_subscribe(&mut self, s: &Subscribe) -> Result<(), ResponseCode> {
        let stream = s.stream.as_str();
        if !self.allowed(Access::Read, Kind::Queue, stream) {
            return Err(ResponseCode::AccessRefused);
        }
        let queue = self.stream_queue(stream)?;
        if self.subscriptions.contains_key(&s.subscription_id) {
            return Err(ResponseCode::SubscriptionIdAlreadyExists);
        }
        let log = queue.stream_log().ok_or(ResponseCode::StreamNotAvailable)?;
        let vhost = self
            .vhost()
            .map(|v| v.name().to_string())
            .unwrap_or_default();
        let group = sac::requested(&s.properties, &vhost, stream)
            .map_err(|()| ResponseCode::PreconditionFailed)?;
        let filter = filter(&s.properties);
        let options = ReadOptions {
            all_chunk_types: false,
            filter: filter.clone(),
        };
        let reader = log.reader(store_spec(s.offset), options).map_err(|e| {
            tracing::error!(conn = self.id, %stream, error = %e, "cannot read the stream");
            ResponseCode::InternalError
        })?;
        self.watch(&queue);
        let view = Arc::new(ConsumerView {
            id: s.subscription_id,
            queue: Arc::clone(&queue),
            properties: s
                .properties
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.as_str().to_string()))
                .collect(),
            group: group.clone(),
            offset: AtomicU64::new(reader.next_offset()),
            consumed: AtomicU64::new(0),
            credits: AtomicU32::new(u32::from(s.credit)),
        });
        self.view.add_consumer(Arc::clone(&view));
        // A partition of a super stream (`super-stream` property): its index among the
        // partitions spreads the partitions over the group's consumers.
        let partition = s.properties.get("super-stream").and_then(|name| {
            let partitions = self.vhost()?.super_stream_partitions(name.as_str()).ok()?;
            let i = partitions.iter().position(|p| p == stream)?;
            u32::try_from(i).ok()
        });
        let sac = group.map(|key| self.join_group(key, partition, s.subscription_id));
        self.subscriptions.insert(
            s.subscription_id,
            Subscription {
                stream: stream.to_string(),
                queue,
                reader,
                filter,
                credit: u32::from(s.credit),
                sac,
                view,
            },
        );
        Ok(())
    }

    pub(super) fn credit(&mut self, c: &Credit) -> Next {
        match self.subscriptions.get_mut(&c.subscription_id) {
            Some(sub) => {
                sub.credit = sub.credit.saturating_add(u32::from(c.credit));
                sub.view.credits.store(sub.credit, Ordering::Relaxed);
                self.deliver_all();
            }
            // The only answer to Credit: an error (PROTOCOL.adoc, "Credit").
            None => self.send(CreditResponse {
                code: ResponseCode::SubscriptionIdDoesNotExist,
                subscription_id: c.subscription_id,
            }),
        }
        Next::Go
    }

    pub(super) fn unsubscribe(&mut self, u: &Unsubscribe) -> Next {
        let code = match self.subscriptions.remove(&u.subscription_id) {
            Some(sub) => {
                self.view.remove_consumer(u.subscription_id);
                if let Some(sac) = &sub.sac {
                    self.leave_group(sac, u.subscription_id);
                }
                ResponseCode::Ok
            }
            None => ResponseCode::SubscriptionIdDoesNotExist,
        };
        self.respond(key::UNSUBSCRIBE, u.correlation_id, code);
        Next::Go
    }

    /// The answer to a `ConsumerUpdate` this server sent (`sac.rs`).
    pub(super) fn consumer_update_response(
        &mut self,
        r: &stream_wire::ConsumerUpdateResponse,
    ) -> Next {
        self.activated(r);
        Next::Go
    }

    /// Sends every subscription the chunks its credit allows, while the outbound buffer has
    /// room (the writer resumes this once it drained).
    pub(super) fn deliver_all(&mut self) {
        let ids: Vec<u8> = self.subscriptions.keys().copied().collect();
        for id in ids {
            loop {
                if !self.out.has_room() {
                    return;
                }
                let Some(sub) = self.subscriptions.get_mut(&id) else {
                    break;
                };
                if sub.credit == 0 || !sub.delivering() {
                    break;
                }
                let range = match sub.reader.next_chunk() {
                    Ok(Some(range)) => range,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::error!(conn = self.id, stream = %sub.stream, error = %e, "cannot read the stream");
                        break;
                    }
                };
                sub.credit -= 1;
                sub.view.credits.store(sub.credit, Ordering::Relaxed);
                sub.view
                    .offset
                    .store(range.header.next_offset(), Ordering::Relaxed);
                sub.view
                    .consumed
                    .fetch_add(u64::from(range.header.num_records), Ordering::Relaxed);
                // Stream deliveries are settled on sending (nothing is acknowledged).
                self.reg
                    .entry
                    .counters()
                    .delivered_consume_auto_ack
                    .fetch_add(u64::from(range.header.num_records), Ordering::Relaxed);
                let committed = sub
                    .queue
                    .stream_log()
                    .and_then(|l| l.committed_chunk_id())
                    .unwrap_or(range.header.chunk_id);
                if let Err(e) = self.send_chunk(id, &range, committed) {
                    tracing::error!(conn = self.id, path = %range.path.display(), error = %e, "cannot read a chunk");
                    break;
                }
            }
        }
    }

    /// Writes one `Deliver` frame: its header, then the chunk read from the file into the
    /// outbound buffer (one copy, from the page cache).
    fn send_chunk(&self, id: u8, range: &ChunkRange, committed: u64) -> std::io::Result<()> {
        let len = usize::try_from(range.deliver_len())
            .map_err(|_| std::io::Error::other("chunk too large"))?;
        let v2 = self.deliver_v2;
        let head = 2 + 2 + 1 + if v2 { 8 } else { 0 };
        let size =
            u32::try_from(head + len).map_err(|_| std::io::Error::other("chunk too large"))?;
        let mut result = Ok(());
        self.out.send(|buf| {
            let start = buf.len();
            buf.reserve(4 + head + len);
            buf.put_u32(size);
            buf.put_u16(key::DELIVER);
            buf.put_u16(if v2 { 2 } else { 1 });
            buf.put_u8(id);
            if v2 {
                buf.put_u64(committed);
            }
            let at = buf.len();
            buf.resize(at + len, 0);
            if let Err(e) = range.file.read_exact_at(&mut buf[at..], range.position) {
                buf.truncate(start);
                result = Err(e);
            }
        });
        result
    }
}

/// The bloom filter matcher a subscription's `filter.N` and `match-unfiltered` properties ask
/// for (the client filters the delivered chunks' messages itself).
fn filter(properties: &Properties) -> Option<BloomMatcher> {
    let values: Vec<Vec<u8>> = properties
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("filter."))
        .map(|(_, v)| v.as_bytes().to_vec())
        .collect();
    if values.is_empty() {
        return None;
    }
    let match_unfiltered = properties
        .get("match-unfiltered")
        .is_some_and(|v| v.as_str() == "true");
    Some(BloomMatcher::new(values, match_unfiltered))
}
