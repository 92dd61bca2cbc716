//! The socket of an AMQP or MQTT connection, read and written by the connection's one task
//! (no writer task): reads into the adaptive read buffer and writes the outbound buffer, with
//! the plain-TCP fast path (readiness, `try_read`, `try_write`) and the generic path for TLS
//! and other streams (see `transport.rs`). What each protocol decodes stays in its own module
//! (`mqtt/io.rs`, the AMQP frame loop).

use crate::outbound::{Flushed, Outbound};
use crate::readbuf::ReadBuf;
use crate::transport::Transport;
use bytes::BytesMut;
use std::future::{poll_fn, Future};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;

/// The socket of a connection, read and written by its task alone.
pub(crate) struct Io {
    pub stream: Transport,
    /// Bytes read and not yet decoded.
    pub rb: ReadBuf,
    /// What is sent to the client, from any task.
    pub out: Arc<Outbound>,
    /// Bytes taken out of `out` and not yet written.
    pub pending: BytesMut,
}

/// What the socket had for the connection's frame or packet loop.
pub(crate) enum IoEvent {
    /// This many bytes were read into the read buffer (0: the client closed).
    Read(usize),
    /// The socket can take more: the next turn's flush continues the write. `resume`: a
    /// write done meanwhile (not TCP) made room for consumers that were refused it.
    Writable { resume: bool },
}

impl Io {
    /// Reads if `read` and the socket has bytes, or reports that it is writable if `write`.
    /// No future to keep: the socket keeps the task's waker.
    ///
    /// TCP (the fast path): waits for readiness holding no read buffer, allocates one only
    /// when there is something to read. TLS and other streams have no readiness to wait for
    /// (rustls may hold decrypted bytes the socket no longer signals), so they poll a read
    /// into the buffer, and push what is buffered to write.
    pub fn poll_io(
        &mut self,
        cx: &mut Context<'_>,
        read: bool,
        write: bool,
    ) -> Poll<std::io::Result<IoEvent>> {
        match &mut self.stream {
            Transport::Tcp(stream) => {
                if read {
                    while let Poll::Ready(r) = stream.poll_read_ready(cx) {
                        r?;
                        self.rb.prepare();
                        match stream.try_read_buf(&mut self.rb.buf) {
                            Ok(n) => return Poll::Ready(Ok(IoEvent::Read(n))),
                            // A spurious readiness: wait again, without the buffer.
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                self.rb.release();
                            }
                            Err(e) => return Poll::Ready(Err(e)),
                        }
                    }
                }
                if write {
                    if let Poll::Ready(r) = stream.poll_write_ready(cx) {
                        return Poll::Ready(r.map(|()| IoEvent::Writable { resume: false }));
                    }
                }
                Poll::Pending
            }
            stream => {
                if read {
                    self.rb.prepare();
                    let read = std::pin::pin!(stream.read_buf(&mut self.rb.buf));
                    if let Poll::Ready(r) = read.poll(cx) {
                        return Poll::Ready(r.map(IoEvent::Read));
                    }
                }
                if write {
                    if let Poll::Ready(r) = self.out.poll_flush_to(cx, stream, &mut self.pending) {
                        return Poll::Ready(r.map(|f| IoEvent::Writable { resume: f.resume }));
                    }
                }
                Poll::Pending
            }
        }
    }

    /// Writes what is buffered as far as the socket takes it now (see [`Outbound::flush`]).
    pub fn flush(&mut self, cx: &mut Context<'_>) -> std::io::Result<Flushed> {
        match &mut self.stream {
            Transport::Tcp(stream) => self.out.flush(stream, &mut self.pending),
            stream => match self.out.poll_flush_to(cx, stream, &mut self.pending) {
                Poll::Ready(r) => r,
                Poll::Pending => Ok(Flushed {
                    done: false,
                    resume: false,
                }),
            },
        }
    }

    /// Sends what is still buffered (our last frames or packets: a close with its reason, a
    /// refusal), bounded by `wait`, then a FIN.
    pub async fn flush_and_shutdown(&mut self, wait: Duration) {
        let _ = timeout(wait, async {
            while let Ok(f) = poll_fn(|cx| Poll::Ready(self.flush(cx))).await {
                if f.done || poll_fn(|cx| self.poll_io(cx, false, true)).await.is_err() {
                    break;
                }
            }
        })
        .await;
        let _ = self.stream.shutdown().await;
    }
}
