//! When the flusher cannot write, nothing waiting for durability is told it succeeded, and the
//! store refuses further appends instead of buffering them forever.

use crate::common;

use std::sync::mpsc;

use common::{fast, open};
use pigeon_store::StoreError;

#[test]
fn a_failed_write_fails_the_store_and_every_waiter() {
    let tmp = common::fresh_dir();
    let store = open(tmp.path(), fast());
    let healthy = store.queue_log("healthy").unwrap();
    healthy.append(1, b"kept").unwrap();
    store.sync().unwrap();
    let synced = store.synced_epoch();

    // The directory vanishes under the store: creating the first segment file fails.
    let doomed = store.queue_log("doomed").unwrap();
    std::fs::remove_dir_all(doomed.dir()).unwrap();
    doomed.append(1, b"lost").unwrap();
    let epoch = store.current_epoch();
    let (tx, rx) = mpsc::channel();
    store.on_synced(epoch, Box::new(move |r| tx.send(r).unwrap()));

    let err = store.wait_synced(epoch).unwrap_err();
    assert!(matches!(err, StoreError::Failed { .. }), "{err:?}");
    let outcome = rx.recv().unwrap();
    assert!(
        matches!(outcome, Err(StoreError::Failed { .. })),
        "{outcome:?}"
    );
    assert_eq!(
        store.synced_epoch(),
        synced,
        "a failed round completes no epoch"
    );
    assert!(matches!(
        healthy.append(2, b"refused"),
        Err(StoreError::Failed { .. })
    ));

    // Epochs completed before the failure are still reported as durable.
    store.wait_synced(synced).unwrap();
    let (tx, rx) = mpsc::channel();
    store.on_synced(synced, Box::new(move |r| tx.send(r.is_ok()).unwrap()));
    assert!(rx.recv().unwrap());

    assert!(matches!(store.close(), Err(StoreError::Failed { .. })));
}
