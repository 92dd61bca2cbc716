//! The connections' samples, in a vector sorted by connection id rather than a hash map: one
//! 40-byte slot per connection where the map's 48-byte slots at its load factor took 92-97
//! bytes (docs/performance.md, "Idle connections", the fifth pass). Most connections are idle
//! and most samples see the same connections as the one before, so the vector is updated in
//! place and rebuilt (merged) only when connections came or went.
//!
//! A connection's samples are kept as the values that changed rather than as a full ring while
//! they change rarely ([`ConnectionRing`]): an idle MQTT connection's counters move once per
//! keep-alive (its PINGREQ and PINGRESP), and a ring of 13 samples allocated at that first
//! change was ~370 bytes of every idle connection from its first PINGREQ on (the sixth pass).

use super::ring::Ring;
use super::CONNECTION;

/// Earlier values a connection keeps before its samples go into a full ring.
const STEPS: usize = 3;

/// A connection's samples (bytes received and sent), rendered as a ring when listed.
///
/// While the values have not changed since the first sample (a connection that has done
/// nothing since its handshake) nothing is allocated: `flat` stands for every sample since
/// `since`. While they change rarely (at most [`STEPS`] earlier values within the ring's
/// span: an idle connection's keep-alive), the earlier values and when each was first sampled
/// are kept in one small box. A connection whose values change more often gets the full ring,
/// filled with the samples it would have had. The rendering is the same either way (unit
/// tests below).
pub(crate) struct ConnectionRing {
    /// The connection's id.
    pub(super) id: u64,
    /// When the newest values were first sampled (Unix ms, aligned to the interval).
    since: u64,
    /// The newest values: those of every sample since `since`.
    flat: [u64; CONNECTION],
    /// What came before them; `None`: nothing (the first sample had these values).
    older: Option<Box<Older>>,
}

/// A step: when some values were first sampled, and the values.
type Step = (u64, [u64; CONNECTION]);

/// The samples before a connection's newest values.
enum Older {
    /// The earlier values still in the ring's span, oldest first (`len` of them).
    Steps { len: u8, steps: [Step; STEPS] },
    /// Every sample (the newest included).
    Ring(Ring<CONNECTION>),
}

impl ConnectionRing {
    /// A connection first sampled at `ts` with values `v`.
    fn new(id: u64, ts: u64, v: [u64; CONNECTION]) -> ConnectionRing {
        ConnectionRing {
            id,
            since: ts,
            flat: v,
            older: None,
        }
    }

    /// The earlier values kept (none with a full ring).
    fn steps(&self) -> &[Step] {
        match self.older.as_deref() {
            Some(Older::Steps { len, steps }) => &steps[..usize::from(*len)],
            _ => &[],
        }
    }

    /// Adds the sample `v` taken at `ts`.
    fn push(&mut self, ts: u64, v: [u64; CONNECTION], interval_ms: u64, cap: usize) {
        if let Some(Older::Ring(ring)) = self.older.as_deref_mut() {
            ring.push(ts, v);
            return;
        }
        if v == self.flat {
            return;
        }
        // The newest values become a step; the steps no sample in the ring's span can reach
        // any more go (a step is needed while the next one starts after the span's start).
        let start = ts.saturating_sub(span(interval_ms, cap));
        let mut steps: Vec<Step> = self.steps().to_vec();
        steps.push((self.since, self.flat));
        let kept: Vec<Step> = steps
            .iter()
            .enumerate()
            .filter(|(i, _)| steps.get(i + 1).map_or(ts, |next| next.0) > start)
            .map(|(_, s)| *s)
            .collect();
        self.older = if kept.len() > STEPS {
            // Changing often: the full ring, with the samples it would have had.
            let mut ring = samples_before(&kept, ts, v, ts, interval_ms, cap);
            ring.push(ts, v);
            Some(Box::new(Older::Ring(ring)))
        } else if kept.is_empty() {
            None
        } else {
            let mut steps = [(0, [0; CONNECTION]); STEPS];
            steps[..kept.len()].copy_from_slice(&kept);
            Some(Box::new(Older::Steps {
                len: kept.len() as u8,
                steps,
            }))
        };
        self.since = ts;
        self.flat = v;
    }

    /// Its samples up to the last sample `t.ts`: the ring, or one made now.
    pub fn ring(&self, t: &super::Tables) -> std::borrow::Cow<'_, Ring<CONNECTION>> {
        if let Some(Older::Ring(ring)) = self.older.as_deref() {
            return std::borrow::Cow::Borrowed(ring);
        }
        let mut r = samples_before(
            self.steps(),
            self.since,
            self.flat,
            t.ts,
            t.interval_ms,
            t.object_cap,
        );
        r.push(t.ts, self.flat);
        std::borrow::Cow::Owned(r)
    }
}

/// How far back a ring of `cap` samples reaches before its newest.
fn span(interval_ms: u64, cap: usize) -> u64 {
    interval_ms * (cap as u64).saturating_sub(1)
}

/// A ring of `cap` with the samples every interval before `ts` (excluded) from the first
/// step (or `since`), or as far back as the ring reaches: `steps` then `flat` from `since`.
fn samples_before(
    steps: &[Step],
    since: u64,
    flat: [u64; CONNECTION],
    ts: u64,
    interval_ms: u64,
    cap: usize,
) -> Ring<CONNECTION> {
    let mut ring = Ring::new(cap);
    let first = steps.first().map_or(since, |s| s.0);
    let mut at = first.max(ts.saturating_sub(span(interval_ms, cap)));
    while at < ts {
        let v = if at >= since {
            flat
        } else {
            steps.iter().rev().find(|s| s.0 <= at).map_or(flat, |s| s.1)
        };
        ring.push(at, v);
        at += interval_ms.max(1);
    }
    ring
}

/// Every sampled connection's [`ConnectionRing`], sorted by id.
#[derive(Default)]
pub(crate) struct Connections(Vec<ConnectionRing>);

impl Connections {
    /// The samples of connection `id`, if the sampler has seen it.
    pub fn get(&self, id: u64) -> Option<&ConnectionRing> {
        self.0
            .binary_search_by_key(&id, |e| e.id)
            .ok()
            .and_then(|i| self.0.get(i))
    }

    /// Pushes the sample `now` of every live connection (id, values) taken at `ts`: a
    /// connection seen for the first time starts flat at its values; one no longer live is
    /// dropped.
    pub(super) fn sample(
        &mut self,
        mut now: Vec<(u64, [u64; CONNECTION])>,
        ts: u64,
        interval_ms: u64,
        cap: usize,
    ) {
        now.sort_unstable_by_key(|c| c.0);
        let same = now.len() == self.0.len() && now.iter().zip(&self.0).all(|(n, e)| n.0 == e.id);
        if !same {
            let mut old = std::mem::take(&mut self.0).into_iter().peekable();
            let mut next = Vec::with_capacity(now.len());
            for &(id, v) in &now {
                while old.next_if(|e| e.id < id).is_some() {}
                next.push(
                    old.next_if(|e| e.id == id)
                        .unwrap_or_else(|| ConnectionRing::new(id, ts, v)),
                );
            }
            self.0 = next;
        }
        for (e, &(_, v)) in self.0.iter_mut().zip(&now) {
            e.push(ts, v, interval_ms, cap);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ring::{details, Clock, Range};
    use super::super::{values, Sampler};
    use super::*;
    use serde_json::Value;

    fn listed(ring: &Ring<CONNECTION>, now_ms: u64) -> Value {
        let clock = Clock {
            now_ms,
            interval_ms: 5_000,
        };
        let all = Range {
            age_ms: 600_000,
            incr_ms: 5_000,
        };
        details(
            &[ring],
            &[values::RECV_OCT, values::SEND_OCT],
            false,
            Some(all),
            clock,
        )
    }

    /// Feeds `values(i)` as sample i (every 5 s) to a connection's samples and to a full ring
    /// allocated at the first sample, and checks after each that they render the same;
    /// returns after which samples the connection had a full ring.
    fn renders_as_its_full_ring(n: u64, values: impl Fn(u64) -> [u64; 2]) -> Vec<bool> {
        let sampler = Sampler::new(5_000);
        let mut t = sampler.tables.write();
        let cap = t.object_cap;
        let mut full = Ring::<CONNECTION>::new(cap);
        let mut e = ConnectionRing::new(1, 100_000, values(0));
        let mut ringed = Vec::new();
        for i in 0..n {
            let ts = 100_000 + i * 5_000;
            let v = values(i);
            full.push(ts, v);
            e.push(ts, v, 5_000, cap);
            t.ts = ts;
            assert_eq!(listed(&e.ring(&t), ts), listed(&full, ts), "sample {i}");
            ringed.push(matches!(e.older.as_deref(), Some(Older::Ring(_))));
        }
        ringed
    }

    /// A connection's samples render the same whether its ring was allocated at the first
    /// sample or not: flat samples while idle, then changes.
    #[test]
    fn an_idle_connection_renders_as_its_full_ring() {
        let ringed =
            renders_as_its_full_ring(20, |i| if i < 16 { [40, 4] } else { [40 + i, 4 + 2 * i] });
        assert!(
            !ringed[15] && ringed[19],
            "a full ring once it changes often"
        );
    }

    /// An idle MQTT connection's keep-alive (a change every 6th sample, i.e. 30 s) never needs
    /// the full ring, across the ring's wrap; one changing more often than `STEPS` times in
    /// the ring's span gets it.
    #[test]
    fn a_keep_alive_renders_as_its_full_ring_without_one() {
        let ringed = renders_as_its_full_ring(60, |i| [40 + 2 * (i / 6), 4 + 2 * (i / 6)]);
        assert!(ringed.iter().all(|r| !r), "steps only");
        let ringed = renders_as_its_full_ring(40, |i| [40 + 2 * (i / 3), 4]);
        assert!(
            ringed[39],
            "every 3rd sample: more than STEPS changes in the span"
        );
    }

    #[test]
    fn connections_come_and_go() {
        let mut c = Connections::default();
        c.sample(vec![(3, [1, 1]), (1, [2, 2])], 5_000, 5_000, 12);
        assert_eq!(c.get(1).map(|e| e.flat), Some([2, 2]));
        assert_eq!(c.get(3).map(|e| e.since), Some(5_000));
        c.sample(vec![(3, [1, 1]), (1, [2, 2])], 10_000, 5_000, 12);
        assert!(c.get(1).is_some_and(|e| e.older.is_none()));
        c.sample(vec![(4, [0, 0]), (1, [5, 2])], 15_000, 5_000, 12);
        assert!(c.get(3).is_none());
        assert_eq!(c.get(4).map(|e| e.since), Some(15_000));
        assert!(c
            .get(1)
            .is_some_and(|e| e.steps() == [(5_000, [2, 2])] && e.since == 15_000));
        assert!(c.get(2).is_none());
    }

    /// The box of earlier values stays small (jemalloc's 96-byte class).
    #[test]
    fn the_earlier_values_fit_their_size_class() {
        let size = std::mem::size_of::<Older>();
        println!("connection samples: {size} bytes boxed");
        assert!(size <= 96, "{size}");
    }
}
