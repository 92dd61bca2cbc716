//! Property tests of [`QueueMachine`] against a simple model: every accepted message is, at
//! every step, in exactly one place (ready, held by one consumer, or finished: settled,
//! dead-lettered, purged); deliveries carry the right delivery count and redelivered flag; the
//! delivery limit, the length limits and prefetch hold; snapshot and restore change nothing.

#![allow(clippy::unwrap_used)]

use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone)]
enum Act {
    Enqueue {
        publisher: Option<(u8, bool)>,
        size: u8,
        ttl: Option<u8>,
    },
    PublisherDown(u8),
    Checkout(u8, u8),
    Cancel(u8),
    Settle(u8, Vec<u8>),
    Return(u8, Vec<u8>),
    Discard(u8, Vec<u8>),
    Purge,
    ConsumerDown(u8),
    NodeDown(u8),
    Tick,
}

fn act() -> impl Strategy<Value = Act> {
    let picks = || proptest::collection::vec(any::<u8>(), 0..4);
    prop_oneof![
        6 => (proptest::option::of((0u8..3, any::<bool>())), 0u8..8, proptest::option::weighted(0.3, 0u8..60))
            .prop_map(|(publisher, size, ttl)| Act::Enqueue { publisher, size, ttl }),
        1 => (0u8..3).prop_map(Act::PublisherDown),
        2 => (0u8..4, 0u8..4).prop_map(|(c, p)| Act::Checkout(c, p)),
        1 => (0u8..4).prop_map(Act::Cancel),
        3 => (0u8..4, picks()).prop_map(|(c, p)| Act::Settle(c, p)),
        3 => (0u8..4, picks()).prop_map(|(c, p)| Act::Return(c, p)),
        1 => (0u8..4, picks()).prop_map(|(c, p)| Act::Discard(c, p)),
        1 => Just(Act::Purge),
        1 => (0u8..4).prop_map(Act::ConsumerDown),
        1 => (0u8..2).prop_map(Act::NodeDown),
        1 => Just(Act::Tick),
    ]
}

fn config() -> impl Strategy<Value = QueueConfig> {
    (
        proptest::option::of(0u32..3),
        proptest::option::weighted(0.3, 1u64..5),
        proptest::option::weighted(0.2, 0u64..20),
        any::<bool>(),
        proptest::option::weighted(0.2, 0u64..80),
        any::<bool>(),
    )
        .prop_map(|(limit, len, bytes, reject, ttl, sac)| QueueConfig {
            delivery_limit: limit,
            max_length: len,
            max_length_bytes: bytes,
            overflow: if reject {
                Overflow::RejectPublish
            } else {
                Overflow::DropHead
            },
            message_ttl: ttl,
            single_active_consumer: sac,
            ..QueueConfig::default()
        })
}

fn consumer(c: u8) -> ConsumerId {
    ConsumerId {
        node: u64::from(c / 2),
        key: u64::from(c),
    }
}

/// Where the model believes each message is.
#[derive(Default)]
struct Model {
    ready: BTreeSet<u64>,
    held: BTreeMap<ConsumerId, BTreeMap<u64, u64>>,
    done: BTreeMap<u64, &'static str>,
    returns: BTreeMap<u64, u32>,
    expiry: BTreeMap<u64, u64>,
    sizes: BTreeMap<u64, u64>,
    last_seq: BTreeMap<u8, u64>,
    accepted_seq: BTreeMap<u8, u64>,
}

impl Model {
    /// The delivery ids an act names: picks index into what the consumer holds; 200 and more
    /// name an id it does not hold.
    fn ids(&self, c: ConsumerId, picks: &[u8]) -> Vec<u64> {
        let held: Vec<u64> = self
            .held
            .get(&c)
            .map(|h| h.keys().copied().collect())
            .unwrap_or_default();
        picks
            .iter()
            .map(|p| match held.len() {
                _ if *p >= 200 => 1_000_000 + u64::from(*p),
                0 => 1_000_000,
                n => held[usize::from(*p) % n],
            })
            .collect()
    }

    fn take(&mut self, c: ConsumerId, ids: &[u64]) -> Vec<u64> {
        let mut out = Vec::new();
        if let Some(h) = self.held.get_mut(&c) {
            for id in ids {
                if let Some(seq) = h.remove(id) {
                    out.push(seq);
                }
            }
        }
        out
    }

    fn finish(&mut self, seq: u64, how: &'static str) {
        assert!(self.done.insert(seq, how).is_none(), "{seq} finished twice");
    }
}

fn dead(effects: &[Effect], want: DeadLetterReason) -> Vec<u64> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::DeadLetter { reason, messages } if *reason == want => {
                Some(messages.iter().map(|m| m.seq))
            }
            _ => None,
        })
        .flatten()
        .collect()
}

/// Applies `acts`; with `roundtrip`, the machine is replaced by a snapshot-and-restore copy of
/// itself after every step. Returns every response, and checks the model at every step.
fn run(config: &QueueConfig, acts: &[(u8, Act)], roundtrip: bool) -> Vec<QueueResponse> {
    let mut m = QueueMachine::new(config.clone());
    let mut model = Model::default();
    let mut now = 1_000u64;
    let mut responses = Vec::new();
    for (dt, act) in acts {
        now += u64::from(*dt);
        let mut returned = Vec::new();
        let mut rejected = Vec::new();
        let op = match act.clone() {
            Act::Enqueue {
                publisher,
                size,
                ttl,
            } => {
                let publisher = publisher.map(|(p, resend)| {
                    let last = model.last_seq.get(&p).copied().unwrap_or(0);
                    let seq = if resend && last > 0 { last } else { last + 1 };
                    model.last_seq.insert(p, seq);
                    (p, seq)
                });
                QueueOp::Enqueue {
                    publisher: publisher.map(|(p, s)| (PublisherId(u64::from(p)), s)),
                    message: Message {
                        header: vec![1],
                        body: vec![7; usize::from(size)],
                    },
                    ttl: ttl.map(u64::from),
                }
            }
            Act::PublisherDown(p) => {
                model.accepted_seq.remove(&p);
                QueueOp::PublisherDown(PublisherId(u64::from(p)))
            }
            Act::Checkout(c, p) => QueueOp::Checkout {
                consumer: consumer(c),
                prefetch: u32::from(p),
            },
            Act::Cancel(c) => QueueOp::Cancel(consumer(c)),
            Act::Settle(c, picks) => {
                let ids = model.ids(consumer(c), &picks);
                for seq in model.take(consumer(c), &ids) {
                    model.finish(seq, "settled");
                }
                QueueOp::Settle {
                    consumer: consumer(c),
                    ids,
                }
            }
            Act::Return(c, picks) => {
                let ids = model.ids(consumer(c), &picks);
                returned = model.take(consumer(c), &ids);
                QueueOp::Return {
                    consumer: consumer(c),
                    ids,
                }
            }
            Act::Discard(c, picks) => {
                let ids = model.ids(consumer(c), &picks);
                rejected = model.take(consumer(c), &ids);
                QueueOp::Discard {
                    consumer: consumer(c),
                    ids,
                }
            }
            Act::Purge => QueueOp::Purge,
            Act::ConsumerDown(c) => {
                returned = model
                    .held
                    .remove(&consumer(c))
                    .map(|h| h.into_values().collect())
                    .unwrap_or_default();
                QueueOp::ConsumerDown(consumer(c))
            }
            Act::NodeDown(n) => {
                let gone: Vec<ConsumerId> = model
                    .held
                    .keys()
                    .filter(|c| c.node == u64::from(n))
                    .copied()
                    .collect();
                for c in gone {
                    returned.extend(model.held.remove(&c).unwrap().into_values());
                }
                QueueOp::NodeDown(u64::from(n))
            }
            Act::Tick => QueueOp::Tick,
        };
        let enqueue_publisher = match &op {
            QueueOp::Enqueue { publisher, .. } => Some(*publisher),
            _ => None,
        };
        let size = match &op {
            QueueOp::Enqueue { message, .. } => message.body.len() as u64,
            _ => 0,
        };
        let ttl = match &op {
            QueueOp::Enqueue { ttl, .. } => match (*ttl, config.message_ttl) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            _ => None,
        };
        let response = m.apply(QueueCommand { at: now, op });
        let fx = &response.effects;
        // What comes back: one more delivery each; past the limit, dead-lettered.
        let mut over_limit = BTreeSet::new();
        for seq in returned {
            let n = model.returns.entry(seq).or_insert(0);
            *n += 1;
            if config.delivery_limit.is_some_and(|l| *n > l) {
                over_limit.insert(seq);
                model.finish(seq, "delivery_limit");
            } else {
                model.ready.insert(seq);
            }
        }
        assert_eq!(
            dead(fx, DeadLetterReason::DeliveryLimit)
                .into_iter()
                .collect::<BTreeSet<_>>(),
            over_limit
        );
        assert_eq!(dead(fx, DeadLetterReason::Rejected), rejected);
        for seq in rejected {
            model.finish(seq, "rejected");
        }
        match (&response.reply, enqueue_publisher) {
            (Reply::Enqueued(seq), Some(publisher)) => {
                assert!(model.sizes.insert(*seq, size).is_none(), "seq reused");
                model.ready.insert(*seq);
                if let Some(t) = ttl {
                    model.expiry.insert(*seq, now + t);
                }
                if let Some((p, s)) = publisher {
                    let p = u8::try_from(p.0).unwrap();
                    assert!(model.accepted_seq.get(&p).is_none_or(|last| s > *last));
                    model.accepted_seq.insert(p, s);
                }
            }
            (Reply::Duplicate, Some(Some((p, s)))) => {
                let p = u8::try_from(p.0).unwrap();
                assert!(model.accepted_seq.get(&p).is_some_and(|last| s <= *last));
            }
            (Reply::RejectedFull, Some(_)) => {
                assert_eq!(config.overflow, Overflow::RejectPublish);
            }
            (_, Some(_)) => panic!("enqueue answered {:?}", response.reply),
            _ => {}
        }
        for seq in dead(fx, DeadLetterReason::Expired) {
            assert!(model.ready.remove(&seq), "expired {seq} was not ready");
            assert!(model.expiry.get(&seq).is_some_and(|at| *at <= now));
            model.finish(seq, "expired");
        }
        for seq in dead(fx, DeadLetterReason::MaxLen) {
            assert!(model.ready.remove(&seq), "dropped {seq} was not ready");
            model.finish(seq, "maxlen");
        }
        if let Reply::Purged(n) = response.reply {
            assert_eq!(n, model.ready.len() as u64);
            for seq in std::mem::take(&mut model.ready) {
                model.finish(seq, "purged");
            }
        }
        let mut receivers = 0;
        for e in fx {
            if let Effect::Deliver {
                consumer,
                deliveries,
            } = e
            {
                receivers += 1;
                let held = model.held.entry(*consumer).or_default();
                for d in deliveries {
                    assert!(model.ready.remove(&d.seq), "{} delivered twice", d.seq);
                    assert!(held.insert(d.id, d.seq).is_none(), "delivery id reused");
                    let n = model.returns.get(&d.seq).copied().unwrap_or(0);
                    assert_eq!(d.delivery_count, n);
                    assert_eq!(d.redelivered, n > 0);
                }
            }
        }
        if config.single_active_consumer {
            assert!(receivers <= 1);
            assert!(m.consumers().iter().filter(|(_, a)| *a).count() <= 1);
        }
        model.held.retain(|_, h| !h.is_empty());
        // The machine agrees with the model.
        assert_eq!(
            m.ready_seqs().into_iter().collect::<BTreeSet<_>>(),
            model.ready
        );
        let counts = m.counts();
        assert_eq!(
            counts.ready_bytes,
            model.ready.iter().map(|s| model.sizes[s]).sum::<u64>()
        );
        for (c, _) in m.consumers() {
            let held: BTreeMap<u64, u64> = m.checked_out(c).iter().map(|d| (d.id, d.seq)).collect();
            assert_eq!(held, model.held.get(&c).cloned().unwrap_or_default());
        }
        assert_eq!(
            counts.checked_out,
            model.held.values().map(|h| h.len() as u64).sum::<u64>()
        );
        // Nothing lost, nothing twice.
        let held: usize = model.held.values().map(|h| h.len()).sum();
        assert_eq!(
            model.ready.len() + held + model.done.len(),
            model.sizes.len()
        );
        if config.overflow == Overflow::DropHead {
            if let Some(max) = config.max_length {
                assert!(counts.ready <= max);
            }
            if let Some(max) = config.max_length_bytes {
                assert!(counts.ready_bytes <= max);
            }
        }
        if roundtrip {
            let copy = QueueMachine::restore(&m.snapshot().unwrap()).unwrap();
            assert_eq!(copy, m);
            m = copy;
        }
        responses.push(response);
    }
    responses
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_message_is_lost_or_duplicated(
        config in config(),
        acts in proptest::collection::vec((0u8..30, act()), 1..120),
    ) {
        run(&config, &acts, false);
    }

    #[test]
    fn snapshot_and_restore_change_nothing(
        config in config(),
        acts in proptest::collection::vec((0u8..30, act()), 1..80),
    ) {
        prop_assert_eq!(run(&config, &acts, false), run(&config, &acts, true));
    }
}
