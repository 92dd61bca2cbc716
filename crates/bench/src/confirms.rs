//! Publisher confirms by tag, shared by the bench's own AMQP and stream clients: each message
//! gets the next tag, and each confirm settles one tag or (AMQP `multiple`) every tag up to it,
//! recording the message's confirm latency.

use crate::client::Confirms;
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::time::Instant;

/// Publisher confirms by delivery tag: tags are numbered from 1 in publish order, and each ack
/// or nack settles one tag or, with `multiple`, every tag up to it.
#[derive(Debug)]
pub(crate) struct ConfirmTracker {
    /// The oldest unsettled tag (everything below is settled).
    pub(crate) base: u64,
    /// For tags `base`, `base + 1`, ...: when the unsettled ones were published; `None` once
    /// settled.
    pub(crate) pending: VecDeque<Option<Instant>>,
    /// How many of `pending` are unsettled.
    pub(crate) unsettled: usize,
    /// Confirms counted since the workload last asked.
    found: Confirms,
    /// Confirm latencies (publish call to the ack or nack settling it), microseconds.
    pub(crate) latency_us: Histogram<u64>,
}

impl Default for ConfirmTracker {
    fn default() -> Self {
        ConfirmTracker {
            base: 1,
            pending: VecDeque::new(),
            unsettled: 0,
            found: Confirms::default(),
            latency_us: crate::tally::latency_histogram(),
        }
    }
}

impl ConfirmTracker {
    /// Records one more publish, made at `at`.
    pub(crate) fn published(&mut self, at: Instant) {
        self.pending.push_back(Some(at));
        self.unsettled += 1;
    }

    /// Settles `tag` (and with `multiple`, every tag below it; tag 0 with `multiple` is every
    /// tag published so far), as acked or nacked, the answer having arrived at `now`.
    pub(crate) fn settle(&mut self, tag: u64, multiple: bool, acked: bool, now: Instant) {
        let next = self.base + self.pending.len() as u64;
        let (from, to) = match (multiple, tag) {
            (true, 0) => (self.base, next),
            (true, t) => (self.base, t.saturating_add(1).min(next)),
            (false, t) => (t.max(self.base), t.saturating_add(1).min(next)),
        };
        for t in from..to {
            let Some(slot) = self.pending.get_mut((t - self.base) as usize) else {
                break;
            };
            if let Some(sent) = slot.take() {
                self.unsettled -= 1;
                let us = now.saturating_duration_since(sent).as_micros();
                self.latency_us
                    .saturating_record(u64::try_from(us).unwrap_or(u64::MAX));
                if acked {
                    self.found.acked += 1;
                } else {
                    self.found.nacked += 1;
                }
            }
        }
        while self.pending.front() == Some(&None) {
            self.pending.pop_front();
            self.base += 1;
        }
    }

    pub(crate) fn take(&mut self) -> Confirms {
        std::mem::take(&mut self.found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirms(t: &mut ConfirmTracker) -> (u64, u64, usize) {
        let c = t.take();
        (c.acked, c.nacked, t.unsettled)
    }

    #[test]
    fn single_and_multiple_confirms_settle_each_tag_once() {
        let now = Instant::now();
        let mut t = ConfirmTracker::default();
        for _ in 0..10 {
            t.published(now);
        }
        t.settle(3, false, true, now);
        t.settle(2, false, false, now);
        assert_eq!(confirms(&mut t), (1, 1, 8));
        t.settle(5, true, true, now); // 1, 4, 5: 2 and 3 were settled already
        assert_eq!(confirms(&mut t), (3, 0, 5));
        assert_eq!(t.base, 6);
        t.settle(5, false, true, now); // again: ignored
        t.settle(99, false, true, now); // never published: ignored
        assert_eq!(confirms(&mut t), (0, 0, 5));
        t.settle(0, true, false, now); // everything so far
        assert_eq!(confirms(&mut t), (0, 5, 0));
        assert!(t.pending.is_empty());
        t.published(now);
        t.settle(11, true, true, now);
        assert_eq!(confirms(&mut t), (1, 0, 0));
    }

    #[test]
    fn each_settled_tag_records_one_confirm_latency() {
        use std::time::Duration;
        let start = Instant::now();
        let mut t = ConfirmTracker::default();
        for i in 0..10 {
            t.published(start + Duration::from_micros(i));
        }
        let later = start + Duration::from_millis(2);
        t.settle(4, false, true, later);
        assert_eq!(t.latency_us.len(), 1);
        t.settle(4, false, true, later); // already settled: no second sample
        t.settle(6, true, false, later); // 1, 2, 3, 5, 6: nacks count too
        assert_eq!(t.latency_us.len(), 6);
        // An answer before the publish (clock trouble) records 0, not a huge value.
        t.settle(7, false, true, start);
        assert_eq!(t.latency_us.len(), 7);
        assert_eq!(t.latency_us.min(), 0);
        t.settle(0, true, true, later); // the rest: 8, 9, 10
        assert_eq!(t.latency_us.len(), 10);
        assert_eq!(t.unsettled, 0);
        assert!(t.latency_us.max() <= 2_000 + 2, "{}", t.latency_us.max());
    }
}
