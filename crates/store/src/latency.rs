//! A latency histogram cheap enough for the flusher's every `fdatasync`: fixed buckets, one
//! relaxed atomic add for the bucket and one for the sum, no lock, no allocation. Read as a
//! Prometheus histogram (`pigeon_store_fsync_duration_seconds`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in microseconds (100 µs to 2.5 s; the rest above).
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000,
];

/// Observations per bucket (the last one is above every bound) and their sum.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; 15],
    sum_ns: AtomicU64,
}

impl Histogram {
    /// Records one duration.
    pub(crate) fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = LATENCY_BUCKETS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// The counts so far.
    pub(crate) fn snapshot(&self) -> LatencyHistogram {
        let mut out = LatencyHistogram::default();
        for (o, b) in out.buckets.iter_mut().zip(&self.buckets) {
            *o = b.load(Ordering::Relaxed);
        }
        out.sum_ns = self.sum_ns.load(Ordering::Relaxed);
        out
    }
}

/// A read of a latency histogram: counts per bucket of [`LATENCY_BUCKETS_US`] (not
/// cumulative), the last one for everything above, and the sum of all observations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Observations per bucket.
    pub buckets: [u64; 15],
    /// Sum of the observations, nanoseconds.
    pub sum_ns: u64,
}

impl LatencyHistogram {
    /// How many observations.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_fall_in_their_buckets() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_micros(101));
        h.observe(Duration::from_secs(10));
        let s = h.snapshot();
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[1], 1);
        assert_eq!(s.buckets[14], 1);
        assert_eq!(s.count(), 3);
        assert_eq!(s.sum_ns, 10_000_201_000);
    }
}
