//! An in-memory [`MetadataApply`] that records what it applies: for tests, and for reading what
//! the contract asks of an implementation.

use super::{AppliedMarker, ApplyError, MetaCommand, MetaResponse, MetadataApply};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

#[derive(Default)]
struct State {
    applied: Vec<(u64, MetaCommand)>,
    marker: Option<AppliedMarker>,
    restores: usize,
}

/// Records every applied command in order. Clones share the record, so a test keeps one and gives
/// the other to the cluster.
#[derive(Clone)]
pub struct MemoryApplier {
    state: Arc<Mutex<State>>,
    count: watch::Sender<usize>,
}

impl Default for MemoryApplier {
    fn default() -> Self {
        MemoryApplier {
            state: Arc::default(),
            count: watch::Sender::new(0),
        }
    }
}

impl MemoryApplier {
    /// An empty applier.
    pub fn new() -> MemoryApplier {
        MemoryApplier::default()
    }

    /// The commands applied so far, in order, with their log indexes.
    pub fn applied(&self) -> Vec<(u64, MetaCommand)> {
        self.state.lock().applied.clone()
    }

    /// The commands alone.
    pub fn commands(&self) -> Vec<MetaCommand> {
        self.state
            .lock()
            .applied
            .iter()
            .map(|(_, c)| c.clone())
            .collect()
    }

    /// How many snapshots were installed.
    pub fn restores(&self) -> usize {
        self.state.lock().restores
    }

    /// Waits until at least `n` commands are applied; false if `timeout` passes first.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let mut rx = self.count.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl MetadataApply for MemoryApplier {
    fn applied(&self) -> Option<AppliedMarker> {
        self.state.lock().marker.clone()
    }

    fn apply(
        &mut self,
        commands: &[(u64, MetaCommand)],
        marker: &AppliedMarker,
    ) -> Result<Vec<MetaResponse>, ApplyError> {
        let n = {
            let mut state = self.state.lock();
            state.applied.extend(commands.iter().cloned());
            state.marker = Some(marker.clone());
            state.applied.len()
        };
        self.count.send_replace(n);
        Ok(vec![MetaResponse::Done; commands.len()])
    }

    fn snapshot(&self) -> Result<Vec<u8>, ApplyError> {
        postcard::to_stdvec(&self.state.lock().applied).map_err(|e| ApplyError(e.to_string()))
    }

    fn restore(&mut self, snapshot: &[u8], marker: &AppliedMarker) -> Result<(), ApplyError> {
        let applied: Vec<(u64, MetaCommand)> =
            postcard::from_bytes(snapshot).map_err(|e| ApplyError(e.to_string()))?;
        let n = {
            let mut state = self.state.lock();
            state.applied = applied;
            state.marker = Some(marker.clone());
            state.restores += 1;
            state.applied.len()
        };
        self.count.send_replace(n);
        Ok(())
    }
}
