//! A deleted quorum queue's member, gone for good (helper quorumone): its Raft stops, its log
//! in the node's write-ahead log is emptied and its snapshot file removed, so that a queue
//! declared again under the same name (the same group id, `queue_group`) starts empty rather
//! than replaying the deleted queue's messages. A member of the same group started meanwhile
//! (a delete followed at once by a declare) waits until that is done.

use super::group::QuorumQueue;
use crate::node::Cluster;
use crate::types::GroupId;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

/// The groups being destroyed on a node, each with a lock held until it is done.
pub(crate) type Destroying = Mutex<HashMap<GroupId, Arc<tokio::sync::Mutex<()>>>>;

impl QuorumQueue {
    /// Stops this node's member of a deleted queue and empties the group's state on this node
    /// (log and snapshot), in the background. A later [`QuorumQueue::start`] of the same group
    /// on this node waits for it.
    pub fn destroy(&self) -> tokio::task::JoinHandle<()> {
        let group = self.group();
        let lock = Arc::new(tokio::sync::Mutex::new(()));
        // Not shared with anyone yet: taking it cannot fail.
        let guard = Arc::clone(&lock).try_lock_owned().ok();
        self.cluster
            .inner
            .destroying
            .lock()
            .insert(group, Arc::clone(&lock));
        let member = self.clone();
        tokio::spawn(async move {
            member.shutdown().await;
            let cluster = &member.cluster;
            if let Err(e) = cluster.wal().forget_group(group).await {
                tracing::warn!(%group, error = %e, "quorum queue: cannot empty a deleted queue's log");
            }
            let snapshot = snapshot_path(cluster, group);
            match std::fs::remove_file(&snapshot) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(%group, file = %snapshot.display(), error = %e, "quorum queue: cannot remove a deleted queue's snapshot")
                }
            }
            drop(guard);
            let mut destroying = cluster.inner.destroying.lock();
            if destroying
                .get(&group)
                .is_some_and(|l| Arc::ptr_eq(l, &lock))
            {
                destroying.remove(&group);
            }
        })
    }
}

/// Where a group's last snapshot is kept (`group.rs`).
pub(crate) fn snapshot_path(cluster: &Cluster, group: GroupId) -> std::path::PathBuf {
    cluster
        .inner
        .config
        .cluster_dir()
        .join("quorum")
        .join(format!("{:016x}.snapshot", group.0))
}

/// Waits until a destruction of `group` on this node (if any) is finished.
pub(crate) async fn wait(cluster: &Cluster, group: GroupId) {
    let pending = cluster.inner.destroying.lock().get(&group).cloned();
    if let Some(lock) = pending {
        let _done = lock.lock().await;
    }
}
