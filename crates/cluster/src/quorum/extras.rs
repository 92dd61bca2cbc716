//! State the quorum queue's machine gained after its first snapshot format (helper
//! quorumrest): consumer priorities (`priority.rs`) and the queue's last activity, which
//! `x-expires` counts from.
//!
//! **Snapshot format.** A snapshot is the machine's postcard bytes; postcard writes a struct's
//! fields one after the other with no names, so a field added to [`QueueMachine`] would make
//! every older snapshot unreadable. [`Extras`] is therefore kept out of the machine's own
//! encoding (`#[serde(skip)]`) and written after it: a snapshot is `machine ++ extras`, and a
//! snapshot without the tail (taken before) restores with empty extras. Later additions go at
//! the end of [`Extras`] likewise, read with the same trick if need be.
//!
//! **Last activity** (RabbitMQ's `rabbit_fifo` `last_active`, deps/rabbit/src/rabbit_fifo.erl:
//! set by a dequeue, by a consumer leaving, by the queue's creation; `is_expired/2` is true
//! once `Ts > LastActive + Expires` and no consumer is attached). Here every command applied
//! while a consumer is attached (or that attaches one, removes the last one, gets a message or
//! touches the queue) sets it to the command's time: while consumers are attached the queue is
//! in use anyway, and when the last one leaves the clock starts from that moment. The machine
//! does not know `x-expires` (a queue argument or policy, the same on every node through the
//! replicated metadata): the leader's broker compares (`server/src/cluster/quorum/expiry.rs`).

use super::command::QueueOp;
use super::machine::QueueMachine;
use super::ConsumerId;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The machine's later state, encoded after it in snapshots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Extras {
    /// Consumers' `x-priority` other than 0 (absent: 0). Entries of consumers gone are dropped
    /// after each command.
    pub(crate) priorities: BTreeMap<ConsumerId, i32>,
    /// The time (ms since the epoch, the commands' clock) of the queue's last use.
    pub(crate) last_active: u64,
}

/// Whether `op` uses the queue by itself (whether or not consumers are attached).
fn uses_queue(op: &QueueOp) -> bool {
    match op {
        QueueOp::Checkout { .. }
        | QueueOp::CheckoutPriority { .. }
        | QueueOp::Dequeue { .. }
        | QueueOp::Touch => true,
        QueueOp::Batch(ops) => ops.iter().any(uses_queue),
        _ => false,
    }
}

impl QueueMachine {
    /// Before a command: whether the queue is in use (a consumer attached), to be given to
    /// [`Self::after_command`].
    pub(crate) fn in_use(&self) -> bool {
        !self.consumers.is_empty()
    }

    /// After a command at the machine's time: the last activity moves, the priorities of
    /// consumers gone are forgotten.
    pub(crate) fn after_command(&mut self, op_used: bool, was_in_use: bool) {
        if op_used || was_in_use || self.in_use() {
            self.extras.last_active = self.now;
        }
        if !self.extras.priorities.is_empty() {
            let consumers = &self.consumers;
            self.extras
                .priorities
                .retain(|id, _| consumers.contains_key(id));
        }
    }

    /// Whether applying `op` counts as a use of the queue by itself.
    pub(crate) fn op_uses_queue(op: &QueueOp) -> bool {
        uses_queue(op)
    }

    /// When the queue was last used (ms since the epoch; 0: never, since it was created or
    /// since a snapshot older than this field).
    pub fn last_active(&self) -> u64 {
        self.extras.last_active
    }

    /// Whether the queue is unused (no consumer attached, none holding messages, no get
    /// outstanding) since at least `expires` ms before `now`: RabbitMQ's `is_expired/2`.
    /// `since` is a floor for the last activity (the caller's first sight of the queue), so
    /// that a machine that never saw a command is not expired at once.
    pub fn unused_for(&self, expires: u64, now: u64, since: u64) -> bool {
        !self.in_use() && now > self.extras.last_active.max(since).saturating_add(expires)
    }

    /// The machine as snapshot bytes: its own encoding, then [`Extras`], then the
    /// at-least-once dead-lettering state (`dlx.rs`).
    pub fn snapshot(&self) -> Result<Vec<u8>, postcard::Error> {
        let mut bytes = postcard::to_stdvec(self)?;
        bytes.extend(postcard::to_stdvec(&self.extras)?);
        bytes.extend(postcard::to_stdvec(&self.dlx)?);
        Ok(bytes)
    }

    /// A machine from [`Self::snapshot`] bytes (those of an older snapshot, without the
    /// extras, included).
    pub fn restore(bytes: &[u8]) -> Result<QueueMachine, postcard::Error> {
        let (mut machine, rest) = postcard::take_from_bytes::<QueueMachine>(bytes)?;
        if !rest.is_empty() {
            let (extras, rest) = postcard::take_from_bytes(rest)?;
            machine.extras = extras;
            if !rest.is_empty() {
                machine.dlx = postcard::from_bytes(rest)?;
            }
        }
        // The strategy lives in the tail; the configuration's copy follows it.
        machine.config.dead_letter_strategy = machine.dlx.strategy;
        Ok(machine)
    }
}

#[cfg(test)]
mod tests {
    use super::super::command::{Message, QueueCommand, QueueConfig};
    use super::*;

    const C: ConsumerId = ConsumerId { node: 1, key: 1 };

    fn run(m: &mut QueueMachine, at: u64, op: QueueOp) {
        m.apply(QueueCommand { at, op });
    }

    #[test]
    fn a_snapshot_without_extras_restores_with_none() {
        let mut m = QueueMachine::new(QueueConfig::default());
        run(
            &mut m,
            5,
            QueueOp::CheckoutPriority {
                consumer: C,
                prefetch: 1,
                priority: 3,
            },
        );
        let old = postcard::to_stdvec(&m).unwrap_or_default();
        let restored = QueueMachine::restore(&old).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(restored.extras, Extras::default());
        let new = m.snapshot().unwrap_or_default();
        let restored = QueueMachine::restore(&new).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(restored, m);
        assert_eq!(restored.extras.priorities.get(&C), Some(&3));
    }

    #[test]
    fn consumers_keep_the_queue_in_use_and_the_clock_starts_when_the_last_leaves() {
        let mut m = QueueMachine::new(QueueConfig::default());
        run(&mut m, 100, QueueOp::Touch);
        assert_eq!(m.last_active(), 100);
        assert!(m.unused_for(50, 151, 0));
        assert!(!m.unused_for(50, 150, 0));
        // The floor: a queue first seen at 140 is not unused before 190.
        assert!(!m.unused_for(50, 151, 140));
        run(
            &mut m,
            200,
            QueueOp::Checkout {
                consumer: C,
                prefetch: 0,
            },
        );
        // A publish much later: still in use (a consumer is attached).
        run(
            &mut m,
            10_000,
            QueueOp::Enqueue {
                publisher: None,
                message: Message {
                    header: Vec::new(),
                    body: b"x".to_vec(),
                },
                ttl: None,
            },
        );
        assert!(!m.unused_for(50, 20_000, 0));
        // The consumer leaves: the clock starts there (it held the message, returned).
        run(&mut m, 12_000, QueueOp::ConsumerDown(C));
        assert_eq!(m.last_active(), 12_000);
        assert!(!m.unused_for(50, 12_050, 0));
        assert!(m.unused_for(50, 12_051, 0));
        // Publishes do not keep a queue alive.
        run(
            &mut m,
            13_000,
            QueueOp::Enqueue {
                publisher: None,
                message: Message {
                    header: Vec::new(),
                    body: b"y".to_vec(),
                },
                ttl: None,
            },
        );
        assert_eq!(m.last_active(), 12_000);
        // A get does.
        run(
            &mut m,
            14_000,
            QueueOp::Dequeue {
                consumer: ConsumerId { node: 1, key: 9 },
                settled: true,
            },
        );
        assert_eq!(m.last_active(), 14_000);
    }
}
