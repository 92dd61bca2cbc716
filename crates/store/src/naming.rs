//! File and directory names.
//!
//! A queue id is any string, so it cannot be a directory name as it is (`/`, `..`, length,
//! case-insensitive file systems). A queue directory is named `<hash>-<prefix>`: 16 hex digits of
//! the FNV-1a hash of the id, then up to 40 characters of the id with everything but ASCII
//! letters, digits, `-` and `_` replaced by `_` (for people reading `ls`). The name is only a
//! hint: the `id` file inside the directory holds the exact id and is what the store reads, so
//! the mapping stays unambiguous even when two ids collide on their hash and prefix (the second
//! one gets a `-1`, `-2`, ... suffix).

use std::path::Path;

/// The file inside each queue directory that holds the queue id.
pub(crate) const ID_FILE: &str = "id";
/// Prefix of a queue directory being created (renamed into place once its `id` file is durable).
pub(crate) const TMP_PREFIX: &str = ".tmp-";
/// Prefix of a queue directory being deleted (renamed away first, so deletion is atomic).
pub(crate) const DELETED_PREFIX: &str = ".deleted-";

const PREFIX_CHARS: usize = 40;

/// The preferred directory name of a queue id, and the `n`th alternative for collisions.
pub(crate) fn queue_dir_name(queue_id: &str, attempt: u32) -> String {
    let prefix: String = queue_id
        .chars()
        .take(PREFIX_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let hash = fnv1a(queue_id.as_bytes());
    if attempt == 0 {
        format!("{hash:016x}-{prefix}")
    } else {
        format!("{hash:016x}-{prefix}-{attempt}")
    }
}

/// 64-bit FNV-1a: stable across Rust versions and platforms, unlike `DefaultHasher`.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// A file in a queue directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum LogFile {
    /// `NNNNNNNNNNNNNNNNNNNN.seg`: message records.
    Segment(u64),
    /// `NNNNNNNNNNNNNNNNNNNN.acks`: Ack and Delivered events about that segment's messages.
    Acks(u64),
}

impl LogFile {
    pub(crate) fn name(self) -> String {
        match self {
            LogFile::Segment(n) => format!("{n:020}.seg"),
            LogFile::Acks(n) => format!("{n:020}.acks"),
        }
    }

    pub(crate) fn parse(name: &str) -> Option<LogFile> {
        let (stem, ext) = name.split_once('.')?;
        if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let n = stem.parse().ok()?;
        match ext {
            "seg" => Some(LogFile::Segment(n)),
            "acks" => Some(LogFile::Acks(n)),
            _ => None,
        }
    }

    pub(crate) fn segment(self) -> u64 {
        match self {
            LogFile::Segment(n) | LogFile::Acks(n) => n,
        }
    }

    pub(crate) fn path(self, dir: &Path) -> std::path::PathBuf {
        dir.join(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_dir_names_are_safe() {
        for id in ["", ".", "..", "a/b", "../../etc", "q\0x", "ünïcödé", "CON"] {
            let name = queue_dir_name(id, 0);
            assert!(name.len() >= 17);
            assert!(name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        }
        let long = "x".repeat(10_000);
        assert_eq!(queue_dir_name(&long, 0).len(), 16 + 1 + PREFIX_CHARS);
    }

    #[test]
    fn same_prefix_different_ids_get_different_names() {
        assert_ne!(queue_dir_name("a/b", 0), queue_dir_name("a.b", 0));
        assert_ne!(queue_dir_name("a/b", 0), queue_dir_name("a/b", 1));
    }

    #[test]
    fn log_file_names_round_trip() {
        for f in [
            LogFile::Segment(0),
            LogFile::Acks(7),
            LogFile::Segment(u64::MAX),
        ] {
            assert_eq!(LogFile::parse(&f.name()), Some(f));
        }
        assert_eq!(LogFile::Segment(1).name(), "00000000000000000001.seg");
        assert_eq!(LogFile::parse("1.seg"), None);
        assert_eq!(LogFile::parse("00000000000000000001.tmp"), None);
        assert_eq!(LogFile::parse("id"), None);
    }
}
