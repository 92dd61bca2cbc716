//! A log recovered with its checkpoint is the log recovered without it: same live messages,
//! same locations, same delivered flags, same segment table; and both are exactly what was
//! synced. The crash is simulated by copying the queue's directory after a sync (and tearing a
//! record off its end), then rebuilding it with `recovery::open_dir` (no redb needed).

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use proptest::prelude::*;

use super::recovery::{self, CheckpointOutcome};
use super::{Location, LogState, QueueLog};
use crate::checkpoint::{FILE, TMP_FILE};
use crate::naming::LogFile;
use crate::record;
use crate::{Store, StoreOptions, SyncMode};

fn options() -> StoreOptions {
    StoreOptions {
        segment_size: 4096,
        sync: SyncMode::Never,
        checkpoint_interval: None,
        ..StoreOptions::default()
    }
}

/// One store for the whole test binary (creating a redb database is slow in a debug build);
/// each test uses queues of its own.
fn store() -> &'static Store {
    static STORE: OnceLock<(tempfile::TempDir, Store)> = OnceLock::new();
    let (_, store) = STORE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), options()).unwrap();
        (dir, store)
    });
    store
}

fn new_log() -> Arc<QueueLog> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    store().queue_log(&format!("q{n}")).unwrap()
}

fn body(seq: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seq as usize + i) as u8).collect()
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

type Listing = Vec<(u64, Location, bool, Option<u8>)>;
/// What the log should hold: seq -> (body, delivered).
type Model = BTreeMap<u64, (Vec<u8>, bool)>;
type Segments = BTreeMap<u64, (u64, u64, u64)>;

fn describe(state: &LogState) -> (Listing, Segments) {
    let listing = state.live.tagged_from(0).collect();
    let segments = state
        .segments
        .iter()
        .map(|(&n, s)| (n, (s.len, s.live, s.acks_len)))
        .collect();
    (listing, segments)
}

/// Recovers `dir` (a crashed copy) with its checkpoint and a second copy without it, checks
/// that they agree, and returns the recovered listing with what the checkpoint did.
fn recover_both(dir: &Path) -> (Listing, CheckpointOutcome) {
    let bare = tempfile::tempdir().unwrap();
    copy_dir(dir, bare.path());
    let _ = std::fs::remove_file(bare.path().join(FILE));
    let _ = std::fs::remove_file(bare.path().join(TMP_FILE));
    let (with, stats, _) = recovery::open_dir(dir, SyncMode::Never).unwrap();
    let (without, _, _) = recovery::open_dir(bare.path(), SyncMode::Never).unwrap();
    assert_eq!(
        describe(&with),
        describe(&without),
        "{:?}",
        stats.checkpoint
    );
    assert!(!dir.join(TMP_FILE).exists());
    (describe(&with).0, stats.checkpoint)
}

/// The body of each listed message, read from the files in `dir`.
fn bodies(dir: &Path, listing: &Listing) -> Vec<(u64, Vec<u8>, bool)> {
    listing
        .iter()
        .map(|&(seq, l, delivered, tag)| {
            let file = std::fs::File::open(LogFile::Segment(l.segment).path(dir)).unwrap();
            let mut frame = vec![0; l.len as usize];
            file.read_exact_at(&mut frame, l.offset).unwrap();
            let p = record::decode_frame(&frame).unwrap();
            assert_eq!(p.seq, seq);
            let (in_record, data) = record::message_parts(p.kind, p.body).unwrap();
            assert_eq!(in_record, tag, "the index's tag is the record's");
            (seq, data.to_vec(), delivered)
        })
        .collect()
}

/// A partial record at the end of the newest segment, as a crash in the middle of a write
/// leaves it: a header that promises more bytes than follow.
fn tear(dir: &Path, junk: usize) {
    let newest = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name();
            LogFile::parse(name.to_str()?)
        })
        .filter(|f| matches!(f, LogFile::Segment(_)))
        .max();
    if let Some(file) = newest {
        let path = file.path(dir);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&(1000u32).to_le_bytes());
        bytes.extend(std::iter::repeat_n(7u8, junk));
        std::fs::write(path, bytes).unwrap();
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append(usize),
    Ack(usize),
    Delivered(usize),
    Replace(usize),
    Checkpoint,
    /// Sync, copy the directory (tearing `Some(n)` bytes of a record onto its end) and recover.
    Crash(Option<usize>),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (1usize..200).prop_map(Op::Append),
        4 => any::<usize>().prop_map(Op::Ack),
        2 => any::<usize>().prop_map(Op::Delivered),
        1 => any::<usize>().prop_map(Op::Replace),
        2 => Just(Op::Checkpoint),
        2 => prop::option::of(0usize..40).prop_map(Op::Crash),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn recovery_with_a_checkpoint_is_recovery_without_it(ops in prop::collection::vec(op(), 1..120)) {
        let log = new_log();
        let mut model = Model::new();
        // The tag of each live message: some messages have one (a priority queue's), some not.
        let mut tags = BTreeMap::new();
        let tag_of = |len: usize| (len % 3 != 0).then_some(len as u8);
        let mut next = 0u64;
        let pick = |model: &Model, i: usize| {
            (!model.is_empty()).then(|| *model.keys().nth(i % model.len()).unwrap())
        };
        for op in ops.into_iter().chain([Op::Crash(None)]) {
            match op {
                Op::Append(len) => {
                    match tag_of(len) {
                        Some(tag) => log.append_tagged(next, tag, &body(next, len)).unwrap(),
                        None => log.append(next, &body(next, len)).unwrap(),
                    };
                    model.insert(next, (body(next, len), false));
                    tags.insert(next, tag_of(len));
                    next += 1;
                }
                Op::Ack(i) => if let Some(seq) = pick(&model, i) {
                    log.ack(seq);
                    model.remove(&seq);
                    tags.remove(&seq);
                },
                Op::Delivered(i) => if let Some(seq) = pick(&model, i) {
                    log.delivered(seq);
                    model.get_mut(&seq).unwrap().1 = true;
                },
                Op::Replace(i) => if let Some(seq) = pick(&model, i) {
                    // A replacement may change the tag (or drop it).
                    let data = body(seq + 1000, 50 + i % 2);
                    match tag_of(data.len()) {
                        Some(tag) => log.append_tagged(seq, tag, &data).unwrap(),
                        None => log.append(seq, &data).unwrap(),
                    };
                    tags.insert(seq, tag_of(data.len()));
                    model.insert(seq, (data, false));
                },
                Op::Checkpoint => {
                    log.checkpoint().unwrap();
                }
                Op::Crash(torn) => {
                    store().sync().unwrap();
                    let crashed = tempfile::tempdir().unwrap();
                    copy_dir(log.dir(), crashed.path());
                    if let Some(junk) = torn {
                        tear(crashed.path(), junk);
                    }
                    let (listing, _) = recover_both(crashed.path());
                    let want: Vec<_> = model.iter().map(|(&s, (b, d))| (s, b.clone(), *d)).collect();
                    prop_assert_eq!(bodies(crashed.path(), &listing), want);
                    let listed_tags: BTreeMap<_, _> = listing.iter().map(|l| (l.0, l.3)).collect();
                    prop_assert_eq!(&listed_tags, &tags);
                }
            }
        }
    }
}

/// A log with a checkpoint taken, then acks (of checkpointed messages and of new ones),
/// delivered flags, replacements, appends across segments and deleted segments after it.
fn busy_log() -> (Arc<QueueLog>, Model) {
    let log = new_log();
    let mut model = BTreeMap::new();
    for seq in 0..300 {
        log.append(seq, &body(seq, 40)).unwrap();
        model.insert(seq, (body(seq, 40), false));
    }
    for seq in (0..300).filter(|s| s % 3 == 0) {
        log.ack(seq);
        model.remove(&seq);
    }
    log.delivered(1);
    model.get_mut(&1).unwrap().1 = true;
    store().sync().unwrap();
    assert!(log.checkpoint().unwrap().is_some());
    for seq in 300..500 {
        log.append(seq, &body(seq, 40)).unwrap();
        model.insert(seq, (body(seq, 40), false));
    }
    // Every message of the first segments: they are deleted.
    for seq in (0..120).chain(400..410) {
        log.ack(seq);
        model.remove(&seq);
    }
    for seq in [200, 450] {
        log.delivered(seq);
        model.get_mut(&seq).unwrap().1 = true;
    }
    log.append(250, b"replaced").unwrap();
    model.insert(250, (b"replaced".to_vec(), false));
    store().sync().unwrap();
    (log, model)
}

fn expected(model: &Model) -> Vec<(u64, Vec<u8>, bool)> {
    model
        .iter()
        .map(|(&s, (b, d))| (s, b.clone(), *d))
        .collect()
}

#[test]
fn a_checkpoint_older_than_the_log_replays_what_came_after_it() {
    let (log, model) = busy_log();
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(log.dir(), crashed.path());
    let (listing, outcome) = recover_both(crashed.path());
    assert!(
        matches!(outcome, CheckpointOutcome::Loaded { .. }),
        "{outcome:?}"
    );
    assert_eq!(bodies(crashed.path(), &listing), expected(&model));

    // A torn record after the checkpoint is cut as without one.
    tear(crashed.path(), 5);
    let (listing, outcome) = recover_both(crashed.path());
    assert!(
        matches!(outcome, CheckpointOutcome::Loaded { .. }),
        "{outcome:?}"
    );
    assert_eq!(bodies(crashed.path(), &listing), expected(&model));
}

#[test]
fn a_checkpoint_of_a_synced_log_covers_everything() {
    let (log, model) = busy_log();
    log.checkpoint().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(log.dir(), crashed.path());
    let (state, stats, _) = recovery::open_dir(crashed.path(), SyncMode::Never).unwrap();
    assert_eq!(stats.records_read, 0, "nothing past the checkpoint to read");
    assert_eq!(stats.segments, 0);
    let listing = describe(&state).0;
    assert_eq!(bodies(crashed.path(), &listing), expected(&model));
    let (again, _) = recover_both(crashed.path());
    assert_eq!(again, listing);
}

/// Every step of writing a checkpoint interrupted: the temporary file cut anywhere (the old
/// checkpoint still in place), the new one renamed into place but cut short (its data lost
/// by a crash before its sync), or damaged anywhere. Each recovers exactly the synced log.
#[test]
fn a_crash_at_any_step_of_writing_a_checkpoint_recovers_exactly_the_log() {
    let (log, model) = busy_log();
    let old = std::fs::read(log.dir().join(FILE)).unwrap();
    for seq in 500..520 {
        log.append(seq, &body(seq, 40)).unwrap();
    }
    for seq in 500..520 {
        log.ack(seq);
    }
    store().sync().unwrap();
    log.checkpoint().unwrap();
    let new = std::fs::read(log.dir().join(FILE)).unwrap();
    assert_ne!(old, new);
    let want = expected(&model);
    let state = tempfile::tempdir().unwrap();
    copy_dir(log.dir(), state.path());
    let check = |old: Option<&[u8]>, tmp: Option<&[u8]>, current: Option<&[u8]>| {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(state.path(), dir.path());
        let _ = std::fs::remove_file(dir.path().join(FILE));
        if let Some(bytes) = old.or(current) {
            std::fs::write(dir.path().join(FILE), bytes).unwrap();
        }
        if let Some(bytes) = tmp {
            std::fs::write(dir.path().join(TMP_FILE), bytes).unwrap();
        }
        let (listing, outcome) = recover_both(dir.path());
        assert_eq!(bodies(dir.path(), &listing), want);
        outcome
    };
    // Crashed while writing the temporary file: no checkpoint yet, or the old one.
    for cut in (0..=new.len()).step_by(3) {
        check(None, Some(&new[..cut]), None);
        let outcome = check(Some(&old), Some(&new[..cut]), None);
        assert!(matches!(outcome, CheckpointOutcome::Loaded { .. }));
    }
    // Renamed, but cut short or damaged.
    for cut in 0..new.len() {
        let outcome = check(None, None, Some(&new[..cut]));
        assert!(
            matches!(outcome, CheckpointOutcome::Rejected { .. }),
            "cut at {cut}"
        );
    }
    for i in 0..new.len() {
        let mut bad = new.clone();
        bad[i] ^= 0x41;
        let outcome = check(None, None, Some(&bad));
        assert!(
            matches!(outcome, CheckpointOutcome::Rejected { .. }),
            "byte {i}"
        );
    }
    // Done.
    let outcome = check(None, None, Some(&new));
    assert!(matches!(outcome, CheckpointOutcome::Loaded { .. }));
}

/// A checkpoint that claims more than the files hold (files cut or lost behind its back) is
/// not trusted: the log wins.
#[test]
fn a_checkpoint_claiming_more_than_the_files_hold_is_rejected() {
    let (log, _) = busy_log();
    log.checkpoint().unwrap();
    let crashed = tempfile::tempdir().unwrap();
    copy_dir(log.dir(), crashed.path());
    let (state, _, _) = recovery::open_dir(crashed.path(), SyncMode::Never).unwrap();
    let (&newest, _) = state.segments.iter().next_back().unwrap();
    let path = LogFile::Segment(newest).path(crashed.path());
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 10)
        .unwrap();
    let (_, outcome) = recover_both(crashed.path());
    assert!(
        matches!(outcome, CheckpointOutcome::Rejected { .. }),
        "{outcome:?}"
    );
    assert!(
        !crashed.path().join(FILE).exists(),
        "a rejected checkpoint is deleted"
    );
}
