//! `basic.get` on a quorum queue: [`QueueOp::Dequeue`](super::QueueOp::Dequeue), the checkout
//! of one message by a consumer that lives for that message only.
//!
//! As RabbitMQ's `rabbit_fifo` (deps/rabbit/src/rabbit_fifo.erl, `apply_` of
//! `#checkout{spec = {dequeue, Settlement}}`): an empty queue answers empty; otherwise a
//! consumer with a prefetch of one and a lifetime of `once` is attached under the given id,
//! the head message is checked out to it (expired heads are dead-lettered first) and the reply
//! carries the message and the number of messages still ready (`basic.get-ok`'s
//! `message_count`). `settled` (`no-ack`) settles it at once; otherwise it is acked, returned
//! or discarded by that consumer's id like any delivery, and returned if the consumer (its
//! channel or node) goes down. RabbitMQ refuses a dequeue of a single-active-consumer queue
//! (`{error, {unsupported, single_active_consumer}}`); so does this machine
//! ([`Reply::DequeueUnsupported`]). A dequeue under an id already attached answers empty, as
//! `rabbit_fifo` does ("a dequeue using the same consumer_id isn't possible at this point").
//!
//! The consumer is kept as a cancelled one: never served by dispatch, forgotten once it holds
//! nothing, not counted among the queue's consumers.

use super::command::{Delivery, Reply};
use super::consumers::{Consumer, Status};
use super::machine::QueueMachine;
use super::ConsumerId;
use std::collections::BTreeMap;

impl QueueMachine {
    pub(crate) fn dequeue(&mut self, id: ConsumerId, settled: bool) -> Reply {
        if self.config.single_active_consumer {
            return Reply::DequeueUnsupported;
        }
        if self.ready_count() == 0 || self.consumers.contains_key(&id) {
            return Reply::Dequeued {
                delivery: None,
                ready: self.ready_count(),
            };
        }
        let Some(message) = self.pop_head() else {
            return Reply::Dequeued {
                delivery: None,
                ready: 0,
            };
        };
        let delivery = Delivery {
            id: 0,
            seq: message.seq,
            redelivered: message.delivery_count > 0,
            delivery_count: message.delivery_count,
            message: message.message.clone(),
        };
        if !settled {
            let mut checked_out = BTreeMap::new();
            checked_out.insert(0, message);
            self.consumers.insert(
                id,
                Consumer {
                    prefetch: 1,
                    status: Status::Cancelled,
                    next_id: 1,
                    checked_out,
                    in_service: false,
                },
            );
        }
        Reply::Dequeued {
            delivery: Some(delivery),
            ready: self.ready_count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::command::{Message, QueueCommand, QueueConfig, QueueOp};
    use super::*;

    const G: ConsumerId = ConsumerId { node: 1, key: 7 };

    fn run(m: &mut QueueMachine, op: QueueOp) -> Reply {
        m.apply(QueueCommand { at: 1, op }).reply
    }

    fn publish(m: &mut QueueMachine, body: &str) {
        run(
            m,
            QueueOp::Enqueue {
                publisher: None,
                message: Message {
                    header: Vec::new(),
                    body: body.as_bytes().to_vec(),
                },
                ttl: None,
            },
        );
    }

    fn got(r: Reply) -> (Option<(String, u32, bool)>, u64) {
        match r {
            Reply::Dequeued { delivery, ready } => (
                delivery.map(|d| {
                    (
                        String::from_utf8_lossy(&d.message.body).into_owned(),
                        d.delivery_count,
                        d.redelivered,
                    )
                }),
                ready,
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_empty_queue_answers_empty() {
        let mut m = QueueMachine::new(QueueConfig::default());
        let r = run(
            &mut m,
            QueueOp::Dequeue {
                consumer: G,
                settled: false,
            },
        );
        assert_eq!(got(r), (None, 0));
        assert_eq!(m.counts().consumers, 0);
    }

    #[test]
    fn an_unsettled_get_is_held_until_acked_and_comes_back_when_returned() {
        let mut m = QueueMachine::new(QueueConfig::default());
        publish(&mut m, "a");
        publish(&mut m, "b");
        let r = run(
            &mut m,
            QueueOp::Dequeue {
                consumer: G,
                settled: false,
            },
        );
        assert_eq!(got(r), (Some(("a".into(), 0, false)), 1));
        let c = m.counts();
        assert_eq!((c.ready, c.checked_out, c.consumers), (1, 1, 0));
        // Returned: first in line again, redelivered with a count of one.
        run(
            &mut m,
            QueueOp::Return {
                consumer: G,
                ids: vec![0],
            },
        );
        let r = run(
            &mut m,
            QueueOp::Dequeue {
                consumer: ConsumerId { node: 1, key: 8 },
                settled: true,
            },
        );
        assert_eq!(got(r), (Some(("a".into(), 1, true)), 1));
        // Settled at once: nothing held.
        let c = m.counts();
        assert_eq!((c.ready, c.checked_out), (1, 0));
        let r = run(
            &mut m,
            QueueOp::Dequeue {
                consumer: G,
                settled: false,
            },
        );
        assert_eq!(got(r), (Some(("b".into(), 0, false)), 0));
        run(
            &mut m,
            QueueOp::Settle {
                consumer: G,
                ids: vec![0],
            },
        );
        assert_eq!(m.counts(), Default::default());
    }

    #[test]
    fn a_get_consumer_that_goes_down_returns_its_message() {
        let mut m = QueueMachine::new(QueueConfig::default());
        publish(&mut m, "a");
        run(
            &mut m,
            QueueOp::Dequeue {
                consumer: G,
                settled: false,
            },
        );
        run(&mut m, QueueOp::NodeDown(1));
        let r = run(
            &mut m,
            QueueOp::Dequeue {
                consumer: G,
                settled: true,
            },
        );
        assert_eq!(got(r), (Some(("a".into(), 1, true)), 0));
    }

    #[test]
    fn single_active_consumer_queues_refuse_gets() {
        let mut m = QueueMachine::new(QueueConfig {
            single_active_consumer: true,
            ..QueueConfig::default()
        });
        publish(&mut m, "a");
        let r = run(
            &mut m,
            QueueOp::Dequeue {
                consumer: G,
                settled: true,
            },
        );
        assert_eq!(r, Reply::DequeueUnsupported);
        assert_eq!(m.counts().ready, 1);
    }
}
