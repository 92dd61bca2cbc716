//! The connections' samples, in a vector sorted by connection id rather than a hash map: one
//! 48-byte slot per connection (40 before the seventh pass, which keeps a keep-alive's steps
//! in it) where the map's 48-byte slots at its load factor took 92-97
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
/// are kept in the slot when they are small ([`Tiny`]: a keep-alive's), else in one small box. A connection whose values change more often gets the full ring,
/// filled with the samples it would have had. The rendering is the same either way (unit
/// tests below).
pub(crate) struct ConnectionRing {
    /// The connection's id.
    pub(super) id: u64,
    /// When the newest values were first sampled (Unix ms, aligned to the interval).
    since: u64,
    /// The newest values: those of every sample since `since`.
    flat: [u64; CONNECTION],
    /// What came before them; `None`: nothing (the first sample had these values), or
    /// `tiny` has it.
    older: Option<Box<Older>>,
    /// What came before them when it is small enough to keep here ([`Tiny`]); `older` is
    /// `None` then.
    tiny: Tiny,
}

/// Earlier values kept in the slot itself: at most [`TINY`] steps, each beginning a whole
/// number of intervals (under 256) before the newest values, its values at most 255 below
/// them. An idle connection's keep-alive (a PINGREQ and a PINGRESP, 2 bytes each way, every
/// 30 to 60 s: one or two steps in the ring's minute) is kept here: no box at all, where the
/// 48-byte box (80 before the seventh pass) was most of what an idle MQTT connection grew by
/// at its first PINGREQ (docs/performance.md, "Idle connections", seventh pass). 7 bytes of
/// the slot (40 -> 48 bytes).
#[derive(Clone, Copy, Default)]
struct Tiny {
    len: u8,
    /// Intervals before the newest values.
    before: [u8; TINY],
    less: [[u8; CONNECTION]; TINY],
}

/// Steps a [`Tiny`] holds.
const TINY: usize = 2;

impl Tiny {
    /// `kept` (oldest first) relative to the newest values `flat`, first sampled at `since`,
    /// if every step fits.
    fn new(kept: &[Step], since: u64, flat: &[u64; CONNECTION], interval_ms: u64) -> Option<Tiny> {
        if kept.len() > TINY || interval_ms == 0 {
            return None;
        }
        let mut t = Tiny {
            len: kept.len() as u8,
            ..Tiny::default()
        };
        for (i, step) in kept.iter().enumerate() {
            let back = since.checked_sub(step.0)?;
            if back % interval_ms != 0 {
                return None;
            }
            t.before[i] = u8::try_from(back / interval_ms).ok()?;
            for (l, (f, v)) in t.less[i].iter_mut().zip(flat.iter().zip(&step.1)) {
                *l = u8::try_from(f.checked_sub(*v)?).ok()?;
            }
        }
        Some(t)
    }

    /// The steps back, relative to `since` and `flat`.
    fn steps(&self, since: u64, flat: &[u64; CONNECTION], interval_ms: u64) -> Vec<Step> {
        (0..usize::from(self.len))
            .map(|i| {
                let mut v = *flat;
                for (v, l) in v.iter_mut().zip(&self.less[i]) {
                    *v -= u64::from(*l);
                }
                (since - u64::from(self.before[i]) * interval_ms, v)
            })
            .collect()
    }
}

/// A step: when some values were first sampled, and the values.
type Step = (u64, [u64; CONNECTION]);

/// An earlier step as kept: how long before the newest values it began, and how much lower
/// than them its values were (the counters only grow), in 32 bits: 12 bytes where a [`Step`]
/// is 24, so that the box of an idle connection's steps is in jemalloc's 48-byte class
/// rather than the 80-byte one (every idle MQTT connection has one from its first PINGREQ
/// on: docs/performance.md, "Idle connections", seventh pass). A step that does not fit
/// (a gap of 49 days, 4 GiB between two samples) gives the connection its full ring.
#[derive(Clone, Copy, Default)]
struct Packed {
    before_ms: u32,
    less: [u32; CONNECTION],
}

impl Packed {
    /// `step` relative to the newest values `flat`, first sampled at `since`.
    fn new(step: &Step, since: u64, flat: &[u64; CONNECTION]) -> Option<Packed> {
        let before_ms = u32::try_from(since.checked_sub(step.0)?).ok()?;
        let mut less = [0; CONNECTION];
        for (l, (f, v)) in less.iter_mut().zip(flat.iter().zip(&step.1)) {
            *l = u32::try_from(f.checked_sub(*v)?).ok()?;
        }
        Some(Packed { before_ms, less })
    }

    /// The step back, relative to `since` and `flat`.
    fn step(&self, since: u64, flat: &[u64; CONNECTION]) -> Step {
        let mut v = *flat;
        for (v, l) in v.iter_mut().zip(&self.less) {
            *v -= u64::from(*l);
        }
        (since - u64::from(self.before_ms), v)
    }
}

/// The samples before a connection's newest values.
enum Older {
    /// The earlier values still in the ring's span, oldest first (`len` of them).
    Steps { len: u8, steps: [Packed; STEPS] },
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
            tiny: Tiny::default(),
        }
    }

    /// The earlier values kept (none with a full ring).
    fn steps(&self, interval_ms: u64) -> Vec<Step> {
        if self.tiny.len > 0 {
            return self.tiny.steps(self.since, &self.flat, interval_ms);
        }
        match self.older.as_deref() {
            Some(Older::Steps { len, steps }) => steps[..usize::from(*len)]
                .iter()
                .map(|p| p.step(self.since, &self.flat))
                .collect(),
            _ => Vec::new(),
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
        let mut steps: Vec<Step> = self.steps(interval_ms);
        steps.push((self.since, self.flat));
        let kept: Vec<Step> = steps
            .iter()
            .enumerate()
            .filter(|(i, _)| steps.get(i + 1).map_or(ts, |next| next.0) > start)
            .map(|(_, s)| *s)
            .collect();
        let mut packed = [Packed::default(); STEPS];
        let fits = kept.len() <= STEPS
            && kept
                .iter()
                .zip(packed.iter_mut())
                .all(|(k, p)| Packed::new(k, ts, &v).map(|k| *p = k).is_some());
        self.tiny = Tiny::default();
        self.older = if let Some(tiny) = Tiny::new(&kept, ts, &v, interval_ms) {
            self.tiny = tiny;
            None
        } else if !fits {
            // Changing often: the full ring, with the samples it would have had.
            let mut ring = samples_before(&kept, ts, v, ts, interval_ms, cap);
            ring.push(ts, v);
            Some(Box::new(Older::Ring(ring)))
        } else if kept.is_empty() {
            None
        } else {
            Some(Box::new(Older::Steps {
                len: kept.len() as u8,
                steps: packed,
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
            &self.steps(t.interval_ms),
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
            .is_some_and(|e| e.steps(5_000) == vec![(5_000, [2, 2])] && e.since == 15_000));
        assert!(c.get(2).is_none());
    }

    /// The box of earlier values stays small (jemalloc's 48-byte class; 80 before the seventh
    /// pass).
    #[test]
    fn the_earlier_values_fit_their_size_class() {
        let size = std::mem::size_of::<Older>();
        println!("connection samples: {size} bytes boxed");
        assert!(size <= 48, "{size}");
    }

    /// An idle connection's keep-alive (every 6th sample) keeps its steps in its slot.
    #[test]
    fn a_keep_alive_needs_no_box() {
        let mut e = ConnectionRing::new(1, 100_000, [40, 4]);
        for i in 1..60u64 {
            e.push(
                100_000 + i * 5_000,
                [40 + 2 * (i / 6), 4 + 2 * (i / 6)],
                5_000,
                13,
            );
            assert!(e.older.is_none(), "sample {i}");
        }
        assert!(e.tiny.len > 0);
        assert_eq!(std::mem::size_of::<ConnectionRing>(), 48);
    }

    /// Steps that do not fit in 32 bits give the connection its full ring, rendered the same.
    #[test]
    fn a_step_too_far_below_the_newest_values_gets_the_full_ring() {
        let big = 1u64 << 33;
        let ringed = renders_as_its_full_ring(8, |i| if i < 4 { [40, 4] } else { [40 + big, 4] });
        assert!(!ringed[3] && ringed[4], "{ringed:?}");
    }
}
