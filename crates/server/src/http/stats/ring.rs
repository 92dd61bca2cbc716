//! A fixed ring of samples of one object's counters, and the rates and sample lists RabbitMQ's
//! management API computes from them (`rabbit_mgmt_stats:format_range`, `exometer_slide`).
//!
//! A ring is allocated once at its full size when its object is first sampled and never
//! grows: the sampler pushes one sample per interval and the oldest falls out.

use serde_json::{json, Map, Value};
use std::collections::VecDeque;

/// One sample: when (Unix ms, aligned to the interval) and the values of every field.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample<const F: usize> {
    pub ts: u64,
    pub v: [u64; F],
}

/// The last samples of one object.
#[derive(Debug, Clone)]
pub(crate) struct Ring<const F: usize> {
    samples: VecDeque<Sample<F>>,
    cap: usize,
}

/// A `?msg_rates_age=60&msg_rates_incr=5` range: how far back, and the spacing of the samples
/// listed, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Range {
    pub age_ms: u64,
    pub incr_ms: u64,
}

/// What rendering needs besides the rings: the time now and the sampling interval (a rate is
/// shown only while its newest sample is live, as RabbitMQ's `rate_from_last_increment`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub now_ms: u64,
    pub interval_ms: u64,
}

impl<const F: usize> Ring<F> {
    /// An empty ring of `cap` samples (allocated now, once).
    pub fn new(cap: usize) -> Ring<F> {
        Ring {
            samples: VecDeque::with_capacity(cap),
            cap: cap.max(2),
        }
    }

    /// Adds a sample, dropping the oldest when full.
    pub fn push(&mut self, ts: u64, v: [u64; F]) {
        if self.samples.len() == self.cap {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample { ts, v });
    }

    /// Per second, of the sum of `fields`, between the two newest samples; 0 when there are
    /// not two, or the newest is older than two intervals (the object stopped being sampled).
    /// `gauge`: a length, which may fall (a negative rate); a counter that went down was
    /// reset (its object recreated under the same identity) and counts 0.
    fn rate(&self, fields: &[usize], gauge: bool, clock: Clock) -> f64 {
        let n = self.samples.len();
        if n < 2 {
            return 0.0;
        }
        let (a, b) = (&self.samples[n - 2], &self.samples[n - 1]);
        if clock.now_ms.saturating_sub(b.ts) > 2 * clock.interval_ms || b.ts <= a.ts {
            return 0.0;
        }
        let d = sum(&b.v, fields) as f64 - sum(&a.v, fields) as f64;
        if d < 0.0 && !gauge {
            return 0.0;
        }
        d * 1000.0 / (b.ts - a.ts) as f64
    }

    /// The samples in `range`, newest first, at least `incr` apart: (sum of `fields`, ts).
    fn samples(&self, fields: &[usize], range: Range, clock: Clock) -> Vec<(u64, u64)> {
        let first = clock.now_ms.saturating_sub(range.age_ms);
        let mut out = Vec::new();
        let mut next: Option<u64> = None;
        for s in self.samples.iter().rev() {
            if s.ts < first {
                break;
            }
            if next.is_some_and(|n| s.ts > n) {
                continue;
            }
            out.push((sum(&s.v, fields), s.ts));
            next = Some(s.ts.saturating_sub(range.incr_ms));
        }
        out
    }
}

fn sum<const F: usize>(v: &[u64; F], fields: &[usize]) -> u64 {
    fields.iter().map(|&i| v.get(i).copied().unwrap_or(0)).sum()
}

/// The `<field>_details` object of the sum of `fields` over `rings` (one ring, or one per
/// vhost a user sees): `{"rate": r}`, and with a range also `samples` (newest first),
/// `avg_rate` and `avg` as `rabbit_mgmt_stats:format_rate/6` gives them (the averages only
/// with two samples or more).
pub(crate) fn details<const F: usize>(
    rings: &[&Ring<F>],
    fields: &[usize],
    gauge: bool,
    range: Option<Range>,
    clock: Clock,
) -> Value {
    let rate: f64 = rings.iter().map(|r| r.rate(fields, gauge, clock)).sum();
    let Some(range) = range else {
        return json!({ "rate": rate });
    };
    // Every ring is sampled at the same ticks: sums line up by position from the newest.
    let mut samples: Vec<(u64, u64)> = Vec::new();
    for (i, ring) in rings.iter().enumerate() {
        let mine = ring.samples(fields, range, clock);
        if i == 0 {
            samples = mine;
        } else {
            samples.truncate(mine.len());
            for (acc, s) in samples.iter_mut().zip(mine) {
                acc.0 += s.0;
            }
        }
    }
    let mut out = Map::new();
    out.insert("rate".into(), json!(rate));
    out.insert(
        "samples".into(),
        Value::Array(
            samples
                .iter()
                .map(|(v, ts)| json!({"sample": v, "timestamp": ts}))
                .collect(),
        ),
    );
    if let (Some(newest), Some(oldest)) = (samples.first(), samples.last()) {
        if samples.len() > 1 && newest.1 > oldest.1 {
            let avg_rate =
                (newest.0 as f64 - oldest.0 as f64) * 1000.0 / (newest.1 - oldest.1) as f64;
            let avg = samples.iter().map(|s| s.0 as f64).sum::<f64>() / samples.len() as f64;
            out.insert("avg_rate".into(), json!(avg_rate));
            out.insert("avg".into(), json!(avg));
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLOCK: Clock = Clock {
        now_ms: 20_000,
        interval_ms: 5_000,
    };

    #[test]
    fn rate_is_the_last_increment_per_second() {
        let mut r = Ring::<2>::new(4);
        r.push(10_000, [0, 7]);
        r.push(15_000, [50, 2]);
        assert_eq!(
            details(&[&r], &[0], false, None, CLOCK),
            json!({"rate": 10.0})
        );
        assert_eq!(
            details(&[&r], &[1], true, None, CLOCK),
            json!({"rate": -1.0})
        );
        // A counter that went down was reset: no negative message rate.
        assert_eq!(
            details(&[&r], &[1], false, None, CLOCK),
            json!({"rate": 0.0})
        );
        assert_eq!(
            details(&[&r], &[0, 1], true, None, CLOCK),
            json!({"rate": 9.0})
        );
    }

    #[test]
    fn a_stale_or_single_sample_has_no_rate() {
        let mut r = Ring::<1>::new(4);
        r.push(1_000, [10]);
        assert_eq!(
            details(&[&r], &[0], false, None, CLOCK),
            json!({"rate": 0.0})
        );
        r.push(2_000, [20]);
        assert_eq!(
            details(&[&r], &[0], false, None, CLOCK),
            json!({"rate": 0.0})
        );
    }

    #[test]
    fn the_ring_keeps_its_size() {
        let mut r = Ring::<1>::new(3);
        for i in 0..10 {
            r.push(i * 5_000, [i]);
        }
        assert_eq!(r.samples.len(), 3);
        assert_eq!(r.samples.capacity(), 3);
        assert_eq!(r.samples[0].v, [7]);
    }

    #[test]
    fn a_range_lists_samples_newest_first_with_averages() {
        let mut r = Ring::<1>::new(10);
        for i in 0..5u64 {
            r.push(i * 5_000, [i * 10]);
        }
        let range = Range {
            age_ms: 10_000,
            incr_ms: 5_000,
        };
        let d = details(&[&r], &[0], false, Some(range), CLOCK);
        assert_eq!(
            d["samples"],
            json!([
                {"sample": 40, "timestamp": 20_000},
                {"sample": 30, "timestamp": 15_000},
                {"sample": 20, "timestamp": 10_000},
            ])
        );
        assert_eq!(d["avg_rate"], json!(2.0));
        assert_eq!(d["avg"], json!(30.0));
        let wide = Range {
            age_ms: 20_000,
            incr_ms: 10_000,
        };
        let d = details(&[&r, &r], &[0], false, Some(wide), CLOCK);
        assert_eq!(
            d["samples"],
            json!([
                {"sample": 80, "timestamp": 20_000},
                {"sample": 40, "timestamp": 10_000},
                {"sample": 0, "timestamp": 0},
            ])
        );
        assert_eq!(d["rate"], json!(4.0));
    }
}
