//! Streams as objects: `Create`, `Delete`, `Metadata` and the server's `MetadataUpdate`,
//! `StreamStats`, and super streams (`CreateSuperStream`, `DeleteSuperStream`, `Route`,
//! `Partitions`).

use bytes::{BufMut, BytesMut};

use super::Body;
use crate::error::WireError;
use crate::response_code::ResponseCode;
use crate::types::{put_count, put_str, Cursor, Properties, Str};

fn put_strs(out: &mut BytesMut, strs: &[Str]) {
    put_count(out, strs.len());
    for s in strs {
        put_str(out, s);
    }
}

/// `Create` (0x000d): create a stream with arguments (`x-max-length-bytes`,
/// `x-max-age`, `x-stream-max-segment-size-bytes`, `x-queue-leader-locator`...).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Create {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The stream.
    pub stream: Str,
    /// Its arguments (always written, even when empty).
    pub arguments: Properties,
}

impl Body for Create {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(Create {
            correlation_id: c.u32()?,
            stream: c.str()?,
            arguments: Properties::decode(c)?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        put_str(out, &self.stream);
        self.arguments.encode(out);
    }
}

/// `Delete` (0x000e): delete a stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Delete {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The stream.
    pub stream: Str,
}

impl Body for Delete {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(Delete {
            correlation_id: c.u32()?,
            stream: c.str()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        put_str(out, &self.stream);
    }
}

/// `Metadata` (0x000f): where are these streams' leaders and replicas?
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Metadata {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The streams asked about.
    pub streams: Vec<Str>,
}

impl Body for Metadata {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(Metadata {
            correlation_id: c.u32()?,
            streams: c.array(2, Cursor::str)?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        put_strs(out, &self.streams);
    }
}

/// A node of a `Metadata` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// The index streams refer to it by.
    pub reference: u16,
    /// Host name clients should connect to.
    pub host: Str,
    /// Port.
    pub port: u32,
}

/// One stream of a `Metadata` response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamMetadata {
    /// The stream.
    pub stream: Str,
    /// [`ResponseCode::Ok`], or why there is no placement (does not exist, not available,
    /// access refused).
    pub code: ResponseCode,
    /// The leader's broker reference; RabbitMQ writes 0xFFFF (-1) when there is none.
    pub leader: u16,
    /// The replicas' broker references.
    pub replicas: Vec<u16>,
}

/// The leader reference of a stream that has no placement.
pub const NO_LEADER: u16 = 0xffff;

/// `Metadata` response (0x800f). It carries no response code of its own (each stream has
/// one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataResponse {
    /// The request's correlation id.
    pub correlation_id: u32,
    /// The nodes referenced.
    pub brokers: Vec<Broker>,
    /// The streams asked about.
    pub streams: Vec<StreamMetadata>,
}

impl Body for MetadataResponse {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        let correlation_id = c.u32()?;
        let brokers = c.array(8, |c| {
            Ok(Broker {
                reference: c.u16()?,
                host: c.str()?,
                port: c.u32()?,
            })
        })?;
        let streams = c.array(10, |c| {
            Ok(StreamMetadata {
                stream: c.str()?,
                code: c.u16()?.into(),
                leader: c.u16()?,
                replicas: c.array(2, Cursor::u16)?,
            })
        })?;
        Ok(MetadataResponse {
            correlation_id,
            brokers,
            streams,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        put_count(out, self.brokers.len());
        for b in &self.brokers {
            out.put_u16(b.reference);
            put_str(out, &b.host);
            out.put_u32(b.port);
        }
        put_count(out, self.streams.len());
        for s in &self.streams {
            put_str(out, &s.stream);
            out.put_u16(s.code.code());
            out.put_u16(s.leader);
            put_count(out, s.replicas.len());
            for r in &s.replicas {
                out.put_u16(*r);
            }
        }
    }
}

/// `MetadataUpdate` (0x0010), server to client: something happened to a stream the client
/// uses (RabbitMQ sends [`ResponseCode::StreamNotAvailable`] when a stream is deleted or its
/// leader moves). No correlation id, no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataUpdate {
    /// What happened.
    pub code: ResponseCode,
    /// The stream.
    pub stream: Str,
}

impl Body for MetadataUpdate {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(MetadataUpdate {
            code: c.u16()?.into(),
            stream: c.str()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.code.code());
        put_str(out, &self.stream);
    }
}

/// `Route` (0x0018): which partitions of a super stream does this routing key go to?
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Route {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The routing key.
    pub routing_key: Str,
    /// The super stream (its exchange).
    pub super_stream: Str,
}

impl Body for Route {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(Route {
            correlation_id: c.u32()?,
            routing_key: c.str()?,
            super_stream: c.str()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        put_str(out, &self.routing_key);
        put_str(out, &self.super_stream);
    }
}

/// `Route` response (0x8018): the partition streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteResponse {
    /// The request's correlation id.
    pub correlation_id: u32,
    /// The outcome.
    pub code: ResponseCode,
    /// The streams the key routes to.
    pub streams: Vec<Str>,
}

impl Body for RouteResponse {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(RouteResponse {
            correlation_id: c.u32()?,
            code: c.u16()?.into(),
            streams: c.array(2, Cursor::str)?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u16(self.code.code());
        put_strs(out, &self.streams);
    }
}

/// `Partitions` (0x0019): the partition streams of a super stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Partitions {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The super stream.
    pub super_stream: Str,
}

impl Body for Partitions {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(Partitions {
            correlation_id: c.u32()?,
            super_stream: c.str()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        put_str(out, &self.super_stream);
    }
}

/// `Partitions` response (0x8019).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionsResponse {
    /// The request's correlation id.
    pub correlation_id: u32,
    /// The outcome.
    pub code: ResponseCode,
    /// The partition streams, in order.
    pub streams: Vec<Str>,
}

impl Body for PartitionsResponse {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(PartitionsResponse {
            correlation_id: c.u32()?,
            code: c.u16()?.into(),
            streams: c.array(2, Cursor::str)?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u16(self.code.code());
        put_strs(out, &self.streams);
    }
}

/// `StreamStats` (0x001c): statistics of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamStats {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The stream.
    pub stream: Str,
}

impl Body for StreamStats {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(StreamStats {
            correlation_id: c.u32()?,
            stream: c.str()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        put_str(out, &self.stream);
    }
}

/// `StreamStats` response (0x801c): named int64 statistics (RabbitMQ sends
/// `first_chunk_id`, `committed_chunk_id`; -1 for an empty stream).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamStatsResponse {
    /// The request's correlation id.
    pub correlation_id: u32,
    /// The outcome.
    pub code: ResponseCode,
    /// The statistics, in wire order.
    pub stats: Vec<(Str, i64)>,
}

impl Body for StreamStatsResponse {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(StreamStatsResponse {
            correlation_id: c.u32()?,
            code: c.u16()?.into(),
            stats: c.array(10, |c| Ok((c.str()?, c.i64()?)))?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u16(self.code.code());
        put_count(out, self.stats.len());
        for (k, v) in &self.stats {
            put_str(out, k);
            out.put_i64(*v);
        }
    }
}

/// `CreateSuperStream` (0x001d): a super stream (an exchange) with its partition streams, each
/// bound with the binding key of the same position.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateSuperStream {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The super stream.
    pub name: Str,
    /// Partition streams.
    pub partitions: Vec<Str>,
    /// Binding keys, one per partition.
    pub binding_keys: Vec<Str>,
    /// Arguments for the partition streams.
    pub arguments: Properties,
}

impl Body for CreateSuperStream {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(CreateSuperStream {
            correlation_id: c.u32()?,
            name: c.str()?,
            partitions: c.array(2, Cursor::str)?,
            binding_keys: c.array(2, Cursor::str)?,
            arguments: Properties::decode(c)?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        put_str(out, &self.name);
        put_strs(out, &self.partitions);
        put_strs(out, &self.binding_keys);
        self.arguments.encode(out);
    }
}

/// `DeleteSuperStream` (0x001e).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteSuperStream {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The super stream.
    pub name: Str,
}

impl Body for DeleteSuperStream {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(DeleteSuperStream {
            correlation_id: c.u32()?,
            name: c.str()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        put_str(out, &self.name);
    }
}
