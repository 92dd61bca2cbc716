//! A record damaged on disk fails its CRC. Recovery keeps the records before it, cuts the rest
//! of that segment (the damaged record's length can no longer be trusted to find the next one),
//! and goes on with the next segment.

use crate::common;

use std::path::Path;

use common::{append_all, body, contents, copy_dir, open, segment_path, small_segments};
use pigeon_store::{Location, TruncationReason};

/// Queue "q" with messages 0..10 of which 0..5 fill segment 0 and 5..10 segment 1; returns
/// the queue directory's name and every message's location.
fn fixture(dir: &Path) -> (String, Vec<Location>) {
    // A frame is 17 bytes of header, seq and kind plus the body.
    let opts = small_segments(5 * (17 + body(0).len() as u64));
    let store = open(dir, opts);
    let log = store.queue_log("q").unwrap();
    let locations: Vec<Location> = (0..10).map(|s| log.append(s, &body(0)).unwrap()).collect();
    store.close().unwrap();
    let name = log
        .dir()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    (name, locations)
}

fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x5A;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn a_flipped_byte_cuts_its_segment_at_that_record() {
    let original = common::fresh_dir();
    let (name, locations) = fixture(original.path());
    assert_eq!(locations[2].segment, 0);
    assert_eq!(locations[6].segment, 1);
    let bad = locations[2];

    // Every byte of the record: header (length or CRC) or payload.
    for i in 0..u64::from(bad.len) {
        let tmp = common::fresh_dir();
        copy_dir(original.path(), tmp.path());
        let seg = segment_path(&tmp.path().join("queues").join(&name), 0);
        flip_byte(&seg, bad.offset + i);

        let store = open(tmp.path(), small_segments(1 << 20));
        let log = store.queue_log("q").unwrap();
        let seqs: Vec<u64> = contents(&log).iter().map(|m| m.0).collect();
        // 0 and 1 come before the damage; 3 and 4 are after it in the same segment; segment
        // 1 is untouched.
        assert_eq!(seqs, vec![0, 1, 5, 6, 7, 8, 9], "byte {i}");
        let stats = log.recover().stats;
        assert_eq!(stats.truncations.len(), 1, "byte {i}");
        let t = &stats.truncations[0];
        assert_eq!(t.path, seg);
        assert_eq!(t.offset, bad.offset);
        if i >= 8 {
            assert_eq!(t.reason, TruncationReason::ChecksumMismatch);
        }
        assert_eq!(
            std::fs::metadata(&seg).unwrap().len(),
            bad.offset,
            "byte {i}"
        );
    }
}

#[test]
fn a_record_damaged_after_it_was_written_fails_its_read() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), small_segments(1 << 20));
    let log = store.queue_log("q").unwrap();
    append_all(&log, 0..3);
    let location = log.recover().messages[1].location;
    store.sync().unwrap();
    flip_byte(
        &segment_path(log.dir(), location.segment),
        location.offset + 12,
    );
    let err = log.read(&location).unwrap_err();
    assert!(
        matches!(err, pigeon_store::StoreError::Corrupt { .. }),
        "{err:?}"
    );
}
