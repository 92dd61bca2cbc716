//! Reading a log file front to back during recovery, and cutting off a damaged tail.
//!
//! A file is valid up to its first record that is incomplete (a torn write: the process or the
//! machine died while the flusher was writing it), fails its checksum, or has an impossible
//! length. Everything from there on is cut off, even records that look fine after it: a
//! record's length is what locates the next one, so after damage the position of every later
//! record is in doubt, and records are written in order, so nothing after a torn record was
//! synced before it.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::record::{self, Damage, Header, Payload, HEADER_LEN};
use crate::{StoreError, SyncMode};

/// A damaged tail cut off a log file during recovery.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Truncation {
    /// The file that was cut.
    pub path: PathBuf,
    /// The new length of the file: where the first damaged record began.
    pub offset: u64,
    /// How many bytes were cut off.
    pub bytes: u64,
    /// What was wrong with the record at `offset`.
    pub reason: TruncationReason,
}

/// Why a log file was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TruncationReason {
    /// The last record is incomplete: a write was interrupted by a crash.
    TornRecord,
    /// A record does not match its CRC: the data was damaged on disk, or a crash left a
    /// partly written record whose length field survived.
    ChecksumMismatch,
    /// A record's length field is impossible (for example zero, as in a tail of zeros that some
    /// file systems leave after a crash).
    BadLength,
}

/// What [`scan`] found.
pub(crate) struct Scanned {
    /// Length of the valid prefix (the file's length after [`cut_tail`]).
    pub(crate) valid_len: u64,
    /// Number of valid records.
    pub(crate) records: u64,
    /// Set when the file has a damaged tail from `valid_len` on.
    pub(crate) truncation: Option<Truncation>,
}

/// Calls `visit(offset, frame_len, payload)` for each valid record of the file at `path` from
/// byte `start` on (a record boundary: 0, or the end of what a checkpoint covers), in order,
/// until the end or the first damaged record. Does not change the file.
pub(crate) fn scan(
    path: &Path,
    start: u64,
    mut visit: impl FnMut(u64, u32, Payload<'_>),
) -> Result<Scanned, StoreError> {
    let io_err = |e| StoreError::io(path, e);
    let mut file = File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    if start > file_len {
        // The caller checked the length against the checkpoint first.
        return Err(io_err(std::io::Error::other(
            "scan starts past the end of the file",
        )));
    }
    file.seek(SeekFrom::Start(start)).map_err(io_err)?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let mut offset = start;
    let mut records = 0u64;
    let mut payload = Vec::new();
    let damage = loop {
        let left = file_len - offset;
        if left == 0 {
            break None;
        }
        if left < HEADER_LEN as u64 {
            break Some(TruncationReason::TornRecord);
        }
        let mut head = [0; HEADER_LEN];
        reader.read_exact(&mut head).map_err(io_err)?;
        let header = Header::parse(head);
        if (header.len as usize) < record::PREFIX_LEN {
            break Some(TruncationReason::BadLength);
        }
        // Checked against the file's length before allocating: a damaged length field must not
        // make recovery allocate gigabytes.
        if u64::from(header.len) > left - HEADER_LEN as u64 {
            break Some(TruncationReason::TornRecord);
        }
        payload.resize(header.len as usize, 0);
        reader.read_exact(&mut payload).map_err(io_err)?;
        match record::decode_payload(header, &payload) {
            Ok(p) => {
                let frame_len = header.len + HEADER_LEN as u32;
                visit(offset, frame_len, p);
                records += 1;
                offset += u64::from(frame_len);
            }
            Err(Damage::Checksum) => break Some(TruncationReason::ChecksumMismatch),
            Err(Damage::Length) => break Some(TruncationReason::BadLength),
        }
    };
    Ok(Scanned {
        valid_len: offset,
        records,
        truncation: damage.map(|reason| Truncation {
            path: path.to_path_buf(),
            offset,
            bytes: file_len - offset,
            reason,
        }),
    })
}

/// Cuts the file at `truncation.offset`, logging a warning that names the file and offset.
pub(crate) fn cut_tail(truncation: &Truncation, sync: SyncMode) -> Result<(), StoreError> {
    warn!(
        file = %truncation.path.display(),
        offset = truncation.offset,
        bytes = truncation.bytes,
        reason = ?truncation.reason,
        "cutting a damaged tail off a queue log file",
    );
    let io_err = |e| StoreError::io(&truncation.path, e);
    let file = crate::files::open_log_file(&truncation.path, false).map_err(io_err)?;
    file.set_len(truncation.offset).map_err(io_err)?;
    if sync == SyncMode::Always {
        file.sync_data().map_err(io_err)?;
    }
    Ok(())
}
