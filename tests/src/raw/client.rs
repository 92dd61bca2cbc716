//! The raw client: a socket, a read buffer, and the handshake and error-reading steps the tests
//! need.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::frame::{frame_type, method, Args, Frame, Reader, Value, FRAME_END, PROTOCOL_HEADER};
use crate::{within, ByteStream};

/// What the server said in `connection.close` or `channel.close`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The reply code (e.g. 501 FRAME_ERROR).
    pub code: u16,
    /// The reply text.
    pub text: String,
    /// The class of the method that caused it (0 if none).
    pub class_id: u16,
    /// The method that caused it (0 if none).
    pub method_id: u16,
}

impl Close {
    fn read(frame: &Frame) -> Close {
        let mut r = frame.method_args();
        Close {
            code: r.short(),
            text: r.shortstr(),
            class_id: r.short(),
            method_id: r.short(),
        }
    }
}

/// What `connection.start` told us.
#[derive(Debug, Clone)]
pub struct Start {
    /// Protocol major version (0).
    pub version_major: u8,
    /// Protocol minor version (9).
    pub version_minor: u8,
    /// The server-properties table.
    pub server_properties: Value,
    /// Space-separated SASL mechanisms.
    pub mechanisms: String,
    /// Space-separated locales.
    pub locales: String,
}

/// What `connection.tune` proposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tune {
    /// Highest channel number.
    pub channel_max: u16,
    /// Largest frame, in bytes.
    pub frame_max: u32,
    /// Heartbeat interval, in seconds.
    pub heartbeat: u16,
}

/// How the raw client logs in and what it answers to `connection.tune`.
#[derive(Debug, Clone)]
pub struct Handshake {
    /// User name.
    pub user: String,
    /// Password.
    pub password: String,
    /// Our `connection.tune-ok`, computed from the server's proposal.
    pub tune_ok: fn(Tune) -> Tune,
    /// Whether we announce the `authentication_failure_close` capability.
    pub authentication_failure_close: bool,
}

/// How a connection ended, from the client's side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The server sent `connection.close` with this content.
    Closed(Close),
    /// The server closed the socket without a `connection.close`.
    Eof,
}

/// A client speaking raw frames over a real socket (plain TCP, or TLS with [`RawClient::over`]).
pub struct RawClient {
    stream: Box<dyn ByteStream>,
    buf: Vec<u8>,
}

impl RawClient {
    /// Opens a TCP connection; nothing is sent yet.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = within("TCP connect", TcpStream::connect(addr))
            .await
            .expect("TCP connect to the broker");
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        RawClient::over(stream)
    }

    /// A client over an established stream (a TLS stream after its handshake, say); nothing is
    /// sent yet.
    pub fn over(stream: impl ByteStream + 'static) -> RawClient {
        RawClient {
            stream: Box::new(stream),
            buf: Vec::new(),
        }
    }

    /// Writes bytes as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .await
            .expect("write to the broker");
    }

    /// Writes bytes, tolerating a server that has already closed the socket (after abuse the
    /// server may hang up while we are still writing).
    pub async fn send_bytes_lenient(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Shuts down our sending side (TCP FIN): the server reads end of stream, we can still read.
    pub async fn finish_writing(&mut self) {
        self.stream
            .shutdown()
            .await
            .expect("shut down our sending side");
    }

    /// Writes one frame.
    pub async fn send(&mut self, frame: &Frame) {
        self.send_bytes(&frame.encode()).await;
    }

    /// Reads up to `n` raw bytes, or fewer if the server closes first. Fails after [`crate::TIMEOUT`].
    pub async fn read_raw(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            self.buf.reserve(4096);
            let read = within("bytes from the broker", self.stream.read_buf(&mut self.buf))
                .await
                .unwrap_or(0);
            if read == 0 {
                break;
            }
        }
        let take = n.min(self.buf.len());
        self.buf.drain(..take).collect()
    }

    /// Reads the next frame; `None` at end of stream (or a reset). Fails after [`crate::TIMEOUT`].
    pub async fn read_frame(&mut self) -> Option<Frame> {
        within("a frame from the broker", self.read_frame_lenient()).await
    }

    /// Reads frames until a method frame arrives (heartbeats are skipped) and checks its id.
    pub async fn expect_method(&mut self, id: method::Id) -> Frame {
        loop {
            let frame = self
                .read_frame()
                .await
                .unwrap_or_else(|| panic!("connection ended while waiting for {id:?}"));
            if frame.kind == frame_type::HEARTBEAT {
                continue;
            }
            assert_eq!(frame.method_id(), Some(id), "unexpected frame {frame:?}");
            return frame;
        }
    }

    /// Sends the protocol header and reads `connection.start`.
    pub async fn start(&mut self) -> Start {
        self.start_with_header(PROTOCOL_HEADER).await
    }

    /// Sends `header` as the protocol header and reads `connection.start`.
    pub async fn start_with_header(&mut self, header: &[u8]) -> Start {
        self.send_bytes(header).await;
        let frame = self.expect_method(method::CONNECTION_START).await;
        let mut r = frame.method_args();
        Start {
            version_major: r.octet(),
            version_minor: r.octet(),
            server_properties: r.table(),
            mechanisms: String::from_utf8_lossy(&r.longstr()).into_owned(),
            locales: String::from_utf8_lossy(&r.longstr()).into_owned(),
        }
    }

    /// Sends `connection.start-ok` with PLAIN credentials.
    pub async fn start_ok_plain(&mut self, user: &str, password: &str, auth_failure_close: bool) {
        let response = format!("\0{user}\0{password}");
        let capabilities = Args::new().bool_table(&[
            ("authentication_failure_close", auth_failure_close),
            ("consumer_cancel_notify", true),
        ]);
        let args = Args::new()
            .nested_table("capabilities", capabilities)
            .shortstr("PLAIN")
            .longstr(response.as_bytes())
            .shortstr("en_US");
        self.send(&Frame::method(0, method::CONNECTION_START_OK, args))
            .await;
    }

    /// Reads `connection.tune`.
    pub async fn tune(&mut self) -> Tune {
        let frame = self.expect_method(method::CONNECTION_TUNE).await;
        let mut r = frame.method_args();
        Tune {
            channel_max: r.short(),
            frame_max: r.long(),
            heartbeat: r.short(),
        }
    }

    /// Sends `connection.tune-ok`, then `connection.open` for vhost `/`, and waits for open-ok.
    pub async fn tune_ok_and_open(&mut self, tune_ok: Tune) {
        let args = Args::new()
            .short(tune_ok.channel_max)
            .long(tune_ok.frame_max)
            .short(tune_ok.heartbeat);
        self.send(&Frame::method(0, method::CONNECTION_TUNE_OK, args))
            .await;
        let open = Args::new().shortstr("/").shortstr("").bits(&[false]);
        self.send(&Frame::method(0, method::CONNECTION_OPEN, open))
            .await;
        self.expect_method(method::CONNECTION_OPEN_OK).await;
    }

    /// The whole handshake up to `connection.open-ok`; returns the tune we answered with.
    pub async fn handshake(&mut self, how: &Handshake) -> Tune {
        self.start().await;
        self.start_ok_plain(&how.user, &how.password, how.authentication_failure_close)
            .await;
        let proposed = self.tune().await;
        let answer = (how.tune_ok)(proposed);
        self.tune_ok_and_open(answer).await;
        answer
    }

    /// Sends `channel.open` and waits for `channel.open-ok`.
    pub async fn open_channel(&mut self, channel: u16) {
        self.send_channel_open(channel).await;
        let frame = self.expect_method(method::CHANNEL_OPEN_OK).await;
        assert_eq!(frame.channel, channel, "open-ok on the channel we opened");
    }

    /// Sends `channel.open` without waiting.
    pub async fn send_channel_open(&mut self, channel: u16) {
        let args = Args::new().shortstr("");
        self.send(&Frame::method(channel, method::CHANNEL_OPEN, args))
            .await;
    }

    /// Declares a server-named exclusive queue on an open channel and returns its name; a cheap
    /// synchronous round trip that proves the connection still works.
    pub async fn declare_exclusive_queue(&mut self, channel: u16) -> String {
        let args = Args::new()
            .short(0) // reserved-1
            .shortstr("")
            .bits(&[false, false, true, false, false]) // passive durable exclusive auto-delete no-wait
            .longstr(&[]); // arguments: empty table
        self.send(&Frame::method(channel, method::QUEUE_DECLARE, args))
            .await;
        let frame = self.expect_method(method::QUEUE_DECLARE_OK).await;
        frame.method_args().shortstr()
    }

    /// Publishes `body` to the default exchange with `routing_key`, cutting the body into frames that fit
    /// in `frame_max` (the whole frame, header and frame-end included).
    pub async fn publish(&mut self, channel: u16, routing_key: &str, body: &[u8], frame_max: u32) {
        let args = Args::new()
            .short(0) // reserved-1
            .shortstr("") // the default exchange
            .shortstr(routing_key)
            .bits(&[false, false]); // mandatory, immediate
        let mut bytes = Frame::method(channel, method::BASIC_PUBLISH, args).encode();
        bytes.extend(Frame::content_header(channel, body.len() as u64).encode());
        for chunk in body.chunks(frame_max as usize - 8) {
            bytes.extend(Frame::body(channel, chunk).encode());
        }
        self.send_bytes(&bytes).await;
    }

    /// basic.get with no-ack; returns the body frames as they arrived (empty if get-empty).
    pub async fn get_body_frames(&mut self, channel: u16, queue: &str) -> Vec<Frame> {
        let args = Args::new().short(0).shortstr(queue).bits(&[true]);
        self.send(&Frame::method(channel, method::BASIC_GET, args))
            .await;
        let get_ok = self.expect_method(method::BASIC_GET_OK).await;
        assert_eq!(get_ok.channel, channel);
        let header = self.read_frame().await.expect("content header");
        assert_eq!(header.kind, frame_type::HEADER, "header after get-ok");
        let mut r = Reader::new(&header.payload);
        let (_class, _weight, size) = (r.short(), r.short(), r.longlong());
        let mut frames = Vec::new();
        let mut received = 0u64;
        while received < size {
            let frame = self.read_frame().await.expect("content body");
            assert_eq!(
                frame.kind,
                frame_type::BODY,
                "body frames follow the header"
            );
            received += frame.payload.len() as u64;
            frames.push(frame);
        }
        frames
    }

    /// Reads frames until the connection ends. Heartbeats and other frames are skipped; the
    /// first `connection.close` is answered with close-ok and returned. Fails after
    /// [`crate::TIMEOUT`] if the server neither closes nor hangs up.
    pub async fn ending(&mut self) -> Ending {
        within("the server to end the connection", async {
            loop {
                let Some(frame) = self.read_frame_lenient().await else {
                    return Ending::Eof;
                };
                if frame.method_id() == Some(method::CONNECTION_CLOSE) {
                    let close = Close::read(&frame);
                    let ok = Frame::method(0, method::CONNECTION_CLOSE_OK, Args::new());
                    self.send_bytes_lenient(&ok.encode()).await;
                    return Ending::Closed(close);
                }
            }
        })
        .await
    }

    /// Like [`RawClient::ending`] but insists on a `connection.close` and returns it.
    pub async fn expect_connection_close(&mut self) -> Close {
        match self.ending().await {
            Ending::Closed(close) => close,
            Ending::Eof => panic!("server closed the socket without connection.close"),
        }
    }

    /// After the server has closed the connection, the socket reaches end of stream.
    pub async fn expect_eof(&mut self) {
        within("the server to close the socket", async {
            while self.read_frame_lenient().await.is_some() {}
        })
        .await;
    }

    /// Reads a frame without timing out on its own and treats resets as end of stream; a frame
    /// that does not end with 0xCE also counts as the end (the server is no longer talking AMQP).
    async fn read_frame_lenient(&mut self) -> Option<Frame> {
        loop {
            if self.buf.len() >= 7 {
                let size = u32::from_be_bytes([self.buf[3], self.buf[4], self.buf[5], self.buf[6]])
                    as usize;
                if self.buf.len() >= size + 8 {
                    let frame: Vec<u8> = self.buf.drain(..size + 8).collect();
                    if frame[size + 7] != FRAME_END {
                        return None;
                    }
                    return Some(Frame {
                        kind: frame[0],
                        channel: u16::from_be_bytes([frame[1], frame[2]]),
                        payload: frame[7..size + 7].to_vec(),
                    });
                }
            }
            self.buf.reserve(65536);
            match self.stream.read_buf(&mut self.buf).await {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Sends `connection.close` (200) and waits for `connection.close-ok`.
    pub async fn close(&mut self) {
        let args = Args::new().short(200).shortstr("bye").short(0).short(0);
        self.send(&Frame::method(0, method::CONNECTION_CLOSE, args))
            .await;
        self.expect_method(method::CONNECTION_CLOSE_OK).await;
    }
}
