//! Consuming: `Subscribe`, the server's `Deliver`, `Credit` (and its error-only response),
//! `Unsubscribe`, `StoreOffset`, `QueryOffset`, the server's `ConsumerUpdate` (single active
//! consumer) and `ResolveOffsetSpec`.

use bytes::{BufMut, BytesMut};

use super::{key, Body};
use crate::chunk::Chunk;
use crate::error::WireError;
use crate::frame::SIZE_PREFIX;
use crate::offset::OffsetSpec;
use crate::response_code::ResponseCode;
use crate::types::{put_str, Cursor, Properties, Str};

/// `Subscribe` (0x0007): subscription `subscription_id` of this connection reads `stream` from
/// `offset`, with `credit` chunks it may be sent before it grants more.
///
/// Properties (`single-active-consumer`, `super-stream`, `filter.N`, `match-unfiltered`,
/// `name`...) are optional on the wire: RabbitMQ writes nothing after the credit when there are
/// none, and reads either form; so does this type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The connection-scoped subscription id.
    pub subscription_id: u8,
    /// The stream.
    pub stream: Str,
    /// Where to start.
    pub offset: OffsetSpec,
    /// Initial credit, in chunks.
    pub credit: u16,
    /// Subscription properties; empty is written as nothing.
    pub properties: Properties,
}

impl Body for Subscribe {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        let correlation_id = c.u32()?;
        let subscription_id = c.u8()?;
        let stream = c.str()?;
        let offset = OffsetSpec::decode(c)?;
        let credit = c.u16()?;
        let properties = if c.remaining() == 0 {
            Properties::new()
        } else {
            Properties::decode(c)?
        };
        Ok(Subscribe {
            correlation_id,
            subscription_id,
            stream,
            offset,
            credit,
            properties,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u8(self.subscription_id);
        put_str(out, &self.stream);
        self.offset.encode(out);
        out.put_u16(self.credit);
        if !self.properties.is_empty() {
            self.properties.encode(out);
        }
    }
}

/// `Deliver` (0x0008), server to client: one chunk for a subscription. Version 2 (sent when
/// the client announced deliver up to 2 in `ExchangeCommandVersions`) adds the id of the last
/// committed chunk, which lets a client compute its lag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deliver {
    /// The subscription.
    pub subscription_id: u8,
    /// Version 2 only: the committed chunk id.
    pub committed_chunk_id: Option<u64>,
    /// The chunk.
    pub chunk: Chunk,
}

impl Deliver {
    /// Writes a `Deliver` frame's size, key, version, subscription id and (v2) committed chunk
    /// id, for a chunk of `chunk_len` bytes the caller writes right after (the chunk's header
    /// and data as the store keeps them, without copying them into a [`Chunk`]).
    pub fn encode_header(
        subscription_id: u8,
        committed_chunk_id: Option<u64>,
        chunk_len: usize,
        out: &mut BytesMut,
    ) {
        let head = 2 + 2 + 1 + if committed_chunk_id.is_some() { 8 } else { 0 };
        out.reserve(SIZE_PREFIX + head);
        out.put_u32(u32::try_from(head + chunk_len).unwrap_or(u32::MAX));
        out.put_u16(key::DELIVER);
        out.put_u16(if committed_chunk_id.is_some() { 2 } else { 1 });
        out.put_u8(subscription_id);
        if let Some(id) = committed_chunk_id {
            out.put_u64(id);
        }
    }
}

impl Body for Deliver {
    fn decode(c: &mut Cursor, version: u16) -> Result<Self, WireError> {
        let subscription_id = c.u8()?;
        let committed_chunk_id = if version == 2 { Some(c.u64()?) } else { None };
        Ok(Deliver {
            subscription_id,
            committed_chunk_id,
            chunk: Chunk::decode(c)?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.subscription_id);
        if let Some(id) = self.committed_chunk_id {
            out.put_u64(id);
        }
        self.chunk.encode(out);
    }

    fn version(&self) -> u16 {
        if self.committed_chunk_id.is_some() {
            2
        } else {
            1
        }
    }

    fn supports(version: u16) -> bool {
        matches!(version, 1 | 2)
    }
}

/// `Credit` (0x0009), client to server, no response unless it fails: `credit` more chunks for
/// the subscription. PROTOCOL.adoc says uint16; RabbitMQ reads it as a signed int16, so a
/// credit over 32,767 reaches RabbitMQ as a negative number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Credit {
    /// The subscription.
    pub subscription_id: u8,
    /// Chunks granted.
    pub credit: u16,
}

impl Body for Credit {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(Credit {
            subscription_id: c.u8()?,
            credit: c.u16()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.subscription_id);
        out.put_u16(self.credit);
    }
}

/// `Credit` response (0x8009), sent only on failure (an unknown subscription). It has no
/// correlation id, and the code comes before the subscription id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreditResponse {
    /// Why the credit failed.
    pub code: ResponseCode,
    /// The subscription named in the `Credit`.
    pub subscription_id: u8,
}

impl Body for CreditResponse {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(CreditResponse {
            code: c.u16()?.into(),
            subscription_id: c.u8()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.code.code());
        out.put_u8(self.subscription_id);
    }
}

/// `StoreOffset` (0x000a), client to server, no response: remember `offset` for consumer
/// `reference` on `stream`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoreOffset {
    /// The consumer's name (at most 256 characters, a server-side rule).
    pub reference: Str,
    /// The stream.
    pub stream: Str,
    /// The offset to store.
    pub offset: u64,
}

impl Body for StoreOffset {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(StoreOffset {
            reference: c.str()?,
            stream: c.str()?,
            offset: c.u64()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        put_str(out, &self.reference);
        put_str(out, &self.stream);
        out.put_u64(self.offset);
    }
}

/// `QueryOffset` (0x000b): the offset stored for a consumer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct QueryOffset {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The consumer's name.
    pub reference: Str,
    /// The stream.
    pub stream: Str,
}

impl Body for QueryOffset {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(QueryOffset {
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

/// `QueryOffset` response (0x800b); [`ResponseCode::NoOffset`] when nothing is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryOffsetResponse {
    /// The request's correlation id.
    pub correlation_id: u32,
    /// The outcome.
    pub code: ResponseCode,
    /// The stored offset (0 when none).
    pub offset: u64,
}

impl Body for QueryOffsetResponse {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(QueryOffsetResponse {
            correlation_id: c.u32()?,
            code: c.u16()?.into(),
            offset: c.u64()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u16(self.code.code());
        out.put_u64(self.offset);
    }
}

/// `Unsubscribe` (0x000c).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Unsubscribe {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The subscription.
    pub subscription_id: u8,
}

impl Body for Unsubscribe {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(Unsubscribe {
            correlation_id: c.u32()?,
            subscription_id: c.u8()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u8(self.subscription_id);
    }
}

/// `ConsumerUpdate` (0x001a), server to client: a single-active-consumer subscription became
/// active or inactive. The client answers with where to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConsumerUpdate {
    /// Correlates the client's response.
    pub correlation_id: u32,
    /// The subscription.
    pub subscription_id: u8,
    /// True if it is now the active consumer.
    pub active: bool,
}

impl Body for ConsumerUpdate {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        let correlation_id = c.u32()?;
        let subscription_id = c.u8()?;
        let active = match c.u8()? {
            0 => false,
            1 => true,
            other => return Err(WireError::InvalidBoolean(other)),
        };
        Ok(ConsumerUpdate {
            correlation_id,
            subscription_id,
            active,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u8(self.subscription_id);
        out.put_u8(u8::from(self.active));
    }
}

/// `ConsumerUpdate` response (0x801a), client to server: where the now-active consumer starts,
/// or `None` (offset type 0) for no offset.
///
/// The offset type is a uint16 here as everywhere. (RabbitMQ's encoder for this response, which
/// the server never uses, writes types 4 and 5 as a single octet; its decoder reads a uint16.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerUpdateResponse {
    /// The request's correlation id.
    pub correlation_id: u32,
    /// The outcome.
    pub code: ResponseCode,
    /// Where to resume.
    pub offset: Option<OffsetSpec>,
}

impl Body for ConsumerUpdateResponse {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        let response = ConsumerUpdateResponse {
            correlation_id: c.u32()?,
            code: c.u16()?.into(),
            offset: OffsetSpec::decode_optional(c)?,
        };
        // Whatever follows the offset specification is ignored, as RabbitMQ's
        // `rabbit_stream_core:parse_response_body/2` does (it reads the offset type and leaves
        // the rest): rstream 1.1 appends an 8-byte offset even after `first`, `last` and `next`.
        c.skip_rest();
        Ok(response)
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u16(self.code.code());
        OffsetSpec::encode_optional(self.offset, out);
    }
}

/// `ResolveOffsetSpec` (0x001f): which offset would a subscription with this specification
/// (and these filter properties, `chunk_selector`) start at? Properties are optional on the
/// wire, as for [`Subscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveOffsetSpec {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The stream.
    pub stream: Str,
    /// The specification to resolve.
    pub offset: OffsetSpec,
    /// `filter.N`, `match-unfiltered`, `chunk_selector`; empty is written as nothing.
    pub properties: Properties,
}

impl Body for ResolveOffsetSpec {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        let correlation_id = c.u32()?;
        let stream = c.str()?;
        let offset = OffsetSpec::decode(c)?;
        let properties = if c.remaining() == 0 {
            Properties::new()
        } else {
            Properties::decode(c)?
        };
        Ok(ResolveOffsetSpec {
            correlation_id,
            stream,
            offset,
            properties,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        put_str(out, &self.stream);
        self.offset.encode(out);
        if !self.properties.is_empty() {
            self.properties.encode(out);
        }
    }
}

/// `ResolveOffsetSpec` response (0x801f): always an offset type (4 today) and a uint64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResolveOffsetSpecResponse {
    /// The request's correlation id.
    pub correlation_id: u32,
    /// The outcome.
    pub code: ResponseCode,
    /// The type of `offset` ([`crate::OFFSET_TYPE_OFFSET`]).
    pub offset_type: u16,
    /// The resolved offset.
    pub offset: u64,
}

impl Body for ResolveOffsetSpecResponse {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(ResolveOffsetSpecResponse {
            correlation_id: c.u32()?,
            code: c.u16()?.into(),
            offset_type: c.u16()?,
            offset: c.u64()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u16(self.code.code());
        out.put_u16(self.offset_type);
        out.put_u64(self.offset);
    }
}
