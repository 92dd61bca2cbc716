//! Catching up before delivering (helper soakdup; docs/clustering.md "Fault tests", finding 2).
//!
//! Each node carries out the deliveries to its own consumers from its own replica of the
//! queue (`Effect::Deliver`, as it applies the entries). A node that was cut off from the
//! group's leader (partitioned, paused, behind a one-way cut) catches up afterwards: it applies,
//! late, entries that gave messages to its consumers *and* the later entries in which the
//! other nodes, having found it down, took those messages back (`NodeDown`: returned,
//! delivery count + 1) and delivered them again, flagged `redelivered`, to other consumers.
//! Carried out as they came, the stale deliveries reached the client after the flagged
//! copies: a second delivery of a message without `redelivered` (seen by the fault soak,
//! `PIGEON_FAULT_SEED=11098713183365831083`). Followers catch up 16 entries per
//! AppendEntries (`max_payload_entries`), so the `NodeDown` is often several messages later.
//!
//! The fence: every AppendEntries carries the leader's commit index, which this module notes
//! ([`Tracked`], in front of the group's `Raft` on the receiving side). A delivery is carried
//! out only once this member has applied everything the leader had committed when it looked
//! ([`super::QuorumQueue::caught_up`]), and only if the consumer still holds the message in
//! the queue as applied then ([`QueueMachine::holds`]); otherwise it is not handed over (the
//! queue already took it back). What a member applies late anyway (a paused process resumes
//! with older requests still in its socket) is flagged `redelivered` by the broker
//! ([`QueueMachine::latest_command_at`]; server `cluster/quorum/member/effects.rs`, `fence`).
//! RabbitMQ has no such case: its quorum queue's deliveries are
//! sent by the leader alone (`rabbit_fifo` effects run on the leader), never replayed by a
//! follower that catches up.

use super::group::QueueTypes;
use super::machine::QueueMachine;
use super::ConsumerId;
use crate::net::{BoxFuture, GroupEndpoint, Response, RpcKind, WireError};
use openraft::raft::AppendEntriesRequest;
use openraft::Raft;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// The receiving side of a queue group: notes the leader's commit index of each
/// AppendEntries (a committed index stays committed, whichever term's leader sent it), then
/// hands the request to the group's `Raft` as [`GroupEndpoint`] for `Raft` does.
pub(super) struct Tracked {
    pub(super) raft: Raft<QueueTypes>,
    /// The highest commit index a leader told this member of.
    pub(super) seen: Arc<AtomicU64>,
}

impl GroupEndpoint for Tracked {
    fn handle(&self, kind: RpcKind, body: Vec<u8>) -> BoxFuture<Response> {
        if !matches!(kind, RpcKind::AppendEntries) {
            return self.raft.handle(kind, body);
        }
        let raft = self.raft.clone();
        let seen = Arc::clone(&self.seen);
        Box::pin(async move {
            match postcard::from_bytes::<AppendEntriesRequest<QueueTypes>>(&body) {
                Ok(rpc) => {
                    if let Some(commit) = rpc.leader_commit {
                        seen.fetch_max(commit.index, Ordering::Relaxed);
                    }
                    match postcard::to_stdvec(&raft.append_entries(rpc).await) {
                        Ok(bytes) => Response::Raft(bytes),
                        Err(e) => Response::Error(WireError::Other(format!("cannot encode: {e}"))),
                    }
                }
                // Undecodable: the plain endpoint reports it.
                Err(_) => raft.handle(kind, body).await,
            }
        })
    }
}

impl QueueMachine {
    /// The time of the newest command applied (ms since the epoch, the proposing leader's
    /// clock): a member that applies entries long after this was behind.
    pub fn latest_command_at(&self) -> u64 {
        self.now
    }

    /// Whether `consumer` holds delivery `id` now (delivered and neither settled nor taken
    /// back).
    pub fn holds(&self, consumer: ConsumerId, id: u64) -> bool {
        self.consumers
            .get(&consumer)
            .is_some_and(|c| c.checked_out.contains_key(&id))
    }
}

impl super::QuorumQueue {
    /// Whether this member has applied every entry a leader told it was committed (looked at
    /// now), waiting at most until `deadline` for it. A member that is behind (catching up
    /// after a partition or a pause) may be about to apply entries that took back what its
    /// consumers were given: their deliveries wait for this.
    pub async fn caught_up(&self, deadline: tokio::time::Instant) -> bool {
        let target = self.commit_seen.load(Ordering::Relaxed);
        let machine = self.machine();
        if machine.applied_index() >= target {
            return true;
        }
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        machine.wait_applied(target, wait).await
    }

    /// The highest commit index a leader told this member of.
    pub fn commit_seen(&self) -> u64 {
        self.commit_seen.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::command::{Message, QueueCommand, QueueConfig, QueueOp};
    use super::*;

    const X: ConsumerId = ConsumerId { node: 1, key: 1 };
    const Z: ConsumerId = ConsumerId { node: 2, key: 1 };

    fn run(m: &mut QueueMachine, at: u64, op: QueueOp) {
        m.apply(QueueCommand { at, op });
    }

    /// The queue's side of the soak's case: what a consumer of a node found down held is no
    /// longer its to be handed (`holds`), and comes again flagged to another consumer.
    #[test]
    fn a_node_down_takes_back_what_its_consumer_held() {
        let mut m = QueueMachine::new(QueueConfig::default());
        run(
            &mut m,
            1,
            QueueOp::Checkout {
                consumer: X,
                prefetch: 10,
            },
        );
        run(
            &mut m,
            2,
            QueueOp::Enqueue {
                publisher: None,
                message: Message {
                    header: Vec::new(),
                    body: b"m".to_vec(),
                },
                ttl: None,
            },
        );
        assert!(m.holds(X, 0), "delivered to x's consumer as delivery 0");
        assert_eq!(m.latest_command_at(), 2);
        run(&mut m, 5_000, QueueOp::NodeDown(1));
        assert!(
            !m.holds(X, 0),
            "taken back: the node must not hand it over late"
        );
        run(
            &mut m,
            5_001,
            QueueOp::Checkout {
                consumer: Z,
                prefetch: 10,
            },
        );
        let again = m.checked_out(Z);
        assert_eq!(again.len(), 1);
        assert!(again[0].redelivered);
        assert_eq!(again[0].delivery_count, 1);
        assert_eq!(m.latest_command_at(), 5_001);
    }
}
