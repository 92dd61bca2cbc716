//! The on-disk format, checked against a fixture written from its documentation alone
//! (`fixtures/make_format_v1.py`): the store reads it, and writes the same bytes itself. A change
//! to the format fails here and needs a new fixture and a migration story.

use crate::common;

use std::path::{Path, PathBuf};

use common::{contents, copy_dir, fast, open};

fn fixture_queue() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/format-v1/queues/0000000000000000-fixture")
}

#[test]
fn a_log_written_from_the_documented_format_is_recovered() {
    let tmp = common::fresh_dir();
    copy_dir(
        &fixture_queue(),
        &tmp.path().join("queues/0000000000000000-fixture"),
    );
    let store = open(tmp.path(), fast());
    assert_eq!(store.queue_log_ids(), vec!["fixture queue".to_owned()]);
    let log = store.queue_log("fixture queue").unwrap();
    assert_eq!(
        contents(&log),
        vec![
            (1, b"alpha".to_vec(), false),
            (3, b"gamma".to_vec(), true),
            (4, b"".to_vec(), false),
        ]
    );
    let stats = log.recover().stats;
    assert_eq!((stats.records_read, stats.bytes_truncated), (6, 0));
}

#[test]
fn the_store_writes_exactly_the_documented_format() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), fast());
    let log = store.queue_log("fixture queue").unwrap();
    for (seq, body) in [(1, &b"alpha"[..]), (2, b"beta"), (3, b"gamma"), (4, b"")] {
        log.append(seq, body).unwrap();
    }
    log.ack(2);
    log.delivered(3);
    store.close().unwrap();
    for name in [
        "00000000000000000000.seg",
        "00000000000000000000.acks",
        "id",
    ] {
        let written = std::fs::read(log.dir().join(name)).unwrap();
        let documented = std::fs::read(fixture_queue().join(name)).unwrap();
        assert_eq!(written, documented, "{name}");
    }
}
