//! A deliberately tiny AMQP 0-9-1 client for tests that must say things a real client never would:
//! wrong protocol headers, oversized or malformed frames, silence instead of heartbeats.
//!
//! It knows frames (type, channel, payload, frame-end), how to write method arguments and how to
//! read the few server methods the tests look at (`connection.start`, `connection.tune`,
//! `connection.close`, `channel.close`). It does not use the project's `amqp-wire` crate on
//! purpose: the tests must not share a codec's mistakes with the server they check.

use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::within;

/// The protocol header of AMQP 0-9-1.
pub const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// Every frame ends with this octet.
pub const FRAME_END: u8 = 0xCE;

/// Frame types (AMQP 0-9-1 section 4.2.3).
pub mod frame_type {
    /// A method frame.
    pub const METHOD: u8 = 1;
    /// A content header frame.
    pub const HEADER: u8 = 2;
    /// A content body frame.
    pub const BODY: u8 = 3;
    /// A heartbeat frame (always on channel 0, empty payload).
    pub const HEARTBEAT: u8 = 8;
}

/// `(class-id, method-id)` of the methods the raw tests send or read.
pub mod method {
    /// A method identifier.
    pub type Id = (u16, u16);
    /// connection.start
    pub const CONNECTION_START: Id = (10, 10);
    /// connection.start-ok
    pub const CONNECTION_START_OK: Id = (10, 11);
    /// connection.tune
    pub const CONNECTION_TUNE: Id = (10, 30);
    /// connection.tune-ok
    pub const CONNECTION_TUNE_OK: Id = (10, 31);
    /// connection.open
    pub const CONNECTION_OPEN: Id = (10, 40);
    /// connection.open-ok
    pub const CONNECTION_OPEN_OK: Id = (10, 41);
    /// connection.close
    pub const CONNECTION_CLOSE: Id = (10, 50);
    /// connection.close-ok
    pub const CONNECTION_CLOSE_OK: Id = (10, 51);
    /// channel.open
    pub const CHANNEL_OPEN: Id = (20, 10);
    /// channel.open-ok
    pub const CHANNEL_OPEN_OK: Id = (20, 11);
    /// channel.close
    pub const CHANNEL_CLOSE: Id = (20, 40);
    /// channel.close-ok
    pub const CHANNEL_CLOSE_OK: Id = (20, 41);
    /// queue.declare
    pub const QUEUE_DECLARE: Id = (50, 10);
    /// queue.declare-ok
    pub const QUEUE_DECLARE_OK: Id = (50, 11);
    /// basic.publish
    pub const BASIC_PUBLISH: Id = (60, 40);
    /// basic.get
    pub const BASIC_GET: Id = (60, 70);
    /// basic.get-ok
    pub const BASIC_GET_OK: Id = (60, 71);
}

/// One frame as it travels on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// One of [`frame_type`].
    pub kind: u8,
    /// The channel number (0 for the connection).
    pub channel: u16,
    /// The payload between the header and the frame-end octet.
    pub payload: Vec<u8>,
}

impl Frame {
    /// A method frame: class id, method id, then the already-encoded arguments.
    pub fn method(channel: u16, id: method::Id, args: Args) -> Frame {
        let mut payload = Vec::with_capacity(4 + args.0.len());
        payload.extend_from_slice(&id.0.to_be_bytes());
        payload.extend_from_slice(&id.1.to_be_bytes());
        payload.extend_from_slice(&args.0);
        Frame {
            kind: frame_type::METHOD,
            channel,
            payload,
        }
    }

    /// A basic content header with no properties.
    pub fn content_header(channel: u16, body_size: u64) -> Frame {
        let args = Args::new()
            .short(60) // class basic
            .short(0) // weight
            .longlong(body_size)
            .short(0); // property flags: none
        Frame {
            kind: frame_type::HEADER,
            channel,
            payload: args.0,
        }
    }

    /// A content body frame.
    pub fn body(channel: u16, bytes: &[u8]) -> Frame {
        Frame {
            kind: frame_type::BODY,
            channel,
            payload: bytes.to_vec(),
        }
    }

    /// A heartbeat frame.
    pub fn heartbeat() -> Frame {
        Frame {
            kind: frame_type::HEARTBEAT,
            channel: 0,
            payload: Vec::new(),
        }
    }

    /// The frame's bytes: type, channel, size, payload, frame-end.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.payload.len());
        out.push(self.kind);
        out.extend_from_slice(&self.channel.to_be_bytes());
        let size = u32::try_from(self.payload.len()).expect("test frame fits in u32");
        out.extend_from_slice(&size.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out.push(FRAME_END);
        out
    }

    /// The `(class, method)` of a method frame.
    pub fn method_id(&self) -> Option<method::Id> {
        if self.kind != frame_type::METHOD || self.payload.len() < 4 {
            return None;
        }
        let mut r = Reader::new(&self.payload);
        Some((r.short(), r.short()))
    }

    /// The arguments of a method frame (after class and method ids).
    pub fn method_args(&self) -> Reader<'_> {
        Reader::new(self.payload.get(4..).unwrap_or_default())
    }
}

/// Method arguments being written, in wire order. Consecutive bits share an octet; call
/// [`Args::bits`] once for each run of them.
#[derive(Debug, Default, Clone)]
pub struct Args(Vec<u8>);

impl Args {
    /// No arguments yet.
    pub fn new() -> Args {
        Args(Vec::new())
    }
    /// An octet.
    pub fn octet(mut self, v: u8) -> Args {
        self.0.push(v);
        self
    }
    /// A 16-bit integer.
    pub fn short(mut self, v: u16) -> Args {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A 32-bit integer.
    pub fn long(mut self, v: u32) -> Args {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A 64-bit integer.
    pub fn longlong(mut self, v: u64) -> Args {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    /// A short string (length octet, then bytes).
    pub fn shortstr(mut self, v: &str) -> Args {
        let len = u8::try_from(v.len()).expect("short string under 256 bytes");
        self.0.push(len);
        self.0.extend_from_slice(v.as_bytes());
        self
    }
    /// A long string (32-bit length, then bytes).
    pub fn longstr(mut self, v: &[u8]) -> Args {
        let len = u32::try_from(v.len()).expect("long string fits in u32");
        self.0.extend_from_slice(&len.to_be_bytes());
        self.0.extend_from_slice(v);
        self
    }
    /// A run of bits packed into octets, least significant bit first.
    pub fn bits(mut self, bits: &[bool]) -> Args {
        for chunk in bits.chunks(8) {
            let octet = chunk
                .iter()
                .enumerate()
                .fold(0u8, |acc, (i, &b)| acc | (u8::from(b) << i));
            self.0.push(octet);
        }
        self
    }
    /// A field table whose values are all booleans (enough for client capabilities).
    pub fn bool_table(self, entries: &[(&str, bool)]) -> Args {
        let mut table = Vec::new();
        for (key, value) in entries {
            let key_len = u8::try_from(key.len()).expect("short key");
            table.push(key_len);
            table.extend_from_slice(key.as_bytes());
            table.push(b't');
            table.push(u8::from(*value));
        }
        self.longstr(&table)
    }
    /// A field table holding one nested table (e.g. `capabilities`).
    pub fn nested_table(self, key: &str, inner: Args) -> Args {
        // `inner` holds a complete table (length + entries) as written by `bool_table`.
        let mut table = Vec::new();
        let key_len = u8::try_from(key.len()).expect("short key");
        table.push(key_len);
        table.extend_from_slice(key.as_bytes());
        table.push(b'F');
        table.extend_from_slice(&inner.0);
        self.longstr(&table)
    }
    /// Raw bytes, as they are.
    pub fn raw(mut self, bytes: &[u8]) -> Args {
        self.0.extend_from_slice(bytes);
        self
    }
}

/// A value read from a field table.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `t`
    Bool(bool),
    /// Any integer type.
    Int(i64),
    /// `S` (long string) or `s`-as-short-string.
    Str(Vec<u8>),
    /// `F`
    Table(Vec<(String, Value)>),
    /// Anything else (floats, decimals, arrays, timestamps, void, byte arrays).
    Other(u8),
}

impl Value {
    /// Looks a key up in a table value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Table(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Reads method arguments in wire order. Reading past the end panics: the tests only read what
/// a correct server must have sent.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts at the first byte.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }
    fn take(&mut self, n: usize) -> &'a [u8] {
        let slice = self
            .bytes
            .get(self.pos..self.pos + n)
            .unwrap_or_else(|| panic!("server method truncated at byte {}", self.pos));
        self.pos += n;
        slice
    }
    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N));
        out
    }
    /// An octet.
    pub fn octet(&mut self) -> u8 {
        self.take(1)[0]
    }
    /// A 16-bit integer.
    pub fn short(&mut self) -> u16 {
        u16::from_be_bytes(self.array())
    }
    /// A 32-bit integer.
    pub fn long(&mut self) -> u32 {
        u32::from_be_bytes(self.array())
    }
    /// A 64-bit integer.
    pub fn longlong(&mut self) -> u64 {
        u64::from_be_bytes(self.array())
    }
    /// A short string.
    pub fn shortstr(&mut self) -> String {
        let len = usize::from(self.octet());
        String::from_utf8_lossy(self.take(len)).into_owned()
    }
    /// A long string.
    pub fn longstr(&mut self) -> Vec<u8> {
        let len = self.long() as usize;
        self.take(len).to_vec()
    }
    /// A field table.
    pub fn table(&mut self) -> Value {
        let len = self.long() as usize;
        let mut inner = Reader::new(self.take(len));
        let mut entries = Vec::new();
        while inner.pos < inner.bytes.len() {
            let key = inner.shortstr();
            let value = inner.value();
            entries.push((key, value));
        }
        Value::Table(entries)
    }
    fn value(&mut self) -> Value {
        let tag = self.octet();
        match tag {
            b't' => Value::Bool(self.octet() != 0),
            b'b' => Value::Int(i64::from(self.octet() as i8)),
            b'B' => Value::Int(i64::from(self.octet())),
            b's' | b'u' => Value::Int(i64::from(self.short())),
            b'I' => Value::Int(i64::from(self.long() as i32)),
            b'i' => Value::Int(i64::from(self.long())),
            b'l' | b'L' => Value::Int(self.longlong() as i64),
            b'T' => {
                self.longlong();
                Value::Other(tag)
            }
            b'f' => {
                self.long();
                Value::Other(tag)
            }
            b'd' => {
                self.longlong();
                Value::Other(tag)
            }
            b'D' => {
                self.take(5);
                Value::Other(tag)
            }
            b'S' => Value::Str(self.longstr()),
            b'x' | b'A' => {
                let len = self.long() as usize;
                self.take(len);
                Value::Other(tag)
            }
            b'F' => self.table(),
            b'V' => Value::Other(tag),
            other => panic!("unknown field type {:?} in server table", other as char),
        }
    }
}

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

/// A client speaking raw frames over a real socket.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    /// Opens a TCP connection; nothing is sent yet.
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = within("TCP connect", TcpStream::connect(addr))
            .await
            .expect("TCP connect to the broker");
        stream.set_nodelay(true).expect("set TCP_NODELAY");
        RawClient {
            stream,
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
        self.send_bytes(PROTOCOL_HEADER).await;
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

    /// Reads frames until a `channel.close` arrives on `channel`, answers close-ok, returns it.
    pub async fn expect_channel_close(&mut self, channel: u16) -> Close {
        loop {
            let frame = self.expect_any_method().await;
            if frame.method_id() == Some(method::CHANNEL_CLOSE) && frame.channel == channel {
                let close = Close::read(&frame);
                let ok = Frame::method(channel, method::CHANNEL_CLOSE_OK, Args::new());
                self.send(&ok).await;
                return close;
            }
            assert_ne!(
                frame.method_id(),
                Some(method::CONNECTION_CLOSE),
                "expected channel.close, the server closed the connection: {:?}",
                Close::read(&frame)
            );
        }
    }

    async fn expect_any_method(&mut self) -> Frame {
        loop {
            let frame = self
                .read_frame()
                .await
                .expect("connection ended while waiting for a method");
            if frame.kind == frame_type::METHOD {
                return frame;
            }
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
