//! The retained-message store of a vhost (MQTT retained messages).
//!
//! Keys are routing keys (MQTT topics already mapped to AMQP form); a subscription pattern is
//! matched with the same topic semantics as the topic exchange, so a retained message is found
//! by exactly the subscriptions that would have received it live.

use crate::durable;
use crate::exchange::topic::TopicTrie;
use crate::message::{Message, Properties, PropertiesCodec};
use crate::record::{MessageRecord, MessageRecordRef};
use bytes::Bytes;
use parking_lot::RwLock;
use pigeon_store::Store;
use std::collections::HashMap;
use std::sync::Arc;

/// The metadata table retained messages are kept in.
const TABLE: &str = "retained";

/// Retained messages by routing key.
#[derive(Default)]
pub struct RetainedStore {
    messages: RwLock<HashMap<Box<str>, Message>>,
    /// Where persistent retained messages are kept, with the vhost name for their keys.
    store: Option<(Arc<Store>, String)>,
}

impl RetainedStore {
    /// A store for `vhost` that keeps persistent retained messages (QoS 1/2) in `store`.
    pub fn with_store(store: Option<Arc<Store>>, vhost: &str) -> RetainedStore {
        RetainedStore {
            messages: RwLock::new(HashMap::new()),
            store: store.map(|s| (s, vhost.to_string())),
        }
    }

    /// Sets (`Some`) or clears (`None`) the retained message of `key`. A persistent message
    /// is written to the store (durable when this returns), a cleared one removed from it.
    pub fn set(&self, key: &str, message: Option<Message>) {
        if let Some((store, vhost)) = &self.store {
            let k = durable::key(vhost, key);
            let result = match &message {
                Some(m) if m.meta().persistent => {
                    let record = MessageRecordRef::of(m, 0);
                    store.meta_put(TABLE, &k, &record.encode())
                }
                // Only a key whose previous message was kept needs a write.
                _ if self
                    .messages
                    .read()
                    .get(key)
                    .is_some_and(|m| m.meta().persistent) =>
                {
                    store.meta_delete(TABLE, &k)
                }
                _ => Ok(()),
            };
            if let Err(e) = result {
                tracing::error!(error = %e, "cannot persist a retained message");
            }
        }
        let mut map = self.messages.write();
        match message {
            Some(m) => {
                map.insert(key.into(), m);
            }
            None => {
                map.remove(key);
            }
        }
    }

    /// Loads the retained messages kept in the store for this vhost (at start); returns how
    /// many.
    pub fn recover(&self, codec: &'static dyn PropertiesCodec) -> usize {
        let Some((store, vhost)) = &self.store else {
            return 0;
        };
        let Ok(entries) = store.meta_scan(TABLE) else {
            return 0;
        };
        let prefix = durable::key(vhost, "");
        let mut map = self.messages.write();
        let mut n = 0;
        for (k, v) in entries {
            let Some(key) = k.strip_prefix(prefix.as_slice()) else {
                continue;
            };
            let (Ok(key), Some(r)) = (
                std::str::from_utf8(key),
                MessageRecord::decode(Bytes::from(v)),
            ) else {
                tracing::warn!("skipping an unreadable retained message");
                continue;
            };
            let routing_key = String::from_utf8_lossy(&r.routing_key).into_owned();
            let m = Message::new(
                r.exchange,
                &routing_key,
                Properties::new(r.properties, codec),
                r.body,
                0,
            );
            map.insert(key.into(), m);
            n += 1;
        }
        n
    }

    /// The retained messages whose key matches the binding pattern `pattern`.
    pub fn matching(&self, pattern: &str) -> Vec<Message> {
        let mut trie = TopicTrie::default();
        trie.insert(pattern, 0);
        let mut hits = Vec::new();
        self.messages
            .read()
            .iter()
            .filter(|(key, _)| {
                hits.clear();
                trie.matches(key, &mut hits);
                !hits.is_empty()
            })
            .map(|(_, m)| m.clone())
            .collect()
    }

    /// The retained message of `key`, if any.
    pub fn get(&self, key: &str) -> Option<Message> {
        self.messages.read().get(key).cloned()
    }

    /// Every retained message with its key (a snapshot, in no particular order: the
    /// management API lists them).
    pub fn entries(&self) -> Vec<(String, Message)> {
        self.messages
            .read()
            .iter()
            .map(|(k, m)| (k.to_string(), m.clone()))
            .collect()
    }

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.messages.read().len()
    }

    /// Body bytes of the retained messages (read when asked: a scrape, not a publish).
    pub fn bytes(&self) -> u64 {
        self.messages
            .read()
            .values()
            .map(|m| m.body_len() as u64)
            .sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every retained message in memory (the vhost is deleted; its stored ones are
    /// deleted with the rest of its records).
    pub(crate) fn clear_memory(&self) {
        self.messages.write().clear();
    }
}

/// The metadata table retained messages are kept in (keys `vhost \0 routing key`).
pub(crate) const RETAINED_TABLE: &str = TABLE;
