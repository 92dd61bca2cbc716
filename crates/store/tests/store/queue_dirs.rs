//! Queue ids map to safe, unambiguous directories that are found again after a restart, and
//! deleting a queue's log removes its files.

use crate::common;

use common::{append_all, contents, fast, open};
use pigeon_store::StoreError;

const AWKWARD_IDS: [&str; 8] = [
    "",
    ".",
    "..",
    "/vhost/queue",
    "../../escape",
    "amq.gen-JzTY20BRgKO-HjmUJj0wLg",
    "mqtt-subscription-client 1qos1",
    "ünïcödé/名前",
];

#[test]
fn awkward_queue_ids_get_their_own_directories_and_are_found_after_restart() {
    let tmp = common::fresh_dir();
    {
        let store = open(tmp.path(), fast());
        for (i, id) in AWKWARD_IDS.iter().enumerate() {
            let log = store.queue_log(id).unwrap();
            assert!(log.dir().starts_with(tmp.path().join("queues")));
            append_all(&log, [i as u64]);
        }
        let long = "x".repeat(5000);
        store.queue_log(&long).unwrap();
    }
    let store = open(tmp.path(), fast());
    let ids = store.queue_log_ids();
    assert_eq!(ids.len(), AWKWARD_IDS.len() + 1);
    for (i, id) in AWKWARD_IDS.iter().enumerate() {
        assert!(ids.contains(&id.to_string()));
        let log = store.queue_log(id).unwrap();
        let seqs: Vec<u64> = contents(&log).iter().map(|m| m.0).collect();
        assert_eq!(seqs, vec![i as u64], "queue {id:?}");
    }
}

#[test]
fn the_same_id_opens_the_same_log() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), fast());
    let a = store.queue_log("q").unwrap();
    let b = store.queue_log("q").unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
}

#[test]
fn deleting_a_queue_log_removes_its_files_and_refuses_appends() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), fast());
    let log = store.queue_log("gone").unwrap();
    append_all(&log, 0..10);
    store.sync().unwrap();
    let dir = log.dir().to_path_buf();
    assert!(store.delete_queue_log("gone").unwrap());
    assert!(!dir.exists());
    assert!(!store.delete_queue_log("gone").unwrap());
    assert!(store.queue_log_ids().is_empty());
    assert!(matches!(
        log.append(11, b"x"),
        Err(StoreError::QueueDeleted { .. })
    ));
    log.ack(1); // ignored

    // Declared again: a fresh, empty log.
    let again = store.queue_log("gone").unwrap();
    assert!(again.is_empty());
    drop(store);
    let store = open(tmp.path(), fast());
    assert!(store.queue_log("gone").unwrap().is_empty());
}

#[test]
fn a_deletion_interrupted_by_a_crash_is_finished_at_open() {
    let tmp = common::fresh_dir();
    let dir = {
        let store = open(tmp.path(), fast());
        let log = store.queue_log("q").unwrap();
        append_all(&log, 0..3);
        log.dir().to_path_buf()
    };
    // Renamed away, crash before the files were removed.
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    let hidden = tmp.path().join("queues").join(format!(".deleted-{name}"));
    std::fs::rename(&dir, &hidden).unwrap();
    let store = open(tmp.path(), fast());
    assert!(store.queue_log_ids().is_empty());
    assert!(!hidden.exists());
}

#[test]
fn a_queue_directory_without_its_id_file_stops_open() {
    let tmp = common::fresh_dir();
    {
        let store = open(tmp.path(), fast());
        std::fs::remove_file(store.queue_log("q").unwrap().dir().join("id")).unwrap();
    }
    let err = pigeon_store::Store::open(tmp.path(), fast()).err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}
