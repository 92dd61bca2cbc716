//! A connection's outbound byte stream.
//!
//! Everything sent to a client (replies from its own task, deliveries from publishers' tasks) is
//! encoded straight into one buffer; whoever writes swaps it out and writes it with one
//! syscall, so frames produced while a write is in progress coalesce into the next one. The
//! writer is either a task of its own ([`Outbound::run_writer`], AMQP) or the connection's own
//! task, which waits for [`Outbound::notified`] beside the socket and writes with
//! [`Outbound::flush`] (MQTT: one task per connection instead of two).
//!
//! `backlog` (bytes encoded but not yet written) is the consumers' credit check: past
//! [`HIGH_WATER`] they stop taking messages and the queues keep them; once the writer brings it
//! under [`LOW_WATER`] the connection task dispatches again.
//!
//! Buffers are kept between writes only while the connection writes a lot: an idle connection
//! (a PINGRESP or a heartbeat now and then) holds no buffer at all between writes.

use bytes::{Buf, BytesMut};
use parking_lot::Mutex;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Instant;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::futures::Notified;
use tokio::sync::Notify;

/// Above this many unwritten bytes consumers of the connection get no more messages.
pub const HIGH_WATER: usize = 4 * 1024 * 1024;
/// Below this many unwritten bytes starved consumers are resumed.
pub const LOW_WATER: usize = 1024 * 1024;
/// The first allocation of an empty buffer: a few small packets fit without growing it.
const FIRST_CAPACITY: usize = 256;
/// A batch at least this large keeps its buffer for the next one; smaller batches free it.
const KEEP_BATCH: usize = 4096;

/// The shared outbound buffer of one connection.
pub struct Outbound {
    buf: Mutex<BytesMut>,
    backlog: AtomicUsize,
    /// Wakes the writer: bytes were buffered, or (connection task as writer) something else
    /// wants the connection's attention ([`Outbound::wake`]).
    wake_writer: Notify,
    /// Signalled when room came back after a consumer was refused for lack of it (writer task
    /// only: a connection that writes itself learns it from [`Outbound::flush`]).
    pub resume: Notify,
    starved: AtomicBool,
    closing: AtomicBool,
    /// Signalled when the writer task stopped (socket error or closed).
    pub writer_done: Notify,
    /// When the last write reached the socket, in milliseconds after [`epoch`].
    last_write_ms: AtomicU64,
}

/// The process-wide origin of [`Outbound`] timestamps (one `Instant` less per connection).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    epoch().elapsed().as_millis() as u64
}

/// What [`Outbound::flush`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flushed {
    /// Everything buffered reached the socket; otherwise wait until it is writable.
    pub done: bool,
    /// The backlog fell under [`LOW_WATER`] after consumers were refused: dispatch again.
    pub resume: bool,
}

impl Outbound {
    /// An empty buffer.
    pub fn new() -> Outbound {
        Outbound {
            buf: Mutex::new(BytesMut::new()),
            backlog: AtomicUsize::new(0),
            wake_writer: Notify::new(),
            resume: Notify::new(),
            starved: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            writer_done: Notify::new(),
            last_write_ms: AtomicU64::new(now_ms()),
        }
    }

    /// Encodes frames with `f` into the buffer and wakes the writer.
    pub fn send(&self, f: impl FnOnce(&mut BytesMut)) {
        let mut buf = self.buf.lock();
        if buf.capacity() == 0 {
            buf.reserve(FIRST_CAPACITY);
        }
        let before = buf.len();
        f(&mut buf);
        let added = buf.len() - before;
        drop(buf);
        if added > 0 {
            self.backlog.fetch_add(added, Ordering::Relaxed);
            self.wake_writer.notify_one();
        }
    }

    /// Whether consumers may take another message; records the refusal so that the writer
    /// resumes them once the backlog drains.
    pub fn has_room(&self) -> bool {
        if self.backlog.load(Ordering::Relaxed) < HIGH_WATER {
            return true;
        }
        self.starved.store(true, Ordering::Relaxed);
        false
    }

    /// Milliseconds since the last write reached the socket.
    pub fn idle_ms(&self) -> u64 {
        now_ms().saturating_sub(self.last_write_ms.load(Ordering::Relaxed))
    }

    /// Asks the writer task to flush what is buffered and then stop.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake_writer.notify_one();
    }

    /// Wakes the task waiting in [`Outbound::notified`] (a stored wake-up if none waits yet).
    pub fn wake(&self) {
        self.wake_writer.notify_one();
    }

    /// Completes after [`Outbound::send`] buffered bytes or [`Outbound::wake`] was called, for a
    /// connection task that writes itself.
    pub fn notified(&self) -> Notified<'_> {
        self.wake_writer.notified()
    }

    /// Writes what is buffered to `socket` without waiting, for a connection task that writes
    /// itself. `pending` is that task's buffer of bytes taken out and not yet written; after
    /// `done: false` it waits until `socket` is writable and calls this again.
    pub fn flush(&self, socket: &TcpStream, pending: &mut BytesMut) -> io::Result<Flushed> {
        let mut resume = false;
        loop {
            if pending.is_empty() {
                let mut buf = self.buf.lock();
                if buf.is_empty() {
                    return Ok(Flushed { done: true, resume });
                }
                std::mem::swap(&mut *buf, pending);
            }
            match socket.try_write(pending) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    resume |= self.wrote(n);
                    pending.advance(n);
                    if pending.is_empty() {
                        // What was allocated: the rest after the cursor, plus what was written.
                        let allocated = pending.capacity() + n;
                        recycle(pending, n, allocated);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return Ok(Flushed {
                        done: false,
                        resume,
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Accounts for `n` bytes that reached the socket; true when starved consumers may resume.
    fn wrote(&self, n: usize) -> bool {
        self.last_write_ms.store(now_ms(), Ordering::Relaxed);
        let left = self.backlog.fetch_sub(n, Ordering::Relaxed) - n;
        left < LOW_WATER && self.starved.swap(false, Ordering::Relaxed)
    }

    /// The writer task: drains the buffer into `socket` until [`Outbound::close`] or an error.
    pub async fn run_writer<W: AsyncWrite + Unpin>(&self, mut socket: W) {
        let mut spare = BytesMut::new();
        loop {
            {
                let mut buf = self.buf.lock();
                std::mem::swap(&mut *buf, &mut spare);
            }
            if spare.is_empty() {
                if self.closing.load(Ordering::Acquire) {
                    break;
                }
                self.wake_writer.notified().await;
                continue;
            }
            if let Err(e) = socket.write_all(&spare).await {
                tracing::debug!(error = %e, "write failed");
                break;
            }
            let written = spare.len();
            let allocated = spare.capacity();
            recycle(&mut spare, written, allocated);
            if self.wrote(written) {
                self.resume.notify_one();
            }
        }
        let _ = socket.shutdown().await;
        self.closing.store(true, Ordering::Release);
        self.writer_done.notify_one();
    }
}

/// Empties a buffer whose last `batch` bytes were all written: it is kept for the next batch
/// when batches are large and it is not much larger than they are, and freed otherwise.
fn recycle(spare: &mut BytesMut, batch: usize, allocated: usize) {
    if batch >= KEEP_BATCH && allocated <= 8 * batch {
        spare.clear();
    } else {
        *spare = BytesMut::new();
    }
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound::new()
    }
}
