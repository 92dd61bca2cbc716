//! A data directory written before segments were kept (its newest segment starts with a
//! `Checkpoint` per group) opens, replays to the same state and is cleaned up as usual.

#![allow(clippy::unwrap_used)]

use super::record::{self, GroupMem, Op, Record};
use super::{Wal, WalOptions};
use crate::types::GroupId;
use std::collections::BTreeMap;
use std::sync::{mpsc, Arc};

fn bytes(b: &[u8]) -> Arc<[u8]> {
    Arc::from(b.to_vec())
}

fn segment(records: &[(u64, Op)]) -> Vec<u8> {
    let mut out = record::MAGIC.to_vec();
    for (group, op) in records {
        let record = Record {
            group: *group,
            op: op.clone(),
        };
        record::encode(&record, &mut out).unwrap();
    }
    out
}

#[test]
fn a_directory_from_before_kept_segments_opens_the_same() {
    let dir = tempfile::tempdir().unwrap();
    // Segment 4: left behind by a crash between the checkpoint and the deletion.
    let old: Vec<(u64, Op)> = vec![(
        7,
        Op::Append((1..=4).map(|i| (i, bytes(&[i as u8]))).collect()),
    )];
    std::fs::write(dir.path().join(format!("{:020}.wal", 4)), segment(&old)).unwrap();
    let checkpoint = GroupMem {
        vote: Some(bytes(b"vote")),
        committed: Some(bytes(b"committed")),
        purged: Some((2, bytes(b"purged"))),
        entries: BTreeMap::from([(3, bytes(b"three")), (4, bytes(b"four"))]),
    };
    let newest: Vec<(u64, Op)> = vec![
        (7, Op::Checkpoint(checkpoint)),
        (7, Op::Append(vec![(5, bytes(b"five"))])),
    ];
    std::fs::write(dir.path().join(format!("{:020}.wal", 5)), segment(&newest)).unwrap();

    let options = WalOptions {
        segment_bytes: 64,
        ..WalOptions::default()
    };
    let wal = Wal::open(dir.path(), options.clone()).unwrap();
    let mem = wal.shared.groups.lock().get(&GroupId(7)).cloned().unwrap();
    let keys = |mem: &GroupMem| mem.entries.keys().copied().collect::<Vec<_>>();
    {
        let mem = mem.lock();
        assert_eq!(keys(&mem), vec![3, 4, 5]);
        assert_eq!(
            mem.entries[&3],
            bytes(b"three"),
            "the checkpoint's, not segment 4's"
        );
        assert_eq!(mem.purged.as_ref().map(|p| p.0), Some(2));
        assert_eq!(mem.vote, Some(bytes(b"vote")));
    }
    // One write: it rotates (the segment is past 64 bytes), and segment 4, which nothing needs
    // since the checkpoint, is deleted.
    let (tx, rx) = mpsc::channel();
    {
        let mut mem = mem.lock();
        let op = Op::Append(vec![(6, bytes(b"six"))]);
        mem.apply(&op);
        wal.shared
            .submit(
                GroupId(7),
                op,
                Box::new(move |r| {
                    let _ = tx.send(r.is_ok());
                }),
            )
            .unwrap();
    }
    assert!(rx.recv().unwrap());
    wal.shutdown();
    let mut files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    assert_eq!(
        files,
        vec![format!("{:020}.wal", 5), format!("{:020}.wal", 6)]
    );
    let wal = Wal::open(dir.path(), options).unwrap();
    let mem = wal.shared.groups.lock().get(&GroupId(7)).cloned().unwrap();
    let mem = mem.lock();
    assert_eq!(keys(&mem), vec![3, 4, 5, 6]);
    assert_eq!(mem.committed, Some(bytes(b"committed")));
}
