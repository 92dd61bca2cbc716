//! The inbound QoS 2 packet identifiers a session received and has not seen released yet
//! (exactly-once, [MQTT-4.3.3]), boxed while any are.
//!
//! Every session holds this set, and almost every one holds it empty (QoS 0 and 1 clients,
//! idle ones): 8 bytes and no allocation while empty, where a `BTreeSet` inline is 24 bytes of
//! every `Session` (which must stay in jemalloc's 160-byte class: docs/performance.md, "Idle
//! connections", sixth pass).

use std::collections::BTreeSet;

/// A set of packet identifiers, `None` while empty.
#[derive(Default, Debug)]
// Boxed on purpose: 8 bytes instead of 24 in every session (as `Inflights`).
#[allow(clippy::box_collection)]
pub struct PacketIds(Option<Box<BTreeSet<u16>>>);

impl PacketIds {
    /// How many are kept.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |s| s.len())
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether `id` is kept.
    pub fn contains(&self, id: &u16) -> bool {
        self.0.as_ref().is_some_and(|s| s.contains(id))
    }

    /// Keeps `id`; true if it was not kept yet.
    pub fn insert(&mut self, id: u16) -> bool {
        self.0.get_or_insert_with(Default::default).insert(id)
    }

    /// Forgets `id` (the box goes with the last one); true if it was kept.
    pub fn remove(&mut self, id: &u16) -> bool {
        let Some(s) = self.0.as_mut() else {
            return false;
        };
        let removed = s.remove(id);
        if s.is_empty() {
            self.0 = None;
        }
        removed
    }

    /// Forgets them all.
    pub fn clear(&mut self) {
        self.0 = None;
    }

    /// In increasing order.
    pub fn iter(&self) -> impl Iterator<Item = &u16> {
        self.0.iter().flat_map(|s| s.iter())
    }
}

impl Extend<u16> for PacketIds {
    fn extend<I: IntoIterator<Item = u16>>(&mut self, ids: I) {
        for id in ids {
            self.insert(id);
        }
    }
}

impl<'a> IntoIterator for &'a PacketIds {
    type Item = &'a u16;
    type IntoIter = Box<dyn Iterator<Item = &'a u16> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_sets_hold_nothing() {
        let mut ids = PacketIds::default();
        assert!(ids.is_empty() && !ids.contains(&1));
        assert!(ids.insert(3) && !ids.insert(3) && ids.insert(1));
        assert_eq!(ids.iter().copied().collect::<Vec<_>>(), [1, 3]);
        assert!(ids.remove(&1) && !ids.remove(&1) && ids.remove(&3));
        assert!(ids.0.is_none(), "the box goes with the last id");
        ids.extend([5, 4]);
        assert_eq!(ids.len(), 2);
        ids.clear();
        assert!(ids.is_empty());
    }
}
