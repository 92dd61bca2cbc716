//! Quorum queue operations answered once the queue's group decided them (issue 13 item 4):
//! `basic.get` (a one-message checkout, `QueueOp::Dequeue` in the cluster crate) and
//! `queue.purge` (answered with the number the group purged). The channel waits for the
//! answer, reading none of the client's next frames meanwhile, as it does for a topology
//! change through the cluster, so that methods keep their order.

use super::{Queue, QueuedMessage};
use crate::error::BrokerError;
use std::sync::Arc;
use std::time::Instant;

/// Why a quorum queue operation has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuorumOpError {
    /// Refused, with the error to close the channel with.
    #[error(transparent)]
    Refused(#[from] BrokerError),
    /// The group did not commit it in time (no majority, no leader): it may still happen.
    #[error("timeout")]
    NotCommitted,
}

/// A `basic.get`'s answer: the message and the number of ready messages left, or none.
pub type GetResult = Result<Option<(QueuedMessage, u32)>, QuorumOpError>;

/// Receives a `basic.get`'s answer; returns false when nobody took the message (the channel
/// is gone), so that the backend gives it back to the queue.
pub type GetDone = Box<dyn FnOnce(GetResult) -> bool + Send>;

/// Receives a `queue.purge`'s answer: the number of messages purged.
pub type PurgeDone = Box<dyn FnOnce(Result<u32, QuorumOpError>) + Send>;

impl Queue {
    /// `basic.get` on a quorum queue: `done` gets the group's answer (on another task), the
    /// queue's statistics counted as a classic queue's `get`.
    pub fn get_replicated(self: &Arc<Self>, no_ack: bool, done: GetDone) {
        let Some(backend) = self.quorum.get() else {
            done(Err(BrokerError::NotFound(format!(
                "quorum queue '{}' in vhost '{}' is not started on this node",
                self.name, self.vhost_name
            ))
            .into()));
            return;
        };
        self.state.lock().last_used = Instant::now();
        let queue = Arc::clone(self);
        backend.get(
            self,
            no_ack,
            Box::new(move |result| {
                {
                    let mut st = queue.state.lock();
                    match &result {
                        Ok(Some((m, _))) => {
                            st.counters.count_delivery(m, true);
                            if no_ack {
                                st.counters.get_no_ack += 1;
                            }
                        }
                        Ok(None) => st.counters.get_empty += 1,
                        Err(_) => {}
                    }
                }
                done(result)
            }),
        );
    }

    /// `queue.purge` on a quorum queue: `done` gets the number the group purged.
    pub fn purge_replicated(&self, done: PurgeDone) {
        match self.quorum.get() {
            Some(backend) => backend.purge_committed(done),
            None => done(Ok(0)),
        }
    }
}
