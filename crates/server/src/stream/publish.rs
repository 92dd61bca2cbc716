//! Publishing: `DeclarePublisher`, `Publish` (v1, and v2 with filter values),
//! `PublishConfirm`, `PublishError`, `DeletePublisher`.
//!
//! - **One chunk per frame.** The entries of a `Publish` frame (AMQP 1.0 messages, or
//!   sub-entry batches with whatever compression the client chose) are appended untouched, all
//!   in one chunk (65,535 entries at most, the chunk header's count: more make more chunks).
//! - **Confirms after the sync.** The chunk goes to the page cache at once; the confirm waits
//!   for the store's epoch read right after the append: the store's flusher syncs the stream
//!   in that round (the stream's `StreamSyncHook`, group commit with every queue and stream),
//!   then calls back, which wakes this connection to send `PublishConfirm`.
//! - **De-duplication.** A publisher with a reference (a name) has its last publishing id
//!   recorded in each chunk it writes (osiris' writer tracking): ids at or below it are
//!   skipped, and confirmed like the others, as osiris confirms the duplicates it drops, in
//!   a `PublishConfirm` of their own after the written ones' (osiris_writer's
//!   `handle_duplicates` sends the duplicates' written event apart from the batch's). A
//!   frame carrying one id twice so gets it confirmed once per frame, never twice in one:
//!   rabbitmq-stream-client (Rust) panics on an id it no longer waits for within a frame and
//!   drops the rest of it (its suite's `producer_send_batch_name_with_deduplication_ok`).

use super::connection::{Conn, Next};
use super::offsets::now_ms;
use super::view::PublisherView;
use crate::authz::Kind;
use pigeon_broker::permission::Access;
use pigeon_broker::Queue;
use pigeon_store::stream::Append;
use pigeon_store::stream::Entry as StoreEntry;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use stream_wire::{
    key, DeclarePublisher, DeletePublisher, EntryRef, Publish, PublishConfirm, PublishError,
    PublishedRef, PublishingError, ResponseCode,
};

/// A chunk holds at most this many entries (the header's `NumEntries` is 16 bits).
const MAX_CHUNK_ENTRIES: usize = 65_535;
/// Most publishing ids per `PublishConfirm` frame (64 KiB of ids, far under any frame max).
const MAX_CONFIRM_IDS: usize = 8_192;

/// A declared publisher.
pub(super) struct Publisher {
    pub(super) stream: String,
    pub(super) queue: Arc<Queue>,
    /// Its reference, if it has one (de-duplication is on).
    reference: Option<Vec<u8>>,
    /// The last publishing id stored for the reference.
    last: Option<u64>,
    /// Its counters, read by the management API.
    view: Arc<PublisherView>,
}

/// Publishing ids waiting for a store epoch to be synced.
pub(super) struct PendingConfirm {
    epoch: u64,
    publisher_id: u8,
    /// Whether these are the duplicates a frame carried (confirmed in their own frame).
    duplicates: bool,
    ids: Vec<u64>,
}

impl Conn {
    pub(super) fn declare_publisher(&mut self, d: DeclarePublisher) -> Next {
        let code = match self.try_declare_publisher(&d) {
            Ok(()) => ResponseCode::Ok,
            Err(code) => code,
        };
        self.respond(key::DECLARE_PUBLISHER, d.correlation_id, code);
        Next::Go
    }

    fn try_declare_publisher(&mut self, d: &DeclarePublisher) -> Result<(), ResponseCode> {
        let stream = d.stream.as_str();
        if !self.allowed(Access::Write, Kind::Queue, stream) {
            return Err(ResponseCode::AccessRefused);
        }
        let queue = self.stream_queue(stream)?;
        let reference = (!d.reference.is_empty()).then(|| d.reference.as_bytes().to_vec());
        // rabbit_stream_reader: the id, or the reference on this stream, already in use.
        let taken = self.publishers.contains_key(&d.publisher_id)
            || self
                .publishers
                .values()
                .any(|p| p.stream == stream && reference.is_some() && p.reference == reference);
        if taken {
            return Err(ResponseCode::PreconditionFailed);
        }
        let last = reference
            .as_ref()
            .and_then(|r| queue.stream_log().and_then(|l| l.publisher_sequence(r)));
        self.watch(&queue);
        let view = Arc::new(PublisherView::new(
            d.publisher_id,
            stream,
            d.reference.as_str(),
        ));
        self.view.add_publisher(Arc::clone(&view));
        self.publishers.insert(
            d.publisher_id,
            Publisher {
                stream: stream.to_string(),
                queue,
                reference,
                last,
                view,
            },
        );
        Ok(())
    }

    pub(super) fn delete_publisher(&mut self, d: &DeletePublisher) -> Next {
        let code = match self.publishers.remove(&d.publisher_id) {
            Some(_) => {
                self.view.remove_publisher(d.publisher_id);
                ResponseCode::Ok
            }
            None => ResponseCode::PublisherDoesNotExist,
        };
        self.respond(key::DELETE_PUBLISHER, d.correlation_id, code);
        Next::Go
    }

    /// Appends a `Publish` frame's messages as one chunk and queues their confirm.
    pub(super) fn publish(&mut self, p: &Publish) -> Next {
        let publisher_id = p.publisher_id;
        let Some(publisher) = self.publishers.get(&publisher_id) else {
            self.publish_error(p, ResponseCode::PublisherDoesNotExist);
            return Next::Go;
        };
        if !self.allowed(Access::Write, Kind::Queue, &publisher.stream) {
            self.publish_error(p, ResponseCode::AccessRefused);
            return Next::Go;
        }
        let queue = Arc::clone(&publisher.queue);
        let (Some(log), Some(store)) = (queue.stream_log(), self.state.store.clone()) else {
            self.publish_error(p, ResponseCode::StreamNotAvailable);
            return Next::Go;
        };
        if queue.is_deleted() || queue.stream_deleted() {
            self.publish_error(p, ResponseCode::StreamNotAvailable);
            return Next::Go;
        }
        // One pass over the frame, borrowing each message (no copy, no reference count):
        // the store copies each entry once, into the chunk.
        let n = u64::from(p.len());
        let counters = &self.reg.entry.counters();
        PublisherView::count(&publisher.view.published, n);
        self.reg.entry.publisher.store(true, Ordering::Relaxed);
        counters.received.fetch_add(n, Ordering::Relaxed);
        counters.received_confirm.fetch_add(n, Ordering::Relaxed);
        counters.routed.fetch_add(n, Ordering::Relaxed);
        // De-duplication: what the reference already stored is skipped (and confirmed).
        let mut last = publisher.last;
        let reference = publisher.reference.clone();
        let mut duplicates: Vec<u64> = Vec::new();
        let mut ids: Vec<u64> = Vec::with_capacity(p.len() as usize);
        let mut chunk = ChunkUnderWay::new(p.len() as usize);
        for m in p.message_refs() {
            if reference.is_some() {
                match last {
                    Some(l) if m.publishing_id <= l => {
                        duplicates.push(m.publishing_id);
                        continue;
                    }
                    _ => last = Some(m.publishing_id),
                }
            }
            ids.push(m.publishing_id);
            chunk.add(&m, p.is_filtered());
            if chunk.entries.len() == MAX_CHUNK_ENTRIES {
                if let Err(e) = chunk.append(log, reference.as_deref()) {
                    tracing::error!(conn = self.id, stream = %queue.name(), error = %e, "cannot append to the stream");
                    self.publish_error(p, ResponseCode::InternalError);
                    return Next::Go;
                }
            }
        }
        if !chunk.entries.is_empty() {
            if let Err(e) = chunk.append(log, reference.as_deref()) {
                tracing::error!(conn = self.id, stream = %queue.name(), error = %e, "cannot append to the stream");
                self.publish_error(p, ResponseCode::InternalError);
                return Next::Go;
            }
        }
        let fresh = !ids.is_empty();
        if let Some(publisher) = self.publishers.get_mut(&publisher_id) {
            publisher.last = last;
        }
        let epoch = if !fresh {
            0
        } else {
            store.stream_appended();
            // Without fsync the chunk is committed already: readers need not wait a round.
            queue.stream_tail_moved();
            store.current_epoch()
        };
        for (duplicates, ids) in [(false, ids), (true, duplicates)] {
            if !ids.is_empty() {
                self.confirms.push_back(PendingConfirm {
                    epoch,
                    publisher_id,
                    duplicates,
                    ids,
                });
            }
        }
        if epoch <= store.synced_epoch() {
            self.flush_confirms();
        } else if epoch > self.awaited_epoch {
            self.awaited_epoch = epoch;
            let waker = Arc::clone(&self.waker);
            store.on_synced(epoch, Box::new(move |_| waker.0.notify_one()));
        }
        Next::Go
    }

    /// Sends `PublishConfirm` for every publish whose epoch the store has synced.
    pub(super) fn flush_confirms(&mut self) {
        let Some(store) = &self.state.store else {
            return;
        };
        let synced = store.synced_epoch();
        // Per publisher, the written ids in one frame and the duplicates in another.
        let mut by_publisher: Vec<(u8, bool, Vec<u64>)> = Vec::new();
        while self.confirms.front().is_some_and(|c| c.epoch <= synced) {
            let Some(c) = self.confirms.pop_front() else {
                break;
            };
            match by_publisher
                .iter_mut()
                .find(|(id, dup, _)| *id == c.publisher_id && *dup == c.duplicates)
            {
                Some((_, _, ids)) => ids.extend(c.ids),
                None => by_publisher.push((c.publisher_id, c.duplicates, c.ids)),
            }
        }
        for (publisher_id, _, ids) in by_publisher {
            self.reg
                .entry
                .counters()
                .confirmed
                .fetch_add(ids.len() as u64, Ordering::Relaxed);
            if let Some(p) = self.publishers.get(&publisher_id) {
                PublisherView::count(&p.view.confirmed, ids.len() as u64);
            }
            if ids.len() <= MAX_CONFIRM_IDS {
                // The usual case: the ids go out as they are, uncopied.
                self.send(PublishConfirm {
                    publisher_id,
                    publishing_ids: ids,
                });
                continue;
            }
            for part in ids.chunks(MAX_CONFIRM_IDS) {
                self.send(PublishConfirm {
                    publisher_id,
                    publishing_ids: part.to_vec(),
                });
            }
        }
    }

    /// Refuses every message of `p` with `code`.
    fn publish_error(&self, p: &Publish, code: ResponseCode) {
        let errors: Vec<PublishingError> = p
            .message_refs()
            .map(|m| PublishingError {
                publishing_id: m.publishing_id,
                code,
            })
            .collect();
        if let Some(publisher) = self.publishers.get(&p.publisher_id) {
            PublisherView::count(&publisher.view.errored, errors.len() as u64);
        }
        for part in errors.chunks(MAX_CONFIRM_IDS) {
            self.send(PublishError {
                publisher_id: p.publisher_id,
                errors: part.to_vec(),
            });
        }
    }

    /// Drops the publishers and subscriptions of deleted streams and tells the client with
    /// `MetadataUpdate` (STREAM_NOT_AVAILABLE), once per stream, as `rabbit_stream_reader`
    /// does when a stream it uses goes away.
    pub(super) fn forget_deleted_streams(&mut self) {
        let gone = |q: &Queue| q.is_deleted() || q.stream_deleted();
        let mut streams: HashMap<String, ()> = HashMap::new();
        let view = Arc::clone(&self.view);
        self.publishers.retain(|&id, p| {
            let keep = !gone(&p.queue);
            if !keep {
                streams.insert(p.stream.clone(), ());
                view.remove_publisher(id);
            }
            keep
        });
        let mut left = Vec::new();
        self.subscriptions.retain(|&id, s| {
            let keep = !gone(&s.queue);
            if !keep {
                streams.insert(s.stream.clone(), ());
                view.remove_consumer(id);
                if let Some(sac) = s.sac.take() {
                    left.push((sac, id));
                }
            }
            keep
        });
        for (sac, id) in left {
            self.leave_group(&sac, id);
        }
        for stream in streams.into_keys() {
            self.watched.remove(&stream);
            self.send(stream_wire::MetadataUpdate {
                code: ResponseCode::StreamNotAvailable,
                stream: stream.into(),
            });
        }
    }
}

/// The chunk a `Publish` frame's messages are gathered into, borrowing the frame's bytes.
struct ChunkUnderWay<'a> {
    entries: Vec<StoreEntry<'a>>,
    /// The distinct filter values of its messages (version 2).
    values: Vec<&'a [u8]>,
    /// Some message has no filter value.
    unfiltered: bool,
    /// The highest publishing id in it (the publisher's sequence it records).
    max_id: u64,
}

impl<'a> ChunkUnderWay<'a> {
    fn new(messages: usize) -> Self {
        ChunkUnderWay {
            entries: Vec::with_capacity(messages.min(MAX_CHUNK_ENTRIES)),
            values: Vec::new(),
            unfiltered: false,
            max_id: 0,
        }
    }

    fn add(&mut self, m: &PublishedRef<'a>, filtered: bool) {
        self.entries.push(store_entry(&m.entry));
        self.max_id = self.max_id.max(m.publishing_id);
        if filtered {
            match m.filter_value {
                Some(v) if !self.values.contains(&v) => self.values.push(v),
                Some(_) => {}
                None => self.unfiltered = true,
            }
        }
    }

    /// Appends the gathered entries as one chunk (recording `reference`'s sequence, when the
    /// publisher has one) and starts over.
    fn append(
        &mut self,
        log: &pigeon_store::stream::StreamLog,
        reference: Option<&[u8]>,
    ) -> Result<(), pigeon_store::StoreError> {
        let tracked;
        let publishers: &[(&[u8], u64)] = match reference {
            Some(r) => {
                tracked = [(r, self.max_id)];
                &tracked
            }
            None => &[],
        };
        let append = Append {
            entries: &self.entries,
            timestamp: now_ms(),
            publishers,
            filter_values: &self.values,
            unfiltered: self.unfiltered,
        };
        let result = log.append_chunk(&append).map(|_| ());
        self.entries.clear();
        self.values.clear();
        self.unfiltered = false;
        self.max_id = 0;
        result
    }
}

/// The store's view of a published entry (borrowing the frame's bytes).
fn store_entry<'a>(e: &EntryRef<'a>) -> StoreEntry<'a> {
    match *e {
        EntryRef::Simple(body) => StoreEntry::Simple(body),
        EntryRef::SubBatch {
            compression,
            records,
            uncompressed_len,
            body,
        } => StoreEntry::SubBatch {
            compression,
            records,
            uncompressed_len,
            data: body,
        },
    }
}
