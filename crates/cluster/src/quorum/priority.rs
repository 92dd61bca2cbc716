//! Consumer priorities (`x-priority` on `basic.consume`) in the quorum queue's machine, as
//! RabbitMQ's `rabbit_fifo` has them (deps/rabbit/src/rabbit_fifo.erl; behaviour read, no
//! code taken):
//!
//! - **Competing consumers.** `rabbit_fifo`'s service queue is a priority queue of the
//!   consumers with credit (`maybe_queue_consumer/3`): the next message goes to the
//!   highest-priority consumer that can take one, in turn among equals; a lower one gets
//!   messages only while every higher one is full (out of prefetch credit). Here the service
//!   queue stays in arrival order and [`QueueMachine::next_served`] takes the first of the
//!   highest priority in it, which is the same order.
//! - **Single active consumer** (RabbitMQ 4.0: "consumer priorities combined with single
//!   active consumer"). The waiting consumers are kept in priority order, then arrival
//!   (`add_waiting/2`, `sort_waiting/1`); when the active one goes, the first waiting takes
//!   over. When a waiting consumer has a higher priority than the active one
//!   (`activate_next_consumer/2`): if the active one holds no unsettled message it is put
//!   back among the waiting and the other takes over at once; otherwise it is *quiescing*:
//!   it gets nothing more, and hands over once it has settled or returned what it holds.
//!   RabbitMQ also orders waiting consumers of one priority by their credit; Pigeon by
//!   arrival only (AMQP 0-9-1 consumers' credit is their prefetch, fixed at consume).
//!
//! Priorities live in the machine's extras (`extras.rs`): absent means 0, the default.

use super::command::Reply;
use super::consumers::Status;
use super::machine::QueueMachine;
use super::ConsumerId;

impl QueueMachine {
    /// A consumer's priority (0 unless it attached with another).
    pub(crate) fn priority(&self, id: &ConsumerId) -> i32 {
        self.extras.priorities.get(id).copied().unwrap_or(0)
    }

    /// `Checkout` with a priority.
    pub(crate) fn checkout_priority(
        &mut self,
        id: ConsumerId,
        prefetch: u32,
        priority: i32,
    ) -> Reply {
        if priority == 0 {
            self.extras.priorities.remove(&id);
        } else {
            self.extras.priorities.insert(id, priority);
        }
        self.checkout(id, prefetch)
    }

    /// The next consumer of the service queue to offer a message to: the first of the highest
    /// priority (all in arrival order when no consumer has a priority).
    pub(crate) fn next_served(&mut self) -> Option<ConsumerId> {
        if self.extras.priorities.is_empty() {
            return self.service.pop_front();
        }
        let mut best: Option<(usize, i32)> = None;
        for (at, id) in self.service.iter().enumerate() {
            let p = self.priority(id);
            if best.is_none_or(|(_, b)| p > b) {
                best = Some((at, p));
            }
        }
        best.and_then(|(at, _)| self.service.remove(at))
    }

    /// Single active consumer: puts `id` among the waiting, after those of its priority or a
    /// higher one.
    pub(crate) fn push_waiting(&mut self, id: ConsumerId) {
        let p = self.priority(&id);
        let at = self
            .waiting
            .iter()
            .position(|w| self.priority(w) < p)
            .unwrap_or(self.waiting.len());
        self.waiting.insert(at, id);
    }

    /// Single active consumer, `active` holding the turn: a waiting consumer of a higher
    /// priority takes over now if `active` holds nothing, else once it does (`active`
    /// quiesces). A quiescing consumer with nobody higher waiting any more is served again.
    pub(crate) fn hand_over(&mut self, active: ConsumerId) {
        let mine = self.priority(&active);
        let next = self
            .waiting
            .front()
            .copied()
            .filter(|n| self.priority(n) > mine);
        let Some(c) = self.consumers.get_mut(&active) else {
            return;
        };
        let Some(next) = next else {
            if c.status == Status::Quiescing {
                c.status = Status::Active;
                self.serve(active);
            }
            return;
        };
        if !c.checked_out.is_empty() {
            c.status = Status::Quiescing;
            return;
        }
        c.status = Status::Waiting;
        self.waiting.pop_front();
        self.push_waiting(active);
        if let Some(n) = self.consumers.get_mut(&next) {
            n.status = Status::Active;
        }
        self.serve(next);
    }
}

#[cfg(test)]
mod tests {
    use super::super::command::{Effect, Message, QueueCommand, QueueConfig, QueueOp};
    use super::*;

    const LOW: ConsumerId = ConsumerId { node: 1, key: 1 };
    const HIGH: ConsumerId = ConsumerId { node: 2, key: 2 };
    const MID: ConsumerId = ConsumerId { node: 1, key: 3 };

    fn run(m: &mut QueueMachine, op: QueueOp) -> Vec<(ConsumerId, Vec<u64>)> {
        m.apply(QueueCommand { at: 1, op })
            .effects
            .into_iter()
            .filter_map(|e| match e {
                Effect::Deliver {
                    consumer,
                    deliveries,
                } => Some((consumer, deliveries.iter().map(|d| d.seq).collect())),
                _ => None,
            })
            .collect()
    }

    fn attach(m: &mut QueueMachine, consumer: ConsumerId, prefetch: u32, priority: i32) {
        run(
            m,
            QueueOp::CheckoutPriority {
                consumer,
                prefetch,
                priority,
            },
        );
    }

    fn publish(m: &mut QueueMachine) -> Vec<(ConsumerId, Vec<u64>)> {
        run(
            m,
            QueueOp::Enqueue {
                publisher: None,
                message: Message {
                    header: Vec::new(),
                    body: b"m".to_vec(),
                },
                ttl: None,
            },
        )
    }

    fn settle(m: &mut QueueMachine, consumer: ConsumerId, id: u64) -> Vec<(ConsumerId, Vec<u64>)> {
        run(
            m,
            QueueOp::Settle {
                consumer,
                ids: vec![id],
            },
        )
    }

    #[test]
    fn the_high_priority_consumer_is_served_while_it_has_credit() {
        let mut m = QueueMachine::new(QueueConfig::default());
        attach(&mut m, LOW, 1, 0);
        attach(&mut m, HIGH, 1, 5);
        assert_eq!(publish(&mut m), vec![(HIGH, vec![1])]);
        // HIGH is full: LOW gets the next.
        assert_eq!(publish(&mut m), vec![(LOW, vec![2])]);
        // Both full: it waits; HIGH acks and gets it, though LOW was first in line.
        assert_eq!(publish(&mut m), vec![]);
        assert_eq!(settle(&mut m, HIGH, 0), vec![(HIGH, vec![3])]);
        assert_eq!(settle(&mut m, LOW, 0), vec![]);
        assert_eq!(publish(&mut m), vec![(LOW, vec![4])]);
    }

    #[test]
    fn equal_priorities_take_turns_and_negative_ones_come_last() {
        let mut m = QueueMachine::new(QueueConfig::default());
        attach(&mut m, LOW, 0, -1);
        attach(&mut m, HIGH, 0, 2);
        attach(&mut m, MID, 0, 2);
        let got: Vec<_> = (0..4).flat_map(|_| publish(&mut m)).collect();
        assert_eq!(
            got,
            vec![
                (HIGH, vec![1]),
                (MID, vec![2]),
                (HIGH, vec![3]),
                (MID, vec![4])
            ]
        );
    }

    #[test]
    fn single_active_consumer_hands_over_to_a_higher_priority_once_settled() {
        let mut m = QueueMachine::new(QueueConfig {
            single_active_consumer: true,
            ..QueueConfig::default()
        });
        attach(&mut m, LOW, 1, 0);
        assert_eq!(publish(&mut m), vec![(LOW, vec![1])]);
        // A higher priority arrives while LOW holds a message: LOW quiesces.
        attach(&mut m, HIGH, 1, 5);
        assert_eq!(publish(&mut m), vec![]);
        // LOW settles: HIGH takes over and gets the waiting message.
        assert_eq!(settle(&mut m, LOW, 0), vec![(HIGH, vec![2])]);
        let served: Vec<_> = m.consumers().into_iter().filter(|c| c.1).collect();
        assert_eq!(served, vec![(HIGH, true)]);
        // A lower one waits behind LOW (same rule: priority, then arrival).
        attach(&mut m, MID, 1, -3);
        run(&mut m, QueueOp::Cancel(HIGH));
        assert_eq!(settle(&mut m, HIGH, 0), vec![]);
        assert_eq!(publish(&mut m), vec![(LOW, vec![3])]);
    }

    #[test]
    fn a_quiescing_consumer_is_served_again_when_the_higher_one_leaves() {
        let mut m = QueueMachine::new(QueueConfig {
            single_active_consumer: true,
            ..QueueConfig::default()
        });
        attach(&mut m, LOW, 2, 0);
        assert_eq!(publish(&mut m), vec![(LOW, vec![1])]);
        attach(&mut m, HIGH, 1, 5);
        assert_eq!(publish(&mut m), vec![]);
        // HIGH leaves before its turn: LOW is served again at once.
        assert_eq!(run(&mut m, QueueOp::Cancel(HIGH)), vec![(LOW, vec![2])]);
    }

    #[test]
    fn an_idle_active_consumer_yields_at_once() {
        let mut m = QueueMachine::new(QueueConfig {
            single_active_consumer: true,
            ..QueueConfig::default()
        });
        attach(&mut m, LOW, 1, 0);
        attach(&mut m, HIGH, 1, 1);
        assert_eq!(publish(&mut m), vec![(HIGH, vec![1])]);
        assert!(m.extras.priorities.contains_key(&HIGH));
        run(&mut m, QueueOp::ConsumerDown(HIGH));
        // HIGH's message comes back to LOW; HIGH's priority is forgotten.
        assert_eq!(m.checked_out(LOW).len(), 1);
        assert!(!m.extras.priorities.contains_key(&HIGH));
    }
}
