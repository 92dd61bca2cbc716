//! The retained-message store of a vhost (MQTT retained messages).
//!
//! Keys are routing keys (MQTT topics already mapped to AMQP form); a subscription pattern is
//! matched with the same topic semantics as the topic exchange, so a retained message is found
//! by exactly the subscriptions that would have received it live.

use crate::exchange::topic::TopicTrie;
use crate::message::Message;
use parking_lot::RwLock;
use std::collections::HashMap;

/// Retained messages by routing key.
#[derive(Default)]
pub struct RetainedStore {
    messages: RwLock<HashMap<Box<str>, Message>>,
}

impl RetainedStore {
    /// Sets (`Some`) or clears (`None`) the retained message of `key`.
    pub fn set(&self, key: &str, message: Option<Message>) {
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

    /// Number of retained messages.
    pub fn len(&self) -> usize {
        self.messages.read().len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
