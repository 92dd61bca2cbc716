//! Publisher flow control, one mechanism for both protocols: a publisher that fills a queue
//! faster than its consumers drain it stops being read (TCP then slows the client, as RabbitMQ's
//! credit flow and Mosquitto do), per connection, with no effect on other publishers. Nothing is
//! dropped, nobody is disconnected: the connection keeps writing (deliveries, confirms, acks)
//! while it does not read.
//!
//! **The rule.** A queue *holds back* its publishers when someone other than the publisher
//! consumes from it and either
//! - it has a length limit (`x-max-length`; MQTT session queues have one) and its ready messages
//!   pass half of it: the publisher waits until they are under a quarter, instead of having
//!   drop-head shed the consumer's messages; or
//! - its ready messages in memory weigh more than [`FlowMarks::high`] (their bodies plus
//!   [`MESSAGE_OVERHEAD`] each; a sixteenth of the memory high watermark): the publisher waits
//!   until they weigh under half of that. Messages paged out to a queue's log weigh nothing
//!   (a durable queue may buffer on disk as much as the disk alarm allows).
//!
//! Queues nobody else consumes from are never waited for: they would never drain (an offline
//! MQTT session, a queue filled for later, a queue the publisher consumes itself). What bounds
//! those is the memory alarm (`memory.rs`), which blocks every publisher. The same goes for a
//! consumer that stops taking messages: a publisher waits for a queue as long as it keeps
//! draining (it then goes at its consumers' pace); a queue that has not drained at all for
//! [`MAX_STALL`] is *stuck*, and its publishers stop waiting for it (it grows, drop-head sheds
//! its oldest messages, the memory alarm watches) until it drains under its low marks on its
//! own. So one stuck consumer costs its publishers one pause, not their throughput.
//!
//! **Cost.** The queues a connection's publishes reach are gathered (de-duplicated) during a
//! read batch and looked at once at its end, one queue lock each; a paused connection looks at
//! the queues it waits for every [`POLL`] (the broker core has no async wake-ups).

use crate::memory::MESSAGE_OVERHEAD;
use pigeon_broker::{FlowView, Queue};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a paused publisher looks at the queues it waits for.
pub(crate) const POLL: Duration = Duration::from_millis(2);

/// How long a queue may go without draining before its publishers stop waiting for it.
const MAX_STALL: Duration = Duration::from_secs(1);

/// Distinct queues gathered per read batch at most (beyond, the batch's first ones are looked
/// at and the rest at a later batch; the memory alarm bounds them meanwhile).
const GATHER_MAX: usize = 1024;

/// Past this many queues gathered, duplicates are found through a set of addresses.
const SCAN: usize = 16;

/// The in-memory weight past which a queue holds back its publishers.
#[derive(Debug)]
pub(crate) struct FlowMarks {
    /// Weight (resident bodies + [`MESSAGE_OVERHEAD`] per resident message) at which a queue
    /// holds back its publishers; follows the memory high watermark.
    high: AtomicU64,
}

impl FlowMarks {
    /// A sixteenth of the memory high watermark (at least 1 MiB): a few slow queues are held
    /// back long before they raise the alarm that blocks every publisher.
    pub fn new(memory_limit: u64) -> FlowMarks {
        let marks = FlowMarks {
            high: AtomicU64::new(0),
        };
        marks.follow(memory_limit);
        marks
    }

    /// Follows a new memory high watermark.
    pub fn follow(&self, memory_limit: u64) {
        self.high
            .store((memory_limit / 16).max(1 << 20), Ordering::Relaxed);
    }

    fn high(&self) -> u64 {
        self.high.load(Ordering::Relaxed)
    }

    fn low(&self) -> u64 {
        self.high() / 2
    }
}

/// What a queue's ready messages in memory are reckoned to cost.
fn weight(v: &FlowView) -> u64 {
    v.resident_bytes as u64 + v.resident as u64 * MESSAGE_OVERHEAD
}

/// The length limit's high and low marks: half and a quarter of `max` messages.
fn length_marks(max: usize) -> (usize, usize) {
    ((max / 2).max(1), max / 4)
}

/// Whether a queue holds back its publishers now.
fn holds_back(v: &FlowView, marks: &FlowMarks) -> bool {
    v.other_consumers
        && (v.max_length.is_some_and(|m| v.ready >= length_marks(m).0) || weight(v) >= marks.high())
}

/// Whether a queue lets its publishers go again.
fn lets_go(v: &FlowView, marks: &FlowMarks) -> bool {
    !v.other_consumers
        || (v.max_length.is_none_or(|m| v.ready <= length_marks(m).1) && weight(v) <= marks.low())
}

/// The distinct queues a connection's publishes reached during a read batch.
#[derive(Default)]
pub(crate) struct Gathered {
    queues: Vec<Arc<Queue>>,
    seen: HashSet<usize>,
}

impl Gathered {
    /// Adds the queues one publish reached. The usual case, the same queues as the batch's
    /// first publish, costs a comparison of pointers.
    pub fn add(&mut self, reached: &[Arc<Queue>]) {
        if reached.len() <= self.queues.len()
            && reached
                .iter()
                .zip(&self.queues)
                .all(|(a, b)| Arc::ptr_eq(a, b))
        {
            return;
        }
        for q in reached {
            if self.queues.len() >= GATHER_MAX {
                return;
            }
            let addr = Arc::as_ptr(q) as usize;
            let known = if self.queues.len() < SCAN {
                self.queues.iter().any(|g| Arc::ptr_eq(g, q))
            } else {
                if self.seen.is_empty() {
                    self.seen
                        .extend(self.queues.iter().map(|g| Arc::as_ptr(g) as usize));
                }
                !self.seen.insert(addr)
            };
            if !known {
                self.queues.push(Arc::clone(q));
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }
}

/// A queue a publisher waits for.
struct Watched {
    queue: Arc<Queue>,
    /// The smallest backlog seen so far, and when it was seen.
    backlog: usize,
    progress: Instant,
}

/// The flow-control state of one publishing connection.
#[derive(Default)]
pub(crate) struct PublishFlow {
    /// Queues holding the publisher back: the connection does not read while any is left.
    waiting: Vec<Watched>,
    /// Queues that stalled: not waited for until they let go on their own.
    stuck: Vec<Arc<Queue>>,
}

impl PublishFlow {
    /// At the end of a read batch: starts waiting for the gathered queues that hold back
    /// their publishers (and forgets them). `own` lists the publisher's own consumer owners
    /// (its AMQP channels, its MQTT session).
    pub fn look(&mut self, gathered: &mut Gathered, marks: &FlowMarks, own: &[u64]) {
        gathered.seen.clear();
        for q in gathered.queues.drain(..) {
            let view = q.flow_view(own);
            if !holds_back(&view, marks) {
                if lets_go(&view, marks) {
                    self.stuck.retain(|s| !Arc::ptr_eq(s, &q));
                }
                continue;
            }
            let known = self.stuck.iter().any(|s| Arc::ptr_eq(s, &q))
                || self.waiting.iter().any(|w| Arc::ptr_eq(&w.queue, &q));
            if known {
                continue;
            }
            self.waiting.push(Watched {
                queue: q,
                backlog: view.ready,
                progress: Instant::now(),
            });
        }
    }

    /// Whether the connection must leave its socket unread now: true while a queue it waits
    /// for holds it back and drains (or has stalled for less than [`MAX_STALL`]).
    pub fn must_wait(&mut self, marks: &FlowMarks, own: &[u64]) -> bool {
        if self.waiting.is_empty() {
            return false;
        }
        let now = Instant::now();
        let mut stalled = Vec::new();
        self.waiting.retain_mut(|w| {
            let view = w.queue.flow_view(own);
            if lets_go(&view, marks) || w.queue.is_deleted() {
                return false;
            }
            if view.ready < w.backlog {
                w.backlog = view.ready;
                w.progress = now;
            } else if now.duration_since(w.progress) >= MAX_STALL {
                tracing::debug!(
                    queue = w.queue.name(),
                    backlog = view.ready,
                    "queue does not drain: its publishers stop waiting for it"
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
    use super::*;

    fn view(ready: usize, resident_bytes: usize, max_length: Option<usize>) -> FlowView {
        FlowView {
            ready,
            resident: ready,
            resident_bytes,
            max_length,
            other_consumers: true,
        }
    }

    #[test]
    fn length_marks_are_a_half_and_a_quarter_of_the_limit() {
        assert_eq!(length_marks(100_000), (50_000, 25_000));
        assert_eq!(length_marks(1), (1, 0));
        assert_eq!(length_marks(0), (1, 0));
    }

    #[test]
    fn a_length_limited_queue_holds_back_past_half_and_lets_go_under_a_quarter() {
        let marks = FlowMarks::new(1 << 30);
        assert!(!holds_back(&view(49, 0, Some(100)), &marks));
        assert!(holds_back(&view(50, 0, Some(100)), &marks));
        assert!(!lets_go(&view(26, 0, Some(100)), &marks));
        assert!(lets_go(&view(25, 0, Some(100)), &marks));
    }

    #[test]
    fn a_queue_heavy_in_memory_holds_back_and_lets_go_at_half() {
        let marks = FlowMarks::new(160 << 20);
        assert_eq!(marks.high(), 10 << 20);
        let n = (10 << 20) / (MESSAGE_OVERHEAD as usize + 16);
        assert!(!holds_back(&view(n - 1, (n - 1) * 16, None), &marks));
        assert!(holds_back(&view(n + 1, (n + 1) * 16, None), &marks));
        assert!(!lets_go(&view(n, n * 16, None), &marks));
        assert!(lets_go(&view(n / 2 - 1, (n / 2 - 1) * 16, None), &marks));
    }

    #[test]
    fn a_queue_nobody_else_consumes_never_holds_back() {
        let marks = FlowMarks::new(1 << 20);
        let v = FlowView {
            other_consumers: false,
            ..view(1_000_000, 1 << 30, Some(10))
        };
        assert!(!holds_back(&v, &marks));
        assert!(lets_go(&v, &marks));
    }

    #[test]
    fn paged_out_messages_weigh_nothing() {
        let marks = FlowMarks::new(16 << 20);
        let v = FlowView {
            resident: 10,
            ..view(10_000_000, 160, None)
        };
        assert!(!holds_back(&v, &marks));
    }
}
