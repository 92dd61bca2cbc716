//! What leaves a queue under its lock (dead letters, log acknowledgements), kept aside until
//! the lock is released: routing a dead letter takes other queues' locks.

use super::settings::QueueSettings;
use super::{QueuedMessage, State};
use crate::message::DeathReason;

/// Messages that left the queue under its lock: to dead-letter, and to acknowledge in the log,
/// once the lock is released.
pub(super) struct Dead {
    pub(super) exchange: Option<String>,
    pub(super) routing_key: Option<String>,
    pub(super) messages: Vec<(QueuedMessage, DeathReason)>,
    pub(super) acks: Vec<u64>,
}

impl Dead {
    pub(super) fn new(settings: &QueueSettings) -> Dead {
        Dead {
            exchange: settings.dead_letter_exchange.clone(),
            routing_key: settings.dead_letter_routing_key.clone(),
            messages: Vec::new(),
            acks: Vec::new(),
        }
    }

    pub(super) fn push(&mut self, st: &mut State, m: QueuedMessage, reason: DeathReason) {
        if reason == DeathReason::MaxLen {
            st.dropped += 1;
        }
        if m.persisted {
            self.acks.push(m.seq);
        }
        if self.exchange.is_some() {
            self.messages.push((m, reason));
        }
    }
}
