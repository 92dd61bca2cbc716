//! What the management API reads of the stream connections (`/api/stream/publishers`,
//! `/api/stream/consumers`; rabbitmq_stream_management's `rabbit_stream_publishers_mgmt` and
//! `rabbit_stream_consumers_mgmt`): each connection shares a [`ConnView`] listing its
//! publishers and subscriptions, each with counters the connection task bumps with relaxed
//! atomics (one add per frame or chunk, no lock on the message path). The lists change only on
//! `DeclarePublisher`, `DeletePublisher`, `Subscribe`, `Unsubscribe` and a stream's deletion.
//!
//! The views of a server are kept in [`Views`] (in the server state) by connection id; a
//! connection adds its view when it starts and removes it when it ends.

use super::sac::GroupKey;
use crate::registry::Entry;
use parking_lot::Mutex;
use pigeon_broker::Queue;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

/// Every stream connection's view, by connection id.
#[derive(Default)]
pub(crate) struct Views(Mutex<HashMap<u64, Arc<ConnView>>>);

impl Views {
    pub(super) fn add(&self, view: Arc<ConnView>) {
        self.0.lock().insert(view.entry.id, view);
    }

    pub(super) fn remove(&self, id: u64) {
        self.0.lock().remove(&id);
    }

    fn all(&self) -> Vec<Arc<ConnView>> {
        let mut all: Vec<Arc<ConnView>> = self.0.lock().values().cloned().collect();
        all.sort_by_key(|v| v.entry.id);
        all
    }
}

/// One connection's publishers and subscriptions.
pub(crate) struct ConnView {
    entry: Arc<Entry>,
    publishers: Mutex<Vec<Arc<PublisherView>>>,
    consumers: Mutex<Vec<Arc<ConsumerView>>>,
}

impl ConnView {
    pub(super) fn new(entry: Arc<Entry>) -> ConnView {
        ConnView {
            entry,
            publishers: Mutex::default(),
            consumers: Mutex::default(),
        }
    }

    pub(super) fn add_publisher(&self, p: Arc<PublisherView>) {
        self.publishers.lock().push(p);
    }

    pub(super) fn remove_publisher(&self, id: u8) {
        self.publishers.lock().retain(|p| p.id != id);
    }

    pub(super) fn add_consumer(&self, c: Arc<ConsumerView>) {
        self.consumers.lock().push(c);
    }

    pub(super) fn remove_consumer(&self, id: u8) {
        self.consumers.lock().retain(|c| c.id != id);
    }
}

/// A publisher's identity and counters (`rabbit_stream_reader`'s publisher infos).
pub(crate) struct PublisherView {
    pub(super) id: u8,
    pub(super) stream: String,
    pub(super) reference: String,
    /// Messages received in `Publish` frames.
    pub(super) published: AtomicU64,
    /// Messages confirmed.
    pub(super) confirmed: AtomicU64,
    /// Messages refused with `PublishError`.
    pub(super) errored: AtomicU64,
}

impl PublisherView {
    pub(super) fn new(id: u8, stream: &str, reference: &str) -> PublisherView {
        PublisherView {
            id,
            stream: stream.to_string(),
            reference: reference.to_string(),
            published: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            errored: AtomicU64::new(0),
        }
    }

    pub(super) fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A subscription's identity and counters.
pub(crate) struct ConsumerView {
    pub(super) id: u8,
    pub(super) queue: Arc<Queue>,
    pub(super) properties: Vec<(String, String)>,
    /// The single-active-consumer group it is in.
    pub(super) group: Option<GroupKey>,
    /// The offset after the last chunk sent (where the reader started, before any).
    pub(super) offset: AtomicU64,
    /// Messages sent (the records of the chunks delivered).
    pub(super) consumed: AtomicU64,
    /// Chunks it may still be sent.
    pub(super) credits: AtomicU32,
}

/// A publisher as the management API lists it.
#[derive(Debug, Clone)]
pub(crate) struct PublisherInfo {
    pub connection: ConnectionRef,
    pub publisher_id: u8,
    pub stream: String,
    pub reference: String,
    pub published: u64,
    pub confirmed: u64,
    pub errored: u64,
}

/// A consumer as the management API lists it.
#[derive(Debug, Clone)]
pub(crate) struct ConsumerInfo {
    pub connection: ConnectionRef,
    pub subscription_id: u8,
    pub stream: String,
    pub offset: u64,
    pub offset_lag: u64,
    pub credits: u32,
    pub consumed: u64,
    pub active: bool,
    pub properties: Vec<(String, String)>,
}

/// The connection a publisher or consumer belongs to (`connection_details`).
#[derive(Debug, Clone)]
pub(crate) struct ConnectionRef {
    pub name: String,
    pub user: String,
    pub vhost: String,
    pub peer_host: String,
    pub peer_port: u16,
}

fn connection_ref(entry: &Entry) -> ConnectionRef {
    let d = entry.details.lock();
    ConnectionRef {
        name: entry.name(),
        user: d.user.to_string(),
        vhost: d.vhost.to_string(),
        peer_host: entry.peer().ip().to_string(),
        peer_port: entry.peer().port(),
    }
}

impl crate::ServerState {
    /// Every publisher of every stream connection, by connection then id.
    pub(crate) fn stream_publishers(&self) -> Vec<PublisherInfo> {
        let mut out = Vec::new();
        for view in self.stream_views.all() {
            let connection = connection_ref(&view.entry);
            let mut publishers: Vec<PublisherInfo> = view
                .publishers
                .lock()
                .iter()
                .map(|p| PublisherInfo {
                    connection: connection.clone(),
                    publisher_id: p.id,
                    stream: p.stream.clone(),
                    reference: p.reference.clone(),
                    published: p.published.load(Ordering::Relaxed),
                    confirmed: p.confirmed.load(Ordering::Relaxed),
                    errored: p.errored.load(Ordering::Relaxed),
                })
                .collect();
            publishers.sort_by_key(|p| p.publisher_id);
            out.extend(publishers);
        }
        out
    }

    /// Every subscription of every stream connection, by connection then id.
    pub(crate) fn stream_consumers(&self) -> Vec<ConsumerInfo> {
        let mut out = Vec::new();
        for view in self.stream_views.all() {
            let connection = connection_ref(&view.entry);
            let consumers: Vec<Arc<ConsumerView>> = view.consumers.lock().clone();
            let mut rows: Vec<ConsumerInfo> = consumers
                .iter()
                .map(|c| {
                    let offset = c.offset.load(Ordering::Relaxed);
                    // rabbit_stream_reader: the committed offset minus the consumer's.
                    let committed = c.queue.stream_log().map_or(0, |l| l.committed_offset());
                    let active = c
                        .group
                        .as_ref()
                        .is_none_or(|key| self.stream_groups.is_active(key, view.entry.id, c.id));
                    ConsumerInfo {
                        connection: connection.clone(),
                        subscription_id: c.id,
                        stream: c.queue.name().to_string(),
                        offset,
                        offset_lag: committed.saturating_sub(offset),
                        credits: c.credits.load(Ordering::Relaxed),
                        consumed: c.consumed.load(Ordering::Relaxed),
                        active,
                        properties: c.properties.clone(),
                    }
                })
                .collect();
            rows.sort_by_key(|c| c.subscription_id);
            out.extend(rows);
        }
        out
    }
}
