//! Hibernated MQTT connections: an idle connection gives its task and its tokio registration
//! back, and waits in one shared epoll set until it has something to do.
//!
//! An idle connection's tokio task cell (512 bytes) and its tokio `ScheduledIo` (256) were
//! most of what an idle MQTT connection cost (docs/performance.md, "Session 6, third pass:
//! hibernation"). As RabbitMQ's MQTT reader hibernates after a while with nothing to do
//! (gen_server2's `{backoff, 1000, 1000, 10000}`: 1 s idle at first), a plain-TCP connection
//! with nothing in flight that has been idle for `mqtt_hibernate_after_ms` ends its task: its
//! socket leaves tokio's reactor (`into_std`) for the [`Parking`]'s own epoll set (one `mio`
//! poll, itself one tokio registration, read by one task), and its state ([`Conn`]) waits in a
//! [`Parked`] cell. Two things resume it, whichever comes first:
//!
//! - its socket becomes readable (a packet, or the peer closing): the poller task;
//! - anything that wakes the connection's task through its [`Outbound`] (a delivery, the
//!   keep-alive sweep, a takeover, an operator's close, a deleted vhost or user, the
//!   shutdown): the `Parked` cell is the waker registered there while the connection sleeps.
//!
//! Resuming gives the socket back to tokio and spawns the connection's task again with its
//! state, which then takes its turn as if it had been waiting all along. Nothing else changes:
//! the registry lists a hibernated connection as before, the keep-alive deadline keeps
//! running in its `Outbound`, and the session stays leased by it.
//!
//! One thing is done without resuming: when nothing but its socket woke it and the socket
//! holds one PINGREQ and nothing else, the PINGRESP is written and the PINGREQ read where the
//! connection sleeps ([`Parked::answer_ping`]), with what the task would have done for it (the
//! keep-alive deadline, the byte and packet counts). An idle client's keep-alive therefore
//! costs two system calls instead of a task, a tokio registration and three `epoll_ctl`s, and
//! a fleet that connected at once and pings at once (10,000 connections, 30 s after
//! `pigeon bench idle` opened them) no longer wakes all at once: RSS rose by 0.3-0.4 KiB per
//! connection for the moment of that storm (docs/performance.md, "Idle connections").
//!
//! [`Outbound`]: crate::outbound::Outbound

use super::connection::Conn;
use super::io::Io;
use crate::listen::Open;
use crate::registry::Registry as ConnRegistry;
use crate::transport::Transport;
use crate::ServerState;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use parking_lot::Mutex;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Wake, Waker};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::sync::watch;

/// The hibernated connections of a server, and the task that watches their sockets.
///
/// A hibernated connection is found through the registry (its entry's id is its token in the
/// epoll set), and its state through its `Outbound`, whose waker it is: no map of its own.
#[derive(Default)]
pub struct Parking {
    /// Started at the first hibernation (it needs the runtime); `None`: it could not be, and
    /// connections do not hibernate.
    poller: OnceLock<Option<Poller>>,
    /// Connections hibernated now.
    count: AtomicUsize,
    /// Times a hibernated connection was resumed, and PINGREQs answered without resuming.
    resumed: AtomicU64,
    pings: AtomicU64,
}

/// The shared epoll set, as the parking and resuming sides see it.
struct Poller {
    registry: Registry,
    /// Where resumed connections' tasks are spawned (a waker may run on any thread).
    handle: tokio::runtime::Handle,
}

/// One hibernated connection, and its waker while it sleeps.
///
/// What it keeps is the connection's state, its socket in `Conn::parked` (inside the state's
/// own padding: beside it, the cell was 8 bytes larger and in jemalloc's 128-byte class).
/// Its place in the server's connection count (the task that counted it has ended) is taken
/// at [`park`] and given back at [`Parked::resume`] without a guard of its own (an `Open` is
/// one more `Arc<ServerState>`, 8 bytes): a hibernated connection ends only through `resume`
/// (its state is referenced only by its `Outbound`'s waker, which lives as long as the
/// connection's registry entry, which the state holds).
struct Parked {
    /// Taken by whichever resumes it first; its `parked` socket is set.
    state: Mutex<Option<Conn>>,
}

impl Parking {
    /// Connections hibernated now.
    pub fn count(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// How many times hibernated connections were resumed, and how many PINGREQs were
    /// answered without resuming one, since the start.
    pub fn resumed_and_pings(&self) -> (u64, u64) {
        (
            self.resumed.load(Ordering::Relaxed),
            self.pings.load(Ordering::Relaxed),
        )
    }

    /// The poller, started at the first call.
    fn poller(&self, server: &ServerState) -> Option<&Poller> {
        self.poller
            .get_or_init(|| match start(Arc::clone(&server.registry), server.shutdown.clone()) {
                Ok(poller) => Some(poller),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the poller of hibernated MQTT connections; they stay awake");
                    None
                }
            })
            .as_ref()
    }
}

/// Creates the epoll set and spawns the task that reads it.
fn start(registry: Arc<ConnRegistry>, shutdown: watch::Receiver<bool>) -> std::io::Result<Poller> {
    let poll = Poll::new()?;
    let epoll = poll.registry().try_clone()?;
    // Deprecated in tokio 1.54 for types whose `as_raw_fd` could return a descriptor they do
    // not own; `mio::Poll` owns its epoll descriptor for as long as it lives, which is what
    // the replacement (`register_with_interest`) asks of its caller, `unsafe` (denied here).
    #[allow(deprecated)]
    let poll = AsyncFd::with_interest(poll, tokio::io::Interest::READABLE)?;
    let handle = tokio::runtime::Handle::current();
    handle.spawn(watch_sockets(poll, registry, shutdown));
    Ok(Poller {
        registry: epoll,
        handle,
    })
}

/// The poller task: resumes the connections whose sockets became readable. The epoll set is
/// read without waiting (tokio says when it has events), until it has none.
async fn watch_sockets(
    mut poll: AsyncFd<Poll>,
    registry: Arc<ConnRegistry>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut events = Events::with_capacity(256);
    loop {
        let mut ready = tokio::select! {
            r = poll.readable_mut() => match r {
                Ok(ready) => ready,
                Err(e) => {
                    tracing::warn!(error = %e, "the poller of hibernated MQTT connections failed");
                    return;
                }
            },
            // Every connection is woken at shutdown (`Registry::wake_all`), the parked ones too.
            _ = shutdown.changed() => return,
        };
        match ready
            .get_inner_mut()
            .poll(&mut events, Some(Duration::ZERO))
        {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(error = %e, "the poller of hibernated MQTT connections failed");
                return;
            }
        }
        if events.is_empty() {
            // Drained: wait for tokio to report the epoll set readable again.
            ready.clear_ready();
            continue;
        }
        drop(ready);
        // Woken through its `Outbound`, marked as woken by its socket: its waker is the
        // hibernated state, which answers a lone PINGREQ or resumes it (once: a connection
        // already resumed, or gone, is not woken twice).
        for event in events.iter() {
            registry.wake_readable(event.token().0 as u64);
        }
    }
}

/// Hibernates a connection that has been idle long enough (the caller checked that nothing is
/// in flight, buffered or unread). Gives the connection back if it cannot sleep (not plain
/// TCP, no poller); `None` when it sleeps (or its socket failed, and it ended).
pub(super) fn park(mut conn: Conn, io: Io) -> Option<(Conn, Io)> {
    let server = Arc::clone(&conn.server);
    let parking = &server.mqtt.parking;
    let Some(poller) = parking.poller(&server) else {
        return Some((conn, io));
    };
    let Io {
        stream,
        rb,
        out,
        pending,
    } = io;
    let stream = match stream {
        Transport::Tcp(stream) => stream,
        stream => {
            let io = Io {
                stream,
                rb,
                out,
                pending,
            };
            return Some((conn, io));
        }
    };
    drop((rb, pending));
    // Nothing is in flight (the caller checked): free the emptied queue of in-flight messages.
    conn.session.core.lock().inflight.shrink();
    // Leaves tokio's reactor (its `ScheduledIo` is freed); the socket stays non-blocking.
    let socket = match stream.into_std() {
        Ok(socket) => socket,
        Err(e) => {
            tracing::debug!(peer = %conn.peer(), error = %e, "cannot hibernate, closing");
            super::connection::abandon(conn);
            return None;
        }
    };
    let fd = socket.as_raw_fd();
    let id = conn.reg.entry.id;
    // A readiness reported while it was awake is stale: epoll reports what is readable at
    // registration.
    out.take_readable();
    // Counted as `Open` counts (`Parked::resume` gives it back).
    server.connections.fetch_add(1, Ordering::Relaxed);
    conn.parked = Some(socket);
    let parked = Arc::new(Parked {
        state: Mutex::new(Some(conn)),
    });
    parking.count.fetch_add(1, Ordering::Relaxed);
    // Edge-triggered, but epoll reports at registration what is already readable.
    let watched =
        poller
            .registry
            .register(&mut SourceFd(&fd), Token(id as usize), Interest::READABLE);
    if let Err(e) = watched {
        tracing::debug!(error = %e, "cannot hibernate a connection's socket");
        parked.resume();
        return None;
    }
    // From now on, what wakes the connection's task (through its `Outbound`) resumes it, its
    // socket's events too (`watch_sockets`); a wake-up since its last turn resumes it at once.
    // The `Outbound` holds the only reference to this state until then.
    let waker = Waker::from(Arc::clone(&parked));
    if out
        .poll_notified(&mut Context::from_waker(&waker))
        .is_ready()
    {
        parked.resume();
    }
    None
}

/// MQTT's PINGREQ and PINGRESP, the same in 3.1.1 and 5.0 (fixed header, no payload).
const PINGREQ: [u8; 2] = [0xC0, 0x00];
const PINGRESP: [u8; 2] = [0xD0, 0x00];

impl Parked {
    /// What wakes a hibernated connection: answers a lone PINGREQ and sleeps on, or resumes.
    fn woken(self: &Arc<Self>) {
        let Some(out) = self.answer_ping() else {
            self.resume();
            return;
        };
        // Asleep again, as `park` leaves it: a wake-up since the look resumes it at once.
        // (Registered without the state's lock held: a wake-up during the registration may
        // call this waker from here.)
        let waker = Waker::from(Arc::clone(self));
        if out
            .poll_notified(&mut Context::from_waker(&waker))
            .is_ready()
        {
            self.resume();
        }
    }

    /// When nothing but its socket woke the connection and the socket holds exactly one
    /// PINGREQ: writes the PINGRESP, reads the PINGREQ, accounts for both as the connection's
    /// task would, and returns its `Outbound` (the connection sleeps on). `None`: resume it.
    fn answer_ping(&self) -> Option<Arc<crate::outbound::Outbound>> {
        let state = self.state.lock();
        let conn = state.as_ref()?;
        let entry = &conn.reg.entry;
        let out = &entry.out;
        // Any other reason (bytes to send, the keep-alive sweep, a takeover, a close, the
        // shutdown) was recorded as a wake-up: the task must see it.
        if !out.take_readable() || out.has_wake_up() || out.backlog() != 0 {
            return None;
        }
        let socket = conn.parked.as_ref()?;
        let mut peeked = [0u8; 3];
        match socket.peek(&mut peeked) {
            Ok(2) if peeked[..2] == PINGREQ => {}
            _ => return None,
        }
        match (&*socket).write(&PINGRESP) {
            Ok(2) => {}
            Ok(1) => {
                // The socket took half (it never does for two bytes in practice): the rest
                // goes through the buffer, which the resumed task writes before anything else;
                // the PINGREQ is consumed here, as it was answered.
                let _ = (&*socket).read(&mut peeked[..2]);
                out.send(|b| b.extend_from_slice(&PINGRESP[1..]));
                return None;
            }
            _ => return None,
        }
        // Two bytes are there (peeked); a read of them cannot block nor return fewer.
        if !matches!((&*socket).read(&mut peeked[..2]), Ok(2)) {
            return None;
        }
        entry.recv_oct.fetch_add(2, Ordering::Relaxed);
        entry.recv_cnt.fetch_add(1, Ordering::Relaxed);
        if conn.keep_alive > 0 {
            out.set_deadline(conn.grace());
        }
        out.wrote_directly(2);
        conn.server
            .mqtt
            .parking
            .pings
            .fetch_add(1, Ordering::Relaxed);
        Some(Arc::clone(out))
    }

    /// Gives the socket back to tokio and spawns the connection's task again (once: the
    /// first caller takes the state).
    fn resume(self: &Arc<Self>) {
        let Some(mut conn) = self.state.lock().take() else {
            return;
        };
        let Some(socket) = conn.parked.take() else {
            // Never: `park` sets it before the state is shared.
            super::connection::abandon(conn);
            return;
        };
        let server = Arc::clone(&conn.server);
        // The count `park` took, now held by the resumed task (or given back when it ends).
        let open = Open::new(&server);
        server.connections.fetch_sub(1, Ordering::Relaxed);
        let parking = &server.mqtt.parking;
        parking.count.fetch_sub(1, Ordering::Relaxed);
        parking.resumed.fetch_add(1, Ordering::Relaxed);
        let Some(Some(poller)) = parking.poller.get() else {
            // Never: a connection hibernates only once the poller runs.
            return;
        };
        // The waker may run outside the runtime (another thread's wake-up): registering the
        // socket with tokio, and what an ending connection spawns, need its context.
        let _runtime = poller.handle.enter();
        let _ = poller
            .registry
            .deregister(&mut SourceFd(&socket.as_raw_fd()));
        match tokio::net::TcpStream::from_std(socket) {
            Ok(stream) => {
                let task = super::connection::resumed(conn, stream);
                poller
                    .handle
                    .spawn(futures_util::FutureExt::map(task, move |()| drop(open)));
            }
            Err(e) => {
                tracing::info!(peer = %conn.peer(), error = %e, "cannot resume a hibernated MQTT connection, closing");
                super::connection::abandon(conn);
            }
        }
    }
}

impl Wake for Parked {
    fn wake(self: Arc<Self>) {
        self.woken();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a hibernated connection keeps beside its registry entry, session and `Outbound`
    /// (docs/performance.md): its `Arc<Parked>` (16 bytes of counts and the cell) must stay
    /// in jemalloc's 112-byte class (128 before the sixth pass).
    #[test]
    fn a_hibernated_connection_fits_its_size_class() {
        let size = 16 + std::mem::size_of::<Parked>();
        println!(
            "hibernated connection: {size} bytes (Conn {})",
            std::mem::size_of::<Conn>()
        );
        assert!(size <= 112, "the hibernated state grew to {size} bytes");
    }
}
