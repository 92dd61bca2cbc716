//! Frames and method arguments on the wire (AMQP 0-9-1 sections 4.2.3 to 4.2.6).

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
