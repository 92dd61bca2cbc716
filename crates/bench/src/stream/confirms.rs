//! Publisher confirms of the stream bench, by publishing id, with one send time per frame.
//!
//! The stream protocol confirms publishing ids, in lists (`PublishConfirm`), and a publisher
//! numbers its messages itself; the bench gives them consecutive ids, so what is unconfirmed
//! is a window of ids from the oldest unconfirmed one. Each id stands for one message, or
//! with `--sub-entry` for the messages of its sub-batch (its weight). Every id is settled at
//! most once: a second confirm of an id, or one for an id never published, counts nothing.
//!
//! The send time is taken once per frame (one clock reading for up to `--batch` entries, the
//! moment the frame was filled, which is the moment its messages were handed to the client);
//! each confirmed id's latency is the time from its frame's send time to the handling of the
//! confirm, recorded once per run of ids of one frame with that run's message count as the
//! weight, so the percentiles are over messages as before, without a clock reading or a
//! histogram update per message.

use crate::client::Confirms;
use hdrhistogram::Histogram;
use std::collections::VecDeque;
use std::time::Instant;

/// A frame's first id and when its messages were handed over.
#[derive(Debug, Clone, Copy)]
struct FrameStamp {
    first_id: u64,
    sent: Instant,
}

/// Unconfirmed publishing ids and the send times of their frames.
#[derive(Debug)]
pub(super) struct IdConfirms {
    /// The oldest id still tracked (every id below is settled).
    base: u64,
    /// For ids `base`, `base + 1`, ...: the messages each stands for, 0 once settled.
    weights: VecDeque<u16>,
    /// Messages not yet settled.
    pub(super) unsettled: usize,
    /// The frames holding tracked ids, oldest first (first ids ascending).
    frames: VecDeque<FrameStamp>,
    /// Where the last lookup found its frame: confirms come mostly in order.
    cursor: usize,
    /// Settled since the workload last asked.
    found: Confirms,
    /// Confirm latencies, microseconds, one count per message.
    pub(super) latency_us: Histogram<u64>,
}

impl IdConfirms {
    /// Tracking from publishing id `first` on.
    pub(super) fn new(first: u64) -> Self {
        IdConfirms {
            base: first,
            weights: VecDeque::new(),
            unsettled: 0,
            frames: VecDeque::new(),
            cursor: 0,
            found: Confirms::default(),
            latency_us: crate::tally::latency_histogram(),
        }
    }

    /// The id the next published entry must have.
    pub(super) fn next_id(&self) -> u64 {
        self.base + self.weights.len() as u64
    }

    /// A frame starts with the next id; its messages were handed over at `sent`.
    pub(super) fn frame(&mut self, sent: Instant) {
        let first_id = self.next_id();
        if self.frames.back().is_some_and(|f| f.first_id == first_id) {
            // An empty frame before this one: replace it.
            self.frames.pop_back();
        }
        self.frames.push_back(FrameStamp { first_id, sent });
    }

    /// The next id is published, standing for `messages` messages (at least 1).
    pub(super) fn published(&mut self, messages: u16) -> u64 {
        let id = self.next_id();
        let messages = messages.max(1);
        self.weights.push_back(messages);
        self.unsettled += usize::from(messages);
        id
    }

    /// The next `n` ids are published, one message each.
    pub(super) fn published_many(&mut self, n: u64) {
        let n = usize::try_from(n).unwrap_or(usize::MAX);
        self.weights.extend(std::iter::repeat_n(1, n));
        self.unsettled += n;
    }

    /// The index in `frames` of the frame holding `id` (which is tracked, so one does).
    fn frame_of(&mut self, id: u64) -> usize {
        let holds = |i: usize, frames: &VecDeque<FrameStamp>| {
            frames.get(i).is_some_and(|f| f.first_id <= id)
                && frames.get(i + 1).is_none_or(|next| id < next.first_id)
        };
        if !holds(self.cursor, &self.frames) {
            self.cursor = self
                .frames
                .partition_point(|f| f.first_id <= id)
                .saturating_sub(1);
        }
        self.cursor
    }

    /// Settles `ids` as acked or nacked, the answer having been handled at `now`.
    pub(super) fn settle(&mut self, ids: impl IntoIterator<Item = u64>, acked: bool, now: Instant) {
        // The run of settled messages of one frame not yet recorded: (frame, messages).
        let mut run: Option<(usize, u64)> = None;
        for id in ids {
            let Some(slot) = id
                .checked_sub(self.base)
                .and_then(|i| self.weights.get_mut(usize::try_from(i).ok()?))
            else {
                continue;
            };
            let weight = std::mem::take(slot);
            if weight == 0 {
                continue;
            }
            self.unsettled -= usize::from(weight);
            if acked {
                self.found.acked += u64::from(weight);
            } else {
                self.found.nacked += u64::from(weight);
            }
            let frame = self.frame_of(id);
            run = match run {
                Some((f, n)) if f == frame => Some((f, n + u64::from(weight))),
                Some((f, n)) => {
                    self.record(f, n, now);
                    Some((frame, u64::from(weight)))
                }
                None => Some((frame, u64::from(weight))),
            };
        }
        if let Some((f, n)) = run {
            self.record(f, n, now);
        }
        while self.weights.front() == Some(&0) {
            self.weights.pop_front();
            self.base += 1;
        }
        // Frames whose every id is below the base are done.
        let mut dropped = 0;
        while self.frames.len() > 1 && self.frames[1].first_id <= self.base {
            self.frames.pop_front();
            dropped += 1;
        }
        self.cursor = self.cursor.saturating_sub(dropped);
    }

    fn record(&mut self, frame: usize, messages: u64, now: Instant) {
        let Some(f) = self.frames.get(frame) else {
            return;
        };
        let us = now.saturating_duration_since(f.sent).as_micros();
        let us = u64::try_from(us).unwrap_or(u64::MAX).max(1);
        // Same bounds as every bench histogram; a value over the top is clamped.
        let us = us.min(self.latency_us.high());
        let _ = self.latency_us.record_n(us, messages);
    }

    /// The confirms settled since the last call.
    pub(super) fn take(&mut self) -> Confirms {
        std::mem::take(&mut self.found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn each_id_settles_once_with_its_weight_and_frame_time() {
        let t0 = Instant::now();
        let mut c = IdConfirms::new(1);
        c.frame(t0);
        for _ in 0..3 {
            c.published(1);
        }
        c.frame(t0 + Duration::from_millis(1));
        c.published(100);
        c.published(7);
        assert_eq!((c.next_id(), c.unsettled), (6, 110));
        let now = t0 + Duration::from_millis(5);
        c.settle([2, 4, 2, 99, 0], true, now);
        assert_eq!(
            c.take(),
            Confirms {
                acked: 101,
                nacked: 0
            }
        );
        assert_eq!(c.unsettled, 9);
        // Frame 1's id 2 waited 5 ms, frame 2's id 4 (100 messages) 4 ms.
        assert_eq!(c.latency_us.len(), 101);
        assert_eq!(c.latency_us.count_between(4990, 5010), 1);
        assert_eq!(c.latency_us.count_between(3990, 4010), 100);
        c.settle([1, 3, 5], false, now);
        assert_eq!(
            c.take(),
            Confirms {
                acked: 0,
                nacked: 9
            }
        );
        assert_eq!(c.unsettled, 0);
        assert_eq!(c.next_id(), 6);
        assert!(c.weights.is_empty());
        assert_eq!(
            c.frames.len(),
            1,
            "the last frame stays until a newer one starts"
        );
        c.settle([5], true, now);
        assert_eq!(c.take(), Confirms::default());
    }

    #[test]
    fn out_of_order_confirms_find_their_frames() {
        let t0 = Instant::now();
        let mut c = IdConfirms::new(1);
        for f in 0..10u64 {
            c.frame(t0 + Duration::from_millis(f));
            for _ in 0..10 {
                c.published(1);
            }
        }
        let now = t0 + Duration::from_millis(20);
        let ids: Vec<u64> = (1..=100).rev().collect();
        c.settle(ids, true, now);
        assert_eq!(c.take().acked, 100);
        assert_eq!(c.latency_us.len(), 100);
        for f in 0..10u64 {
            let us = (20 - f) * 1000;
            assert_eq!(
                c.latency_us.count_between(us - 10, us + 10),
                10,
                "frame {f}"
            );
        }
        assert_eq!(c.frames.len(), 1);
    }
}
