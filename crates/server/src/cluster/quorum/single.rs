//! Quorum queues on a node without `[cluster]`: a single node is a cluster of one (issue 13,
//! item 1), with nothing added to its hot path.
//!
//! RabbitMQ accepts `x-queue-type: quorum` on a lone node, and client libraries' test suites
//! and applications declare quorum queues against one. A plain Pigeon node runs them on the
//! same machinery as a cluster: a local node of the cluster crate (`Cluster::start_local`: no
//! listener, no peers, its own write-ahead log under `<data_dir>/quorum/cluster/`), where each
//! quorum queue is a Raft group of one member ([`QuorumRegistry`], `member.rs`). A publish is
//! confirmed once its entry is fsynced in that log (a majority of one), and consumers, acks,
//! requeues, the delivery limit, dead-lettering, TTL and length limits are the group's state
//! machine's, exactly as on a cluster.
//!
//! What stays as it was: the broker's metadata (vhosts, users, exchanges, queues, bindings)
//! never goes through Raft on such a node, classic queues and streams are untouched, and the
//! node starts only when quorum queues need it: at start if the store holds quorum queues (or
//! the configuration makes them the default), else on the first quorum declare.
//!
//! The node's name is the management API's (`pigeon@<host>`), written to
//! `<data_dir>/quorum/node_name` the first time, and read back at each start: a queue's group
//! names its member by it (the Raft id is derived from it), so it must not change when the
//! host name does.

use super::QuorumRegistry;
use pigeon_broker::Broker;
use pigeon_cluster::{Cluster, ClusterConfig, MemoryApplier, NodeName, Timing};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// How long the local node may take to elect itself at start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Quorum queues on a node without `[cluster]`: the local node of one, started once needed.
pub(crate) struct LocalQuorum {
    broker: Arc<Broker>,
    /// `<data_dir>/quorum`.
    dir: PathBuf,
    registry: Arc<QuorumRegistry>,
    node: OnceLock<Cluster>,
    starting: tokio::sync::Mutex<()>,
}

/// What a queue declare needs beyond the broker (helper quorumone): the node's default queue
/// type and, on a node without `[cluster]` but with a data directory, its quorum queues.
#[derive(Default)]
pub(crate) struct Declares {
    /// `default_queue_type` from the configuration file.
    pub node_default: Option<String>,
    /// Quorum queues of a node without `[cluster]`.
    pub local: Option<Arc<LocalQuorum>>,
}

impl Declares {
    /// The queue type of a new queue declared with `arguments` (after the default applies).
    pub(crate) fn is_local_quorum(&self, arguments: &pigeon_broker::Table) -> bool {
        self.local.is_some() && pigeon_broker::queue::quorum::is_quorum_declaration(arguments)
    }
}

impl LocalQuorum {
    /// Quorum queues for `broker`, whose data directory is `data_dir`. Starts nothing.
    pub(crate) fn new(broker: &Arc<Broker>, data_dir: &Path) -> Arc<LocalQuorum> {
        Arc::new(LocalQuorum {
            broker: Arc::clone(broker),
            dir: data_dir.join("quorum"),
            registry: QuorumRegistry::new(broker),
            node: OnceLock::new(),
            starting: tokio::sync::Mutex::new(()),
        })
    }

    /// Whether the local node runs.
    pub(crate) fn is_started(&self) -> bool {
        self.node.get().is_some()
    }

    /// Whether the broker has quorum queues (restored from the store, say).
    pub(crate) fn broker_has_quorum_queues(&self) -> bool {
        self.broker
            .vhosts()
            .iter()
            .any(|v| v.queue_list().iter().any(|q| q.is_quorum()))
    }

    /// Starts the local node if it does not run yet, and attaches every quorum queue of the
    /// broker that has no member yet (those restored from the store, those declared while it
    /// started).
    pub(crate) async fn start(&self) -> Result<(), String> {
        if self.node.get().is_some() {
            return Ok(());
        }
        let _one = self.starting.lock().await;
        if self.node.get().is_some() {
            return Ok(());
        }
        let node = self.start_node().await?;
        let _ = self.node.set(node.clone());
        self.registry.set_cluster(node.clone());
        // x-expires on its quorum queues (helper quorumrest).
        super::expiry::spawn(&self.registry, super::expiry::Deleter::Local);
        tracing::info!(node = %node.name(), dir = %self.dir.display(), "quorum queues: started the local node (a cluster of one)");
        Ok(())
    }

    async fn start_node(&self) -> Result<Cluster, String> {
        let name = node_name(&self.dir)?;
        let node_name = NodeName::new(&name).map_err(|e| e.to_string())?;
        let config = ClusterConfig {
            node_name,
            // Never bound: the local node has no listener.
            listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            advertise: "local".into(),
            peers: Vec::new(),
            data_dir: self.dir.clone(),
            timing: Timing::default(),
            tls: None,
        };
        // The metadata group of the local node carries nothing: the broker's metadata stays
        // in its store, as on any plain node; the group exists because a node needs one.
        let node = Cluster::start_local(config, MemoryApplier::new())
            .await
            .map_err(|e| format!("cannot start the local quorum node: {e}"))?;
        if node.wait_for_leader(START_TIMEOUT).await.is_none() {
            node.shutdown().await;
            return Err("the local quorum node did not elect itself".into());
        }
        Ok(node)
    }

    /// A quorum queue `name` was declared in `vhost` (through any path): its group of one is
    /// formed here. Before the node runs, the queue waits for it (and the node is started).
    pub(crate) fn declared(self: &Arc<Self>, vhost: &str, name: &str) {
        {
            // A deleted queue of the same name left its entry (deletions on a plain node go
            // through the broker, which stops the member, not through the registry).
            let key = (vhost.to_string(), name.to_string());
            let mut queues = self.registry.queues.lock();
            if queues.contains_key(&key) {
                let fresh = self
                    .broker
                    .vhost(vhost)
                    .and_then(|v| v.queue(name).ok())
                    .is_some_and(|q| q.quorum().is_none());
                if fresh {
                    queues.remove(&key);
                }
            }
        }
        match self.node.get() {
            Some(node) => self.registry.placed(vhost, name, node.name()),
            None => {
                // Placed with the node (`set_cluster` attaches every queue without a member).
                let me = Arc::clone(self);
                tokio::spawn(async move {
                    if let Err(e) = me.start().await {
                        tracing::error!(error = %e, "quorum queues: the local node did not start");
                    }
                });
            }
        }
    }

    /// Stops the queues' members and the local node (the server is shutting down).
    pub(crate) async fn shutdown(&self) {
        if let Some(node) = self.node.get() {
            for member in self.registry.all() {
                member.close().await;
            }
            node.shutdown().await;
        }
    }
}

/// The local node's name: the one written in `dir/node_name`, else the API's node name
/// (written there now).
fn node_name(dir: &Path) -> Result<String, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let file = dir.join("node_name");
    match std::fs::read_to_string(&file) {
        Ok(name) if !name.trim().is_empty() => return Ok(name.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
    }
    let name = crate::http::node_name();
    std::fs::write(&file, format!("{name}\n"))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(name)
}
