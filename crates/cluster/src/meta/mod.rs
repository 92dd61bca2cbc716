//! The metadata group: its commands, the seam the broker implements ([`MetadataApply`]), and the
//! Raft state machine over that seam.

mod command;
mod memory;
mod state_machine;

pub use command::{Binding, Json, LimitScope, MetaCommand, MetaResponse};
pub use memory::MemoryApplier;
pub use state_machine::MetaStateMachine;

use crate::types::{Member, NodeId};
use openraft::{LogId, StoredMembership};
use serde::{Deserialize, Serialize};

/// Where the state machine is: the last applied log position and the membership then. Opaque to
/// the implementation of [`MetadataApply`], which stores it in the same transaction as the
/// change it comes with, so that after a crash the two agree and nothing is applied twice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMarker(Vec<u8>);

/// The last applied log id and the membership as of it.
pub(crate) type AppliedState = (Option<LogId<NodeId>>, StoredMembership<NodeId, Member>);

#[derive(Serialize, Deserialize)]
struct MarkerBody {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, Member>,
}

impl AppliedMarker {
    pub(crate) fn new(
        last_applied: Option<LogId<NodeId>>,
        membership: StoredMembership<NodeId, Member>,
    ) -> Result<AppliedMarker, ApplyError> {
        postcard::to_stdvec(&MarkerBody {
            last_applied,
            membership,
        })
        .map(AppliedMarker)
        .map_err(|e| ApplyError(format!("cannot encode the applied marker: {e}")))
    }

    pub(crate) fn decode(&self) -> Result<AppliedState, ApplyError> {
        let body: MarkerBody = postcard::from_bytes(&self.0)
            .map_err(|e| ApplyError(format!("cannot decode the applied marker: {e}")))?;
        Ok((body.last_applied, body.membership))
    }

    /// The bytes to store.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// A marker read back from storage.
    pub fn from_bytes(bytes: Vec<u8>) -> AppliedMarker {
        AppliedMarker(bytes)
    }

    /// The index of the last applied entry (0 when none).
    pub fn last_applied_index(&self) -> u64 {
        self.decode()
            .ok()
            .and_then(|(l, _)| l)
            .map_or(0, |l| l.index)
    }
}

/// The storage of the broker's metadata failed; the node's metadata group stops (openraft treats
/// a state machine error as fatal), as a node whose disk fails must.
#[derive(Debug, Clone, thiserror::Error)]
#[error("metadata state machine: {0}")]
pub struct ApplyError(pub String);

/// The seam between the metadata group and the broker: what the broker implements over its store
/// (next step: `pigeon-store`'s redb, each batch one transaction).
///
/// Every method is called from a blocking thread (never from the async runtime), one at a time.
/// Application must be deterministic: every node applies the same commands in the same order and
/// must end in the same state, and must return the same [`MetaResponse`]s.
pub trait MetadataApply: Send + 'static {
    /// The marker stored by the last [`apply`](Self::apply) or [`restore`](Self::restore), or
    /// `None` for an empty store. Committed commands after it are applied again at startup.
    fn applied(&self) -> Option<AppliedMarker>;

    /// Applies committed commands in order (`(log index, command)`), stores `marker` with the
    /// result atomically, and answers one response per command. `commands` may be empty (a batch
    /// of Raft-internal entries), and the marker must still be stored.
    fn apply(
        &mut self,
        commands: &[(u64, MetaCommand)],
        marker: &AppliedMarker,
    ) -> Result<Vec<MetaResponse>, ApplyError>;

    /// The whole state, encoded by the implementation (sent to a node that has fallen behind the
    /// log the leader keeps, or that joins).
    fn snapshot(&self) -> Result<Vec<u8>, ApplyError>;

    /// Replaces the whole state with `snapshot` (from [`snapshot`](Self::snapshot), possibly on
    /// another node) and stores `marker`.
    fn restore(&mut self, snapshot: &[u8], marker: &AppliedMarker) -> Result<(), ApplyError>;
}
