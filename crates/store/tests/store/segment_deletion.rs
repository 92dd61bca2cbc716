//! Segments roll over at the configured size; a segment whose every message is acknowledged
//! is deleted with its acks file, and one with a live message stays.

use crate::common;

use common::{acks_path, contents, files_with_ext, open, segment_path, small_segments};

const BODY: [u8; 83] = [7; 83];
/// Frames of 100 bytes, four to a segment.
const SEGMENT: u64 = 400;

#[test]
fn segments_roll_over_at_the_configured_size() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), small_segments(SEGMENT));
    let log = store.queue_log("q").unwrap();
    let locations: Vec<_> = (0..10).map(|s| log.append(s, &BODY).unwrap()).collect();
    let segments: Vec<u64> = locations.iter().map(|l| l.segment).collect();
    assert_eq!(segments, vec![0, 0, 0, 0, 1, 1, 1, 1, 2, 2]);
    assert_eq!(locations[5].offset, 100);
    assert_eq!(locations[5].len, 100);
    store.sync().unwrap();
    assert_eq!(files_with_ext(log.dir(), "seg").len(), 3);
    for n in 0..2 {
        assert_eq!(
            std::fs::metadata(segment_path(log.dir(), n)).unwrap().len(),
            SEGMENT
        );
    }
}

#[test]
fn a_record_larger_than_a_segment_gets_a_segment_of_its_own() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), small_segments(SEGMENT));
    let log = store.queue_log("q").unwrap();
    let small = log.append(0, &BODY).unwrap();
    let big = log.append(1, &[1; 1000]).unwrap();
    let after = log.append(2, &BODY).unwrap();
    assert_eq!((small.segment, big.segment, after.segment), (0, 1, 2));
    assert_eq!(log.read(&big).unwrap(), vec![1; 1000]);
}

#[test]
fn fully_acknowledged_segments_are_deleted_and_partly_acknowledged_ones_stay() {
    let tmp = common::fresh_dir();
    let dir;
    {
        let store = open(tmp.path(), small_segments(SEGMENT));
        let log = store.queue_log("q").unwrap();
        dir = log.dir().to_path_buf();
        for s in 0..12 {
            log.append(s, &BODY).unwrap();
        }
        store.sync().unwrap();
        // Segment 0 fully, segment 1 partly; segment 2 is active.
        for s in [0, 1, 2, 3, 4, 6] {
            log.ack(s);
        }
        store.sync().unwrap();
        assert!(!segment_path(&dir, 0).exists());
        assert!(!acks_path(&dir, 0).exists());
        assert!(segment_path(&dir, 1).exists());
        assert!(acks_path(&dir, 1).exists());
        assert_eq!(store.stats().segments_deleted, 1);

        for s in [5, 7] {
            log.ack(s);
        }
        store.sync().unwrap();
        assert_eq!(files_with_ext(&dir, "seg"), vec![format!("{:020}.seg", 2)]);
        assert_eq!(files_with_ext(&dir, "acks"), Vec::<String>::new());
    }
    let store = open(tmp.path(), small_segments(SEGMENT));
    let log = store.queue_log("q").unwrap();
    let seqs: Vec<u64> = contents(&log).iter().map(|m| m.0).collect();
    assert_eq!(seqs, vec![8, 9, 10, 11]);
}

#[test]
fn a_fully_acknowledged_active_segment_is_deleted_after_restart() {
    let tmp = common::fresh_dir();
    let dir;
    {
        let store = open(tmp.path(), small_segments(SEGMENT));
        let log = store.queue_log("q").unwrap();
        dir = log.dir().to_path_buf();
        log.append(0, &BODY).unwrap();
        log.ack(0);
        store.sync().unwrap();
        // Still active: appends may go there.
        assert!(segment_path(&dir, 0).exists());
    }
    let store = open(tmp.path(), small_segments(SEGMENT));
    let log = store.queue_log("q").unwrap();
    assert!(log.is_empty());
    store.sync().unwrap();
    assert!(files_with_ext(&dir, "seg").is_empty());
    assert!(files_with_ext(&dir, "acks").is_empty());
}

#[test]
fn an_acks_file_left_without_its_segment_is_removed() {
    let tmp = common::fresh_dir();
    let dir;
    {
        let store = open(tmp.path(), small_segments(SEGMENT));
        let log = store.queue_log("q").unwrap();
        dir = log.dir().to_path_buf();
        for s in 0..8 {
            log.append(s, &BODY).unwrap();
        }
        log.ack(4);
        store.sync().unwrap();
    }
    // A crash between deleting segment 1 and its acks file.
    std::fs::remove_file(segment_path(&dir, 1)).unwrap();
    let store = open(tmp.path(), small_segments(SEGMENT));
    let log = store.queue_log("q").unwrap();
    assert!(!acks_path(&dir, 1).exists());
    let seqs: Vec<u64> = contents(&log).iter().map(|m| m.0).collect();
    assert_eq!(seqs, vec![0, 1, 2, 3]);
    // New appends go after every file that was there, never reusing segment 1.
    let location = log.append(100, &BODY).unwrap();
    assert_eq!(location.segment, 2);
}
