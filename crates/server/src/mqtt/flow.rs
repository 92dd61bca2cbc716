//! Publisher flow control: a publisher that fills a subscriber's queue faster than it drains is
//! slowed down instead of having the queue drop its messages.
//!
//! A session queue holds at most `mqtt_max_queued_messages` and drops the oldest beyond that
//! (drop-head), so a fast QoS 0 publisher used to outrun a slow subscriber and lose most of its
//! messages. Now, when a PUBLISH (any QoS) reaches a length-limited queue with a consumer whose
//! ready messages pass half its limit (the high mark), the publishing connection stops reading
//! its socket, so TCP slows the client down, as Mosquitto's does, until the backlog is back
//! under a quarter of the limit (the low mark). The connection re-checks every
//! [`POLL`] (the broker core has no async wake-ups); it keeps writing meanwhile, so its own
//! deliveries and acknowledgements flow.
//!
//! Never for ever: a publisher waits as long as the queue keeps draining (it then goes at its
//! subscriber's pace, like RabbitMQ's credit flow). A queue that has not drained at all for
//! [`MAX_STALL`] counts as stuck: the publisher stops waiting for it, and drop-head sheds its
//! oldest messages as before, until it drains under the low mark on its own. So one stuck
//! subscriber costs its publishers one pause, not their throughput. Queues without a length
//! limit (they drop nothing; the memory alarm bounds them), without a consumer (an offline
//! session's queue would never drain), and the publisher's own session queue (it would wait
//! for itself) are not waited for.

use pigeon_broker::Queue;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a paused publisher looks at the queues it waits for.
pub(super) const POLL: Duration = Duration::from_millis(2);

/// How long a queue may go without draining before its publishers stop waiting for it.
const MAX_STALL: Duration = Duration::from_secs(1);

/// A queue a publisher waits for.
struct Watched {
    queue: Arc<Queue>,
    /// Under this, the publisher reads again.
    low: usize,
    /// The smallest backlog seen so far, and when it was seen.
    backlog: usize,
    progress: Instant,
}

/// The flow-control state of one publishing connection.
#[derive(Default)]
pub(super) struct PublishFlow {
    /// Queues over their high mark: the connection does not read while any is left.
    waiting: Vec<Watched>,
    /// Queues that stalled: not waited for until they drain under their low mark.
    stuck: Vec<Arc<Queue>>,
}

/// The high and low marks of a queue limited to `max` messages.
fn marks(max: usize) -> (usize, usize) {
    ((max / 2).max(1), max / 4)
}

impl PublishFlow {
    /// After a publish: starts waiting for the queues it `reached` that are over their high
    /// mark. `own` is the publisher's client id (its session queue is never waited for).
    pub fn note(&mut self, reached: &[Arc<Queue>], own: &str) {
        for q in reached {
            let (ready, max, consumed) = q.backlog();
            let Some(max) = max else {
                continue;
            };
            let (high, low) = marks(max);
            if ready < high || !consumed {
                if ready <= low {
                    self.stuck.retain(|s| !Arc::ptr_eq(s, q));
                }
                continue;
            }
            let known = self.stuck.iter().any(|s| Arc::ptr_eq(s, q))
                || self.waiting.iter().any(|w| Arc::ptr_eq(&w.queue, q));
            if known || q.name().strip_prefix("mqtt-session-") == Some(own) {
                continue;
            }
            self.waiting.push(Watched {
                queue: Arc::clone(q),
                low,
                backlog: ready,
                progress: Instant::now(),
            });
        }
    }

    /// Whether the connection must leave its socket unread now: true while a queue it waits
    /// for is over its low mark and draining (or stalled for less than [`MAX_STALL`]).
    pub fn must_wait(&mut self) -> bool {
        if self.waiting.is_empty() {
            return false;
        }
        let now = Instant::now();
        let mut stalled = Vec::new();
        self.waiting.retain_mut(|w| {
            let (ready, _, consumed) = w.queue.backlog();
            if ready <= w.low || !consumed || w.queue.is_deleted() {
                return false;
            }
            if ready < w.backlog {
                w.backlog = ready;
                w.progress = now;
            } else if now.duration_since(w.progress) >= MAX_STALL {
                tracing::debug!(
                    queue = w.queue.name(),
                    backlog = ready,
                    "queue does not drain: its publisher stops waiting for it (drop-head applies)"
                );
                stalled.push(Arc::clone(&w.queue));
                return false;
            }
            true
        });
        if !stalled.is_empty() {
            self.stuck.retain(|q| !q.is_deleted());
            self.stuck.extend(stalled);
        }
        !self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::marks;

    #[test]
    fn marks_are_a_half_and_a_quarter_of_the_limit() {
        assert_eq!(marks(100_000), (50_000, 25_000));
        assert_eq!(marks(1), (1, 0));
        assert_eq!(marks(0), (1, 0));
    }
}
