//! The per-chunk bloom filter of filter values (RabbitMQ's stream filtering, `x-stream-filter`
//! values set by publishers and `filter.N` properties of a subscription).
//!
//! Same design as osiris' (`src/osiris_bloom.erl`), with its own hash functions:
//!
//! - A chunk whose entries carry no filter value has no filter (length 0).
//! - Otherwise the filter is `size` bytes (16 to 255, [`DEFAULT_BLOOM_SIZE`] 16 as osiris, set by
//!   `StreamConfig::bloom_size`), `8 * size` bits, bit `i` being bit `i % 8` of byte `i / 8`.
//! - Each distinct filter value sets two bits, `1 + h % (bits - 1)` for
//!   `h = crc32(value)` and `h = crc32` seeded with `0x9e37_79b9`: never bit 0.
//! - Bit 0 is set when some entry of the chunk has no filter value, so that a subscription that
//!   asked for unfiltered messages too (`match-unfiltered`) still gets the chunk.
//!
//! With 2 bits per value in 128 bits, a chunk with 10 distinct values matches an absent value with
//! probability about (20/128)^2, 2.4 %: a false positive costs only sending a chunk the client
//! filters out itself, as RabbitMQ clients must anyway.

/// The default filter size in bytes, as osiris' `DEFAULT_FILTER_SIZE`.
pub const DEFAULT_BLOOM_SIZE: u8 = 16;
/// The smallest filter size accepted.
pub const MIN_BLOOM_SIZE: u8 = 16;

const SEED2: u32 = 0x9e37_79b9;

fn positions(value: &[u8], bits: u32) -> (u32, u32) {
    let h1 = crc32fast::hash(value);
    let mut h = crc32fast::Hasher::new_with_initial(SEED2);
    h.update(value);
    let h2 = h.finalize();
    (1 + h1 % (bits - 1), 1 + h2 % (bits - 1))
}

fn set(filter: &mut [u8], bit: u32) {
    filter[(bit / 8) as usize] |= 1 << (bit % 8);
}

fn is_set(filter: &[u8], bit: u32) -> bool {
    filter[(bit / 8) as usize] & (1 << (bit % 8)) != 0
}

/// Builds the filter of a chunk into `out` (cleared first; left empty when `values` is empty).
/// `unfiltered` says whether some entry has no filter value.
pub(crate) fn build(out: &mut Vec<u8>, size: u8, values: &[&[u8]], unfiltered: bool) {
    out.clear();
    if values.is_empty() {
        return;
    }
    let size = size.max(MIN_BLOOM_SIZE);
    out.resize(usize::from(size), 0);
    let bits = u32::from(size) * 8;
    for v in values {
        let (a, b) = positions(v, bits);
        set(out, a);
        set(out, b);
    }
    if unfiltered {
        set(out, 0);
    }
}

/// A subscription's filter: which chunks it wants.
#[derive(Clone, Debug)]
pub struct BloomMatcher {
    values: Vec<Vec<u8>>,
    match_unfiltered: bool,
}

impl BloomMatcher {
    /// A matcher for chunks holding any of `values` (and, with `match_unfiltered`, chunks with
    /// messages that carry no filter value).
    pub fn new(values: Vec<Vec<u8>>, match_unfiltered: bool) -> Self {
        BloomMatcher {
            values,
            match_unfiltered,
        }
    }

    /// Whether a chunk with this filter may hold a wanted message.
    pub fn matches(&self, filter: &[u8]) -> bool {
        if filter.is_empty() {
            // No entry of the chunk has a filter value.
            return self.match_unfiltered;
        }
        if self.match_unfiltered && is_set(filter, 0) {
            return true;
        }
        let bits = filter.len() as u32 * 8;
        self.values.iter().any(|v| {
            let (a, b) = positions(v, bits);
            is_set(filter, a) && is_set(filter, b)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_and_unfiltered_bit() {
        let mut f = Vec::new();
        build(&mut f, 16, &[b"eu", b"us"], false);
        assert_eq!(f.len(), 16);
        assert!(BloomMatcher::new(vec![b"eu".to_vec()], false).matches(&f));
        assert!(BloomMatcher::new(vec![b"us".to_vec(), b"x".to_vec()], false).matches(&f));
        assert!(!BloomMatcher::new(vec![], true).matches(&f));
        build(&mut f, 16, &[b"eu"], true);
        assert!(BloomMatcher::new(vec![b"nothing".to_vec()], true).matches(&f));
        build(&mut f, 16, &[], true);
        assert!(f.is_empty());
        assert!(BloomMatcher::new(vec![b"eu".to_vec()], true).matches(&f));
        assert!(!BloomMatcher::new(vec![b"eu".to_vec()], false).matches(&f));
    }

    #[test]
    fn larger_filters_work() {
        let mut f = Vec::new();
        build(&mut f, 255, &[b"a"], false);
        assert_eq!(f.len(), 255);
        assert!(BloomMatcher::new(vec![b"a".to_vec()], false).matches(&f));
    }
}
