//! What the group's committed entries make this node do (the `QueueResponse` effects of its
//! replica): deliveries to this node's consumers from its own copy of the messages,
//! settlements of what they were given, dead letters.

use super::*;

/// How long deliveries wait for this member to apply what its leader has committed (`fence`).
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// A delivery applied this long (ms) after the newest known command was proposed is flagged
/// `redelivered` (`fence`).
const LATE_MS: u64 = 500;

impl QuorumMember {
    pub(super) async fn effects_loop(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<QueueResponse>,
    ) {
        // Until when deliveries may wait for this member to catch up (`fence`).
        let mut behind = None;
        while let Some(response) = rx.recv().await {
            for effect in response.effects {
                match effect {
                    Effect::Deliver {
                        consumer,
                        deliveries,
                    } if consumer.node == self.me => {
                        let deliveries = self.fence(consumer, deliveries, &mut behind).await;
                        self.deliver(consumer, deliveries)
                    }
                    Effect::DeadLetter { reason, messages } if self.is_leader() => {
                        self.dead_letter(reason, messages)
                    }
                    // At-least-once: every member's worker is told; the leader's acts
                    // (`member/dlx.rs`).
                    Effect::DeadLettersWaiting => self.dlx_wake(),
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

    /// Stale deliveries (soakdup; `pigeon_cluster::quorum` `catchup.rs`): a member that
    /// catches up applies, late, deliveries to its consumers that the queue may have taken back
    /// since (`NodeDown` of this node, decided by the others while it was cut off or paused)
    /// and delivered again, flagged, to other consumers. So:
    /// - a delivery is handed over only once this member has applied what a leader last told
    ///   it was committed, and only if the consumer still holds the message then (a partition
    ///   healing: the leader's first message carries the commit of the `NodeDown`);
    /// - what is still behind after [`CATCH_UP_WAIT`] is handed over flagged `redelivered`
    ///   (not returned: a return this member cannot commit would leave the message held by a
    ///   consumer that never got it); once a wait gave up, the next ones do not wait until this
    ///   member has caught up again;
    /// - a delivery applied more than [`LATE_MS`] after the newest command this member knows of
    ///   was proposed is flagged `redelivered`: a paused process resumes with the leader's
    ///   requests that waited in its socket, whose commit index predates the `NodeDown`, so the
    ///   first two checks pass; the flag may be a false alarm (a slow follower, a clock ahead of
    ///   the leader's), which AMQP allows ("may have been delivered before"), never a loss.
    async fn fence(
        &self,
        consumer: ConsumerId,
        deliveries: Vec<Delivery>,
        behind: &mut Option<tokio::time::Instant>,
    ) -> Vec<Delivery> {
        let Some(qq) = self.local() else {
            return deliveries;
        };
        let until = *behind.get_or_insert_with(|| tokio::time::Instant::now() + CATCH_UP_WAIT);
        let caught_up = qq.caught_up(until).await;
        if caught_up {
            *behind = None;
        } else {
            tracing::debug!(queue = %self.name, "quorum queue: deliveries flagged redelivered: this member is still catching up");
        }
        let (held, latest): (Vec<Delivery>, u64) = qq.machine().read(|m| {
            let held = deliveries
                .into_iter()
                .filter(|d| m.holds(consumer, d.id))
                .collect();
            (held, m.latest_command_at())
        });
        if !caught_up || unix_ms().saturating_sub(latest) > LATE_MS {
            return held
                .into_iter()
                .map(|d| Delivery {
                    redelivered: true,
                    ..d
                })
                .collect();
        }
        held
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
                    // The group holds it (`liveness.rs` checks it out again if dropped).
                    local.seen = true;
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
    pub(in crate::cluster::quorum) fn drain(&self, queue: &Arc<Queue>) {
        let mut settled: HashMap<u64, Vec<u64>> = HashMap::new();
        // A serving node's deliveries to a no-ack consumer here (`outsider.rs`).
        let mut remote = Vec::new();
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
                        } else if super::super::outsider::is_remote(handle) {
                            remote.push(handle);
                        }
                    }
                }
            }
        }
        if !remote.is_empty() {
            self.settle_remote(&remote, Outcome::Ack);
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

    pub(in crate::cluster::quorum) fn settle_with(
        &self,
        seqs: &[u64],
        op: fn(ConsumerId, Vec<u64>) -> QueueOp,
    ) {
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
