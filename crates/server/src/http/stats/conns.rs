//! The connections' samples, in a vector sorted by connection id rather than a hash map: one
//! 40-byte slot per connection where the map's 48-byte slots at its load factor took 92-97
//! bytes (docs/performance.md, "Idle connections", the fifth pass). Most connections are idle
//! and most samples see the same connections as the one before, so the vector is updated in
//! place and rebuilt (merged) only when connections came or went.

use super::{ConnectionRing, CONNECTION};

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
                next.push(old.next_if(|e| e.id == id).unwrap_or(ConnectionRing {
                    id,
                    since: ts,
                    flat: v,
                    ring: None,
                }));
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
    use super::*;

    #[test]
    fn connections_come_and_go() {
        let mut c = Connections::default();
        c.sample(vec![(3, [1, 1]), (1, [2, 2])], 5_000, 5_000, 12);
        assert_eq!(c.get(1).map(|e| e.flat), Some([2, 2]));
        assert_eq!(c.get(3).map(|e| e.since), Some(5_000));
        c.sample(vec![(3, [1, 1]), (1, [2, 2])], 10_000, 5_000, 12);
        assert!(c.get(1).is_some_and(|e| e.ring.is_none()));
        c.sample(vec![(4, [0, 0]), (1, [5, 2])], 15_000, 5_000, 12);
        assert!(c.get(3).is_none());
        assert_eq!(c.get(4).map(|e| e.since), Some(15_000));
        assert!(c
            .get(1)
            .is_some_and(|e| e.ring.is_some() && e.since == 5_000));
        assert!(c.get(2).is_none());
    }
}
