//! [`WsStream`]: a byte stream over WebSocket binary messages, for the MQTT connection.
//!
//! Reading concatenates the payloads of the binary messages the client sends; tungstenite has
//! already joined fragmented messages, answered pings and checked sizes. A text message breaks
//! [MQTT-6.0.0-1] ("MQTT Control Packets MUST be sent in WebSocket binary data frames. If any
//! other type of data frame is received the recipient MUST close the Network Connection"): the
//! read fails, and the close frame sent at shutdown says 1003 (unsupported data), as RabbitMQ's
//! Web MQTT plugin does. A close frame from the client ends the stream (EOF).
//!
//! Writing collects bytes until a flush, or until [`MAX_OUT_FRAME`] bytes are waiting, and
//! sends them as one binary message: the MQTT connection writes its whole outbound batch and
//! flushes, so a batch of packets goes out as one frame (or a few, when large). What is waiting
//! is bounded: at most `MAX_OUT_FRAME` here, and tungstenite's write buffer (see
//! [`super::WsSettings::websocket_config`]) is drained before another frame is accepted.
//!
//! Shutting down sends a close frame (1000, or the code of the client's fault), flushes, and
//! shuts the underlying stream's write side down, as a TCP socket's `shutdown` would.

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Sink, Stream};
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

/// The largest binary message we send: bytes written past it start another message. Large
/// enough that a batch of packets costs a few frame headers, small enough to bound what is
/// copied per frame, and far under any client's limit (browsers take anything; tungstenite's
/// default is 16 MiB).
pub const MAX_OUT_FRAME: usize = 64 * 1024;

/// How far the closing of the stream has gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    Open,
    /// Our close frame is queued; flushing it and shutting the inner stream down remain.
    CloseSent,
    Done,
}

/// MQTT's byte stream over a WebSocket connection (see the module documentation).
pub struct WsStream<S> {
    ws: WebSocketStream<S>,
    /// What is left of the last binary message received.
    read: Bytes,
    /// The client closed the WebSocket (or the connection ended): reads return EOF.
    eof: bool,
    /// Bytes written and not yet handed to tungstenite as a message.
    write: BytesMut,
    /// The code our close frame will carry.
    close_code: CloseCode,
    /// Why the close frame is sent (a reason the client may log).
    close_reason: &'static str,
    shutdown: Shutdown,
}

impl<S> WsStream<S> {
    /// Wraps a WebSocket whose handshake is complete (the server side).
    pub fn new(ws: WebSocketStream<S>) -> Self {
        WsStream {
            ws,
            read: Bytes::new(),
            eof: false,
            write: BytesMut::new(),
            close_code: CloseCode::Normal,
            close_reason: "",
            shutdown: Shutdown::Open,
        }
    }

    /// The underlying stream (the TCP socket or the TLS stream over it).
    pub fn get_ref(&self) -> &S
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        self.ws.get_ref()
    }

    /// Remembers why the client is at fault, for the close frame.
    fn fault(&mut self, code: CloseCode, reason: &'static str) {
        if self.close_code == CloseCode::Normal {
            self.close_code = code;
            self.close_reason = reason;
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> WsStream<S> {
    /// Hands the bytes written so far to tungstenite as one binary message (when there are any
    /// and tungstenite has room: its buffer from the previous message must be drained first).
    fn poll_send_written(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.write.is_empty() {
            return Poll::Ready(Ok(()));
        }
        ready!(Pin::new(&mut self.ws).poll_ready(cx)).map_err(into_io)?;
        let payload = self.write.split().freeze();
        Pin::new(&mut self.ws)
            .start_send(Message::Binary(payload))
            .map_err(into_io)?;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for WsStream<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if !this.read.is_empty() {
                let n = this.read.len().min(buf.remaining());
                buf.put_slice(&this.read[..n]);
                this.read.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // Tungstenite also writes the pongs and the closing handshake's reply from here.
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                // An empty message is no EOF: keep reading.
                Some(Ok(Message::Binary(payload))) => this.read = payload,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => this.eof = true,
                Some(Ok(Message::Text(_))) => {
                    // [MQTT-6.0.0-1]
                    this.fault(CloseCode::Unsupported, "MQTT needs binary frames");
                    this.eof = true;
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame (MQTT needs binary frames)",
                    )));
                }
                Some(Err(e)) => {
                    match &e {
                        WsError::Capacity(_) => this.fault(CloseCode::Size, "message too big"),
                        WsError::Utf8(_) => this.fault(CloseCode::Invalid, "invalid UTF-8"),
                        WsError::Protocol(_) => {
                            this.fault(CloseCode::Protocol, "WebSocket protocol error")
                        }
                        _ => {}
                    }
                    this.eof = true;
                    return Poll::Ready(Err(into_io(e)));
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WsStream<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.shutdown != Shutdown::Open {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if this.write.len() >= MAX_OUT_FRAME {
            ready!(this.poll_send_written(cx))?;
        }
        let n = buf.len().min(MAX_OUT_FRAME - this.write.len());
        this.write.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_send_written(cx))?;
        Pin::new(&mut this.ws).poll_flush(cx).map_err(into_io)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.shutdown {
                Shutdown::Open => {
                    // What was written still goes first; then the close frame. Errors here
                    // mean the connection is already gone: nothing left to say.
                    if ready!(this.poll_send_written(cx)).is_ok()
                        && ready!(Pin::new(&mut this.ws).poll_ready(cx)).is_ok()
                    {
                        let frame = CloseFrame {
                            code: this.close_code,
                            reason: this.close_reason.into(),
                        };
                        let _ = Pin::new(&mut this.ws).start_send(Message::Close(Some(frame)));
                    }
                    this.write = BytesMut::new();
                    this.shutdown = Shutdown::CloseSent;
                }
                Shutdown::CloseSent => {
                    // Writes out the close frame (tungstenite queues nothing more after it);
                    // "already closed" is the normal end of a closing handshake.
                    let _ = ready!(Pin::new(&mut this.ws).poll_close(cx));
                    this.shutdown = Shutdown::Done;
                }
                Shutdown::Done => {
                    // RFC 6455 7.1.1: the server closes the TCP connection first.
                    return Pin::new(this.ws.get_mut()).poll_shutdown(cx);
                }
            }
        }
    }
}

/// A tungstenite error as an I/O error for the MQTT connection (which only needs to know
/// that the stream failed; the close code was recorded already).
fn into_io(e: WsError) -> io::Error {
    match e {
        WsError::Io(e) => e,
        WsError::ConnectionClosed | WsError::AlreadyClosed => io::ErrorKind::BrokenPipe.into(),
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}
