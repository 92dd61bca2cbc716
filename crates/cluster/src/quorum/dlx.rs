//! At-least-once dead-lettering (helper dlxalo), as RabbitMQ's quorum queues do it
//! (deps/rabbit/src/rabbit_fifo_dlx.erl, rabbit_fifo_dlx_worker.erl; behaviour read, no code
//! taken).
//!
//! With the `at-most-once` strategy (the default) a dead letter leaves the queue as an
//! [`Effect::DeadLetter`] that the member leading when it applies the entry routes: lost if
//! that member fails before routing it, routed twice if two members believe they lead.
//! With `at-least-once` (and `x-overflow: reject-publish`, which RabbitMQ requires: the
//! waiting dead letters count towards the length limits, so a queue whose dead letters cannot
//! leave refuses publishes rather than dropping messages) a dead letter stays in the queue's
//! state, in a waiting list, until the leader's dead-letter worker (the broker's
//! `server/src/cluster/quorum/member/dlx.rs`) has had it confirmed by every target queue and
//! proposed [`QueueOp::DeadLetterSettle`]. A new leader's worker sends again whatever is still
//! there: a dead letter may reach its target twice, never zero times.
//!
//! RabbitMQ's worker is a consumer of the waiting list (a checkout with a prefetch, whose
//! deliveries are the machine's effects); here the worker reads the list from the leader's own
//! replica (every member holds it) and keeps what it has in flight in memory, so the machine
//! needs no consumer: only the waiting list and the settle command.
//!
//! **Snapshot format**: the waiting list and the strategy are encoded after the extras
//! (`extras.rs`), so older snapshots restore with none (at-most-once, nothing waiting), and a
//! node of the previous version restores a newer snapshot without them (it ignores the tail).

use super::command::{DeadLetterReason, DeadLetterStrategy, DeadLettered, Overflow};
use super::machine::{Gathered, QueueMachine};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

/// The queue's at-least-once dead-lettering state (RabbitMQ's `rabbit_fifo_dlx` state).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Dlx {
    /// The configured strategy (effective only with `reject-publish`).
    pub(crate) strategy: DeadLetterStrategy,
    /// Dead letters waiting for the worker, by id (the order they died in).
    pub(crate) waiting: BTreeMap<u64, (DeadLetterReason, DeadLettered)>,
    /// Body bytes of `waiting`.
    pub(crate) bytes: u64,
    /// The next dead letter's id.
    pub(crate) next_id: u64,
}

/// A dead letter waiting to be routed: its id (what [`QueueOp::DeadLetterSettle`] names), why
/// it died, and the message.
pub type WaitingDeadLetter = (u64, DeadLetterReason, DeadLettered);

impl QueueMachine {
    /// Whether dead letters are kept until confirmed: `at-least-once` with `reject-publish`
    /// (rabbit_quorum_queue `dead_letter_handler`: at-most-once otherwise).
    pub(crate) fn at_least_once(&self) -> bool {
        self.dlx.strategy == DeadLetterStrategy::AtLeastOnce
            && self.config.overflow == Overflow::RejectPublish
    }

    /// The configured dead-letter strategy (as the broker last proposed it).
    pub fn dead_letter_strategy(&self) -> DeadLetterStrategy {
        self.dlx.strategy
    }

    /// How many dead letters wait for the worker, and their body bytes (RabbitMQ's
    /// `messages_dlx`, `message_bytes_dlx`).
    pub fn dead_letters_counts(&self) -> (u64, u64) {
        (self.dlx.waiting.len() as u64, self.dlx.bytes)
    }

    /// Up to `limit` waiting dead letters, oldest first, but those in `skip` (in flight).
    pub fn dead_letters_waiting(
        &self,
        limit: usize,
        skip: &HashSet<u64>,
    ) -> Vec<WaitingDeadLetter> {
        self.dlx
            .waiting
            .iter()
            .filter(|(id, _)| !skip.contains(id))
            .take(limit)
            .map(|(id, (reason, d))| (*id, *reason, d.clone()))
            .collect()
    }

    /// After an operation: with at-least-once, what it dead-lettered joins the waiting list
    /// (and the worker is told) instead of leaving as [`Effect::DeadLetter`].
    pub(crate) fn keep_dead_letters(&mut self, fx: &mut Gathered) {
        if fx.dead.is_empty() || !self.at_least_once() {
            return;
        }
        for (reason, message) in fx.dead.drain(..) {
            self.dlx.bytes += message.message.body.len() as u64;
            self.dlx.waiting.insert(self.dlx.next_id, (reason, message));
            self.dlx.next_id += 1;
        }
        fx.dlx_waiting = true;
    }

    /// [`QueueOp::DeadLetterSettle`]: the worker had these confirmed.
    pub(crate) fn settle_dead_letters(&mut self, ids: &[u64]) {
        for id in ids {
            if let Some((_, d)) = self.dlx.waiting.remove(id) {
                self.dlx.bytes -= d.message.body.len() as u64;
            }
        }
    }

    /// [`QueueOp::DeadLetterStrategy`].
    pub(crate) fn set_dead_letter_strategy(
        &mut self,
        strategy: DeadLetterStrategy,
        fx: &mut Gathered,
    ) {
        let was = self.at_least_once();
        self.dlx.strategy = strategy;
        self.config.dead_letter_strategy = strategy;
        self.left_at_least_once(was, fx);
    }

    /// The strategy or the overflow changed: a queue that leaves at-least-once routes what
    /// waits at-most-once. (RabbitMQ drops them, logging how many: rabbit_fifo_dlx
    /// `switch_from`; routing them loses fewer.) One entering it has nothing waiting yet.
    pub(crate) fn left_at_least_once(&mut self, was: bool, fx: &mut Gathered) {
        if !was || self.at_least_once() {
            return;
        }
        let waiting = std::mem::take(&mut self.dlx.waiting);
        self.dlx.bytes = 0;
        fx.dead.extend(waiting.into_values());
    }
}

#[cfg(test)]
mod tests {
    use super::super::command::{
        ConsumerId, Effect, Message, QueueCommand, QueueConfig, QueueOp, Reply,
    };
    use super::*;

    const C: ConsumerId = ConsumerId { node: 1, key: 1 };

    fn at_least_once(max_length: Option<u64>) -> QueueMachine {
        QueueMachine::new(QueueConfig {
            overflow: Overflow::RejectPublish,
            max_length,
            dead_letter_strategy: DeadLetterStrategy::AtLeastOnce,
            ..QueueConfig::default()
        })
    }

    fn run(m: &mut QueueMachine, at: u64, op: QueueOp) -> super::super::QueueResponse {
        m.apply(QueueCommand { at, op })
    }

    fn publish(m: &mut QueueMachine, at: u64, body: &str, ttl: Option<u64>) -> Reply {
        run(
            m,
            at,
            QueueOp::Enqueue {
                publisher: None,
                message: Message {
                    header: Vec::new(),
                    body: body.as_bytes().to_vec(),
                },
                ttl,
            },
        )
        .reply
    }

    /// Attaches a new consumer that takes the `n` ready messages and rejects them; returns
    /// the effects of the rejection.
    fn reject_all(m: &mut QueueMachine, n: usize) -> Vec<Effect> {
        let consumer = ConsumerId {
            node: 2,
            key: m.next_seq,
        };
        let fx = run(
            m,
            10,
            QueueOp::Checkout {
                consumer,
                prefetch: 0,
            },
        )
        .effects;
        let ids: Vec<u64> = fx
            .iter()
            .flat_map(|e| match e {
                Effect::Deliver { deliveries, .. } => deliveries.iter().map(|d| d.id).collect(),
                _ => Vec::new(),
            })
            .collect();
        assert_eq!(ids.len(), n);
        let fx = run(m, 11, QueueOp::Discard { consumer, ids }).effects;
        run(m, 12, QueueOp::Cancel(consumer));
        fx
    }

    fn waiting(m: &QueueMachine) -> Vec<(u64, String)> {
        m.dead_letters_waiting(usize::MAX, &HashSet::new())
            .into_iter()
            .map(|(id, _, d)| (id, String::from_utf8_lossy(&d.message.body).into_owned()))
            .collect()
    }

    #[test]
    fn rejected_messages_wait_until_the_worker_settles_them() {
        let mut m = at_least_once(None);
        for b in ["a", "b", "c"] {
            publish(&mut m, 1, b, None);
        }
        let fx = reject_all(&mut m, 3);
        // No at-most-once effect: the worker is told to look instead.
        assert_eq!(fx, vec![Effect::DeadLettersWaiting]);
        assert_eq!(
            waiting(&m),
            vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]
        );
        assert_eq!(m.dead_letters_counts(), (3, 3));
        assert_eq!(m.counts().dead_lettering, 3);
        // The worker skips what it has in flight.
        let skip: HashSet<u64> = [0].into();
        assert_eq!(m.dead_letters_waiting(1, &skip)[0].0, 1);
        // Settled (twice: a second leader's worker may settle the same ones): gone once.
        run(&mut m, 12, QueueOp::DeadLetterSettle(vec![0, 2]));
        run(&mut m, 13, QueueOp::DeadLetterSettle(vec![0, 2, 7]));
        assert_eq!(waiting(&m), vec![(1, "b".into())]);
        assert_eq!(m.dead_letters_counts(), (1, 1));
        run(&mut m, 14, QueueOp::DeadLetterSettle(vec![1]));
        assert_eq!(m.dead_letters_counts(), (0, 0));
    }

    #[test]
    fn expired_messages_and_those_past_the_delivery_limit_wait_too() {
        let mut m = at_least_once(None);
        m.config.delivery_limit = Some(0);
        publish(&mut m, 1, "old", Some(5));
        publish(&mut m, 1, "kept", None);
        // The TTL passes: "old" waits, reason expired.
        assert_eq!(
            run(&mut m, 100, QueueOp::Tick).effects,
            vec![Effect::DeadLettersWaiting]
        );
        run(
            &mut m,
            101,
            QueueOp::Checkout {
                consumer: C,
                prefetch: 0,
            },
        );
        // Returned once with a limit of 0: past it.
        run(
            &mut m,
            102,
            QueueOp::Return {
                consumer: C,
                ids: vec![0],
            },
        );
        let w = m.dead_letters_waiting(10, &HashSet::new());
        let reasons: Vec<DeadLetterReason> = w.iter().map(|(_, r, _)| *r).collect();
        assert_eq!(
            reasons,
            vec![DeadLetterReason::Expired, DeadLetterReason::DeliveryLimit]
        );
    }

    #[test]
    fn waiting_dead_letters_count_towards_the_length_limit() {
        // rabbit_fifo `is_over_limit`: ready messages plus those waiting for the worker.
        let mut m = at_least_once(Some(2));
        publish(&mut m, 1, "a", None);
        publish(&mut m, 1, "b", None);
        reject_all(&mut m, 2);
        assert_eq!(m.counts().ready, 0);
        assert_eq!(publish(&mut m, 20, "c", None), Reply::RejectedFull);
        run(&mut m, 21, QueueOp::DeadLetterSettle(vec![0]));
        assert!(matches!(publish(&mut m, 22, "c", None), Reply::Enqueued(_)));
        assert_eq!(publish(&mut m, 23, "d", None), Reply::RejectedFull);
    }

    #[test]
    fn without_reject_publish_it_falls_back_to_at_most_once() {
        let mut m = QueueMachine::new(QueueConfig {
            dead_letter_strategy: DeadLetterStrategy::AtLeastOnce,
            ..QueueConfig::default()
        });
        publish(&mut m, 1, "a", None);
        let fx = reject_all(&mut m, 1);
        assert!(matches!(fx.as_slice(), [Effect::DeadLetter { .. }]));
        assert_eq!(m.dead_letters_counts(), (0, 0));
    }

    #[test]
    fn leaving_at_least_once_routes_what_waits_at_most_once() {
        let mut m = at_least_once(None);
        publish(&mut m, 1, "a", None);
        publish(&mut m, 1, "b", None);
        reject_all(&mut m, 2);
        // A policy that sets drop-head: the machine is at-most-once from then on.
        let mut config = m.config().clone();
        config.overflow = Overflow::DropHead;
        // UpdateConfig as a follower decodes it: without the (unencoded) strategy.
        config.dead_letter_strategy = DeadLetterStrategy::AtMostOnce;
        let fx = run(&mut m, 20, QueueOp::UpdateConfig(config)).effects;
        assert!(
            matches!(fx.as_slice(), [Effect::DeadLetter { messages, .. }] if messages.len() == 2)
        );
        assert_eq!(m.dead_letters_counts(), (0, 0));
        // The configured strategy is kept through UpdateConfig.
        assert_eq!(m.dead_letter_strategy(), DeadLetterStrategy::AtLeastOnce);
        // Back to reject-publish, then the strategy to at-most-once: nothing waits.
        let mut config = m.config().clone();
        config.overflow = Overflow::RejectPublish;
        run(&mut m, 21, QueueOp::UpdateConfig(config));
        publish(&mut m, 22, "c", None);
        reject_all(&mut m, 1);
        assert_eq!(m.dead_letters_counts(), (1, 1));
        let fx = run(
            &mut m,
            24,
            QueueOp::DeadLetterStrategy(DeadLetterStrategy::AtMostOnce),
        )
        .effects;
        assert!(matches!(fx.as_slice(), [Effect::DeadLetter { .. }]));
        assert_eq!(m.dead_letters_counts(), (0, 0));
    }

    #[test]
    fn a_snapshot_keeps_the_waiting_list_and_an_older_one_restores_without() {
        let mut m = at_least_once(None);
        publish(&mut m, 1, "a", None);
        reject_all(&mut m, 1);
        let bytes = m.snapshot().unwrap_or_default();
        let restored = QueueMachine::restore(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(restored, m);
        assert_eq!(
            restored.config().dead_letter_strategy,
            DeadLetterStrategy::AtLeastOnce
        );
        // A snapshot of the previous format: the machine and the extras only.
        let mut old = postcard::to_stdvec(&m).unwrap_or_default();
        old.extend(postcard::to_stdvec(&m.extras).unwrap_or_default());
        let restored = QueueMachine::restore(&old).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(restored.dead_letters_counts(), (0, 0));
        assert_eq!(
            restored.dead_letter_strategy(),
            DeadLetterStrategy::AtMostOnce
        );
    }

    #[test]
    fn the_new_commands_and_effect_decode_as_they_were_encoded() {
        // Appended variants: the indexes of the older ones are unchanged, so older entries
        // still decode (postcard encodes a variant by its index).
        for op in [
            QueueOp::Touch,
            QueueOp::DeadLetterStrategy(DeadLetterStrategy::AtLeastOnce),
            QueueOp::DeadLetterSettle(vec![1, 2]),
        ] {
            let bytes = postcard::to_stdvec(&op).unwrap_or_default();
            let back: QueueOp = postcard::from_bytes(&bytes).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(back, op);
        }
        let touch = postcard::to_stdvec(&QueueOp::Touch).unwrap_or_default();
        assert_eq!(touch, vec![15]);
        let e = postcard::to_stdvec(&Effect::DeadLettersWaiting).unwrap_or_default();
        assert_eq!(e, vec![5]);
    }
}
