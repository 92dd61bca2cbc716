//! A connection's outbound byte stream.
//!
//! Everything sent to a client (replies from its own task, deliveries from publishers' tasks) is
//! encoded straight into one buffer; a single writer task swaps it out and writes it with one
//! syscall, so frames produced while a write is in progress coalesce into the next one.
//! `backlog` (bytes encoded but not yet written) is the consumers' credit check: past
//! [`HIGH_WATER`] they stop taking messages and the queues keep them; once the writer brings it
//! under [`LOW_WATER`] it wakes the connection task to dispatch again.

use bytes::BytesMut;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// Above this many unwritten bytes consumers of the connection get no more messages.
pub const HIGH_WATER: usize = 4 * 1024 * 1024;
/// Below this many unwritten bytes starved consumers are resumed.
pub const LOW_WATER: usize = 1024 * 1024;

/// The shared outbound buffer of one connection.
pub struct Outbound {
    buf: Mutex<BytesMut>,
    backlog: AtomicUsize,
    wake_writer: Notify,
    /// Signalled when room came back after a consumer was refused for lack of it.
    pub resume: Notify,
    starved: AtomicBool,
    closing: AtomicBool,
    /// Signalled when the writer stopped (socket error or closed).
    pub writer_done: Notify,
    started: Instant,
    last_write_ms: AtomicU64,
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
            started: Instant::now(),
            last_write_ms: AtomicU64::new(0),
        }
    }

    /// Encodes frames with `f` into the buffer and wakes the writer.
    pub fn send(&self, f: impl FnOnce(&mut BytesMut)) {
        let mut buf = self.buf.lock();
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
        let now = self.started.elapsed().as_millis() as u64;
        now.saturating_sub(self.last_write_ms.load(Ordering::Relaxed))
    }

    /// Asks the writer to flush what is buffered and then stop.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake_writer.notify_one();
    }

    /// The writer: drains the buffer into `socket` until [`Outbound::close`] or an error.
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
            spare.clear();
            self.last_write_ms
                .store(self.started.elapsed().as_millis() as u64, Ordering::Relaxed);
            let left = self.backlog.fetch_sub(written, Ordering::Relaxed) - written;
            if left < LOW_WATER && self.starved.swap(false, Ordering::Relaxed) {
                self.resume.notify_one();
            }
        }
        let _ = socket.shutdown().await;
        self.closing.store(true, Ordering::Release);
        self.writer_done.notify_one();
    }
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound::new()
    }
}
