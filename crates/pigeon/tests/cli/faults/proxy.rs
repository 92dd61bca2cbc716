//! A fault-injecting TCP proxy in front of every node's cluster listener, with a mode for each
//! directed link X -> Y (the connection X dials to Y: X's requests and Y's answers to them; Y's
//! own requests to X travel on the Y -> X connection, which Y dials).
//!
//! Every node dials a peer at the address in the Raft membership (the peer's `advertise`), the
//! same for every dialler, so one proxy listens for each destination node and tells the
//! dialling node apart by the socket's owner: the connecting socket's inode in
//! `/proc/net/tcp`, found among the nodes' open files in `/proc/<pid>/fd`. A connection from
//! no known node (a node gone since) passes.
//!
//! Modes (RabbitMQ's and Jepsen's usual network faults):
//! - `Pass`: bytes forwarded as they come;
//! - `Delay(d)`: each chunk forwarded `d` after it was read, in order;
//! - `Drop`: connections on the link closed (FIN), new ones accepted and closed at once;
//! - `Blackhole`: bytes read and discarded in both directions, new connections accepted and
//!   never answered; a connection that was blackholed is closed when the link heals (its byte
//!   stream lost frames: as a real connection would time out during a long partition);
//! - `Reset`: connections closed with a RST (`SO_LINGER` 0), new ones likewise.
//!
//! A one-way cut A -> B is `Blackhole` on (A, B) only: A cannot reach B, B still reaches A.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// What a directed link does to its traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    Delay(Duration),
    Drop,
    Blackhole,
    Reset,
}

/// The modes of every directed link and the nodes' process ids, shared by the proxies.
#[derive(Default)]
pub struct Links {
    modes: Mutex<HashMap<(usize, usize), Mode>>,
    pids: Mutex<HashMap<usize, u32>>,
    changed: Mutex<Option<watch::Sender<u64>>>,
}

impl Links {
    pub fn new() -> Arc<Links> {
        let (tx, _) = watch::channel(0);
        let links = Links::default();
        *links.changed.lock().unwrap() = Some(tx);
        Arc::new(links)
    }

    /// The mode of the link `from` -> `to`.
    pub fn mode(&self, from: usize, to: usize) -> Mode {
        self.modes
            .lock()
            .unwrap()
            .get(&(from, to))
            .copied()
            .unwrap_or(Mode::Pass)
    }

    /// Sets the link `from` -> `to` and tells the open connections.
    pub fn set(&self, from: usize, to: usize, mode: Mode) {
        self.modes.lock().unwrap().insert((from, to), mode);
        self.notify();
    }

    /// Every link back to `Pass`.
    pub fn heal(&self) {
        self.modes.lock().unwrap().clear();
        self.notify();
    }

    fn notify(&self) {
        if let Some(tx) = self.changed.lock().unwrap().as_ref() {
            tx.send_modify(|g| *g += 1);
        }
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed
            .lock()
            .unwrap()
            .as_ref()
            .map(watch::Sender::subscribe)
            .expect("the links' watch")
    }

    /// Node `i` runs as process `pid` (set at each start).
    pub fn set_pid(&self, i: usize, pid: u32) {
        self.pids.lock().unwrap().insert(i, pid);
    }

    fn pids(&self) -> Vec<(usize, u32)> {
        self.pids
            .lock()
            .unwrap()
            .iter()
            .map(|(i, p)| (*i, *p))
            .collect()
    }
}

/// The proxy in front of node `to`'s cluster listener; stopped when dropped.
pub struct Proxy {
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Listens on `listener` (bound by the harness before the nodes' configurations are
    /// written) and forwards to `target`, node `to`'s real cluster listener.
    pub fn start(
        listener: std::net::TcpListener,
        to: usize,
        target: SocketAddr,
        links: Arc<Links>,
    ) -> Proxy {
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let listener = TcpListener::from_std(listener).unwrap();
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, peer)) = listener.accept().await else {
                    continue;
                };
                let links = links.clone();
                tokio::spawn(async move {
                    let from = dialler(peer.port(), addr.port(), links.pids()).await;
                    connection(socket, from, to, target, links).await;
                });
            }
        });
        Proxy { task }
    }
}

/// Which node owns the socket at `127.0.0.1:port` connected to the proxy's `proxy_port`.
async fn dialler(port: u16, proxy_port: u16, pids: Vec<(usize, u32)>) -> Option<usize> {
    tokio::task::spawn_blocking(move || owner(port, proxy_port, &pids))
        .await
        .ok()
        .flatten()
}

fn owner(port: u16, proxy_port: u16, pids: &[(usize, u32)]) -> Option<usize> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let port_of = |field: &str| {
        field
            .rsplit(':')
            .next()
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    let inode = table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && port_of(f[1]) == Some(port) && port_of(f[2]) == Some(proxy_port))
            .then(|| f[9].to_string())
    })?;
    let target = format!("socket:[{inode}]");
    pids.iter().find_map(|(i, pid)| {
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == target))
            .then_some(*i)
    })
}

/// A chunk to write, not before its time.
type Out = (Instant, Vec<u8>);

/// Writes the chunks in order; gives the half back once the sender is gone (so that a
/// blackholed connection stays open, without a FIN).
async fn writer(
    mut half: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Out>,
) -> Option<OwnedWriteHalf> {
    while let Some((due, bytes)) = rx.recv().await {
        tokio::time::sleep_until(due).await;
        if half.write_all(&bytes).await.is_err() {
            return None;
        }
    }
    Some(half)
}

fn reset(socket: &TcpStream) {
    #[allow(deprecated)] // SO_LINGER 0 is the point: the close sends a RST
    let _ = socket.set_linger(Some(Duration::ZERO));
}

/// One connection from node `from` (None: unknown, always passes) to node `to`.
async fn connection(
    client: TcpStream,
    from: Option<usize>,
    to: usize,
    target: SocketAddr,
    links: Arc<Links>,
) {
    let mut changes = links.subscribe();
    let mode = |links: &Links| from.map_or(Mode::Pass, |f| links.mode(f, to));
    match mode(&links) {
        Mode::Drop => return,
        Mode::Reset => return reset(&client),
        Mode::Blackhole => {
            // Only read: the write half stays open (no FIN) until the link heals.
            let (read, write) = client.into_split();
            let _keep = write;
            return discard(read, None, from, to, links, changes).await;
        }
        Mode::Pass | Mode::Delay(_) => {}
    }
    let Ok(server) = TcpStream::connect(target).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    let _ = client.set_nodelay(true);
    let (mut cr, cw) = client.into_split();
    let (mut sr, sw) = server.into_split();
    let (to_server, rx) = mpsc::unbounded_channel();
    let w1 = tokio::spawn(writer(sw, rx));
    let (to_client, rx) = mpsc::unbounded_channel();
    let w2 = tokio::spawn(writer(cw, rx));
    let (mut cbuf, mut sbuf) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let mut current = mode(&links);
    loop {
        let delay = match current {
            Mode::Delay(d) => d,
            _ => Duration::ZERO,
        };
        tokio::select! {
            n = cr.read(&mut cbuf) => match n {
                Ok(n) if n > 0 => { let _ = to_server.send((Instant::now() + delay, cbuf[..n].to_vec())); }
                _ => break,
            },
            n = sr.read(&mut sbuf) => match n {
                Ok(n) if n > 0 => { let _ = to_client.send((Instant::now() + delay, sbuf[..n].to_vec())); }
                _ => break,
            },
            changed = changes.changed() => {
                if changed.is_err() { break; }
                current = mode(&links);
                match current {
                    Mode::Pass | Mode::Delay(_) => {}
                    Mode::Drop => break,
                    Mode::Reset => {
                        reset(cr.as_ref());
                        reset(sr.as_ref());
                        break;
                    }
                    Mode::Blackhole => {
                        drop((to_server, to_client));
                        let halves = tokio::time::timeout(Duration::from_secs(1), async {
                            (w1.await, w2.await)
                        })
                        .await;
                        let _keep = halves;
                        return discard(cr, Some(sr), from, to, links, changes).await;
                    }
                }
            }
        }
    }
    w1.abort();
    w2.abort();
}

/// Reads and discards what both ends send until the link leaves `Blackhole`, then closes.
async fn discard(
    mut client: OwnedReadHalf,
    mut server: Option<OwnedReadHalf>,
    from: Option<usize>,
    to: usize,
    links: Arc<Links>,
    mut changes: watch::Receiver<u64>,
) {
    let (mut a, mut b) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let (mut a_open, mut b_open) = (true, server.is_some());
    loop {
        tokio::select! {
            n = client.read(&mut a), if a_open => {
                if !matches!(n, Ok(n) if n > 0) { a_open = false; }
            }
            n = async { match server.as_mut() { Some(s) => s.read(&mut b).await, None => Ok(0) } }, if b_open => {
                if !matches!(n, Ok(n) if n > 0) { b_open = false; }
            }
            changed = changes.changed() => {
                if changed.is_err() || from.map_or(Mode::Pass, |f| links.mode(f, to)) != Mode::Blackhole {
                    return;
                }
            }
        }
    }
}
