//! What the group's committed entries make this node do (the `QueueResponse` effects of its
//! replica): deliveries to this node's consumers from its own copy of the messages,
//! settlements of what they were given, dead letters.

use super::*;

impl QuorumMember {
    pub(super) async fn effects_loop(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<QueueResponse>,
    ) {
        while let Some(response) = rx.recv().await {
            for effect in response.effects {
                match effect {
                    Effect::Deliver {
                        consumer,
                        deliveries,
                    } if consumer.node == self.me => self.deliver(consumer, deliveries),
                    Effect::DeadLetter { reason, messages } if self.is_leader() => {
                        self.dead_letter(reason, messages)
                    }
                    Effect::Timer { at } if self.is_leader() => {
                        let member = Arc::downgrade(&self);
                        tokio::spawn(async move {
                            let wait = at.saturating_sub(unix_ms());
                            tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                            if let Some(m) = member.upgrade() {
                                m.push(QueueOp::Tick, None);
                            }
                        });
                    }
                    _ => {}
                }
            }
        }
    }

    pub(in crate::cluster::quorum) fn consumer_id(&self, key: u64) -> ConsumerId {
        ConsumerId { node: self.me, key }
    }

    /// Hands deliveries to this node's consumer (`consumer.key`), in order; those of a
    /// consumer gone from here go back to the queue.
    pub(super) fn deliver(&self, consumer: ConsumerId, deliveries: Vec<Delivery>) {
        let Some(queue) = self.queue.upgrade() else {
            return;
        };
        let mut returned = Vec::new();
        {
            let mut books = self.books.lock();
            let books = &mut *books;
            match books.consumers.get_mut(&consumer.key) {
                None => returned.extend(deliveries.iter().map(|d| d.id)),
                Some(local) => {
                    for d in deliveries {
                        let Some(message) = message::decode(&self.name, d.message) else {
                            tracing::warn!(queue = %self.name, "quorum queue: undecodable message dropped");
                            returned.push(d.id);
                            continue;
                        };
                        books.next_handle += 1;
                        let handle = books.next_handle;
                        books.outstanding.insert(handle, (consumer.key, d.id));
                        local.waiting.push_back(QueuedMessage {
                            message,
                            seq: handle,
                            redelivered: d.redelivered,
                            expires_at: None,
                            delivery_count: d.delivery_count,
                            persisted: false,
                        });
                    }
                }
            }
        }
        if !returned.is_empty() {
            self.push(
                QueueOp::Return {
                    consumer,
                    ids: returned,
                },
                None,
            );
        }
        self.drain(&queue);
    }

    /// Delivers what consumers have room for; deliveries to no-ack consumers are settled.
    pub(super) fn drain(&self, queue: &Arc<Queue>) {
        let mut settled: HashMap<u64, Vec<u64>> = HashMap::new();
        {
            let mut books = self.books.lock();
            let books = &mut *books;
            for (key, local) in books.consumers.iter_mut() {
                while !local.waiting.is_empty() && local.entry.sink.try_reserve() {
                    let Some(m) = local.waiting.pop_front() else {
                        break;
                    };
                    let handle = m.seq;
                    if local.entry.sink.deliver(queue, m) == Delivered::Settled {
                        if let Some((_, id)) = books.outstanding.remove(&handle) {
                            settled.entry(*key).or_default().push(id);
                        }
                    }
                }
            }
        }
        for (key, ids) in settled {
            self.push(
                QueueOp::Settle {
                    consumer: self.consumer_id(key),
                    ids,
                },
                None,
            );
        }
    }

    /// The consumers' delivery ids of these handles, by consumer (forgotten here).
    pub(super) fn take(&self, seqs: &[u64]) -> HashMap<u64, Vec<u64>> {
        let mut books = self.books.lock();
        let mut by: HashMap<u64, Vec<u64>> = HashMap::new();
        for seq in seqs {
            if let Some((key, id)) = books.outstanding.remove(seq) {
                by.entry(key).or_default().push(id);
            }
        }
        by
    }

    pub(super) fn settle_with(&self, seqs: &[u64], op: fn(ConsumerId, Vec<u64>) -> QueueOp) {
        for (key, ids) in self.take(seqs) {
            self.push(op(self.consumer_id(key), ids), None);
        }
    }

    /// Dead-letters through the queue's dead-letter exchange (leader only), with RabbitMQ's
    /// `x-death` (the broker's `VHost::dead_letter`).
    pub(super) fn dead_letter(&self, reason: DeadLetterReason, messages: Vec<DeadLettered>) {
        let Some(queue) = self.queue.upgrade() else {
            return;
        };
        let settings = queue.settings();
        let Some(exchange) = settings.dead_letter_exchange.as_deref() else {
            return;
        };
        let Some(vhost) = self.broker.upgrade().and_then(|b| b.vhost(&self.vhost)) else {
            return;
        };
        let why = match reason {
            DeadLetterReason::Rejected => DeathReason::Rejected,
            DeadLetterReason::Expired => DeathReason::Expired,
            DeadLetterReason::MaxLen => DeathReason::MaxLen,
            DeadLetterReason::DeliveryLimit => DeathReason::DeliveryLimit,
        };
        let dead: Vec<(QueuedMessage, DeathReason)> = messages
            .into_iter()
            .filter_map(|d| {
                let message = message::decode(&self.name, d.message)?;
                Some((
                    QueuedMessage {
                        message,
                        seq: d.seq,
                        redelivered: d.delivery_count > 0,
                        expires_at: None,
                        delivery_count: d.delivery_count,
                        persisted: false,
                    },
                    why,
                ))
            })
            .collect();
        vhost.dead_letter(
            &queue,
            exchange,
            settings.dead_letter_routing_key.as_deref(),
            dead,
        );
    }
}
