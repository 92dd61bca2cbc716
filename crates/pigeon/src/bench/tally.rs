//! What one consumer saw: latencies, and which (producer, sequence) pairs arrived.
//!
//! Each consumer keeps its own tally with no sharing on the hot path; the tallies are merged when
//! the run ends. A message counts as a duplicate when its pair was already seen, by this consumer
//! or by another on the same queue, and as lost when its producer sent it and nobody saw it.

use super::stamp::Stamp;
use hdrhistogram::Histogram;

/// Latencies above this (one hour, in microseconds) are recorded as this.
const LATENCY_MAX_US: u64 = 3_600_000_000;

/// The received sequence numbers of one producer, one bit each.
#[derive(Debug, Default, Clone)]
struct SeqSet {
    words: Vec<u64>,
}

impl SeqSet {
    /// Marks `seq` seen; false when it already was.
    fn insert(&mut self, seq: u64) -> bool {
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if word >= self.words.len() {
            // Grow geometrically: sequence numbers arrive roughly in order.
            let len = (word + 1).max(self.words.len() * 2);
            self.words.resize(len, 0);
        }
        let mask = 1u64 << bit;
        let fresh = self.words[word] & mask == 0;
        self.words[word] |= mask;
        fresh
    }

    /// Adds `other`'s numbers; returns how many were in both.
    fn union(&mut self, other: &SeqSet) -> u64 {
        if other.words.len() > self.words.len() {
            self.words.resize(other.words.len(), 0);
        }
        let mut both = 0;
        for (mine, theirs) in self.words.iter_mut().zip(&other.words) {
            both += u64::from((*mine & theirs).count_ones());
            *mine |= theirs;
        }
        both
    }

    fn len(&self) -> u64 {
        self.words.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

/// One consumer's observations (or, after [`Tally::merge`], several consumers').
#[derive(Debug, Clone)]
pub struct Tally {
    /// End-to-end latency of every valid message, in microseconds.
    pub latency_us: Histogram<u64>,
    seen: Vec<SeqSet>,
    /// Deliveries, valid or not, duplicates included.
    pub received: u64,
    /// Deliveries whose (producer, sequence) pair had already arrived.
    pub duplicates: u64,
    /// Deliveries without a readable stamp or naming an unknown producer.
    pub malformed: u64,
    /// When the last delivery arrived, in nanoseconds since the run started.
    pub last_ns: u64,
}

impl Tally {
    /// An empty tally for a run with `producers` producers.
    pub fn new(producers: usize) -> Tally {
        Tally {
            latency_us: Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)
                .expect("constant histogram bounds are valid"),
            seen: vec![SeqSet::default(); producers],
            received: 0,
            duplicates: 0,
            malformed: 0,
            last_ns: 0,
        }
    }

    /// Records one delivery's body, received at `now_ns` since the run started.
    pub fn record(&mut self, body: &[u8], now_ns: u64) {
        self.received += 1;
        self.last_ns = now_ns;
        let Some(stamp) = Stamp::read_from(body) else {
            self.malformed += 1;
            return;
        };
        let Some(set) = self.seen.get_mut(usize::from(stamp.producer)) else {
            self.malformed += 1;
            return;
        };
        if !set.insert(stamp.seq) {
            self.duplicates += 1;
        }
        let latency_us = now_ns.saturating_sub(stamp.sent_ns) / 1_000;
        self.latency_us.saturating_record(latency_us);
    }

    /// Folds another consumer's tally into this one, counting pairs both saw as duplicates.
    pub fn merge(&mut self, other: &Tally) {
        // Same bounds on both sides, so adding cannot fail; a failure would only lose latencies.
        let _ = self.latency_us.add(&other.latency_us);
        if other.seen.len() > self.seen.len() {
            self.seen.resize(other.seen.len(), SeqSet::default());
        }
        for (mine, theirs) in self.seen.iter_mut().zip(&other.seen) {
            self.duplicates += mine.union(theirs);
        }
        self.received += other.received;
        self.duplicates += other.duplicates;
        self.malformed += other.malformed;
        self.last_ns = self.last_ns.max(other.last_ns);
    }

    /// Messages sent but never received, given how many each producer sent (index = producer id).
    pub fn lost(&self, sent: &[u64]) -> u64 {
        sent.iter()
            .enumerate()
            .map(|(p, &n)| n.saturating_sub(self.seen.get(p).map_or(0, SeqSet::len)))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(producer: u16, seq: u64, sent_ns: u64) -> [u8; Stamp::LEN] {
        let mut b = [0; Stamp::LEN];
        Stamp {
            sent_ns,
            producer,
            seq,
        }
        .write_to(&mut b);
        b
    }

    #[test]
    fn complete_stream_has_no_loss_and_no_duplicates() {
        let mut t = Tally::new(2);
        for seq in 0..1000 {
            t.record(&body(0, seq, 0), 5_000);
            t.record(&body(1, seq, 0), 5_000);
        }
        assert_eq!((t.received, t.duplicates, t.malformed), (2000, 0, 0));
        assert_eq!(t.lost(&[1000, 1000]), 0);
        assert_eq!(t.latency_us.max(), 5);
    }

    #[test]
    fn gaps_are_lost_and_repeats_are_duplicates() {
        let mut t = Tally::new(1);
        for seq in [0, 1, 1, 3, 200] {
            t.record(&body(0, seq, 0), 0);
        }
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.lost(&[201]), 201 - 4);
    }

    #[test]
    fn the_same_message_at_two_consumers_is_a_duplicate() {
        let (mut a, mut b) = (Tally::new(1), Tally::new(1));
        a.record(&body(0, 0, 0), 0);
        a.record(&body(0, 1, 0), 0);
        b.record(&body(0, 1, 0), 0);
        b.record(&body(0, 2, 0), 0);
        a.merge(&b);
        assert_eq!((a.received, a.duplicates), (4, 1));
        assert_eq!(a.lost(&[3]), 0);
    }

    #[test]
    fn foreign_bodies_are_malformed() {
        let mut t = Tally::new(1);
        t.record(b"short", 0);
        t.record(&body(7, 0, 0), 0);
        assert_eq!((t.received, t.malformed), (2, 2));
        assert_eq!(t.latency_us.len(), 0);
    }

    #[test]
    fn latency_is_in_microseconds_from_the_stamp() {
        let mut t = Tally::new(1);
        t.record(&body(0, 0, 1_000_000), 3_500_000);
        // 3 significant digits: 2500 and 2501 share a bucket.
        assert!(t.latency_us.equivalent(t.latency_us.max(), 2_500));
        assert!(!t.latency_us.equivalent(t.latency_us.max(), 2_490));
    }
}
