//! What is tracked in a stream and looked up in it: `StoreOffset` / `QueryOffset` (consumer
//! offsets, kept in the stream as tracking chunks), `QueryPublisherSequence` (de-duplication),
//! `ResolveOffsetSpec`, and `ExchangeCommandVersions`.

use super::connection::{Conn, Next};
use crate::authz::Kind;
use pigeon_broker::permission::Access;
use pigeon_store::OffsetSpec as StoreSpec;
use stream_wire::{
    key, CommandVersion, ExchangeCommandVersions, ExchangeCommandVersionsResponse, OffsetSpec,
    QueryOffset, QueryOffsetResponse, QueryPublisherSequence, QueryPublisherSequenceResponse,
    ResolveOffsetSpec, ResolveOffsetSpecResponse, ResponseCode, StoreOffset, OFFSET_TYPE_OFFSET,
    SERVER_COMMAND_VERSIONS,
};

/// The store's offset specification for the protocol's.
pub(super) fn store_spec(spec: OffsetSpec) -> StoreSpec {
    match spec {
        OffsetSpec::First => StoreSpec::First,
        OffsetSpec::Last => StoreSpec::Last,
        OffsetSpec::Next => StoreSpec::Next,
        OffsetSpec::Offset(o) => StoreSpec::Offset(o),
        OffsetSpec::Timestamp(t) => StoreSpec::Timestamp(t),
    }
}

/// Milliseconds since the Unix epoch.
pub(super) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Conn {
    /// `StoreOffset` has no response: refusals and failures are only logged, as RabbitMQ's.
    /// The offset is a tracking chunk in the stream, durable at the store's next round.
    pub(super) fn store_offset(&mut self, s: &StoreOffset) -> Next {
        let stream = s.stream.as_str();
        if !self.allowed(Access::Write, Kind::Queue, stream) {
            return Next::Go;
        }
        let Ok(q) = self.stream_queue(stream) else {
            tracing::info!(conn = self.id, %stream, "offset not stored: no such stream");
            return Next::Go;
        };
        let Some(log) = q.stream_log() else {
            return Next::Go;
        };
        match log.store_offset(s.reference.as_bytes(), s.offset, now_ms()) {
            Ok(_) => {
                if let Some(store) = &self.state.store {
                    store.stream_appended();
                }
            }
            Err(e) => {
                tracing::info!(conn = self.id, %stream, reference = %s.reference, error = %e, "offset not stored")
            }
        }
        Next::Go
    }

    pub(super) fn query_offset(&mut self, q: &QueryOffset) -> Next {
        let stream = q.stream.as_str();
        let (code, offset) = if !self.allowed(Access::Read, Kind::Queue, stream) {
            (ResponseCode::AccessRefused, 0)
        } else {
            match self.stream_queue(stream) {
                Ok(queue) => match queue
                    .stream_log()
                    .and_then(|l| l.query_offset(q.reference.as_bytes()))
                {
                    Some(offset) => (ResponseCode::Ok, offset),
                    None => (ResponseCode::NoOffset, 0),
                },
                Err(code) => (code, 0),
            }
        };
        self.send(QueryOffsetResponse {
            correlation_id: q.correlation_id,
            code,
            offset,
        });
        Next::Go
    }

    /// The last publishing id stored for a publisher reference, 0 if none.
    pub(super) fn query_publisher_sequence(&mut self, q: &QueryPublisherSequence) -> Next {
        let stream = q.stream.as_str();
        let (code, sequence) = if !self.allowed(Access::Read, Kind::Queue, stream) {
            (ResponseCode::AccessRefused, 0)
        } else {
            match self.stream_queue(stream) {
                Ok(queue) => (
                    ResponseCode::Ok,
                    queue
                        .stream_log()
                        .and_then(|l| l.publisher_sequence(q.reference.as_bytes()))
                        .unwrap_or(0),
                ),
                Err(code) => (code, 0),
            }
        };
        self.send(QueryPublisherSequenceResponse {
            correlation_id: q.correlation_id,
            code,
            sequence,
        });
        Next::Go
    }

    /// The offset a subscription with this specification would start at.
    pub(super) fn resolve_offset_spec(&mut self, r: &ResolveOffsetSpec) -> Next {
        let stream = r.stream.as_str();
        let (code, offset) = if !self.allowed(Access::Read, Kind::Queue, stream) {
            (ResponseCode::AccessRefused, 0)
        } else {
            match self.stream_queue(stream) {
                Ok(queue) => match queue.stream_log().map(|l| l.seek(store_spec(r.offset))) {
                    Some(Ok(at)) => (ResponseCode::Ok, at.chunk_id),
                    _ => (ResponseCode::InternalError, 0),
                },
                Err(code) => (code, 0),
            }
        };
        self.send(ResolveOffsetSpecResponse {
            correlation_id: r.correlation_id,
            code,
            offset_type: OFFSET_TYPE_OFFSET,
            offset,
        });
        Next::Go
    }

    /// Deliver v2 (with the committed chunk id) when the client reads it
    /// (`rabbit_stream_reader`: the client's `deliver` entry reaching version 2).
    pub(super) fn exchange_command_versions(&mut self, e: &ExchangeCommandVersions) -> Next {
        self.deliver_v2 = e
            .commands
            .iter()
            .any(|c: &CommandVersion| c.key == key::DELIVER && c.max_version >= 2);
        self.send(ExchangeCommandVersionsResponse {
            correlation_id: e.correlation_id,
            code: ResponseCode::Ok,
            commands: SERVER_COMMAND_VERSIONS.to_vec(),
        });
        Next::Go
    }
}
