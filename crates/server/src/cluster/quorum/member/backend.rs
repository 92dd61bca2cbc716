//! What the broker's queue asks of a quorum queue's member on this node ([`QuorumBackend`]):
//! publishes, consumers and their settlements, purge, delete, counts and placement.

use super::*;

impl QuorumBackend for QuorumMember {
    fn enqueue(&self, queue: &Queue, message: Message, confirm: &Arc<ReplicaConfirm>) {
        let ttl = message.meta().expiration_ms;
        let seq = self.publish_seq.fetch_add(1, Ordering::Relaxed) + 1;
        let op = QueueOp::Enqueue {
            publisher: Some((self.publisher, seq)),
            message: message::encode(queue.name(), &message),
            ttl,
        };
        let confirm = Arc::clone(confirm);
        self.push(
            op,
            Some(Box::new(move |reply| {
                confirm.finish(matches!(reply, Some(Reply::Enqueued(_) | Reply::Duplicate)))
            })),
        );
    }

    fn check_consume(&self, queue: &Queue) -> pigeon_broker::Result<()> {
        if self.is_outsider() {
            // Served by a member node (`outsider.rs`).
            return self.outsider_check(queue.name());
        }
        Ok(())
    }

    fn add_consumer(&self, _queue: &Arc<Queue>, consumer: ConsumerEntry) {
        let prefetch = consumer.sink.prefetch();
        let priority = consumer.priority;
        let key = {
            let mut books = self.books.lock();
            books.next_key += 1;
            let key = self.key_base + books.next_key;
            books.consumers.insert(
                key,
                Local {
                    entry: consumer,
                    waiting: VecDeque::new(),
                    attached: false,
                    seen: false,
                },
            );
            key
        };
        if self.is_outsider() {
            // Attached at the serving node (`outsider.rs`).
            self.outsider_attach(key);
            return;
        }
        // `x-priority` (helper quorumrest, `priority.rs`).
        self.push(
            super::super::priority::checkout(self.consumer_id(key), prefetch, priority),
            None,
        );
    }

    fn touched(&self) {
        self.push(QueueOp::Touch, None);
    }

    fn remove_consumer(&self, owner: u64, tag: &str) -> bool {
        let (key, unsent, attached) = {
            let mut books = self.books.lock();
            let Some(key) = books
                .consumers
                .iter()
                .find(|(_, c)| c.entry.owner == owner && &*c.entry.tag == tag)
                .map(|(k, _)| *k)
            else {
                return false;
            };
            let Some(c) = books.consumers.remove(&key) else {
                return false;
            };
            let unsent: Vec<u64> = c.waiting.into_iter().map(|m| m.seq).collect();
            (key, unsent, c.attached)
        };
        if attached {
            self.outsider_cancel(owner, tag);
        } else {
            self.push(QueueOp::Cancel(self.consumer_id(key)), None);
        }
        // Deliveries it never saw go back (cancel keeps only what the consumer holds): to the
        // group, or to the serving node that delivered them (`outsider.rs`).
        self.requeue(&unsent);
        true
    }

    fn settle(&self, seqs: &[u64]) {
        let seqs = self.settle_remote(seqs, Outcome::Ack);
        self.settle_with(&seqs, |consumer, ids| QueueOp::Settle { consumer, ids });
    }

    fn requeue(&self, seqs: &[u64]) {
        let seqs = self.settle_remote(seqs, Outcome::Requeue);
        self.settle_with(&seqs, |consumer, ids| QueueOp::Return { consumer, ids });
    }

    fn reject(&self, seqs: &[u64]) {
        let seqs = self.settle_remote(seqs, Outcome::Reject);
        self.settle_with(&seqs, |consumer, ids| QueueOp::Discard { consumer, ids });
    }

    fn dispatch(&self, queue: &Arc<Queue>) {
        self.drain(queue);
    }

    fn purge(&self) -> u32 {
        let ready = self.counts().ready;
        self.push(QueueOp::Purge, None);
        ready
    }

    fn delete(&self) -> Vec<ConsumerEntry> {
        self.stop();
        let mut books = self.books.lock();
        books.outstanding.clear();
        books.consumers.drain().map(|(_, c)| c.entry).collect()
    }

    fn placement(&self) -> QuorumPlacement {
        let members = self.members();
        let down = self.down.lock();
        let online = members
            .iter()
            .filter(|m| !down.contains(*m))
            .cloned()
            .collect();
        QuorumPlacement {
            leader: self.leader(),
            members,
            online,
        }
    }

    // --- quorum queue features: basic.get, purge's count, policies (`ops.rs`) ---
    fn get(
        &self,
        queue: &Arc<Queue>,
        no_ack: bool,
        done: pigeon_broker::queue::quorum_ops::GetDone,
    ) {
        self.dequeue(queue, no_ack, done);
    }

    fn purge_committed(&self, done: pigeon_broker::queue::quorum_ops::PurgeDone) {
        self.purge_then(done);
    }

    fn settings_changed(&self, queue: &Queue) {
        self.update_config(queue);
    }

    fn serving_node(&self) -> Option<String> {
        if self.is_outsider() {
            self.serving()
        } else {
            None
        }
    }

    fn counts(&self) -> QuorumCounts {
        let Some(qq) = self.local() else {
            return QuorumCounts::default();
        };
        let c = qq.machine().read(|m| m.counts());
        let n = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
        QuorumCounts {
            ready: n(c.ready),
            ready_bytes: c.ready_bytes,
            unacked: n(c.checked_out),
            consumers: n(c.consumers),
            dlx: n(c.dead_lettering),
            dlx_bytes: c.dead_lettering_bytes,
        }
    }
}
