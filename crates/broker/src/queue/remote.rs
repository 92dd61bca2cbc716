//! A queue whose home is another node of a cluster (issue 13 item 3, docs/clustering.md):
//! only its home node holds its messages. On every other node the queue exists as metadata
//! (routing, bindings, declarations find it) and what reaches it is handed to a
//! [`RemoteHome`], which the server implements by forwarding it over the cluster link.
//!
//! The broker knows nothing of the cluster: the server sets the hook
//! ([`Queue::set_remote`](super::Queue::set_remote)) on the queues it knows to be homed
//! elsewhere, and a publish reaching one is given a [`RemoteConfirm`] that the home node
//! settles once it has the message (on disk, for a persistent message in a durable queue).

use super::Queue;
use crate::Message;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

/// Where a queue homed on another node sends what reaches it here.
pub trait RemoteHome: Send + Sync {
    /// The name of the queue's home node.
    fn node(&self) -> &str;
    /// Whether the home node is reachable (false while it is down: the queue is unavailable).
    fn available(&self) -> bool;
    /// Forwards `message`, routed to `queue`, to the home node. `confirm` (counted already:
    /// [`RemoteConfirm::add`]) is to be settled with the home node's answer: confirmed once it
    /// has the message, refused if it refused it or cannot be reached.
    fn forward(&self, queue: &Arc<Queue>, message: Message, confirm: Option<Arc<RemoteConfirm>>);
    /// A consumer here settled messages the home delivered to it (by the home's sequence
    /// numbers): acked, given back, or rejected.
    fn settle(&self, queue: &Arc<Queue>, seqs: Vec<u64>, outcome: Outcome);
    /// The consumer `tag` of `owner` here was removed from the queue.
    fn cancel(&self, queue: &Arc<Queue>, owner: u64, tag: &str);
    // Bounded forwarding (metafinish).
    /// What waits to be sent to the home node, as message-equivalents (messages, or their
    /// bytes in 4 KiB units when larger): the proxy's ready messages for publisher flow
    /// control ([`Queue::flow_view`]), so that a publisher that outruns the link is slowed
    /// as one that outruns a local queue's consumers.
    fn backlog(&self) -> usize {
        0
    }
}

/// The backlog past which a queue homed elsewhere holds back its publishers (they go again
/// under half of it): a few batches of the link (`forward.rs` sends up to 1,024 messages or
/// 4 MiB per batch).
pub const REMOTE_BACKLOG: usize = 4096;

/// How a consumer settled messages of a queue homed elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Acknowledged: they leave the queue.
    Ack,
    /// Given back (nack/reject with requeue, a channel closed): redelivered.
    Requeue,
    /// Rejected without requeue: dead-lettered or dropped.
    Reject,
}

/// A publish waiting for the home nodes of the queues it reached: confirmed once each has
/// answered, refused (a publisher nack) if any refused it or was down, as RabbitMQ rejects the
/// publishes pending at a classic queue whose process went down (rabbit_classic_queue
/// `handle_event({down, ...})`: no queue left pending and none confirmed -> rejected).
pub struct RemoteConfirm {
    pending: AtomicU32,
    refused: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

/// What a waiting publisher is woken with.
pub type Waker = Arc<dyn Fn() + Send + Sync>;

impl Default for RemoteConfirm {
    fn default() -> Self {
        RemoteConfirm {
            pending: AtomicU32::new(0),
            refused: AtomicBool::new(false),
            waker: Mutex::new(None),
        }
    }
}

impl std::fmt::Debug for RemoteConfirm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteConfirm")
            .field("pending", &self.pending.load(Ordering::Relaxed))
            .field("refused", &self.refused.load(Ordering::Relaxed))
            .finish()
    }
}

impl RemoteConfirm {
    /// One more home node to hear from.
    pub fn add(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// One home node answered: `ok` if it has the message.
    pub fn settle(&self, ok: bool) {
        if !ok {
            self.refused.store(true, Ordering::Release);
        }
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let waker = self.waker.lock().take();
            if let Some(w) = waker {
                w();
            }
        }
    }

    /// Every home node answered.
    pub fn done(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    /// Every home node has the message (meaningful once [`Self::done`]).
    pub fn ok(&self) -> bool {
        !self.refused.load(Ordering::Acquire)
    }

    /// Calls `waker` once every home node answered (now, if they all did).
    pub fn on_done(&self, waker: Waker) {
        let mut slot = self.waker.lock();
        if self.done() {
            drop(slot);
            waker();
        } else {
            *slot = Some(waker);
        }
    }
}
