//! The metadata store: named tables of opaque keys and values, each call durable on return.

use crate::common;

use common::{fast, open};
use pigeon_store::MetaOp;

#[test]
fn put_get_delete_and_scan_survive_reopen() {
    let tmp = common::fresh_dir();
    {
        let store = open(tmp.path(), fast());
        store.meta_put("queues", b"b", b"2").unwrap();
        store.meta_put("queues", b"a", b"1").unwrap();
        store.meta_put("queues", b"c", b"3").unwrap();
        store.meta_put("queues", b"a", b"1'").unwrap();
        store.meta_delete("queues", b"c").unwrap();
        store.meta_put("users", b"guest", b"secret").unwrap();
    }
    let store = open(tmp.path(), fast());
    assert_eq!(
        store.meta_get("queues", b"a").unwrap(),
        Some(b"1'".to_vec())
    );
    assert_eq!(store.meta_get("queues", b"c").unwrap(), None);
    assert_eq!(
        store.meta_scan("queues").unwrap(),
        vec![
            (b"a".to_vec(), b"1'".to_vec()),
            (b"b".to_vec(), b"2".to_vec())
        ]
    );
    assert_eq!(store.meta_scan("users").unwrap().len(), 1);
}

#[test]
fn a_table_never_written_is_empty() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), fast());
    assert_eq!(store.meta_get("nothing", b"k").unwrap(), None);
    assert!(store.meta_scan("nothing").unwrap().is_empty());
    store.meta_delete("nothing", b"k").unwrap();
}

#[test]
fn a_batch_applies_across_tables_and_survives_reopen() {
    let tmp = common::fresh_dir();
    {
        let store = open(tmp.path(), fast());
        store.meta_put("bindings", b"old", b"x").unwrap();
        store
            .meta_batch(&[
                MetaOp::Put {
                    table: "queues",
                    key: b"q1",
                    value: b"durable",
                },
                MetaOp::Put {
                    table: "bindings",
                    key: b"q1->amq.topic",
                    value: b"a.#",
                },
                MetaOp::Delete {
                    table: "bindings",
                    key: b"old",
                },
            ])
            .unwrap();
    }
    let store = open(tmp.path(), fast());
    assert_eq!(
        store.meta_get("queues", b"q1").unwrap(),
        Some(b"durable".to_vec())
    );
    assert_eq!(
        store.meta_scan("bindings").unwrap(),
        vec![(b"q1->amq.topic".to_vec(), b"a.#".to_vec())]
    );
}

#[test]
fn binary_keys_and_large_values_round_trip() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), fast());
    let key = [0u8, 255, 0, 1];
    let value = vec![0xAB; 1 << 20];
    store.meta_put("retained", &key, &value).unwrap();
    assert_eq!(store.meta_get("retained", &key).unwrap(), Some(value));
}
