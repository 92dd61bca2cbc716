//! One Raft group's view of the shared log: openraft's `RaftLogStorage` and `RaftLogReader`.
//!
//! The group's state lives in memory (entries as encoded bytes, decoded when read); every change
//! is applied there first, so that it is readable at once as openraft requires, and queued to the
//! writer under the same lock, so that the log's order is the order of the changes. An append
//! returns at once and openraft is told it is durable from the writer thread, after the fsync of
//! the batch that carried it. Votes, truncations and purges wait for their fsync before
//! returning (openraft requires the vote to be durable on return; the others are rare).

// openraft's traits return its `StorageError` (185 bytes); it is not ours to box.
#![allow(clippy::result_large_err)]

use super::record::{GroupMem, Op};
use super::{Shared, WalError};
use crate::types::GroupId;
use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{
    AnyError, LogId, LogState, OptionalSend, RaftLogId, RaftLogReader, RaftTypeConfig,
    StorageError, StorageIOError, Vote,
};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;
use std::marker::PhantomData;
use std::ops::RangeBounds;
use std::sync::Arc;

/// One group's log. Clones share the group's state.
pub struct GroupLog<C> {
    group: GroupId,
    mem: Arc<Mutex<GroupMem>>,
    shared: Arc<Shared>,
    _types: PhantomData<fn() -> C>,
}

impl<C> Clone for GroupLog<C> {
    fn clone(&self) -> Self {
        GroupLog {
            group: self.group,
            mem: self.mem.clone(),
            shared: self.shared.clone(),
            _types: PhantomData,
        }
    }
}

type StorageResult<T, C> = Result<T, StorageError<<C as RaftTypeConfig>::NodeId>>;

fn read_err<C: RaftTypeConfig>(e: impl std::error::Error + 'static) -> StorageError<C::NodeId> {
    StorageIOError::read_logs(AnyError::new(&e)).into()
}

fn write_err<C: RaftTypeConfig>(e: impl std::error::Error + 'static) -> StorageError<C::NodeId> {
    StorageIOError::write_logs(AnyError::new(&e)).into()
}

fn encode<C: RaftTypeConfig, T: Serialize>(value: &T) -> StorageResult<Arc<[u8]>, C> {
    postcard::to_stdvec(value)
        .map(Arc::from)
        .map_err(write_err::<C>)
}

fn decode<C: RaftTypeConfig, T: DeserializeOwned>(bytes: &[u8]) -> StorageResult<T, C> {
    postcard::from_bytes(bytes).map_err(read_err::<C>)
}

impl<C> GroupLog<C>
where
    C: RaftTypeConfig,
{
    pub(crate) fn new(group: GroupId, mem: Arc<Mutex<GroupMem>>, shared: Arc<Shared>) -> Self {
        GroupLog {
            group,
            mem,
            shared,
            _types: PhantomData,
        }
    }

    /// The group this log belongs to.
    pub fn group(&self) -> GroupId {
        self.group
    }

    /// Applies `op` to the group's state and waits until the writer has made it durable.
    async fn change_and_sync(&self, op: Op) -> Result<(), WalError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        {
            let mut mem = self.mem.lock();
            mem.apply(&op);
            self.shared
                .submit(self.group, op, Box::new(move |r| drop(tx.send(r))))?;
        }
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(WalError::Closed(e.to_string())),
            Err(_) => Err(WalError::Closed("the writer thread stopped".into())),
        }
    }
}

impl<C> RaftLogReader<C> for GroupLog<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<C::Entry>, C> {
        // Copy the (shared) bytes out under the lock, decode outside it.
        let bytes: Vec<Arc<[u8]>> = self
            .mem
            .lock()
            .entries
            .range(range)
            .map(|(_, b)| b.clone())
            .collect();
        bytes.iter().map(|b| decode::<C, C::Entry>(b)).collect()
    }
}

impl<C> RaftLogStorage<C> for GroupLog<C>
where
    C: RaftTypeConfig,
    C::Entry: Serialize + DeserializeOwned,
{
    type LogReader = GroupLog<C>;

    async fn get_log_state(&mut self) -> StorageResult<LogState<C>, C> {
        let (purged, last) = {
            let mem = self.mem.lock();
            (
                mem.purged.clone(),
                mem.entries.last_key_value().map(|(_, b)| b.clone()),
            )
        };
        let last_purged_log_id: Option<LogId<C::NodeId>> = match purged {
            Some((_, bytes)) => Some(decode::<C, _>(&bytes)?),
            None => None,
        };
        let last_log_id = match last {
            Some(bytes) => Some(decode::<C, C::Entry>(&bytes)?.get_log_id().clone()),
            None => last_purged_log_id.clone(),
        };
        Ok(LogState {
            last_purged_log_id,
            last_log_id,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<C::NodeId>) -> StorageResult<(), C> {
        let bytes = encode::<C, _>(vote)?;
        self.change_and_sync(Op::Vote(bytes))
            .await
            .map_err(|e| StorageIOError::write_vote(AnyError::new(&e)).into())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<C::NodeId>>, C> {
        let bytes = self.mem.lock().vote.clone();
        match bytes {
            Some(bytes) => Ok(Some(decode::<C, _>(&bytes)?)),
            None => Ok(None),
        }
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<C::NodeId>>,
    ) -> StorageResult<(), C> {
        // Not waited for: a committed id lost in a crash is learnt again from the leader; it only
        // lets a restarting node re-apply its own committed entries without waiting for one.
        let bytes = encode::<C, _>(&committed)?;
        let mut mem = self.mem.lock();
        let op = Op::Committed(bytes);
        mem.apply(&op);
        self.shared
            .submit(self.group, op, Box::new(|_| {}))
            .map_err(write_err::<C>)
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<C::NodeId>>, C> {
        let bytes = self.mem.lock().committed.clone();
        match bytes {
            Some(bytes) => decode::<C, _>(&bytes),
            None => Ok(None),
        }
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<C>) -> StorageResult<(), C>
    where
        I: IntoIterator<Item = C::Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            encoded.push((entry.get_log_id().index, encode::<C, _>(&entry)?));
        }
        let mut mem = self.mem.lock();
        let op = Op::Append(encoded);
        mem.apply(&op);
        self.shared
            .submit(
                self.group,
                op,
                Box::new(move |r| callback.log_io_completed(r)),
            )
            .map_err(write_err::<C>)
    }

    async fn truncate(&mut self, log_id: LogId<C::NodeId>) -> StorageResult<(), C> {
        self.change_and_sync(Op::Truncate(log_id.index))
            .await
            .map_err(write_err::<C>)
    }

    async fn purge(&mut self, log_id: LogId<C::NodeId>) -> StorageResult<(), C> {
        let bytes = encode::<C, _>(&log_id)?;
        self.change_and_sync(Op::Purge {
            upto: log_id.index,
            log_id: bytes,
        })
        .await
        .map_err(write_err::<C>)
    }
}
