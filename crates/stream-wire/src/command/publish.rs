//! Publishing: `DeclarePublisher`, `Publish` (v1, and v2 with filter values), the server's
//! `PublishConfirm` and `PublishError`, `QueryPublisherSequence`, `DeletePublisher`.

use bytes::{BufMut, Bytes, BytesMut};

use super::publish_ref::PublishedRefs;
use super::Body;
use crate::chunk::Entry;
use crate::error::WireError;
use crate::response_code::ResponseCode;
use crate::types::{put_count, put_nullable_str, put_str, Cursor, Str};

/// `DeclarePublisher` (0x0001): publisher `publisher_id` of this connection writes to
/// `stream`. A non-empty `reference` names the publisher for deduplication
/// (`QueryPublisherSequence`); PROTOCOL.adoc caps it at 256 characters, a rule for the server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeclarePublisher {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The connection-scoped publisher id.
    pub publisher_id: u8,
    /// The publisher's name, or empty for none.
    pub reference: Str,
    /// The stream.
    pub stream: Str,
}

impl Body for DeclarePublisher {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(DeclarePublisher {
            correlation_id: c.u32()?,
            publisher_id: c.u8()?,
            reference: c.str()?,
            stream: c.str()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u8(self.publisher_id);
        put_str(out, &self.reference);
        put_str(out, &self.stream);
    }
}

/// One message of a `Publish`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedMessage {
    /// The publisher's sequence number for it, echoed in the confirm or error.
    pub publishing_id: u64,
    /// Version 2 only: the value consumers can filter on; `None` is null (no value).
    pub filter_value: Option<Str>,
    /// The message: a simple entry (one AMQP 1.0 message), or a sub-batch of them.
    pub entry: Entry,
}

impl PublishedMessage {
    /// A single message without filter value.
    pub fn simple(publishing_id: u64, message: Bytes) -> Self {
        PublishedMessage {
            publishing_id,
            filter_value: None,
            entry: Entry::Simple(message),
        }
    }

    fn decode(c: &mut Cursor, filtered: bool) -> Result<Self, WireError> {
        let publishing_id = c.u64()?;
        let filter_value = if filtered { c.nullable_str()? } else { None };
        Ok(PublishedMessage {
            publishing_id,
            filter_value,
            entry: Entry::decode(c)?,
        })
    }

    fn encode(&self, out: &mut BytesMut, filtered: bool) {
        out.put_u64(self.publishing_id);
        if filtered {
            put_nullable_str(out, self.filter_value.as_ref());
        }
        self.entry.encode(out);
    }
}

/// `Publish` (0x0002), client to server, no response (the server answers with
/// `PublishConfirm` or `PublishError`).
///
/// PROTOCOL.adoc shows each message as `bytes`; in fact it is an osiris data entry
/// ([`Entry`]): a top bit of 0 and a 31-bit length for one message, a top bit of 1 for a
/// sub-batch (`rabbit_stream_reader:publishing_ids_from_messages/2`). Version 2 puts a filter
/// value (a nullable string) between the publishing id and the entry.
///
/// Decoding checks every message without allocating and keeps them as one zero-copy slice;
/// [`Publish::messages`] walks it. The count in the frame must match the messages present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// The publisher (declared with `DeclarePublisher`).
    pub publisher_id: u8,
    filtered: bool,
    count: u32,
    messages: Bytes,
}

impl Publish {
    /// A publish of `messages`: version 2 if any has a filter value, version 1 otherwise.
    pub fn new(publisher_id: u8, messages: &[PublishedMessage]) -> Self {
        let filtered = messages.iter().any(|m| m.filter_value.is_some());
        Self::with_version(publisher_id, filtered, messages)
    }

    /// A publish of `messages` in version 2 if `filtered` (messages without a filter value get
    /// null), else version 1 (filter values are dropped).
    pub fn with_version(publisher_id: u8, filtered: bool, messages: &[PublishedMessage]) -> Self {
        let mut out = BytesMut::new();
        for m in messages {
            m.encode(&mut out, filtered);
        }
        Publish {
            publisher_id,
            filtered,
            count: u32::try_from(messages.len()).unwrap_or(u32::MAX),
            messages: out.freeze(),
        }
    }

    /// True for version 2 (filter values present on the wire).
    pub fn is_filtered(&self) -> bool {
        self.filtered
    }

    /// Number of messages.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// True if there is no message.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The messages, decoded one by one from the frame (zero-copy).
    pub fn messages(&self) -> PublishedMessages {
        PublishedMessages {
            cursor: Cursor::new(self.messages.clone()),
            filtered: self.filtered,
        }
    }

    /// The messages, borrowed from the frame (no copy, no reference count per message).
    pub fn message_refs(&self) -> PublishedRefs<'_> {
        PublishedRefs::new(&self.messages, self.filtered)
    }

    /// The encoded messages as received.
    pub fn raw_messages(&self) -> &Bytes {
        &self.messages
    }
}

impl Body for Publish {
    fn decode(c: &mut Cursor, version: u16) -> Result<Self, WireError> {
        let publisher_id = c.u8()?;
        let declared = c.count()?;
        let filtered = version == 2;
        let messages = c.rest();
        // Checked with the borrowed walk: no `Bytes` per message (see `publish_ref.rs`).
        let mut walk = PublishedRefs::new(&messages, filtered);
        let mut found = 0usize;
        while walk.skip_next()? {
            found += 1;
        }
        if found != declared {
            return Err(WireError::CountMismatch {
                declared: u32::try_from(declared).unwrap_or(u32::MAX),
                found: u32::try_from(found).unwrap_or(u32::MAX),
            });
        }
        Ok(Publish {
            publisher_id,
            filtered,
            count: u32::try_from(found).unwrap_or(u32::MAX),
            messages,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.publisher_id);
        put_count(out, self.count as usize);
        out.put_slice(&self.messages);
    }

    fn version(&self) -> u16 {
        if self.filtered {
            2
        } else {
            1
        }
    }

    fn supports(version: u16) -> bool {
        matches!(version, 1 | 2)
    }
}

/// The messages of a [`Publish`]. They were checked when the frame was decoded, so the
/// iteration only stops early on a `Publish` built by hand from bad bytes (it cannot be).
#[derive(Debug, Clone)]
pub struct PublishedMessages {
    cursor: Cursor,
    filtered: bool,
}

impl Iterator for PublishedMessages {
    type Item = PublishedMessage;

    fn next(&mut self) -> Option<PublishedMessage> {
        if self.cursor.remaining() == 0 {
            return None;
        }
        PublishedMessage::decode(&mut self.cursor, self.filtered).ok()
    }
}

/// `PublishConfirm` (0x0003), server to client: these messages are stored.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishConfirm {
    /// The publisher.
    pub publisher_id: u8,
    /// The confirmed publishing ids.
    pub publishing_ids: Vec<u64>,
}

impl Body for PublishConfirm {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(PublishConfirm {
            publisher_id: c.u8()?,
            publishing_ids: c.array(8, Cursor::u64)?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.publisher_id);
        put_count(out, self.publishing_ids.len());
        // A broker confirms thousands of ids at once: gather them 64 at a time on the stack
        // rather than one `put_u64` (a capacity check and a copy call) each.
        out.reserve(8 * self.publishing_ids.len());
        let mut block = [0u8; 8 * 64];
        for ids in self.publishing_ids.chunks(64) {
            for (slot, id) in block.chunks_exact_mut(8).zip(ids) {
                slot.copy_from_slice(&id.to_be_bytes());
            }
            out.put_slice(&block[..8 * ids.len()]);
        }
    }
}

/// One failed message of a `PublishError`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishingError {
    /// The message's publishing id.
    pub publishing_id: u64,
    /// Why (e.g. [`ResponseCode::PublisherDoesNotExist`], [`ResponseCode::AccessRefused`]).
    pub code: ResponseCode,
}

/// `PublishError` (0x0004), server to client: these messages were not stored. PROTOCOL.adoc's
/// first line omits the `PublisherId` its field list has; RabbitMQ writes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PublishError {
    /// The publisher.
    pub publisher_id: u8,
    /// The failed messages.
    pub errors: Vec<PublishingError>,
}

impl Body for PublishError {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(PublishError {
            publisher_id: c.u8()?,
            errors: c.array(10, |c| {
                Ok(PublishingError {
                    publishing_id: c.u64()?,
                    code: c.u16()?.into(),
                })
            })?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.publisher_id);
        put_count(out, self.errors.len());
        for e in &self.errors {
            out.put_u64(e.publishing_id);
            out.put_u16(e.code.code());
        }
    }
}

/// `QueryPublisherSequence` (0x0005): the last publishing id stored for a named publisher.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryPublisherSequence {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The publisher's name.
    pub reference: Str,
    /// The stream.
    pub stream: Str,
}

impl Body for QueryPublisherSequence {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(QueryPublisherSequence {
            correlation_id: c.u32()?,
            reference: c.str()?,
            stream: c.str()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        put_str(out, &self.reference);
        put_str(out, &self.stream);
    }
}

/// `QueryPublisherSequence` response (0x8005).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryPublisherSequenceResponse {
    /// The request's correlation id.
    pub correlation_id: u32,
    /// The outcome.
    pub code: ResponseCode,
    /// The last publishing id stored (0 if none).
    pub sequence: u64,
}

impl Body for QueryPublisherSequenceResponse {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(QueryPublisherSequenceResponse {
            correlation_id: c.u32()?,
            code: c.u16()?.into(),
            sequence: c.u64()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u16(self.code.code());
        out.put_u64(self.sequence);
    }
}

/// `DeletePublisher` (0x0006).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeletePublisher {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The publisher.
    pub publisher_id: u8,
}

impl Body for DeletePublisher {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(DeletePublisher {
            correlation_id: c.u32()?,
            publisher_id: c.u8()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u8(self.publisher_id);
    }
}
