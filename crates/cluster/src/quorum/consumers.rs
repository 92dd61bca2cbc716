//! The consumers' half of the quorum queue's state machine: attaching with prefetch credit,
//! cancelling, settling, returning, discarding, a consumer or its node going down, single
//! active consumer, and handing ready messages to consumers with credit in turn.

use super::command::{DeadLetterReason, Delivery, Reply};
use super::machine::{Gathered, QueueMachine, Stored};
use super::ConsumerId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Whether a consumer is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Status {
    /// Receives messages while it has credit.
    Active,
    /// Single active consumer: waits for the active one to go.
    Waiting,
    /// Cancelled: receives nothing more; kept while it holds messages.
    Cancelled,
    // --- consumer priorities (helper quorumrest, `priority.rs`) ---
    /// Single active consumer: still the active one, but a consumer of a higher priority
    /// waits to take over once this one holds nothing (rabbit_fifo's `quiescing`): it
    /// receives nothing more meanwhile.
    Quiescing,
}

/// A consumer and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Consumer {
    /// The most unsettled messages it may hold; 0: no limit.
    pub(crate) prefetch: u32,
    pub(crate) status: Status,
    /// Its next delivery id.
    pub(crate) next_id: u64,
    /// Delivered and unsettled, by delivery id.
    pub(crate) checked_out: BTreeMap<u64, Stored>,
    /// Whether it is in the service queue now.
    pub(crate) in_service: bool,
}

impl Consumer {
    /// Whether it is the single active consumer (served, or quiescing before a handover).
    pub(crate) fn holds_the_turn(&self) -> bool {
        matches!(self.status, Status::Active | Status::Quiescing)
    }

    fn has_credit(&self) -> bool {
        self.status == Status::Active
            && (self.prefetch == 0 || self.checked_out.len() < self.prefetch as usize)
    }
}

fn delivery(id: u64, message: &Stored) -> Delivery {
    Delivery {
        id,
        seq: message.seq,
        redelivered: message.delivery_count > 0,
        delivery_count: message.delivery_count,
        message: message.message.clone(),
    }
}

impl QueueMachine {
    /// Attaches a consumer, or changes the prefetch of one attached (a cancelled one is
    /// attached again).
    pub(crate) fn checkout(&mut self, id: ConsumerId, prefetch: u32) -> Reply {
        let sac = self.config.single_active_consumer;
        let active_exists = self
            .consumers
            .iter()
            .any(|(other, c)| *other != id && c.holds_the_turn());
        let consumer = self.consumers.entry(id).or_insert(Consumer {
            prefetch,
            status: Status::Cancelled,
            next_id: 0,
            checked_out: BTreeMap::new(),
            in_service: false,
        });
        consumer.prefetch = prefetch;
        if consumer.status == Status::Cancelled {
            consumer.status = if sac && active_exists {
                Status::Waiting
            } else {
                Status::Active
            };
            if consumer.status == Status::Waiting {
                // In priority order, then arrival (`priority.rs`).
                self.push_waiting(id);
            }
        }
        self.serve(id);
        // A consumer of a higher priority takes over from the active one (`priority.rs`).
        self.activate_next();
        Reply::Ok
    }

    /// Puts the consumer in the service queue if it can take a message and is not there.
    pub(super) fn serve(&mut self, id: ConsumerId) {
        if let Some(c) = self.consumers.get_mut(&id) {
            if c.has_credit() && !c.in_service {
                c.in_service = true;
                self.service.push_back(id);
            }
        }
    }

    pub(crate) fn cancel(&mut self, id: ConsumerId) -> Reply {
        let Some(c) = self.consumers.get_mut(&id) else {
            return Reply::UnknownConsumer;
        };
        c.status = Status::Cancelled;
        self.waiting.retain(|w| *w != id);
        self.forget_if_drained(id);
        // The next takes over if it was the active one; a quiescing one gets its turn back if
        // the consumer it was yielding to left.
        self.activate_next();
        Reply::Ok
    }

    /// Single active consumer: when no consumer is active, the first waiting one becomes it;
    /// when one is, a waiting one of a higher priority may take over (`priority.rs`).
    pub(super) fn activate_next(&mut self) {
        if !self.config.single_active_consumer {
            return;
        }
        let active = self
            .consumers
            .iter()
            .find(|(_, c)| c.holds_the_turn())
            .map(|(id, _)| *id);
        if let Some(active) = active {
            self.hand_over(active);
            return;
        }
        while let Some(next) = self.waiting.pop_front() {
            if let Some(c) = self.consumers.get_mut(&next) {
                c.status = Status::Active;
                self.serve(next);
                return;
            }
        }
    }

    /// A cancelled consumer that holds nothing more is forgotten.
    fn forget_if_drained(&mut self, id: ConsumerId) {
        if self
            .consumers
            .get(&id)
            .is_some_and(|c| c.status == Status::Cancelled && c.checked_out.is_empty())
        {
            self.consumers.remove(&id);
        }
    }

    /// Takes the messages `ids` from the consumer (unknown ids are ignored: settled already, or
    /// never delivered, as `rabbit_fifo` ignores them).
    fn take(&mut self, id: ConsumerId, ids: &[u64]) -> Option<Vec<Stored>> {
        let c = self.consumers.get_mut(&id)?;
        let taken = ids.iter().filter_map(|i| c.checked_out.remove(i)).collect();
        Some(taken)
    }

    /// After messages left a consumer: it may be served again, or forgotten.
    fn after_take(&mut self, id: ConsumerId) {
        self.serve(id);
        self.forget_if_drained(id);
        // A quiescing consumer that holds nothing more hands over (`priority.rs`).
        self.activate_next();
    }

    pub(crate) fn settle(&mut self, id: ConsumerId, ids: &[u64]) -> Reply {
        if self.take(id, ids).is_none() {
            return Reply::UnknownConsumer;
        }
        self.after_take(id);
        Reply::Ok
    }

    pub(crate) fn return_ids(&mut self, id: ConsumerId, ids: &[u64], fx: &mut Gathered) -> Reply {
        let Some(taken) = self.take(id, ids) else {
            return Reply::UnknownConsumer;
        };
        for message in taken {
            self.requeue(message, fx);
        }
        self.after_take(id);
        Reply::Ok
    }

    /// A message comes back: one more delivery counted; past the limit it is dead-lettered
    /// (`rabbit_fifo:return_one/8` compares the count, incremented first, with the limit: a
    /// limit of 20 allows 21 deliveries).
    fn requeue(&mut self, mut message: Stored, fx: &mut Gathered) {
        message.delivery_count = message.delivery_count.saturating_add(1);
        match self.config.delivery_limit {
            Some(limit) if message.delivery_count > limit => {
                fx.dead_letter(DeadLetterReason::DeliveryLimit, message);
            }
            _ => self.push_return(message),
        }
    }

    pub(crate) fn discard(&mut self, id: ConsumerId, ids: &[u64], fx: &mut Gathered) -> Reply {
        let Some(taken) = self.take(id, ids) else {
            return Reply::UnknownConsumer;
        };
        for message in taken {
            fx.dead_letter(DeadLetterReason::Rejected, message);
        }
        self.after_take(id);
        Reply::Ok
    }

    /// The consumer is gone: everything it holds comes back, in delivery order.
    pub(crate) fn consumer_down(&mut self, id: ConsumerId, fx: &mut Gathered) -> Reply {
        let Some(c) = self.consumers.remove(&id) else {
            return Reply::UnknownConsumer;
        };
        self.waiting.retain(|w| *w != id);
        for (_, message) in c.checked_out {
            self.requeue(message, fx);
        }
        self.activate_next();
        Reply::Ok
    }

    /// Hands ready messages to consumers with credit, one at a time in turn.
    pub(crate) fn dispatch(&mut self, fx: &mut Gathered) {
        loop {
            self.expire_head(fx);
            if self.ready_count() == 0 {
                return;
            }
            // The highest priority first (`priority.rs`).
            let Some(id) = self.next_served() else {
                return;
            };
            let eligible = match self.consumers.get_mut(&id) {
                Some(c) => {
                    c.in_service = false;
                    c.has_credit()
                }
                None => false,
            };
            if !eligible {
                continue;
            }
            let Some(message) = self.pop_head() else {
                return;
            };
            if let Some(c) = self.consumers.get_mut(&id) {
                let delivery_id = c.next_id;
                c.next_id += 1;
                fx.deliveries
                    .entry(id)
                    .or_default()
                    .push(delivery(delivery_id, &message));
                c.checked_out.insert(delivery_id, message);
            }
            self.serve(id);
        }
    }

    /// What a consumer holds, as deliveries: for a new leader to send again what the old one
    /// may not have sent (the consumer ignores ids it has seen).
    pub fn checked_out(&self, id: ConsumerId) -> Vec<Delivery> {
        self.consumers
            .get(&id)
            .map(|c| c.checked_out.iter().map(|(i, m)| delivery(*i, m)).collect())
            .unwrap_or_default()
    }

    /// The consumers attached, in id order, with whether each is served now (false: cancelled,
    /// or waiting as single active consumer; a quiescing one is still the active one, as
    /// rabbit_fifo's `is_active/2` says).
    pub fn consumers(&self) -> Vec<(ConsumerId, bool)> {
        self.consumers
            .iter()
            .map(|(id, c)| (*id, c.holds_the_turn()))
            .collect()
    }
}
