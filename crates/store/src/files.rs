//! Small file-system helpers: a per-log cache of open files and directory syncs.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;
use std::sync::Arc;

use crate::naming::LogFile;

/// How many files a queue log keeps open at once. A log is written at its active segment and
/// acknowledged (and read back) near its head, so a handful covers the usual pattern without
/// costing thousands of descriptors for thousands of queues.
const OPEN_FILES_PER_LOG: usize = 4;

/// The most recently used open files of one log, most recent last.
#[derive(Default)]
pub(crate) struct FileCache {
    entries: Vec<(LogFile, Arc<File>)>,
}

impl FileCache {
    pub(crate) fn get(&mut self, file: LogFile) -> Option<Arc<File>> {
        let i = self.entries.iter().position(|(f, _)| *f == file)?;
        let entry = self.entries.remove(i);
        let handle = Arc::clone(&entry.1);
        self.entries.push(entry);
        Some(handle)
    }

    pub(crate) fn insert(&mut self, file: LogFile, handle: Arc<File>) {
        self.entries.retain(|(f, _)| *f != file);
        if self.entries.len() == OPEN_FILES_PER_LOG {
            self.entries.remove(0);
        }
        self.entries.push((file, handle));
    }

    /// Forgets both files of a segment (it is being deleted).
    pub(crate) fn remove_segment(&mut self, segment: u64) {
        self.entries.retain(|(f, _)| f.segment() != segment);
    }

    pub(crate) fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Opens a log file for reading and positional writing, creating it if `create`.
pub(crate) fn open_log_file(path: &Path, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(create)
        .truncate(false)
        .open(path)
}

/// Makes the entries of directory `dir` (files created, renamed or removed in it) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}
