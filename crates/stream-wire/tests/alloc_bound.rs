//! The decoder never allocates more than the input justifies: whatever the bytes, decoding them
//! allocates at most a small multiple of their length plus the frame limit (the read-ahead
//! reserve), never what a lying size or count announces. And the publish path (a `Publish`
//! checked and walked) does not allocate at all.
//!
//! A counting global allocator counts bytes allocated by the current thread only, so tests of
//! this binary running on other threads do not disturb each other.
//!
//! `unsafe` is allowed in this one test binary, and only here: a global allocator cannot be
//! written without it. It forwards to `System` unchanged. The library itself stays unsafe-free.

#![allow(unsafe_code)]
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use stream_wire::*;

struct Counting;

thread_local! {
    static BYTES: Cell<usize> = const { Cell::new(0) };
    static COUNT: Cell<usize> = const { Cell::new(0) };
}

fn count(size: usize) {
    let _ = BYTES.try_with(|n| n.set(n.get() + size));
    let _ = COUNT.try_with(|n| n.set(n.get() + 1));
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocated() -> (usize, usize) {
    (BYTES.with(Cell::get), COUNT.with(Cell::get))
}

/// Bytes allocated while decoding every frame of `buf` with `frame_max`.
fn bytes_allocated_decoding(mut buf: BytesMut, frame_max: u32) -> usize {
    let (before, _) = allocated();
    while let Ok(Some(command)) = decode(&mut buf, frame_max) {
        drop(command);
    }
    allocated().0 - before
}

/// The bound: 16 bytes per input byte (the densest array is of strings: 2 bytes on the wire, a
/// 32-byte `Str` in memory, or a key/value pair: 4 bytes and 64), the read-ahead reserve (the
/// frame limit), and a constant for the shared-buffer bookkeeping of `bytes`.
fn bound(input: usize, frame_max: u32) -> usize {
    16 * input + frame_max as usize + 4096
}

fn frame(key: u16, content: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    encode_frame(key, 1, content, &mut out);
    out
}

#[test]
fn lying_counts_allocate_nothing_for_the_announced_size() {
    // Metadata announcing 2^31 - 1 streams, PeerProperties 2^31 - 1 pairs, PublishConfirm
    // 2^31 - 1 ids: each with a few bytes present.
    let max = [0x7f, 0xff, 0xff, 0xff];
    for (k, prefix) in [
        (key::METADATA, &[0, 0, 0, 1][..]),
        (key::PEER_PROPERTIES, &[0, 0, 0, 1][..]),
        (key::PUBLISH_CONFIRM, &[1][..]),
    ] {
        let mut content = prefix.to_vec();
        content.extend_from_slice(&max);
        content.extend_from_slice(&[0, 1, b'a', 0, 1, b'b']);
        let input = frame(k, &content);
        let n = input.len();
        assert!(
            bytes_allocated_decoding(input, 0) <= bound(n, 0),
            "key {k:#x}"
        );
    }
}

#[test]
fn a_huge_declared_frame_reserves_at_most_the_limit() {
    let input = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 0, 2, 0, 1][..]);
    assert!(bytes_allocated_decoding(input, DEFAULT_FRAME_MAX) <= bound(8, DEFAULT_FRAME_MAX));
    // With no limit, the read-ahead is capped (128 KiB), not the 2 GiB announced.
    let input = BytesMut::from(&[0x7f, 0xff, 0xff, 0xff, 0, 2, 0, 1][..]);
    assert!(bytes_allocated_decoding(input, 0) <= 128 * 1024 + 4096);
}

#[test]
fn publish_decodes_and_walks_without_allocating() {
    let messages: Vec<PublishedMessage> = (0..16)
        .map(|i| PublishedMessage::simple(i, Bytes::from(vec![b'x'; 100])))
        .collect();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    // The first frame promotes the buffer to a shared one (one allocation in `bytes`, once per
    // buffer); a connection does that once, so it is not counted.
    Command::from(Heartbeat).encode(&mut buf);
    Command::from(Publish::new(1, &messages)).encode(&mut buf);
    decode(&mut buf, 0).unwrap().unwrap();

    let (_, before) = allocated();
    let Some(Command::Publish(publish)) = decode(&mut buf, 0).unwrap() else {
        panic!("not a publish");
    };
    let mut total = 0;
    for m in publish.messages() {
        if let Entry::Simple(body) = m.entry {
            total += body.len();
        }
    }
    let (_, after) = allocated();
    assert_eq!(total, 1600);
    assert_eq!(after - before, 0, "allocations on the publish path");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn arbitrary_bytes_allocate_within_the_bound(
        data in vec(any::<u8>(), 0..600),
        frame_max in prop_oneof![Just(INITIAL_FRAME_MAX), 4u32..1024],
    ) {
        let n = data.len();
        let used = bytes_allocated_decoding(BytesMut::from(&data[..]), frame_max);
        prop_assert!(used <= bound(n, frame_max), "{used} bytes for {n} input bytes");
    }

    #[test]
    fn arbitrary_content_behind_a_valid_header_allocates_within_the_bound(
        k in 1u16..=0x1f,
        response in any::<bool>(),
        content in vec(any::<u8>(), 0..600),
    ) {
        let k = if response { k | RESPONSE_FLAG } else { k };
        let input = frame(k, &content);
        let n = input.len();
        let used = bytes_allocated_decoding(input, 0);
        prop_assert!(used <= bound(n, 0), "{used} bytes for {n} input bytes");
    }
}
