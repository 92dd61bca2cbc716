//! Nodes of a test cluster in one process, on loopback, with their own data folders.
#![allow(dead_code, clippy::unwrap_used)]

use pigeon_cluster::meta::Json;
use pigeon_cluster::{
    Cluster, ClusterConfig, MemoryApplier, MetaCommand, NodeName, Role, Timing, TlsFiles,
};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// How long any one thing may take before a test fails.
pub const WITHIN: Duration = Duration::from_secs(20);

/// Raft timers short enough for tests (elections in well under a second).
pub fn timing() -> Timing {
    Timing {
        heartbeat: Duration::from_millis(50),
        election_min: Duration::from_millis(300),
        election_max: Duration::from_millis(600),
        quorum_heartbeat: Duration::from_millis(100),
        quorum_election_min: Duration::from_millis(300),
        quorum_election_max: Duration::from_millis(600),
        write_timeout: Duration::from_secs(2),
        join_timeout: Duration::from_secs(15),
        node_heartbeat: Duration::from_millis(100),
        node_heartbeat_misses: 5,
        quorum_idle_after: Some(Duration::from_millis(1000)),
    }
}

/// Waits until `check` is true, re-checking every 10 ms; fails the test after [`WITHIN`].
pub async fn within<F: FnMut() -> bool>(what: &str, mut check: F) {
    let deadline = tokio::time::Instant::now() + WITHIN;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Runs `f` and fails the test if it takes longer than [`WITHIN`].
pub async fn bounded<T>(what: &str, f: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WITHIN, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out: {what}"),
    }
}

pub fn vhost(n: usize) -> MetaCommand {
    MetaCommand::AddVhost {
        name: format!("vhost-{n}"),
        metadata: Json(format!("{{\"n\":{n}}}")),
    }
}

pub struct TestNode {
    pub name: String,
    pub addr: SocketAddr,
    pub cluster: Option<Cluster>,
    pub applier: MemoryApplier,
}

impl TestNode {
    pub fn cluster(&self) -> &Cluster {
        self.cluster.as_ref().expect("node is running")
    }
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    pub nodes: Vec<TestNode>,
    pub timing: Timing,
    /// The TLS files of each node by name (tls.rs); a node not named here speaks plain TCP.
    pub tls: HashMap<String, TlsFiles>,
}

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

impl TestCluster {
    /// Starts `n` nodes named node-a, node-b... each configured with the others as static peers.
    pub async fn start(n: usize) -> TestCluster {
        TestCluster::start_with(n, timing()).await
    }

    /// [`Self::start`] with other Raft timers.
    pub async fn start_with(n: usize, timing: Timing) -> TestCluster {
        let dir = tempfile::tempdir().unwrap();
        TestCluster::start_in(dir, n, timing, HashMap::new()).await
    }

    /// [`Self::start`] in `dir`, each node with its TLS files from `tls` (by name: node-a...).
    pub async fn start_in(
        dir: tempfile::TempDir,
        n: usize,
        timing: Timing,
        tls: HashMap<String, TlsFiles>,
    ) -> TestCluster {
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(bind().await);
        }
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let mut cluster = TestCluster {
            dir,
            nodes: Vec::new(),
            timing,
            tls,
        };
        for (i, listener) in listeners.into_iter().enumerate() {
            let name = format!("node-{}", (b'a' + i as u8) as char);
            let peers = addrs
                .iter()
                .filter(|a| **a != addrs[i])
                .map(|a| a.to_string())
                .collect();
            let applier = MemoryApplier::new();
            let node = cluster
                .launch(&name, listener, peers, applier.clone())
                .await;
            cluster.nodes.push(TestNode {
                name,
                addr: addrs[i],
                cluster: Some(node),
                applier,
            });
        }
        cluster
    }

    fn config(&self, name: &str, addr: SocketAddr, peers: Vec<String>) -> ClusterConfig {
        ClusterConfig {
            node_name: NodeName::new(name).unwrap(),
            listen: addr,
            advertise: addr.to_string(),
            peers,
            data_dir: self.dir.path().join(name),
            timing: self.timing.clone(),
            tls: self.tls.get(name).cloned(),
        }
    }

    async fn launch(
        &self,
        name: &str,
        listener: TcpListener,
        peers: Vec<String>,
        applier: MemoryApplier,
    ) -> Cluster {
        let addr = listener.local_addr().unwrap();
        Cluster::start_with_listener(self.config(name, addr, peers), listener, applier)
            .await
            .unwrap()
    }

    /// Adds a node that knows no peers (it joins with `join`).
    pub async fn add_lone_node(&mut self, name: &str) -> usize {
        let listener = bind().await;
        let addr = listener.local_addr().unwrap();
        // A node to be joined must not bootstrap a cluster of its own: give it a peer (the first
        // node) so that it waits, and finds the cluster formed, rather than initializing alone.
        let peers = vec![self.nodes[0].addr.to_string()];
        let applier = MemoryApplier::new();
        let node = self.launch(name, listener, peers, applier.clone()).await;
        self.nodes.push(TestNode {
            name: name.to_string(),
            addr,
            cluster: Some(node),
            applier,
        });
        self.nodes.len() - 1
    }

    /// Stops node `i` (its data stays).
    pub async fn stop(&mut self, i: usize) {
        let node = self.nodes[i].cluster.take().expect("node is running");
        bounded("node shutdown", node.shutdown()).await;
    }

    /// Restarts node `i` on the same address and data, with an empty in-memory applier: what it
    /// applies comes from its own snapshot and log, and from the leader.
    pub async fn restart(&mut self, i: usize) {
        let addr = self.nodes[i].addr;
        let listener = TcpListener::bind(addr).await.unwrap();
        let peers = self
            .nodes
            .iter()
            .filter(|n| n.addr != addr)
            .map(|n| n.addr.to_string())
            .collect();
        let applier = MemoryApplier::new();
        let name = self.nodes[i].name.clone();
        let node = self.launch(&name, listener, peers, applier.clone()).await;
        self.nodes[i].cluster = Some(node);
        self.nodes[i].applier = applier;
    }

    pub fn running(&self) -> impl Iterator<Item = (usize, &TestNode)> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(_, n)| n.cluster.is_some())
    }

    /// Waits until every running node knows the same running leader, which says it leads.
    pub async fn leader(&self) -> usize {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let leaders: Vec<Option<String>> = self
                .running()
                .map(|(_, n)| n.cluster().status().leader)
                .collect();
            if let Some(Some(name)) = leaders.first() {
                if leaders.iter().all(|l| l.as_deref() == Some(name.as_str())) {
                    if let Some((i, n)) = self.running().find(|(_, n)| &n.name == name) {
                        if n.cluster().status().role == Role::Leader {
                            return i;
                        }
                    }
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no agreed leader: {leaders:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].cluster.is_some() {
                self.stop(i).await;
            }
        }
    }
}
