//! The metadata group's Raft state machine: openraft's `RaftStateMachine` over a
//! [`MetadataApply`].
//!
//! The broker's store is the state (it persists each batch with its [`AppliedMarker`]), so this
//! machine is a "persistent state machine" in openraft's terms. Snapshots are the store's
//! [`MetadataApply::snapshot`] bytes; the last one built or installed is also kept in a file so
//! that it can be sent to a lagging node after a restart, and so that a store that lost its state
//! (or an in-memory one, in tests) is restored from it before the log is replayed.

// openraft's traits return its `StorageError` (185 bytes); it is not ours to box.
#![allow(clippy::result_large_err)]

use super::{AppliedMarker, ApplyError, MetaResponse, MetadataApply};
use crate::types::{Member, MetaTypes, NodeId};
use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, EntryPayload, LogId, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

type SmResult<T> = Result<T, StorageError<NodeId>>;

/// The applier and where it is, under one lock so that a snapshot is consistent with its marker.
struct Locked<A> {
    applier: A,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
}

/// A snapshot as kept on disk.
#[derive(Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, Member>,
    data: Vec<u8>,
}

struct Inner<A> {
    locked: Mutex<Locked<A>>,
    current: Mutex<Option<StoredSnapshot>>,
    path: PathBuf,
    built: AtomicU64,
}

/// The metadata group's state machine. Clones share it.
pub struct MetaStateMachine<A> {
    inner: Arc<Inner<A>>,
}

impl<A> Clone for MetaStateMachine<A> {
    fn clone(&self) -> Self {
        MetaStateMachine {
            inner: self.inner.clone(),
        }
    }
}

fn sm_err(e: impl std::fmt::Display) -> StorageError<NodeId> {
    StorageIOError::write_state_machine(AnyError::error(e.to_string())).into()
}

impl<A: MetadataApply> MetaStateMachine<A> {
    /// Opens the state machine: reads the snapshot file in `dir` and, if it is newer than what
    /// the applier holds, restores the applier from it.
    pub fn open(dir: &Path, mut applier: A) -> Result<MetaStateMachine<A>, ApplyError> {
        let path = dir.join("metadata.snapshot");
        let stored: Option<StoredSnapshot> = match std::fs::read(&path) {
            Ok(bytes) => Some(postcard::from_bytes(&bytes).map_err(|e| {
                ApplyError(format!("snapshot {} is unreadable: {e}", path.display()))
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(ApplyError(format!("cannot read {}: {e}", path.display()))),
        };
        let (mut last_applied, mut membership) = match applier.applied() {
            Some(marker) => marker.decode()?,
            None => (None, StoredMembership::default()),
        };
        if let Some(snapshot) = &stored {
            if snapshot.meta.last_log_id > last_applied {
                let marker = AppliedMarker::new(
                    snapshot.meta.last_log_id,
                    snapshot.meta.last_membership.clone(),
                )?;
                applier.restore(&snapshot.data, &marker)?;
                last_applied = snapshot.meta.last_log_id;
                membership = snapshot.meta.last_membership.clone();
            }
        }
        Ok(MetaStateMachine {
            inner: Arc::new(Inner {
                locked: Mutex::new(Locked {
                    applier,
                    last_applied,
                    membership,
                }),
                current: Mutex::new(stored),
                path,
                built: AtomicU64::new(0),
            }),
        })
    }

    /// The index of the last applied entry.
    pub fn last_applied_index(&self) -> u64 {
        self.inner.locked.lock().last_applied.map_or(0, |l| l.index)
    }
}

/// Writes the snapshot file: a temporary file, fsync, rename, fsync of the folder.
fn persist(path: &Path, snapshot: &StoredSnapshot) -> std::io::Result<()> {
    let bytes = postcard::to_stdvec(snapshot).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("snapshot.tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> SmResult<T> + Send + 'static,
) -> SmResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(sm_err)?
}

impl<A: MetadataApply> RaftSnapshotBuilder<MetaTypes> for MetaStateMachine<A> {
    async fn build_snapshot(&mut self) -> SmResult<Snapshot<MetaTypes>> {
        let inner = self.inner.clone();
        blocking(move || {
            let stored = {
                let locked = inner.locked.lock();
                let data = locked.applier.snapshot().map_err(sm_err)?;
                let n = inner.built.fetch_add(1, Ordering::Relaxed);
                let snapshot_id = match locked.last_applied {
                    Some(l) => format!("{}-{}-{n}", l.leader_id, l.index),
                    None => format!("empty-{n}"),
                };
                let meta = SnapshotMeta {
                    last_log_id: locked.last_applied,
                    last_membership: locked.membership.clone(),
                    snapshot_id,
                };
                StoredSnapshot { meta, data }
            };
            persist(&inner.path, &stored).map_err(|e| {
                StorageError::from(StorageIOError::write_snapshot(
                    Some(stored.meta.signature()),
                    AnyError::new(&e),
                ))
            })?;
            *inner.current.lock() = Some(stored.clone());
            Ok(Snapshot {
                meta: stored.meta,
                snapshot: Box::new(Cursor::new(stored.data)),
            })
        })
        .await
    }
}

impl<A: MetadataApply> RaftStateMachine<MetaTypes> for MetaStateMachine<A> {
    type SnapshotBuilder = Self;

    async fn applied_state(
        &mut self,
    ) -> SmResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>)> {
        let locked = self.inner.locked.lock();
        Ok((locked.last_applied, locked.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> SmResult<Vec<MetaResponse>>
    where
        I: IntoIterator<Item = openraft::Entry<MetaTypes>> + openraft::OptionalSend,
        I::IntoIter: openraft::OptionalSend,
    {
        let entries: Vec<openraft::Entry<MetaTypes>> = entries.into_iter().collect();
        let inner = self.inner.clone();
        blocking(move || {
            let mut locked = inner.locked.lock();
            let mut commands = Vec::new();
            // For each entry, the position of its command's response, if it has a command.
            let mut slots = Vec::with_capacity(entries.len());
            let mut last = locked.last_applied;
            let mut membership = locked.membership.clone();
            for entry in entries {
                last = Some(entry.log_id);
                match entry.payload {
                    EntryPayload::Normal(command) => {
                        slots.push(Some(commands.len()));
                        commands.push((entry.log_id.index, command));
                    }
                    EntryPayload::Membership(m) => {
                        membership = StoredMembership::new(Some(entry.log_id), m);
                        slots.push(None);
                    }
                    EntryPayload::Blank => slots.push(None),
                }
            }
            let marker = AppliedMarker::new(last, membership.clone()).map_err(sm_err)?;
            let mut responses = locked.applier.apply(&commands, &marker).map_err(sm_err)?;
            if responses.len() != commands.len() {
                return Err(sm_err(format!(
                    "the applier answered {} responses to {} commands",
                    responses.len(),
                    commands.len()
                )));
            }
            locked.last_applied = last;
            locked.membership = membership;
            let mut out = Vec::with_capacity(slots.len());
            for slot in slots {
                out.push(match slot {
                    Some(i) => std::mem::take(&mut responses[i]),
                    None => MetaResponse::Done,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> SmResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> SmResult<()> {
        let stored = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        let inner = self.inner.clone();
        blocking(move || {
            let marker =
                AppliedMarker::new(stored.meta.last_log_id, stored.meta.last_membership.clone())
                    .map_err(sm_err)?;
            {
                let mut locked = inner.locked.lock();
                locked
                    .applier
                    .restore(&stored.data, &marker)
                    .map_err(sm_err)?;
                locked.last_applied = stored.meta.last_log_id;
                locked.membership = stored.meta.last_membership.clone();
            }
            persist(&inner.path, &stored).map_err(sm_err)?;
            *inner.current.lock() = Some(stored);
            Ok(())
        })
        .await
    }

    async fn get_current_snapshot(&mut self) -> SmResult<Option<Snapshot<MetaTypes>>> {
        let current = self.inner.current.lock().clone();
        Ok(current.map(|s| Snapshot {
            meta: s.meta,
            snapshot: Box::new(Cursor::new(s.data)),
        }))
    }
}
