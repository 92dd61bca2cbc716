//! A connection's outbound byte stream.
//!
//! Everything sent to a client (replies from its own task, deliveries from publishers' tasks) is
//! encoded straight into one buffer; whoever writes swaps it out and writes it with one
//! syscall, so frames produced while a write is in progress coalesce into the next one. The
//! writer is either a task of its own ([`Outbound::run_writer`]) or the connection's own
//! task, which waits for [`Outbound::notified`] beside the socket and writes with
//! [`Outbound::flush`] (MQTT and AMQP: one task per connection instead of two).
//!
//! `backlog` (bytes encoded but not yet written) is the consumers' credit check: past
//! [`HIGH_WATER`] they stop taking messages and the queues keep them; once the writer brings it
//! under [`LOW_WATER`] the connection task dispatches again.
//!
//! Buffers are kept between writes only while the connection writes a lot: an idle connection
//! (a PINGRESP or a heartbeat now and then) holds no buffer at all between writes.

use bytes::{Buf, BytesMut};
use futures_util::task::AtomicWaker;
use parking_lot::Mutex;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
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
    /// wants the connection's attention ([`Outbound::wake`]). One task waits (the writer task,
    /// or the connection's own), and it polls without a future to keep: a tokio `Notified`
    /// was 64 bytes of every idle MQTT connection's task (docs/performance.md).
    wake_writer: AtomicWaker,
    /// A wake-up not yet seen by the writer (kept when nobody waits, as `Notify`'s permit).
    woken: AtomicBool,
    /// A hibernated MQTT connection's socket became readable ([`Outbound::wake_readable`]):
    /// a wake-up of its own, which `woken` does not record, so that the hibernated state can
    /// tell a lone PINGREQ (answered where it sleeps) from every other reason to resume.
    readable: AtomicBool,
    /// Signalled when room came back after a consumer was refused for lack of it (writer task
    /// only: a connection that writes itself learns it from [`Outbound::flush`]).
    // The writer task's (`run_writer`, used by the stream protocol's connections) alone:
    // created at its first use, 8 bytes where a `Notify` is 32 in every connection's.
    pub resume: LazyNotify,
    starved: AtomicBool,
    closing: AtomicBool,
    /// When the last write reached the socket, in milliseconds after [`epoch`], modulo 2^32
    /// (read as a difference, [`Outbound::idle_ms`]: right for idle periods under 49 days).
    last_write_ms: AtomicU32,
    /// Bytes that reached the socket (the registry's `send_oct`).
    sent_oct: AtomicU64,
    /// Writes buffered: frames or packets, several per delivery (`send_cnt`).
    sent_cnt: AtomicU64,
    /// The connection's keep-alive deadline in milliseconds after [`epoch`] ([`NO_DEADLINE`]:
    /// none, [`EXPIRED`]: the server's sweep found it passed and woke the task). One shared
    /// sweep (`Registry::sweep_keepalive`) instead of a timer in every connection's task.
    deadline_ms: AtomicU64,
}

// Size: an `Arc<Outbound>` is one allocation per connection, idle or not: 112 bytes of
// fields, in jemalloc's 128-byte class (it was 160 with the `Notify` inline and a 64-bit
// `last_write_ms`; docs/performance.md, "Idle connections"). The test
// `outbound::tests::an_outbound_fits_its_size_class` keeps it there.

/// A `Notify` created at its first use (dereferencing it creates it).
#[derive(Default)]
pub struct LazyNotify(once_cell::race::OnceBox<Notify>);

impl std::ops::Deref for LazyNotify {
    type Target = Notify;

    fn deref(&self) -> &Notify {
        self.0.get_or_init(|| Box::new(Notify::new()))
    }
}

/// [`Outbound`]'s keep-alive deadline when there is none.
const NO_DEADLINE: u64 = 0;
/// [`Outbound`]'s keep-alive deadline once the sweep found it passed.
const EXPIRED: u64 = 1;

/// The process-wide origin of [`Outbound`] timestamps (one `Instant` less per connection).
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

pub(crate) fn now_ms() -> u64 {
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
            wake_writer: AtomicWaker::new(),
            woken: AtomicBool::new(false),
            readable: AtomicBool::new(false),
            resume: LazyNotify::default(),
            starved: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            last_write_ms: AtomicU32::new(now_ms() as u32),
            deadline_ms: AtomicU64::new(NO_DEADLINE),
            sent_oct: AtomicU64::new(0),
            sent_cnt: AtomicU64::new(0),
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
        if added > 0 {
            // Counted before the lock is released: a writer that takes these bytes out (under
            // the lock) and writes them subtracts them after, so `backlog` never goes below 0.
            self.backlog.fetch_add(added, Ordering::SeqCst);
            drop(buf);
            self.sent_cnt.fetch_add(1, Ordering::Relaxed);
            self.notify();
        }
    }

    /// Bytes buffered and not yet written.
    pub fn backlog(&self) -> usize {
        self.backlog.load(Ordering::SeqCst)
    }

    /// Bytes written to the socket so far.
    pub fn sent_oct(&self) -> u64 {
        self.sent_oct.load(Ordering::Relaxed)
    }

    /// Writes buffered so far.
    pub fn sent_cnt(&self) -> u64 {
        self.sent_cnt.load(Ordering::Relaxed)
    }

    /// Whether consumers may take another message; records the refusal so that the writer
    /// resumes them once the backlog drains.
    pub fn has_room(&self) -> bool {
        self.check_room(|| {})
    }

    /// [`Outbound::has_room`]; `between` runs after the first look at the backlog (tests stage
    /// a writer's [`Outbound::wrote`] there).
    #[inline]
    fn check_room(&self, between: impl FnOnce()) -> bool {
        if self.backlog.load(Ordering::SeqCst) < HIGH_WATER {
            return true;
        }
        between();
        // The refusal is recorded first and the backlog looked at again after (both SeqCst, as
        // in `wrote`): a writer that drained the buffer in the meantime either sees `starved`
        // and resumes the consumers, or drained before it was set, and then this sees the
        // room. Otherwise the refusal could land after the writer's check, and nothing would
        // resume the consumers until the next message arrives.
        self.starved.store(true, Ordering::SeqCst);
        // `starved` stays set even if room came back: clearing it could lose another
        // consumer's refusal, and a resume too many only costs a dispatch.
        self.backlog.load(Ordering::SeqCst) < HIGH_WATER
    }

    /// Milliseconds since the last write reached the socket.
    pub fn idle_ms(&self) -> u64 {
        let last = self.last_write_ms.load(Ordering::Relaxed);
        u64::from((now_ms() as u32).wrapping_sub(last))
    }

    /// Sets the keep-alive deadline `grace` from now (`None`: no keep-alive), replacing an
    /// expired one.
    pub fn set_deadline(&self, grace: Option<std::time::Duration>) {
        let d = grace.map_or(NO_DEADLINE, |g| {
            (now_ms() + u64::try_from(g.as_millis()).unwrap_or(u64::MAX / 2)).max(EXPIRED + 1)
        });
        self.deadline_ms.store(d, Ordering::Release);
    }

    /// Whether the sweep found the keep-alive deadline passed (it stays so until
    /// [`Outbound::set_deadline`]).
    pub fn deadline_expired(&self) -> bool {
        self.deadline_ms.load(Ordering::Acquire) == EXPIRED
    }

    /// Marks the deadline expired and wakes the connection's task if it is at or before
    /// `now_ms`. A deadline moved meanwhile (a packet arrived) is left alone.
    pub fn expire_if_due(&self, now_ms: u64) {
        let d = self.deadline_ms.load(Ordering::Acquire);
        if d > EXPIRED
            && d <= now_ms
            && self
                .deadline_ms
                .compare_exchange(d, EXPIRED, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.wake();
        }
    }

    /// Asks the writer task to flush what is buffered and then stop.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.notify();
    }

    /// Wakes the task waiting in [`Outbound::notified`] (a stored wake-up if none waits yet).
    pub fn wake(&self) {
        self.notify();
    }

    /// Wakes the hibernated connection whose socket became readable (`mqtt/hibernate.rs`),
    /// without recording a wake-up in `woken`: [`Outbound::take_readable`] says why it woke.
    pub fn wake_readable(&self) {
        self.readable.store(true, Ordering::Release);
        self.wake_writer.wake();
    }

    /// Whether [`Outbound::wake_readable`] was called since the last look (and forgets it).
    pub fn take_readable(&self) -> bool {
        self.readable.swap(false, Ordering::AcqRel)
    }

    /// Whether a wake-up is recorded that the task has not seen yet (bytes buffered, the
    /// keep-alive sweep, a takeover, a close, the shutdown...).
    pub fn has_wake_up(&self) -> bool {
        self.woken.load(Ordering::Acquire)
    }

    /// Accounts for a packet written to the socket directly, not through the buffer (a
    /// hibernated connection's PINGRESP).
    pub fn wrote_directly(&self, n: usize) {
        self.last_write_ms.store(now_ms() as u32, Ordering::Relaxed);
        self.sent_oct.fetch_add(n as u64, Ordering::Relaxed);
        self.sent_cnt.fetch_add(1, Ordering::Relaxed);
    }

    fn notify(&self) {
        self.woken.store(true, Ordering::Release);
        self.wake_writer.wake();
    }

    /// Completes after [`Outbound::send`] buffered bytes or [`Outbound::wake`] was called, for
    /// the one task that writes (a connection task that writes itself, or the writer task).
    pub fn notified(&self) -> impl std::future::Future<Output = ()> + Send + '_ {
        std::future::poll_fn(|cx| self.poll_notified(cx))
    }

    /// [`Outbound::notified`] as a poll: ready once per wake-up since the last.
    pub fn poll_notified(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.woken.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.wake_writer.register(cx.waker());
        // A wake-up between the check and the registration found no waker: check again.
        if self.woken.swap(false, Ordering::AcqRel) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
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

    /// [`Outbound::flush`] for a stream without readiness (TLS, WebSocket): writes what is
    /// buffered through `poll_write`, then `poll_flush`es the stream (TLS keeps records in its
    /// own buffer until then). `Pending` when nothing could be written at all (the task is
    /// woken when the stream can take more); `done: false` when some was.
    pub fn poll_flush_to<W: AsyncWrite + Unpin + ?Sized>(
        &self,
        cx: &mut Context<'_>,
        stream: &mut W,
        pending: &mut BytesMut,
    ) -> Poll<io::Result<Flushed>> {
        let mut resume = false;
        let mut progress = false;
        loop {
            if pending.is_empty() {
                let mut buf = self.buf.lock();
                if buf.is_empty() {
                    drop(buf);
                    return match Pin::new(&mut *stream).poll_flush(cx) {
                        Poll::Ready(Ok(())) => Poll::Ready(Ok(Flushed { done: true, resume })),
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                        Poll::Pending if progress => Poll::Ready(Ok(Flushed {
                            done: false,
                            resume,
                        })),
                        Poll::Pending => Poll::Pending,
                    };
                }
                std::mem::swap(&mut *buf, pending);
            }
            match Pin::new(&mut *stream).poll_write(cx, pending) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => {
                    progress = true;
                    resume |= self.wrote(n);
                    pending.advance(n);
                    if pending.is_empty() {
                        let allocated = pending.capacity() + n;
                        recycle(pending, n, allocated);
                    }
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if progress => {
                    return Poll::Ready(Ok(Flushed {
                        done: false,
                        resume,
                    }))
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    /// Accounts for `n` bytes that reached the socket; true when starved consumers may resume.
    fn wrote(&self, n: usize) -> bool {
        self.last_write_ms.store(now_ms() as u32, Ordering::Relaxed);
        self.sent_oct.fetch_add(n as u64, Ordering::Relaxed);
        // `send` counts bytes before a writer can take them out, so this cannot go below 0;
        // saturating all the same, as a wrapped `left` would never resume anyone.
        let before = self.backlog.fetch_sub(n, Ordering::SeqCst);
        debug_assert!(before >= n, "outbound backlog went below 0");
        let left = before.saturating_sub(n);
        left < LOW_WATER && self.starved.swap(false, Ordering::SeqCst)
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
                self.notified().await;
                continue;
            }
            // The flush is free on TCP; TLS may keep records in its buffer until it.
            let written = async {
                socket.write_all(&spare).await?;
                socket.flush().await
            };
            if let Err(e) = written.await {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An `Arc<Outbound>` (the buffer and the two counts before it) stays in jemalloc's
    /// 128-byte class: one per connection, idle or not.
    #[test]
    fn an_outbound_fits_its_size_class() {
        let size = std::mem::size_of::<Outbound>() + 2 * std::mem::size_of::<usize>();
        println!("Arc<Outbound>: {size} bytes");
        assert!(size <= 128, "{size}");
    }

    #[test]
    fn the_resume_notify_is_made_at_its_first_use() {
        let out = Outbound::new();
        assert!(out.resume.0.get().is_none());
        out.resume.notify_one();
        assert!(out.resume.0.get().is_some());
    }

    #[test]
    fn the_keepalive_sweep_expires_a_passed_deadline_until_a_new_one_is_set() {
        use std::future::Future;
        let out = Outbound::new();
        // No keep-alive: never expires.
        out.expire_if_due(u64::MAX);
        assert!(!out.deadline_expired());
        out.set_deadline(Some(std::time::Duration::from_secs(60)));
        let now = now_ms();
        out.expire_if_due(now);
        assert!(!out.deadline_expired(), "not yet due");
        out.expire_if_due(now + 61_000);
        assert!(out.deadline_expired());
        // The sweep woke the task (a stored wake-up).
        let woken = out.notified();
        let mut woken = std::pin::pin!(woken);
        let waker = std::task::Waker::noop();
        let ready = woken
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_ready();
        assert!(ready);
        // A packet moves the deadline: no longer expired.
        out.set_deadline(Some(std::time::Duration::from_secs(60)));
        assert!(!out.deadline_expired());
        out.set_deadline(None);
        out.expire_if_due(u64::MAX);
        assert!(!out.deadline_expired());
    }

    /// An outbound buffer with `n` bytes waiting.
    fn backlogged(n: usize) -> Outbound {
        let out = Outbound::new();
        out.send(|b| b.resize(n, 0));
        out
    }

    /// What a writer does: takes the buffer out (under its lock) and writes all of it.
    fn drain(out: &Outbound) -> bool {
        let taken = std::mem::take(&mut *out.buf.lock());
        out.wrote(taken.len())
    }

    /// A consumer is refused (the backlog is full) while the writer drains the buffer
    /// between the consumer's look at the backlog and its recording of the refusal. The writer
    /// saw no refusal and resumes no one; the consumer must then see the room itself, or it
    /// would stall until the next message arrives.
    #[test]
    fn a_refusal_racing_a_drain_is_not_lost() {
        let out = backlogged(HIGH_WATER);
        let mut resumed = false;
        let room = out.check_room(|| resumed = drain(&out));
        assert!(!resumed, "the writer ran before the refusal was recorded");
        assert!(room, "the consumer sees the room the writer made");
        assert_eq!(out.backlog.load(Ordering::SeqCst), 0);
    }

    /// The ordinary order: refused, then drained, resumes once.
    #[test]
    fn a_refusal_before_a_drain_resumes_once() {
        let out = backlogged(HIGH_WATER);
        assert!(!out.has_room());
        assert!(drain(&out), "room came back: resume the refused consumers");
        out.send(|b| b.resize(10, 0));
        assert!(!drain(&out), "nobody was refused since");
        assert!(out.has_room());
    }

    /// Under the low water mark only: a drain that leaves more than `LOW_WATER` resumes no
    /// one yet; the next one does.
    #[test]
    fn resume_waits_for_the_low_water_mark() {
        let out = backlogged(HIGH_WATER);
        assert!(!out.has_room());
        let taken = std::mem::take(&mut *out.buf.lock());
        assert!(!out.wrote(HIGH_WATER - LOW_WATER), "still above LOW_WATER");
        assert!(out.wrote(taken.len() - (HIGH_WATER - LOW_WATER)));
    }

    /// The bytes `send` buffers are counted before a writer can take them out: the backlog is
    /// never below what is buffered, so `wrote` cannot take it below 0.
    #[test]
    fn the_backlog_covers_what_is_buffered() {
        let out = Outbound::new();
        for n in [1, 100, 5000] {
            out.send(|b| b.resize(b.len() + n, 0));
            let buffered = out.buf.lock().len();
            assert!(out.backlog.load(Ordering::SeqCst) >= buffered);
        }
        drain(&out);
        assert_eq!(out.backlog.load(Ordering::SeqCst), 0);
    }
}
