//! A queued message's expiry time in 8 bytes.
//!
//! An `Option<Instant>` takes 16 bytes, and every message in a ready list or out for delivery
//! carries one: [`Deadline`] keeps nanoseconds since a process-wide anchor in a `NonZeroU64`
//! (584 years of range; `Option<Deadline>` is 8 bytes), which brings `QueuedMessage` from 40
//! to 32 bytes. Nothing is rounded: an `Instant` on the platforms we run on counts nanoseconds,
//! so a deadline converts back to the exact instant it was made from, and `now > deadline`
//! gives the same answer either way (a TTL of 0 has not run out for a consumer that takes the
//! message in the same instant).

use std::num::NonZeroU64;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Instants are counted from here: the first use, a day earlier where the clock allows (so
/// that a deadline already past when it is made, as for a record read back from a log, keeps
/// its place before `now`).
fn anchor() -> Instant {
    static ANCHOR: OnceLock<Instant> = OnceLock::new();
    *ANCHOR.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(86_400)).unwrap_or(now)
    })
}

/// An instant, packed (see the module's documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(NonZeroU64);

impl Deadline {
    /// The deadline at `t` (an instant before the anchor, or past 584 years after it, is
    /// clamped to it; neither happens for a TTL measured from now).
    pub fn at(t: Instant) -> Deadline {
        let ns = t.saturating_duration_since(anchor()).as_nanos();
        let ns = u64::try_from(ns).unwrap_or(u64::MAX - 1);
        Deadline(NonZeroU64::MIN.saturating_add(ns))
    }

    /// The instant it stands for.
    pub fn instant(self) -> Instant {
        anchor() + Duration::from_nanos(self.0.get() - 1)
    }

    /// Its 8 bytes, to pack into a message (see [`Deadline::from_bits`]).
    pub(crate) fn to_bits(self) -> u64 {
        self.0.get()
    }

    /// The deadline `to_bits` gave (0, which it never gives, reads as the anchor).
    pub(crate) fn from_bits(bits: u64) -> Deadline {
        Deadline(NonZeroU64::new(bits).unwrap_or(NonZeroU64::MIN))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_the_instant_it_was_made_from() {
        let now = Instant::now();
        for t in [
            now,
            now + Duration::from_nanos(1),
            now + Duration::from_secs(3600),
        ] {
            assert_eq!(Deadline::at(t).instant(), t);
        }
        assert!(Deadline::at(now) < Deadline::at(now + Duration::from_nanos(1)));
        assert_eq!(std::mem::size_of::<Option<Deadline>>(), 8);
    }
}
