//! The 16 bytes at the front of every bench message: when it was sent, by whom, in what order.
//!
//! ```text
//! bytes 0..8   send time, nanoseconds since the run started (u64, little endian)
//! bytes 8..16  producer id in the top 16 bits, sequence number in the low 48 (u64, little endian)
//! ```
//! Producers and consumers live in one process and share one clock (`Instant`), so the difference
//! of two stamps is an end-to-end latency with no clock skew. 16 bytes keep PerfTest-sized (16 B)
//! messages possible.

/// What a producer writes at the front of each message body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Nanoseconds from the start of the run to the publish call.
    pub sent_ns: u64,
    /// Which producer sent it (0-based).
    pub producer: u16,
    /// The producer's message number, 0, 1, 2, ... (48 bits).
    pub seq: u64,
}

const SEQ_BITS: u32 = 48;
const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

impl Stamp {
    /// Bytes a stamp occupies; bodies are never shorter.
    pub const LEN: usize = 16;

    /// Writes the stamp over the first [`Stamp::LEN`] bytes of `body` (which is at least that long:
    /// the body size is validated at the command line).
    pub fn write_to(&self, body: &mut [u8]) {
        let tagged = (u64::from(self.producer) << SEQ_BITS) | (self.seq & SEQ_MASK);
        if let Some(head) = body.get_mut(..Self::LEN) {
            head[..8].copy_from_slice(&self.sent_ns.to_le_bytes());
            head[8..].copy_from_slice(&tagged.to_le_bytes());
        }
    }

    /// Reads the stamp at the front of `body`; `None` when the body is too short to hold one.
    pub fn read_from(body: &[u8]) -> Option<Stamp> {
        let sent_ns = u64::from_le_bytes(body.get(..8)?.try_into().ok()?);
        let tagged = u64::from_le_bytes(body.get(8..Self::LEN)?.try_into().ok()?);
        Some(Stamp {
            sent_ns,
            producer: (tagged >> SEQ_BITS) as u16,
            seq: tagged & SEQ_MASK,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_survives_the_round_trip_and_leaves_the_rest_alone() {
        let stamp = Stamp {
            sent_ns: 123_456_789_012,
            producer: 65_535,
            seq: SEQ_MASK,
        };
        let mut body = vec![0xAB; 40];
        stamp.write_to(&mut body);
        assert_eq!(Stamp::read_from(&body), Some(stamp));
        assert!(body[Stamp::LEN..].iter().all(|&b| b == 0xAB));
    }

    #[test]
    fn producer_and_sequence_do_not_overlap() {
        let mut body = [0; Stamp::LEN];
        let stamp = Stamp {
            sent_ns: 0,
            producer: 1,
            seq: 0,
        };
        stamp.write_to(&mut body);
        let back = Stamp::read_from(&body);
        assert_eq!(back.map(|s| (s.producer, s.seq)), Some((1, 0)));
    }

    #[test]
    fn short_body_has_no_stamp() {
        assert_eq!(Stamp::read_from(&[0; Stamp::LEN - 1]), None);
    }
}
