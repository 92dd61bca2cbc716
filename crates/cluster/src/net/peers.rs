//! The calling side: one connection per peer, shared by every caller on this node.

use super::frame::{self, Envelope, Request, Response};
use super::tls::{self, ClusterTls};
use crate::ClusterError;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The first wait after a failed connection attempt; doubled after each further failure.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
/// The longest wait between attempts.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

/// A live connection: its writer's queue (each request's id and frame), the callers waiting
/// for answers, its two tasks.
struct Link {
    tx: mpsc::UnboundedSender<(u64, Vec<u8>)>,
    pending: Pending,
    closed: Arc<AtomicBool>,
    tasks: [JoinHandle<()>; 2],
}

/// A call's place in its link's pending set, removed when the call ends for any reason.
struct Waiting<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.pending.lock().remove(&self.id);
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

#[derive(Default)]
struct PeerState {
    link: Option<Arc<Link>>,
    failures: u32,
    retry_at: Option<Instant>,
}

struct Peer {
    addr: String,
    tls: Option<Arc<ClusterTls>>,
    lost: Arc<tokio::sync::Notify>,
    state: tokio::sync::Mutex<PeerState>,
    /// The last connection attempt was refused (nothing listens there: the process is gone);
    /// cleared by the next connection made. Node liveness takes it as down at once.
    refused: AtomicBool,
}

/// The connections to the other nodes, by address. Cheap to clone.
#[derive(Clone, Default)]
pub struct Peers {
    peers: Arc<Mutex<HashMap<String, Arc<Peer>>>>,
    next_id: Arc<AtomicU64>,
    /// TLS for every connection, or plain TCP.
    tls: Option<Arc<ClusterTls>>,
    /// Notified when an established connection closes (node liveness probes at once: a killed
    /// peer is then down without waiting for the next ping, rafttiming).
    lost: Arc<tokio::sync::Notify>,
}

impl Peers {
    /// No connections yet; they are made on first use, over plain TCP.
    pub fn new() -> Peers {
        Peers::default()
    }

    /// [`Self::new`], every connection over TLS with this node's certificate (`None`: plain).
    pub fn with_tls(tls: Option<Arc<ClusterTls>>) -> Peers {
        Peers {
            tls,
            ..Peers::default()
        }
    }

    /// Sends `request` to the node at `addr` and waits up to `timeout` for its answer.
    pub async fn call(
        &self,
        addr: &str,
        request: Request,
        timeout: Duration,
    ) -> Result<Response, ClusterError> {
        let unreachable = |reason: String| ClusterError::Unreachable {
            addr: addr.to_string(),
            reason,
        };
        let peer = {
            let mut peers = self.peers.lock();
            peers
                .entry(addr.to_string())
                .or_insert_with(|| {
                    Arc::new(Peer {
                        addr: addr.to_string(),
                        tls: self.tls.clone(),
                        lost: self.lost.clone(),
                        state: Default::default(),
                        refused: AtomicBool::new(false),
                    })
                })
                .clone()
        };
        let link = peer.link().await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = frame::encode(&Envelope::Request(id, request))
            .map_err(|e| unreachable(format!("cannot encode: {e}")))?;
        let (tx, rx) = oneshot::channel();
        link.pending.lock().insert(id, tx);
        // However the wait ends (an answer, the timeout, or the caller's future dropped, as
        // openraft's replication does after its heartbeat interval), the request leaves the
        // pending set, so that the writer does not send one nobody waits for any more.
        let _waiting = Waiting {
            pending: &link.pending,
            id,
        };
        if link.tx.send((id, bytes)).is_err() {
            return Err(unreachable("connection closed".into()));
        }
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(_)) => Err(unreachable("connection lost before the answer".into())),
            Err(_) => Err(unreachable(format!("no answer within {timeout:?}"))),
        }
    }

    /// Whether the last attempt to connect to `addr` was refused (and no connection was made
    /// since): the peer's port has no listener, so its process is gone or not started.
    pub fn refused(&self, addr: &str) -> bool {
        self.peers
            .lock()
            .get(addr)
            .is_some_and(|p| p.refused.load(Ordering::Relaxed))
    }

    /// Waits until a connection to a peer closes (its process gone, or the network).
    pub(crate) async fn connection_lost(&self) {
        self.lost.notified().await;
    }

    /// Closes every connection (on shutdown).
    pub fn close_all(&self) {
        self.peers.lock().clear();
    }
}

impl Peer {
    /// The live connection, made if there is none and the backoff allows.
    async fn link(&self) -> Result<Arc<Link>, ClusterError> {
        let mut state = self.state.lock().await;
        if let Some(link) = &state.link {
            if !link.closed.load(Ordering::Acquire) {
                return Ok(link.clone());
            }
            state.link = None;
        }
        if let Some(at) = state.retry_at {
            if Instant::now() < at {
                return Err(ClusterError::Unreachable {
                    addr: self.addr.clone(),
                    reason: format!(
                        "backing off after {} failed connection attempts",
                        state.failures
                    ),
                });
            }
        }
        match tokio::time::timeout(
            CONNECT_TIMEOUT,
            dial(&self.addr, self.tls.as_deref(), &self.lost),
        )
        .await
        {
            Ok(Ok(link)) => {
                if state.failures > 0 {
                    tracing::info!(peer = %self.addr, "cluster: connected to peer after {} failed attempts", state.failures);
                }
                state.failures = 0;
                state.retry_at = None;
                self.refused.store(false, Ordering::Relaxed);
                let link = Arc::new(link);
                state.link = Some(link.clone());
                Ok(link)
            }
            outcome => {
                let (reason, tls_refused) = match outcome {
                    Ok(Err(e)) => {
                        self.refused.store(
                            e.kind() == std::io::ErrorKind::ConnectionRefused,
                            Ordering::Relaxed,
                        );
                        (e.to_string(), e.kind() == std::io::ErrorKind::InvalidData)
                    }
                    _ => {
                        self.refused.store(false, Ordering::Relaxed);
                        (format!("no connection within {CONNECT_TIMEOUT:?}"), false)
                    }
                };
                if tls_refused && state.failures == 0 {
                    // The peer's certificate did not verify (or it refused ours): one line per
                    // run of failures, not one per attempt.
                    tracing::warn!(peer = %self.addr, "cluster: TLS handshake with peer failed: {reason}");
                }
                state.failures = state.failures.saturating_add(1);
                let wait = BACKOFF_FIRST
                    .saturating_mul(1 << state.failures.min(7))
                    .min(BACKOFF_MAX);
                state.retry_at = Some(Instant::now() + wait);
                if state.failures == 1 {
                    tracing::debug!(peer = %self.addr, "cluster: cannot connect to peer: {reason}");
                }
                Err(ClusterError::Unreachable {
                    addr: self.addr.clone(),
                    reason,
                })
            }
        }
    }
}

/// Opens the connection to a peer: TCP, then, with TLS, the handshake (this node's certificate
/// presented, the peer's verified against the CA and, unless switched off, its name against the
/// host dialled), and starts its reader and writer.
async fn dial(
    addr: &str,
    tls: Option<&ClusterTls>,
    lost: &Arc<tokio::sync::Notify>,
) -> std::io::Result<Link> {
    let stream = TcpStream::connect(addr).await?;
    // Raft messages are small and latency-bound: no Nagle delay.
    stream.set_nodelay(true)?;
    match tls {
        None => Ok(start_link(stream, lost.clone())),
        Some(tls) => {
            let name = tls::server_name(addr)?;
            let stream = tls.connector().connect(name, stream).await?;
            Ok(start_link(stream, lost.clone()))
        }
    }
}

fn start_link<S>(stream: S, lost: Arc<tokio::sync::Notify>) -> Link
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Vec<u8>)>();
    let pending: Pending = Arc::default();
    let closed = Arc::new(AtomicBool::new(false));
    let write_closed = closed.clone();
    let write_pending = pending.clone();
    let write_task = tokio::spawn(async move {
        while let Some((id, bytes)) = rx.recv().await {
            // A request whose caller gave up (timed out) is not sent: under load, openraft
            // resends the same entries after each timeout of its heartbeat interval, and
            // sending the abandoned copies too filled the link and the peer's log with
            // retransmissions that every later request waited behind, so that it never
            // drained (bench/results/2026-12-07-cluster.md, finding 1).
            let wanted = write_pending.lock().contains_key(&id);
            if wanted && writer.write_all(&bytes).await.is_err() {
                break;
            }
            // TLS buffers records: flush once the queue is empty (a no-op on plain TCP).
            if rx.is_empty() && writer.flush().await.is_err() {
                break;
            }
        }
        write_closed.store(true, Ordering::Release);
    });
    let read_pending = pending.clone();
    let read_closed = closed.clone();
    let read_task = tokio::spawn(async move {
        loop {
            match frame::read(&mut reader).await {
                Ok(Some(Envelope::Response(id, response))) => {
                    if let Some(tx) = read_pending.lock().remove(&id) {
                        let _ = tx.send(response);
                    }
                }
                Ok(Some(Envelope::Request(..))) => {
                    tracing::warn!(
                        "cluster: a peer sent a request on our outgoing connection; closing it"
                    );
                    break;
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!("cluster: peer connection failed: {e}");
                    break;
                }
            }
        }
        read_closed.store(true, Ordering::Release);
        // Dropping the senders tells every waiting caller that the connection is gone.
        read_pending.lock().clear();
        lost.notify_one();
    });
    Link {
        tx,
        pending,
        closed,
        tasks: [write_task, read_task],
    }
}
