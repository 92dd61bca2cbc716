//! Helpers shared by the store's integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pigeon_store::{QueueLog, Store, StoreOptions, SyncMode};

/// Options for tests that do not measure durability: no fsyncs, so the suite stays fast.
pub fn fast() -> StoreOptions {
    StoreOptions {
        sync: SyncMode::Never,
        ..StoreOptions::default()
    }
}

/// `fast()` with small segments, to exercise rollover and deletion.
pub fn small_segments(segment_size: u64) -> StoreOptions {
    StoreOptions {
        segment_size,
        ..fast()
    }
}

pub fn open(dir: &Path, opts: StoreOptions) -> Store {
    Store::open(dir, opts).unwrap()
}

/// Every live message as (seq, body, delivered), read back through its location.
pub fn contents(log: &QueueLog) -> Vec<(u64, Vec<u8>, bool)> {
    log.recover()
        .messages
        .iter()
        .map(|m| (m.seq, log.read(&m.location).unwrap(), m.delivered))
        .collect()
}

/// A recognisable body for `seq`.
pub fn body(seq: u64) -> Vec<u8> {
    format!("message {seq} ")
        .repeat(1 + (seq % 7) as usize)
        .into_bytes()
}

/// Appends `seqs` with `body(seq)`.
pub fn append_all(log: &QueueLog, seqs: impl IntoIterator<Item = u64>) {
    for seq in seqs {
        log.append(seq, &body(seq)).unwrap();
    }
}

/// The one queue directory of a store holding a single queue.
pub fn queue_dir(log: &Arc<QueueLog>) -> PathBuf {
    log.dir().to_path_buf()
}

/// Copies a directory tree (the state a crash would leave, for files already written).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Names of the files in `dir` with extension `ext`, sorted.
pub fn files_with_ext(dir: &Path, ext: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(&format!(".{ext}")))
        .collect();
    names.sort();
    names
}

pub fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.seg"))
}

pub fn acks_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:020}.acks"))
}

/// A new data directory copied from an empty store created once per test binary: creating a
/// redb database costs a few hundred milliseconds in a debug build, copying one does not.
pub fn fresh_dir() -> tempfile::TempDir {
    static TEMPLATE: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    let template = TEMPLATE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path(), fast()).unwrap().close().unwrap();
        dir
    });
    let dir = tempfile::tempdir().unwrap();
    copy_dir(template.path(), dir.path());
    dir
}
