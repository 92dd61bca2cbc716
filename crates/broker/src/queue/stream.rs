//! Stream queues (`x-queue-type: stream`, RabbitMQ's `rabbit_stream_queue`): an append-only
//! [`StreamLog`] that every consumer reads from its own offset. A message is never removed by
//! a consumer: an ack only gives its credit back; retention drops whole segments.
//!
//! - **Publish**: a routed message is appended as one chunk of one entry; the publisher's
//!   confirm waits for the store's epoch, and the store's flusher syncs the stream in that
//!   round (`pigeon_store::StreamSyncHook`), then dispatches to consumers waiting at the tail.
//! - **Entry format**: RabbitMQ's, an AMQP 1.0 message, through the [`StreamEntryCodec`] the
//!   server registers (`server/src/amqp/amqp10.rs`); without one, the broker's own message
//!   record (`record.rs`), told apart by its first byte (never 0; a 1.0 message's is 0).
//! - **Consume**: each consumer has a [`StreamReader`] positioned by its `x-stream-offset`
//!   and a buffer of the messages decoded from its current chunk; a delivery's `seq` is the
//!   message's offset (the AMQP adapter adds the `x-stream-offset` header).

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock, Weak};

use bytes::Bytes;
use parking_lot::Mutex;
use pigeon_store::stream::{parse_entries, Append, BloomMatcher, Entry, ReadOptions, StreamReader};
use pigeon_store::{OffsetSpec, Store, StoreError, StreamLog, StreamSyncHook};

pub use super::stream_args::{
    check_declaration, is_stream_declaration, parse_age, parse_filter, parse_offset, stream_config,
    StreamStart,
};

use super::{Enqueued, Queue, QueuedMessage};
use crate::consumer::ConsumerSink;
use crate::error::{BrokerError, Result};
use crate::message::{Message, Properties, PropertiesCodec};
use crate::record::{MessageRecord, MessageRecordRef, QueueExtras};
use crate::value::Table;

/// The header a publisher names a message's filter value with (RabbitMQ's stream filtering).
const FILTER_VALUE: &str = "x-stream-filter-value";

/// Whether encoded properties may carry [`FILTER_VALUE`]: its name appears in them as is.
fn names_filter_value(raw: &[u8]) -> bool {
    raw.windows(FILTER_VALUE.len())
        .any(|w| w == FILTER_VALUE.as_bytes())
}

/// How stream entries are encoded. The server registers RabbitMQ's format (AMQP 1.0 messages,
/// which it can map to and from its own properties) with [`set_entry_codec`]; without one
/// (the broker's own tests), entries are the broker's message records.
pub trait StreamEntryCodec: Send + Sync {
    /// The entry for `message`, `None` if this codec cannot encode it (then the record format
    /// is used).
    fn encode(&self, message: &Message) -> Option<Vec<u8>>;
    /// The message an entry holds, with the codec of its properties; `None` if malformed.
    fn decode(&self, entry: Bytes) -> Option<(MessageRecord, &'static dyn PropertiesCodec)>;
}

static ENTRY_CODEC: OnceLock<&'static dyn StreamEntryCodec> = OnceLock::new();

/// Something woken when a stream's committed tail moves or the stream is deleted: the stream
/// protocol's connections (`server/src/stream/`), which read the log themselves instead of
/// being handed messages as the queue's consumers are.
pub trait StreamWatcher: Send + Sync {
    /// Called on the store's flusher thread or a publisher's task: only wake a task here.
    fn wake(&self);
}

/// A stream's watchers, and the committed offset they were last woken for.
#[derive(Default)]
struct Watchers {
    list: Mutex<Vec<Weak<dyn StreamWatcher>>>,
    woken_at: std::sync::atomic::AtomicU64,
}

impl Watchers {
    /// Wakes every live watcher (and forgets the dead ones).
    fn wake_all(&self) {
        let live: Vec<Arc<dyn StreamWatcher>> = {
            let mut list = self.list.lock();
            list.retain(|w| w.strong_count() > 0);
            list.iter().filter_map(Weak::upgrade).collect()
        };
        for w in live {
            w.wake();
        }
    }

    /// Wakes the watchers if the committed offset moved since they were last woken.
    fn wake_if_moved(&self, committed: u64) {
        use std::sync::atomic::Ordering;
        if self.woken_at.fetch_max(committed, Ordering::AcqRel) < committed {
            self.wake_all();
        }
    }
}

/// Registers the stream entry codec for the process (the first registration wins).
pub fn set_entry_codec(codec: &'static dyn StreamEntryCodec) {
    let _ = ENTRY_CODEC.set(codec);
}

/// One consumer's position.
struct Cursor {
    owner: u64,
    tag: Arc<str>,
    sink: Arc<dyn ConsumerSink>,
    reader: StreamReader,
    /// Offsets below this are skipped (a numeric `x-stream-offset` inside a chunk).
    from: u64,
    /// Messages of the chunk being delivered, with their offsets.
    pending: VecDeque<(u64, MessageRecord, &'static dyn PropertiesCodec)>,
}

/// A stream queue's own state (beside the queue's: its consumers are also listed there, for
/// counts, cancellation and deletion).
pub(crate) struct StreamQueue {
    pub(crate) log: Arc<StreamLog>,
    store: Arc<Store>,
    pub(crate) id: String,
    codec: OnceLock<&'static dyn PropertiesCodec>,
    cursors: Mutex<Vec<Cursor>>,
    hook: OnceLock<Arc<Hook>>,
    /// Set (under the lock) once the files are deleted: the flusher no longer syncs the
    /// stream, and nothing more is appended. Held across a sync, so that deleting the
    /// directory never races a sync of it (a failed sync would fail the whole store).
    deleted: Arc<Mutex<bool>>,
    /// `deleted`, readable without waiting: the mutex is held across the flusher's sync of
    /// the stream, and a publisher checking it would wait for that fdatasync on every append.
    gone: std::sync::atomic::AtomicBool,
    watchers: Arc<Watchers>,
}

struct Hook {
    log: Arc<StreamLog>,
    queue: Weak<Queue>,
    deleted: Arc<Mutex<bool>>,
    watchers: Arc<Watchers>,
}

impl StreamSyncHook for Hook {
    fn sync_round(&self) -> std::result::Result<(), StoreError> {
        let before = self.log.committed_offset();
        {
            let deleted = self.deleted.lock();
            if *deleted {
                return Ok(());
            }
            self.log.sync()?;
        }
        let committed = self.log.committed_offset();
        if committed > before {
            // New chunks are visible: consumers waiting at the tail get them.
            if let Some(q) = self.queue.upgrade() {
                q.dispatch();
            }
        }
        // Compared with what the watchers last saw rather than with `before`: without fsync
        // an append commits at once, and this round is the first to notice.
        self.watchers.wake_if_moved(committed);
        Ok(())
    }
}

impl StreamQueue {
    pub(crate) fn open(store: &Arc<Store>, id: String, arguments: &Table) -> Result<StreamQueue> {
        let log = store
            .open_stream(&id, stream_config(arguments))
            .map_err(|e| {
                tracing::error!(stream = %id, error = %e, "cannot open the stream");
                BrokerError::NotAllowed(format!("cannot open stream: {e}"))
            })?;
        Ok(StreamQueue {
            log,
            store: Arc::clone(store),
            id,
            codec: OnceLock::new(),
            cursors: Mutex::new(Vec::new()),
            hook: OnceLock::new(),
            deleted: Arc::new(Mutex::new(false)),
            gone: std::sync::atomic::AtomicBool::new(false),
            watchers: Arc::default(),
        })
    }

    /// Registers the flusher hook (needs the queue's `Arc`).
    pub(crate) fn attach(&self, queue: &Arc<Queue>) {
        let hook = Arc::new(Hook {
            log: Arc::clone(&self.log),
            queue: Arc::downgrade(queue),
            deleted: Arc::clone(&self.deleted),
            watchers: Arc::clone(&self.watchers),
        });
        let weak = Arc::downgrade(&hook) as Weak<dyn StreamSyncHook>;
        if self.hook.set(hook).is_ok() {
            self.store.register_stream_hook(weak);
        }
    }

    pub(crate) fn set_codec(&self, codec: &'static dyn PropertiesCodec) {
        let _ = self.codec.set(codec);
    }

    /// Appends a routed message as a chunk of its own.
    pub(crate) fn append(&self, message: &Message) -> Enqueued {
        if self.gone.load(std::sync::atomic::Ordering::Acquire) {
            // As a deleted classic queue: taken and forgotten.
            return Enqueued::Accepted;
        }
        self.set_codec(message.codec());
        let encoded = ENTRY_CODEC.get().and_then(|c| c.encode(message));
        let record = match encoded {
            Some(entry) => entry,
            None => self.record_entry(message),
        };
        // A publisher's `x-stream-filter-value` header goes into the chunk's bloom filter. The
        // properties are decoded only when their bytes name it (most publishes do not), not
        // for every message appended.
        let filter = names_filter_value(message.properties_raw())
            .then(|| message.view())
            .and_then(|view| {
                view.headers
                    .as_ref()
                    .and_then(|h| h.get(FILTER_VALUE))
                    .and_then(|v| v.as_str().map(|s| s.as_bytes().to_vec()))
            });
        let entries = [Entry::Simple(&record)];
        let values: Vec<&[u8]> = filter.iter().map(Vec::as_slice).collect();
        let append = Append {
            filter_values: &values,
            ..Append::new(&entries, pigeon_store_now_ms())
        };
        match self.log.append_chunk(&append) {
            Ok(_) => {
                self.store.stream_appended();
                self.watchers.wake_if_moved(self.log.committed_offset());
                Enqueued::Stored
            }
            Err(e) => {
                tracing::error!(stream = %self.id, error = %e, "cannot append to the stream");
                Enqueued::Rejected
            }
        }
    }

    /// The broker's own entry format: its message record (`record.rs`, whose first byte, a
    /// layout version, is never 0: an AMQP 1.0 message begins with 0, a described section).
    fn record_entry(&self, message: &Message) -> Vec<u8> {
        MessageRecordRef::of(message, 0)
            .encode_queued(QueueExtras::default())
            .to_vec()
    }

    /// Adds a consumer's cursor.
    pub(crate) fn add_cursor(
        &self,
        owner: u64,
        tag: Arc<str>,
        sink: Arc<dyn ConsumerSink>,
        start: &StreamStart,
    ) -> Result<()> {
        let filter = (!start.filter.is_empty())
            .then(|| BloomMatcher::new(start.filter.clone(), start.match_unfiltered));
        let options = ReadOptions {
            all_chunk_types: false,
            filter,
        };
        let reader = self.log.reader(start.offset, options).map_err(|e| {
            tracing::error!(stream = %self.id, error = %e, "cannot read the stream");
            BrokerError::NotAllowed(format!("cannot read stream: {e}"))
        })?;
        let from = match start.offset {
            OffsetSpec::Offset(o) => o,
            _ => 0,
        };
        self.cursors.lock().push(Cursor {
            owner,
            tag,
            sink,
            reader,
            from,
            pending: VecDeque::new(),
        });
        Ok(())
    }

    /// Delivers to every consumer as far as its credit goes. `alive` says which consumers are
    /// still registered on the queue (the others' cursors are dropped).
    pub(crate) fn dispatch(&self, queue: &Arc<Queue>, alive: impl Fn(u64, &str) -> bool) -> u64 {
        // Unset until an AMQP publish or recovery sets it: a stream fed only through the
        // stream protocol holds AMQP 1.0 entries, which the entry codec decodes without it.
        let codec = self.codec.get().copied();
        let mut delivered = 0;
        let mut cursors = self.cursors.lock();
        cursors.retain(|c| alive(c.owner, &c.tag));
        for c in cursors.iter_mut() {
            loop {
                if c.pending.is_empty() && !self.fill(c, codec) {
                    break;
                }
                if !c.sink.try_reserve() {
                    break;
                }
                let Some((offset, r, codec)) = c.pending.pop_front() else {
                    break;
                };
                let routing_key = std::str::from_utf8(&r.routing_key).unwrap_or_default();
                let message = Message::new(
                    r.exchange,
                    routing_key,
                    Properties::new(r.properties, codec),
                    r.body,
                    0,
                );
                let m = QueuedMessage {
                    message,
                    seq: offset,
                    redelivered: false,
                    expires_at: None,
                    delivery_count: 0,
                    persisted: false,
                };
                c.sink.deliver(queue, m);
                delivered += 1;
            }
        }
        delivered
    }

    /// Reads the cursor's next chunk into its buffer; false when it has caught up.
    fn fill(&self, c: &mut Cursor, codec: Option<&'static dyn PropertiesCodec>) -> bool {
        loop {
            let range = match c.reader.next_chunk() {
                Ok(Some(range)) => range,
                Ok(None) => return false,
                Err(e) => {
                    tracing::error!(stream = %self.id, error = %e, "cannot read the stream");
                    return false;
                }
            };
            let data = match range.read_data() {
                Ok(d) => Bytes::from(d),
                Err(e) => {
                    tracing::error!(stream = %self.id, error = %e, "cannot read the stream");
                    return false;
                }
            };
            let Ok(entries) = parse_entries(&data) else {
                tracing::error!(stream = %self.id, chunk = range.header.chunk_id, "malformed chunk skipped");
                continue;
            };
            let mut offset = range.header.chunk_id;
            for e in entries {
                match e {
                    Entry::Simple(body) => {
                        if offset >= c.from {
                            let entry = data.slice_ref(body);
                            let decoded = match (entry.first(), ENTRY_CODEC.get()) {
                                (Some(0), Some(ec)) => ec.decode(entry),
                                _ => codec.and_then(|codec| {
                                    MessageRecord::decode(entry).map(|r| (r, codec))
                                }),
                            };
                            match decoded {
                                Some((r, codec)) => c.pending.push_back((offset, r, codec)),
                                None => {
                                    tracing::warn!(stream = %self.id, offset, "entry not in Pigeon's format skipped")
                                }
                            }
                        }
                    }
                    // Sub-batches come from stream-protocol publishers (not served yet).
                    Entry::SubBatch { .. } => {}
                }
                offset += u64::from(e.records());
            }
            if !c.pending.is_empty() {
                return true;
            }
        }
    }

    /// Deletes the stream's files (the queue was deleted).
    pub(crate) fn delete_files(&self) {
        self.cursors.lock().clear();
        let mut deleted = self.deleted.lock();
        *deleted = true;
        self.gone.store(true, std::sync::atomic::Ordering::Release);
        if let Err(e) = self.store.delete_stream(&self.id) {
            tracing::error!(stream = %self.id, error = %e, "cannot delete the stream's files");
        }
        drop(deleted);
        // Stream-protocol publishers and subscribers learn it (MetadataUpdate).
        self.watchers.wake_all();
    }
}

pub(super) fn pigeon_store_now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Queue {
    /// Makes this new queue a stream backed by `stream`; call [`Queue::attach_stream`] once it
    /// is in an `Arc`.
    pub(crate) fn with_stream(mut self, stream: StreamQueue) -> Queue {
        self.stream = Some(stream);
        self
    }

    /// Registers a stream queue with the store's flusher (see [`StreamSyncHook`]).
    pub(crate) fn attach_stream(self: &Arc<Self>) {
        if let Some(s) = &self.stream {
            s.attach(self);
        }
    }

    /// Whether this is a stream queue (`x-queue-type: stream`).
    pub fn is_stream(&self) -> bool {
        self.stream.is_some()
    }

    /// The stream's log, for a stream queue.
    pub fn stream_log(&self) -> Option<&Arc<StreamLog>> {
        self.stream.as_ref().map(|s| &s.log)
    }

    /// Registers `watcher` to be woken when the stream's committed tail moves or the stream
    /// is deleted (held weakly: dropping it unregisters it).
    pub fn watch_stream(&self, watcher: Weak<dyn StreamWatcher>) {
        if let Some(s) = &self.stream {
            s.watchers.list.lock().push(watcher);
        }
    }

    /// Wakes the stream's watchers if its committed tail moved (an append that committed at
    /// once, without fsync, is otherwise noticed at the flusher's next round).
    pub fn stream_tail_moved(&self) {
        if let Some(s) = &self.stream {
            s.watchers.wake_if_moved(s.log.committed_offset());
        }
    }

    /// Whether the stream's files were deleted (the queue was deleted): nothing more is
    /// appended.
    pub fn stream_deleted(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(|s| s.gone.load(std::sync::atomic::Ordering::Acquire))
    }

    /// Sets the codec of a recovered stream's messages.
    pub(crate) fn restore_stream(&self, codec: &'static dyn PropertiesCodec) {
        if let Some(s) = &self.stream {
            s.set_codec(codec);
        }
    }

    /// Adds a consumer to a stream queue, reading from `start`. `on_added` runs (consume-ok)
    /// before any delivery.
    pub fn add_stream_consumer(
        self: &Arc<Self>,
        consumer: crate::consumer::ConsumerEntry,
        start: &StreamStart,
        on_added: impl FnOnce(),
    ) -> Result<()> {
        let Some(s) = &self.stream else {
            return self.add_consumer(consumer, on_added);
        };
        let (owner, tag, sink) = (
            consumer.owner,
            Arc::clone(&consumer.tag),
            Arc::clone(&consumer.sink),
        );
        self.add_consumer(consumer, on_added)?;
        if let Err(e) = s.add_cursor(owner, Arc::clone(&tag), sink, start) {
            self.remove_consumer(owner, &tag);
            return Err(e);
        }
        self.dispatch_stream();
        Ok(())
    }

    /// Delivers from the stream to its consumers, as far as their credit goes.
    pub(crate) fn dispatch_stream(self: &Arc<Self>) {
        let Some(s) = &self.stream else {
            return;
        };
        let mut st = self.state.lock();
        if st.deleted {
            return;
        }
        let consumers = &st.consumers;
        let n = s.dispatch(self, |owner, tag| {
            consumers.iter().any(|c| c.owner == owner && &*c.tag == tag)
        });
        st.counters.deliver += n;
    }
}
