//! Random sequences of appends, acks, deliveries, syncs, crashes and restarts: what the log
//! recovers is always what a simple model says is live.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::{contents, copy_dir, open, small_segments};
use pigeon_store::{QueueLog, Store};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    /// Append a new seq with a body of this length.
    Append(usize),
    /// Re-append (replace) the live message at this index, if any.
    Replace(usize, usize),
    /// Ack the live message at this index modulo the live count.
    Ack(usize),
    Delivered(usize),
    Sync,
    /// Clean close and reopen.
    Reopen,
    /// Sync, then recover from a copy of the directory as if the machine had crashed there.
    CrashAfterSync,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..300).prop_map(Op::Append),
        1 => (any::<usize>(), 0usize..50).prop_map(|(i, n)| Op::Replace(i, n)),
        4 => any::<usize>().prop_map(Op::Ack),
        2 => any::<usize>().prop_map(Op::Delivered),
        1 => Just(Op::Sync),
        1 => Just(Op::Reopen),
        1 => Just(Op::CrashAfterSync),
    ]
}

type Model = BTreeMap<u64, (Vec<u8>, bool)>;

fn body(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize + i) as u8).collect()
}

fn check(log: &QueueLog, model: &Model) -> Result<(), TestCaseError> {
    let expected: Vec<_> = model
        .iter()
        .map(|(&s, (b, d))| (s, b.clone(), *d))
        .collect();
    prop_assert_eq!(contents(log), expected);
    Ok(())
}

fn reopen(dir: &Path) -> (Store, std::sync::Arc<QueueLog>) {
    // Small segments so that rollover and deletion happen often.
    let store = open(dir, small_segments(512));
    let log = store.queue_log("q").unwrap();
    (store, log)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn recovered_messages_match_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        let tmp = common::fresh_dir();
        let (mut store, mut log) = reopen(tmp.path());
        let mut model = Model::new();
        let mut next_seq = 0u64;
        let nth = |model: &Model, i: usize| model.keys().nth(i % model.len()).copied();
        for op in ops {
            match op {
                Op::Append(len) => {
                    let data = body(next_seq, len);
                    log.append(next_seq, &data).unwrap();
                    model.insert(next_seq, (data, false));
                    next_seq += 1;
                }
                Op::Replace(i, len) if !model.is_empty() => {
                    let seq = nth(&model, i).unwrap();
                    let data = body(seq + 1000, len);
                    log.append(seq, &data).unwrap();
                    model.insert(seq, (data, false));
                }
                Op::Ack(i) if !model.is_empty() => {
                    let seq = nth(&model, i).unwrap();
                    log.ack(seq);
                    model.remove(&seq);
                }
                Op::Delivered(i) if !model.is_empty() => {
                    let seq = nth(&model, i).unwrap();
                    log.delivered(seq);
                    if let Some(entry) = model.get_mut(&seq) {
                        entry.1 = true;
                    }
                }
                Op::Sync => store.sync().unwrap(),
                Op::Reopen => {
                    drop(log);
                    store.close().unwrap();
                    (store, log) = reopen(tmp.path());
                    check(&log, &model)?;
                }
                Op::CrashAfterSync => {
                    store.sync().unwrap();
                    let crashed = tempfile::tempdir().unwrap();
                    copy_dir(tmp.path(), crashed.path());
                    let (_crashed_store, crashed_log) = reopen(crashed.path());
                    check(&crashed_log, &model)?;
                }
                _ => {}
            }
            prop_assert_eq!(log.len(), model.len());
        }
        check(&log, &model)?;
        drop(log);
        store.close().unwrap();
        let (_store, log) = reopen(tmp.path());
        check(&log, &model)?;
    }
}
