//! Fault tests (issue 13, item 7; docs/clustering.md, "Fault tests"): 3 or 5 `pigeon`
//! processes on 127.0.0.1, each with its own ports and data directory, a fault-injecting
//! proxy on every directed node-to-node link (`proxy.rs`), processes killed (SIGKILL),
//! paused (SIGSTOP/SIGCONT), stopped (SIGTERM) and restarted, clients publishing with confirms
//! and consuming with manual acks throughout, reconnecting to the nodes that answer
//! (`workload.rs`), and a checker of what they saw (`checker.rs`).
//!
//! Seeded: the seed is printed at the start of each test and `PIGEON_FAULT_SEED` sets it.
//! Bounded: every wait has a deadline.

#![cfg(target_os = "linux")] // the proxies find the dialling node through /proc

mod checker;
mod proxy;
// The metadata group's liveness-driven failover and its heartbeat (helper metaelect).
mod meta_failover;
// Read barrier (helper readwrites): a follower held behind.
mod reads;
mod scenarios;
// Stale deliveries of a node catching up (soakdup).
mod stale;
mod upgrade;
mod workload;

use super::cluster::free_port;
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use pigeon_tests::pigeon_bin;
use proxy::{Links, Mode, Proxy};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::Value;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Waits for `fut` at most `secs` seconds, failing the test with `what` after.
pub async fn bounded<F: Future>(what: &str, secs: u64, fut: F) -> F::Output {
    match tokio::time::timeout(Duration::from_secs(secs), fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {secs} s waiting for {what}"),
    }
}

/// The test's random source: `PIGEON_FAULT_SEED` or a fresh seed, printed either way.
pub fn seeded(test: &str) -> (u64, StdRng) {
    let seed = std::env::var("PIGEON_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("{test}: PIGEON_FAULT_SEED={seed}");
    (seed, StdRng::seed_from_u64(seed))
}

/// One node: its configuration, fixed client ports (the same across restarts, so clients
/// find it again) and its process while it runs.
pub struct FNode {
    pub name: String,
    config: PathBuf,
    pub amqp: SocketAddr,
    pub http: SocketAddr,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
    stopped: bool,
}

impl FNode {
    pub fn running(&self) -> bool {
        self.child.is_some()
    }

    pub fn api(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.amqp)
    }

    fn pid(&self) -> Option<rustix::process::Pid> {
        let child = self.child.as_ref()?;
        rustix::process::Pid::from_raw(child.id() as i32)
    }

    fn signal(&self, sig: rustix::process::Signal) {
        if let Some(pid) = self.pid() {
            let _ = rustix::process::kill_process(pid, sig);
        }
    }

    /// The tail of its log (all runs), for a failure's message.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = self.log.lock().unwrap();
        let from = log.len().saturating_sub(lines);
        log[from..].join("\n")
    }
}

/// A cluster of `n` nodes behind their proxies.
pub struct Cluster {
    pub nodes: Vec<FNode>,
    pub links: Arc<Links>,
    _proxies: Vec<Proxy>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Writes the configurations and starts every node (in parallel, so that the first
    /// formation finds every listed peer up).
    pub async fn start(n: usize) -> Cluster {
        Cluster::start_with(n, "").await
    }

    /// [`Self::start`] with `extra` lines appended to every node's `[cluster]` table.
    pub async fn start_with(n: usize, extra: &str) -> Cluster {
        Cluster::start_opts(n, extra, true).await
    }

    /// [`Self::start`] without the proxies: the nodes dial each other directly, so a killed
    /// node's port refuses connections as a real one does (behind a proxy, which accepts, it
    /// looks like a silent failure), and `links` does nothing. For measurements.
    pub async fn start_direct(n: usize) -> Cluster {
        Cluster::start_opts(n, "", false).await
    }

    async fn start_opts(n: usize, extra: &str, proxy: bool) -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let links = Links::new();
        let listeners: Vec<std::net::TcpListener> = (0..n)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let reals: Vec<SocketAddr> = (0..n)
            .map(|_| format!("127.0.0.1:{}", free_port()).parse().unwrap())
            .collect();
        let proxied: Vec<SocketAddr> = if proxy {
            listeners.iter().map(|l| l.local_addr().unwrap()).collect()
        } else {
            reals.clone()
        };
        let mut proxies = Vec::new();
        let mut nodes = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let real = reals[i];
            if proxy {
                proxies.push(Proxy::start(listener, i, real, links.clone()));
            }
            let data = dir.path().join(format!("n{i}"));
            std::fs::create_dir_all(&data).unwrap();
            // Every node dials its peers through their proxies: `advertise` (what the Raft
            // membership records, and so what every other node dials) and `peers` are the
            // proxies' addresses; only `listen` is the node's own socket.
            let peers: Vec<String> = proxied.iter().map(|a| format!("'{a}'")).collect();
            let text = format!(
                "[server]\ndata_dir = '{}'\nmqtt_sys_interval = 0\n\n[cluster]\n\
                 node_name = 'rabbit@n{i}'\nlisten = '{real}'\nadvertise = '{}'\npeers = [{}]\n\
                 write_timeout_ms = 3000\n{extra}",
                data.display(),
                proxied[i],
                peers.join(", ")
            );
            let config = dir.path().join(format!("n{i}.toml"));
            std::fs::write(&config, text).unwrap();
            nodes.push(FNode {
                name: format!("rabbit@n{i}"),
                config,
                amqp: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
                http: format!("127.0.0.1:{}", free_port()).parse().unwrap(),
                child: None,
                log: Arc::default(),
                stopped: false,
            });
        }
        let mut cluster = Cluster {
            nodes,
            links,
            _proxies: proxies,
            _dir: dir,
        };
        let spawned: Vec<_> = (0..n).map(|i| cluster.spawn(i)).collect();
        for (i, ready) in spawned.into_iter().enumerate() {
            cluster.wait_ready(i, ready).await;
        }
        cluster.until_healthy().await;
        cluster
    }

    /// Starts node `i`'s process; the receiver says when it listens.
    fn spawn(&mut self, i: usize) -> std::sync::mpsc::Receiver<()> {
        let node = &mut self.nodes[i];
        assert!(node.child.is_none(), "{} runs already", node.name);
        let mut child = Command::new(pigeon_bin())
            .arg("--config")
            .arg(&node.config)
            .args(["--amqp-listen", &node.amqp.to_string()])
            .args(["--management-listen", &node.http.to_string()])
            .args(["--mqtt-listen", "127.0.0.1:0"])
            .args(["--prometheus-listen", "127.0.0.1:0"])
            .args(["--mqtt-ws-listen", "127.0.0.1:0"])
            .args(["--stream-listen", "127.0.0.1:0"])
            .args(["--log", "info"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the pigeon binary");
        self.links.set_pid(i, child.id());
        let stderr = child.stderr.take().unwrap();
        let log = node.log.clone();
        log.lock()
            .unwrap()
            .push(format!("---- {} started ----", node.name));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut told = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if !told && line.contains("listening for AMQP 0-9-1 on") {
                    told = true;
                    let _ = tx.send(());
                }
                log.lock().unwrap().push(line);
            }
        });
        node.child = Some(child);
        node.stopped = false;
        rx
    }

    async fn wait_ready(&mut self, i: usize, ready: std::sync::mpsc::Receiver<()>) {
        let ok = tokio::task::spawn_blocking(move || ready.recv_timeout(Duration::from_secs(30)))
            .await
            .unwrap();
        if let Err(e) = ok {
            // Exited (its log says why) or still starting (slow, or stuck: its threads' kernel
            // wait channels tell where, e.g. an fsync).
            let exited = self.nodes[i]
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            let waits = self.nodes[i]
                .pid()
                .map(|p| wait_channels(p.as_raw_nonzero().get()));
            panic!(
                "{} did not start listening ({e:?}; exited: {exited:?}; threads waiting in: \
                 {waits:?}); its log:\n{}",
                self.nodes[i].name,
                self.nodes[i].log_tail(60)
            );
        }
    }

    /// Starts node `i` again (same configuration, data and ports) and waits until it listens.
    pub async fn restart(&mut self, i: usize) {
        let ready = self.spawn(i);
        self.wait_ready(i, ready).await;
    }

    /// SIGKILL, reaped.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait (bounded) for the process to exit; SIGKILL after 30 s.
    pub async fn terminate(&mut self, i: usize) {
        if self.nodes[i].stopped {
            self.resume(i);
        }
        self.nodes[i].signal(rustix::process::Signal::TERM);
        let Some(mut child) = self.nodes[i].child.take() else {
            return;
        };
        let status = tokio::task::spawn_blocking(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    return Some(status);
                }
                if std::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .await
        .unwrap();
        assert!(
            status.is_some(),
            "{} did not exit within 30 s of SIGTERM; its log:\n{}",
            self.nodes[i].name,
            self.nodes[i].log_tail(40)
        );
    }

    /// SIGSTOP: the process keeps its sockets but answers nothing.
    pub fn pause(&mut self, i: usize) {
        self.nodes[i].signal(rustix::process::Signal::STOP);
        self.nodes[i].stopped = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self, i: usize) {
        self.nodes[i].signal(rustix::process::Signal::CONT);
        self.nodes[i].stopped = false;
    }

    /// Cuts node `i` off from every other node in both directions, with `mode`.
    pub fn isolate(&self, i: usize, mode: Mode) {
        for j in 0..self.nodes.len() {
            if j != i {
                self.links.set(i, j, mode);
                self.links.set(j, i, mode);
            }
        }
    }

    /// Splits the nodes into `side` and the rest, with `mode` on every link across.
    pub fn partition(&self, side: &[usize], mode: Mode) {
        for &a in side {
            for b in (0..self.nodes.len()).filter(|b| !side.contains(b)) {
                self.links.set(a, b, mode);
                self.links.set(b, a, mode);
            }
        }
    }

    /// Every link back to `Pass`, every paused node resumed.
    pub fn heal(&mut self) {
        self.links.heal();
        for i in 0..self.nodes.len() {
            if self.nodes[i].stopped {
                self.resume(i);
            }
        }
    }

    /// A GET of the management API on node `i` as guest (None: no answer).
    pub async fn get(&self, i: usize, path: &str) -> Option<Value> {
        get(&self.nodes[i].api(), path).await
    }

    /// Waits until every running node sees every member running and agrees on a leader of
    /// the metadata group.
    pub async fn until_healthy(&self) {
        let n = self.nodes.len();
        bounded("every node to see the whole cluster running", 90, async {
            loop {
                let mut leaders = Vec::new();
                for i in (0..n).filter(|&i| self.nodes[i].running()) {
                    let Some(s) = self.get(i, "/api/pigeon/cluster").await else {
                        break;
                    };
                    let running = s["members"]
                        .as_array()
                        .map_or(0, |m| m.iter().filter(|m| m["running"] == true).count());
                    if running == n && s["leader"].is_string() {
                        leaders.push(s["leader"].clone());
                    }
                }
                let all = (0..n).filter(|&i| self.nodes[i].running()).count();
                if leaders.len() == all && leaders.windows(2).all(|w| w[0] == w[1]) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
    }

    /// The metadata group's leader as node `i` sees it.
    pub async fn meta_leader(&self, i: usize) -> Option<usize> {
        let s = self.get(i, "/api/pigeon/cluster").await?;
        self.index_of(s["leader"].as_str()?)
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The quorum queue's leader and members as node `i` sees them.
    pub async fn queue_members(&self, i: usize, queue: &str) -> Option<(usize, Vec<usize>)> {
        let q = self.get(i, &format!("/api/queues/%2f/{queue}")).await?;
        let leader = self.index_of(q["leader"].as_str()?)?;
        let members = q["members"]
            .as_array()?
            .iter()
            .filter_map(|m| self.index_of(m.as_str()?))
            .collect();
        Some((leader, members))
    }

    /// Waits until a node other than those in `not` leads the metadata group, as seen by
    /// node `from`.
    pub async fn until_meta_leader_outside(&self, from: usize, not: &[usize]) {
        bounded("a new metadata leader in the majority", 60, async {
            loop {
                if let Some(l) = self.meta_leader(from).await {
                    if !not.contains(&l) {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
    }

    /// Waits until node `from` sees a leader of `queue` outside `not`.
    pub async fn until_queue_leader_outside(&self, from: usize, queue: &str, not: &[usize]) {
        bounded(&format!("a new leader of {queue}"), 60, async {
            loop {
                if let Some((l, _)) = self.queue_members(from, queue).await {
                    if !not.contains(&l) {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
        .await;
    }

    /// Declares a durable queue on node `i` (a quorum queue of three members when `quorum`),
    /// retrying while the cluster forms.
    pub async fn declare(&self, i: usize, queue: &str, quorum: bool) {
        let mut args = FieldTable::default();
        if quorum {
            args.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
            args.insert("x-quorum-initial-group-size".into(), AMQPValue::LongInt(3));
        }
        let url = self.nodes[i].url();
        bounded(&format!("the cluster to declare {queue}"), 60, async {
            loop {
                let Ok(c) = Connection::connect(&url, ConnectionProperties::default()).await else {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let ch = c.create_channel().await.unwrap();
                let durable = QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                };
                match ch.queue_declare(queue.into(), durable, args.clone()).await {
                    Ok(_) => {
                        let _ = c.close(200, "bye".into()).await;
                        return;
                    }
                    Err(e) if e.to_string().contains("timed out") => continue,
                    Err(e) => panic!("queue.declare {queue} failed: {e}"),
                }
            }
        })
        .await;
    }

    /// Checks that every node's definitions (vhosts, users, permissions, policies,
    /// parameters, exchanges, queues, bindings) become identical: the metadata converged
    /// after healing, without manual steps.
    pub async fn until_same_metadata(&self) -> Value {
        let n = self.nodes.len();
        let mut last = Vec::new();
        let converged = tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                last.clear();
                for i in 0..n {
                    last.push(
                        self.get(i, "/api/definitions")
                            .await
                            .map(|d| checker::normalize_definitions(&d)),
                    );
                }
                if last.iter().all(Option::is_some) && last.windows(2).all(|w| w[0] == w[1]) {
                    return last[0].clone().unwrap();
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
        .await;
        match converged {
            Ok(d) => d,
            Err(_) => panic!(
                "the nodes' metadata did not converge within 60 s:\n{}",
                last.iter()
                    .enumerate()
                    .map(|(i, d)| format!("n{i}: {}", d.as_ref().unwrap_or(&Value::Null)))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        }
    }

    /// The tails of every node's log, for a failure's message.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("==== {} ====\n{}", n.name, n.log_tail(30)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].stopped {
                self.resume(i);
            }
            self.kill(i);
        }
    }
}

/// The kernel functions the threads of process `pid` wait in (`/proc/<pid>/task/*/wchan`),
/// counted: where a node that does not start is stuck.
fn wait_channels(pid: i32) -> Vec<(String, usize)> {
    let mut counts: std::collections::BTreeMap<String, usize> = Default::default();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            let wchan = std::fs::read_to_string(task.path().join("wchan")).unwrap_or_default();
            *counts.entry(wchan).or_default() += 1;
        }
    }
    counts.into_iter().collect()
}

/// A GET as guest, with a short timeout (a paused node answers nothing).
pub async fn get(api: &str, path: &str) -> Option<Value> {
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{api}{path}"))
        .basic_auth("guest", Some("guest"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .ok()?;
    if !r.status().is_success() {
        return None;
    }
    r.json().await.ok()
}

/// A PUT as guest; the status code (None: no answer).
pub async fn put(api: &str, path: &str, body: Value, secs: u64) -> Option<u16> {
    let client = reqwest::Client::new();
    let r = client
        .put(format!("{api}{path}"))
        .basic_auth("guest", Some("guest"))
        .json(&body)
        .timeout(Duration::from_secs(secs))
        .send()
        .await
        .ok()?;
    Some(r.status().as_u16())
}
