//! What one consumer saw: latencies, and which (producer, sequence) pairs arrived.
//!
//! Each consumer keeps its own tally with no sharing on the hot path; the tallies are summed up
//! when the run ends ([`summarize`]). Consumers form *groups*, each of which should receive
//! every message it hears exactly once: consumers in one group compete for the messages (the
//! consumers of one AMQP queue), and every group gets its own copy. [`Sharing`] says how:
//! - [`Sharing::Competing`] (AMQP queues, each fed by its own producers): one group of all
//!   consumers; a message counts as a duplicate when its pair was already seen, by this consumer
//!   or by another, and as lost when its producer sent it and nobody saw it.
//! - [`Sharing::FanOut`] (MQTT: every subscriber of a topic gets every message): each subscriber
//!   is a group of its own and hears the producers on its topic.
//! - [`Sharing::Broadcast`] (an AMQP fanout exchange bound to every queue): each queue's
//!   consumers are a group, and every group hears every producer.
//!
//! Losses and duplicates are counted per group and added up; deliveries (`received`) count every
//! copy, so a fanned-out message counts once per group that received it.

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

/// An empty latency histogram in microseconds (up to an hour, 3 significant digits): every
/// latency the bench records (end-to-end, confirms) uses these bounds, so any two add up.
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_MAX_US, 3).expect("constant histogram bounds are valid")
}

impl Tally {
    /// An empty tally for a run with `producers` producers.
    pub fn new(producers: usize) -> Tally {
        Tally {
            latency_us: latency_histogram(),
            seen: vec![SeqSet::default(); producers],
            received: 0,
            duplicates: 0,
            malformed: 0,
            last_ns: 0,
        }
    }

    /// Records one delivery's body, received at `now_ns` since the run started.
    pub fn record(&mut self, body: &[u8], now_ns: u64) {
        if let Some(sent_ns) = self.record_seen(body, now_ns) {
            self.record_latency(now_ns, sent_ns, 1);
        }
    }

    /// Records one delivery's body as [`Tally::record`] does but its latency: returns its send
    /// time (`None` for a malformed body) for the caller to record the latency of a run of
    /// deliveries with one send time and one arrival time at once ([`Tally::record_latency`]):
    /// the stream bench stamps a frame's messages with one time and receives them in one chunk.
    pub fn record_seen(&mut self, body: &[u8], now_ns: u64) -> Option<u64> {
        self.received += 1;
        self.last_ns = now_ns;
        let Some(stamp) = Stamp::read_from(body) else {
            self.malformed += 1;
            return None;
        };
        let Some(set) = self.seen.get_mut(usize::from(stamp.producer)) else {
            self.malformed += 1;
            return None;
        };
        if !set.insert(stamp.seq) {
            self.duplicates += 1;
        }
        Some(stamp.sent_ns)
    }

    /// Records the end-to-end latency of `count` deliveries sent at `sent_ns` and received at
    /// `now_ns`: `count` samples, as `count` calls of [`Tally::record`] would.
    pub fn record_latency(&mut self, now_ns: u64, sent_ns: u64, count: u64) {
        let latency_us = (now_ns.saturating_sub(sent_ns) / 1_000).min(self.latency_us.high());
        // Within the bounds (clamped above; 0 is always recordable): cannot fail.
        let _ = self.latency_us.record_n(latency_us, count);
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
    #[cfg(test)]
    pub fn lost(&self, sent: &[u64]) -> u64 {
        self.lost_of(sent, |_| true)
    }

    /// Like [`Tally::lost`], counting only the producers for which `hears` is true.
    fn lost_of(&self, sent: &[u64], hears: impl Fn(usize) -> bool) -> u64 {
        sent.iter()
            .enumerate()
            .filter(|(p, _)| hears(*p))
            .map(|(p, &n)| n.saturating_sub(self.seen.get(p).map_or(0, SeqSet::len)))
            .sum()
    }
}

/// How consumers share what producers send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Each message goes to one consumer (consumers of an AMQP queue).
    Competing,
    /// Each message goes to every consumer of its topic; producer i and consumer j are on topic
    /// i % topics and j % topics.
    FanOut {
        /// Number of topics.
        topics: usize,
    },
    /// Each message goes to every queue, and to one consumer of each; consumer j reads queue
    /// j % queues (an AMQP fanout exchange bound to every queue).
    Broadcast {
        /// Number of queues.
        queues: usize,
    },
}

impl Sharing {
    /// The group consumer `j` belongs to: its members share one copy of each message.
    fn group(self, j: usize) -> usize {
        match self {
            Sharing::Competing => 0,
            Sharing::FanOut { .. } => j,
            Sharing::Broadcast { queues } => j % queues.max(1),
        }
    }

    /// Whether consumer `j` (and its group) should receive producer `i`'s messages.
    fn hears(self, i: usize, j: usize) -> bool {
        match self {
            Sharing::Competing | Sharing::Broadcast { .. } => true,
            Sharing::FanOut { topics } => i % topics.max(1) == j % topics.max(1),
        }
    }

    /// How many deliveries each of producer `i`'s messages should make, with `consumers`: one
    /// per group that hears it.
    pub fn copies(self, i: usize, consumers: usize) -> u64 {
        match self {
            Sharing::Competing => u64::from(consumers > 0),
            Sharing::FanOut { .. } => (0..consumers).filter(|&j| self.hears(i, j)).count() as u64,
            Sharing::Broadcast { queues } => consumers.min(queues.max(1)) as u64,
        }
    }

    /// Whether a message may be delivered more than once (to different groups).
    pub fn fans_out(self) -> bool {
        !matches!(self, Sharing::Competing)
    }
}

/// Every consumer's tally, summed up.
#[derive(Debug, Clone)]
pub struct Delivered {
    /// Deliveries, duplicates and every fanned-out copy included.
    pub received: u64,
    /// Deliveries there should have been: one per message and group that hears it (one per
    /// message with competing consumers; one per message and subscriber of its topic with MQTT;
    /// one per message and queue with a fanout exchange).
    pub expected: u64,
    /// Deliveries of a message its group already had.
    pub duplicates: u64,
    /// Deliveries without a bench stamp.
    pub malformed: u64,
    /// Deliveries that should have happened and did not, summed over the groups.
    pub lost: u64,
    /// End-to-end latencies, microseconds (one sample per delivery).
    pub latency_us: Histogram<u64>,
    /// When the last delivery arrived, in nanoseconds since the run started.
    pub last_ns: u64,
}

/// Sums up the consumers' tallies (index = consumer id), given how many each producer sent.
pub fn summarize(tallies: Vec<Tally>, sent: &[u64], sharing: Sharing) -> Delivered {
    let consumers = tallies.len();
    let expected = sent
        .iter()
        .enumerate()
        .map(|(i, n)| n * sharing.copies(i, consumers))
        .sum();
    // Within a group, merging counts a pair two members both saw as a duplicate.
    let mut groups: Vec<(usize, Tally)> = Vec::new();
    for (j, t) in tallies.into_iter().enumerate() {
        let g = sharing.group(j);
        match groups
            .iter_mut()
            .find(|(first, _)| sharing.group(*first) == g)
        {
            Some((_, group)) => group.merge(&t),
            None => groups.push((j, t)),
        }
    }
    // Across groups, only counts and latencies add up: the same pair in two groups is no
    // duplicate.
    let mut d = Delivered {
        received: 0,
        expected,
        duplicates: 0,
        malformed: 0,
        lost: 0,
        latency_us: Tally::new(0).latency_us,
        last_ns: 0,
    };
    for (j, group) in &groups {
        d.lost += group.lost_of(sent, |i| sharing.hears(i, *j));
        d.duplicates += group.duplicates;
        // Same bounds on both sides, so adding cannot fail.
        let _ = d.latency_us.add(&group.latency_us);
        d.received += group.received;
        d.malformed += group.malformed;
        d.last_ns = d.last_ns.max(group.last_ns);
    }
    d
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
    fn fan_out_counts_loss_and_duplicates_per_subscriber() {
        // Two producers on one topic, two subscribers: each should see all 3 + 2 messages.
        let (mut a, mut b) = (Tally::new(2), Tally::new(2));
        for seq in 0..3 {
            a.record(&body(0, seq, 0), 0);
            b.record(&body(0, seq, 0), 0);
        }
        a.record(&body(1, 0, 0), 0);
        a.record(&body(1, 1, 0), 0);
        b.record(&body(1, 1, 0), 0);
        b.record(&body(1, 1, 0), 0);
        let d = summarize(vec![a, b], &[3, 2], Sharing::FanOut { topics: 1 });
        assert_eq!((d.received, d.expected), (10, 10));
        assert_eq!((d.lost, d.duplicates), (1, 1));
        assert_eq!(d.latency_us.len(), 10);
    }

    #[test]
    fn fan_out_over_topics_expects_only_each_subscribers_producers() {
        // Topic 0: producer 0, subscribers 0 and 2; topic 1: producer 1, subscribers 1 and 3.
        assert_eq!(Sharing::FanOut { topics: 2 }.copies(1, 4), 2);
        let mut subs: Vec<Tally> = (0..4).map(|_| Tally::new(2)).collect();
        subs[0].record(&body(0, 0, 0), 0);
        subs[1].record(&body(1, 0, 0), 0);
        subs[3].record(&body(1, 0, 0), 0);
        let d = summarize(subs, &[1, 1], Sharing::FanOut { topics: 2 });
        // Subscriber 2 missed producer 0's message; nobody should have had the other's.
        assert_eq!((d.expected, d.lost, d.duplicates), (4, 1, 0));
    }

    #[test]
    fn competing_consumers_share_and_count_overlap_as_duplicates() {
        let (mut a, mut b) = (Tally::new(1), Tally::new(1));
        a.record(&body(0, 0, 0), 0);
        b.record(&body(0, 0, 0), 0);
        b.record(&body(0, 1, 0), 0);
        let d = summarize(vec![a, b], &[3], Sharing::Competing);
        assert_eq!((d.received, d.expected, d.lost, d.duplicates), (3, 3, 1, 1));
    }

    #[test]
    fn broadcast_expects_every_message_once_per_queue() {
        // One producer, a fanout to 4 queues, one consumer each: 4 deliveries per message, and
        // the copies on other queues are no duplicates.
        let sharing = Sharing::Broadcast { queues: 4 };
        assert_eq!(sharing.copies(0, 4), 4);
        let mut subs: Vec<Tally> = (0..4).map(|_| Tally::new(1)).collect();
        for t in &mut subs {
            for seq in 0..100 {
                t.record(&body(0, seq, 0), 1_000);
            }
        }
        let d = summarize(subs, &[100], sharing);
        assert_eq!((d.received, d.expected), (400, 400));
        assert_eq!((d.lost, d.duplicates, d.malformed), (0, 0, 0));
        assert_eq!(d.latency_us.len(), 400);
    }

    #[test]
    fn broadcast_counts_loss_and_duplicates_per_consumer() {
        let sharing = Sharing::Broadcast { queues: 4 };
        let mut subs: Vec<Tally> = (0..4).map(|_| Tally::new(1)).collect();
        for seq in 0..10 {
            subs[0].record(&body(0, seq, 0), 0);
            subs[1].record(&body(0, seq, 0), 0);
            if seq != 3 && seq != 7 {
                subs[2].record(&body(0, seq, 0), 0); // misses 2
            }
            subs[3].record(&body(0, seq, 0), 0);
        }
        subs[1].record(&body(0, 5, 0), 0); // one repeat at consumer 1
        subs[3].record(&body(0, 0, 0), 0); // and one at consumer 3
        let d = summarize(subs, &[10], sharing);
        assert_eq!((d.received, d.expected), (10 + 11 + 8 + 11, 40));
        assert_eq!((d.lost, d.duplicates), (2, 2));
    }

    #[test]
    fn broadcast_consumers_of_one_queue_compete() {
        // Two queues, four consumers: consumers 0 and 2 share queue 0, 1 and 3 share queue 1.
        let sharing = Sharing::Broadcast { queues: 2 };
        assert_eq!(sharing.copies(0, 4), 2);
        assert_eq!(
            sharing.copies(0, 1),
            1,
            "a queue without a consumer gets no delivery"
        );
        let mut subs: Vec<Tally> = (0..4).map(|_| Tally::new(2)).collect();
        // Queue 0: every message of both producers, split between its consumers, one overlap.
        for seq in 0..4 {
            subs[seq as usize % 2 * 2].record(&body(0, seq, 0), 0);
            subs[seq as usize % 2 * 2].record(&body(1, seq, 0), 0);
        }
        subs[2].record(&body(1, 0, 0), 0);
        // Queue 1: consumer 1 has everything of producer 0, consumer 3 misses producer 1's last.
        for seq in 0..4 {
            subs[1].record(&body(0, seq, 0), 0);
        }
        for seq in 0..3 {
            subs[3].record(&body(1, seq, 0), 0);
        }
        let d = summarize(subs, &[4, 4], sharing);
        assert_eq!(d.expected, 16);
        assert_eq!(d.received, 9 + 7);
        assert_eq!((d.lost, d.duplicates), (1, 1));
    }

    #[test]
    fn every_sharing_expects_nothing_without_consumers() {
        for sharing in [
            Sharing::Competing,
            Sharing::FanOut { topics: 2 },
            Sharing::Broadcast { queues: 4 },
        ] {
            assert_eq!(sharing.copies(0, 0), 0, "{sharing:?}");
        }
        assert!(!Sharing::Competing.fans_out());
        assert!(Sharing::Broadcast { queues: 1 }.fans_out());
    }

    #[test]
    fn fan_out_to_a_hundred_subscribers_counts_each_one() {
        let sharing = Sharing::FanOut { topics: 1 };
        let mut subs: Vec<Tally> = (0..100).map(|_| Tally::new(1)).collect();
        for (j, t) in subs.iter_mut().enumerate() {
            for seq in 0..50 {
                // Subscriber 99 misses the last message.
                if !(j == 99 && seq == 49) {
                    t.record(&body(0, seq, 0), 0);
                }
            }
        }
        let d = summarize(subs, &[50], sharing);
        assert_eq!((d.expected, d.received), (5000, 4999));
        assert_eq!((d.lost, d.duplicates), (1, 0));
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
