//! Streams and super streams as objects: `Create`, `Delete`, `Metadata`, `StreamStats`,
//! `CreateSuperStream`, `DeleteSuperStream`, `Partitions`, `Route`
//! (`rabbit_stream_reader:handle_frame_post_auth/4`, `rabbit_stream_manager`).
//!
//! A stream is a vhost queue with `x-queue-type: stream`: `Create` declares it through
//! [`VHost::declare_queue`] with the protocol's arguments turned into queue arguments, so it
//! gets RabbitMQ's declare checks and is stored and recovered like one declared over AMQP.

use super::connection::{Conn, Next};
use crate::authz::Kind;
use bytes::Bytes;
use pigeon_broker::permission::Access;
use pigeon_broker::vhost::{correct_stream_name, stream_queue_arguments};
use pigeon_broker::{Queue, QueueOptions, SuperStreamError, Table, VHost, Value};
use std::sync::Arc;
use stream_wire::{
    key, Broker, Create, CreateSuperStream, Delete, DeleteSuperStream, Metadata, MetadataResponse,
    Partitions, PartitionsResponse, Properties, ResponseCode, Route, RouteResponse, Str,
    StreamMetadata, StreamStats, StreamStatsResponse,
};

/// The leader reference RabbitMQ gives a stream it did not find (`-1` as an int16).
const NO_LEADER: u16 = u16::MAX;

impl Conn {
    /// The open connection's vhost (always set once `Open` succeeded).
    pub(super) fn vhost(&self) -> Option<&Arc<VHost>> {
        self.vhost.as_ref()
    }

    /// Whether the user may `access` the queue (or exchange) `name`; a refusal is logged.
    pub(super) fn allowed(&self, access: Access, kind: Kind, name: &str) -> bool {
        self.authz
            .as_ref()
            .is_some_and(|a| a.check(access, kind, name).is_ok())
    }

    /// The stream `name` of the vhost: a live stream queue, else STREAM_DOES_NOT_EXIST.
    pub(super) fn stream_queue(&self, name: &str) -> Result<Arc<Queue>, ResponseCode> {
        self.vhost()
            .and_then(|v| v.queue(name).ok())
            .filter(|q| q.is_stream() && !q.is_deleted() && !q.stream_deleted())
            .ok_or(ResponseCode::StreamDoesNotExist)
    }

    pub(super) fn create(&mut self, c: &Create) -> Next {
        let code = match self.create_stream(c.stream.as_str(), &c.arguments) {
            Ok(()) => ResponseCode::Ok,
            Err(code) => code,
        };
        self.respond(key::CREATE, c.correlation_id, code);
        Next::Go
    }

    fn create_stream(&self, name: &str, arguments: &Properties) -> Result<(), ResponseCode> {
        let Some(name) = correct_stream_name(name) else {
            return Err(ResponseCode::PreconditionFailed);
        };
        if !self.allowed(Access::Configure, Kind::Queue, &name) {
            return Err(ResponseCode::AccessRefused);
        }
        let vhost = self.vhost().ok_or(ResponseCode::InternalError)?;
        let exists = vhost.queue(&name).is_ok();
        let arguments = stream_queue_arguments(&table(arguments)).map_err(|reason| {
            tracing::info!(conn = self.id, stream = %name, %reason, "stream not created");
            ResponseCode::PreconditionFailed
        })?;
        let options = QueueOptions {
            durable: true,
            exclusive_owner: None,
            auto_delete: false,
            arguments,
        };
        match vhost.declare_queue(&name, false, options, self.id) {
            // rabbit_stream_manager `create`: an equivalent queue already there is
            // `{error, reference_already_exists}`; one with other arguments (or another type)
            // fails the declare's equivalence check, `validation_failed`: PRECONDITION_FAILED.
            Ok(_) if exists => Err(ResponseCode::StreamAlreadyExists),
            Ok(_) => {
                tracing::debug!(conn = self.id, stream = %name, "stream created");
                Ok(())
            }
            Err(e) => {
                tracing::info!(conn = self.id, stream = %name, error = %e, "stream not created");
                Err(ResponseCode::PreconditionFailed)
            }
        }
    }

    pub(super) fn delete(&mut self, d: &Delete) -> Next {
        let name = d.stream.as_str();
        let code = if !self.allowed(Access::Configure, Kind::Queue, name) {
            ResponseCode::AccessRefused
        } else {
            match (self.stream_queue(name), self.vhost()) {
                (Err(code), _) => code,
                (Ok(_), None) => ResponseCode::InternalError,
                (Ok(_), Some(vhost)) => match vhost.delete_queue(name, false, false, self.id) {
                    Ok(_) => ResponseCode::Ok,
                    Err(e) => {
                        tracing::info!(conn = self.id, stream = %name, error = %e, "stream not deleted");
                        ResponseCode::InternalError
                    }
                },
            }
        };
        self.respond(key::DELETE, d.correlation_id, code);
        // This connection's own publishers and subscriptions of the stream are told at the
        // next wake-up, as every other connection's (MetadataUpdate).
        Next::Go
    }

    pub(super) fn metadata(&mut self, m: &Metadata) -> Next {
        let mut streams = Vec::with_capacity(m.streams.len());
        for s in &m.streams {
            let found = self.stream_queue(s.as_str()).is_ok();
            streams.push(StreamMetadata {
                stream: s.clone(),
                code: if found {
                    ResponseCode::Ok
                } else {
                    ResponseCode::StreamDoesNotExist
                },
                leader: if found { 0 } else { NO_LEADER },
                replicas: Vec::new(),
            });
        }
        // Only the nodes that lead or replicate a listed stream are named (one node here).
        let brokers = if streams.iter().any(|s| s.code == ResponseCode::Ok) {
            let (host, port) = self.advertised();
            vec![Broker {
                reference: 0,
                host: host.into(),
                port: u32::from(port),
            }]
        } else {
            Vec::new()
        };
        self.send(MetadataResponse {
            correlation_id: m.correlation_id,
            brokers,
            streams,
        });
        Next::Go
    }

    pub(super) fn stream_stats(&mut self, s: &StreamStats) -> Next {
        let name = s.stream.as_str();
        let (code, stats) = if !self.allowed(Access::Read, Kind::Queue, name) {
            (ResponseCode::AccessRefused, Vec::new())
        } else {
            match self.stream_queue(name) {
                Ok(q) => match q.stream_log() {
                    Some(log) => {
                        // osiris' counters (`osiris:get_stats/1`): -1 while the stream
                        // holds no chunk.
                        let committed = log.committed_chunk_id().map_or(-1, to_i64);
                        let last = log.last_chunk_id().map_or(-1, to_i64);
                        let first = if committed < 0 {
                            -1
                        } else {
                            to_i64(log.first_offset())
                        };
                        (
                            ResponseCode::Ok,
                            vec![
                                (Str::from("first_chunk_id"), first),
                                (Str::from("last_chunk_id"), last),
                                (Str::from("committed_chunk_id"), committed),
                            ],
                        )
                    }
                    None => (ResponseCode::StreamDoesNotExist, Vec::new()),
                },
                Err(code) => (code, Vec::new()),
            }
        };
        self.send(StreamStatsResponse {
            correlation_id: s.correlation_id,
            code,
            stats,
        });
        Next::Go
    }

    pub(super) fn create_super_stream(&mut self, c: &CreateSuperStream) -> Next {
        let code = self
            .try_create_super_stream(c)
            .err()
            .unwrap_or(ResponseCode::Ok);
        self.respond(key::CREATE_SUPER_STREAM, c.correlation_id, code);
        Next::Go
    }

    fn try_create_super_stream(&self, c: &CreateSuperStream) -> Result<(), ResponseCode> {
        let Some(name) = correct_stream_name(c.name.as_str()) else {
            return Err(ResponseCode::PreconditionFailed);
        };
        let partitions: Vec<String> = c.partitions.iter().map(|p| p.to_string()).collect();
        let keys: Vec<String> = c.binding_keys.iter().map(|k| k.to_string()).collect();
        // rabbit_stream_reader: configure on the exchange and on every partition.
        let allowed = self.allowed(Access::Configure, Kind::Exchange, &name)
            && partitions
                .iter()
                .all(|p| self.allowed(Access::Configure, Kind::Queue, p));
        if !allowed {
            return Err(ResponseCode::AccessRefused);
        }
        let vhost = self.vhost().ok_or(ResponseCode::InternalError)?;
        let limit = self
            .state
            .broker
            .access()
            .vhost_limits(vhost.name())
            .max_queues;
        vhost
            .check_super_stream_queue_limit(&name, partitions.len(), limit)
            .and_then(|()| vhost.create_super_stream(&name, partitions, keys, table(&c.arguments)))
            .map_err(|e| self.super_stream_error(&name, &e))
    }

    pub(super) fn delete_super_stream(&mut self, d: &DeleteSuperStream) -> Next {
        let name = d.name.as_str();
        let code = match self.vhost().map(|v| v.super_stream_partitions(name)) {
            Some(Ok(partitions)) => {
                let allowed = self.allowed(Access::Configure, Kind::Exchange, name)
                    && partitions
                        .iter()
                        .all(|p| self.allowed(Access::Configure, Kind::Queue, p));
                match self.vhost() {
                    Some(vhost) if allowed => {
                        vhost.delete_super_stream_partitions(name, &partitions);
                        ResponseCode::Ok
                    }
                    _ => ResponseCode::AccessRefused,
                }
            }
            Some(Err(e)) => self.super_stream_error(name, &e),
            None => ResponseCode::InternalError,
        };
        self.respond(key::DELETE_SUPER_STREAM, d.correlation_id, code);
        Next::Go
    }

    pub(super) fn partitions(&mut self, p: &Partitions) -> Next {
        let name = p.super_stream.as_str();
        let (code, streams) = if !self.allowed(Access::Read, Kind::Exchange, name) {
            (ResponseCode::AccessRefused, Vec::new())
        } else {
            match self.vhost().map(|v| v.super_stream_partitions(name)) {
                Some(Ok(list)) => (ResponseCode::Ok, list.into_iter().map(Str::from).collect()),
                _ => (ResponseCode::StreamDoesNotExist, Vec::new()),
            }
        };
        self.send(PartitionsResponse {
            correlation_id: p.correlation_id,
            code,
            streams,
        });
        Next::Go
    }

    pub(super) fn route(&mut self, r: &Route) -> Next {
        let name = r.super_stream.as_str();
        let (code, streams) = if !self.allowed(Access::Read, Kind::Exchange, name) {
            (ResponseCode::AccessRefused, Vec::new())
        } else {
            match self
                .vhost()
                .map(|v| v.super_stream_route(name, r.routing_key.as_str()))
            {
                // No partition for the key: OK with no stream (`{ok, no_route}`).
                Some(Ok(list)) => (ResponseCode::Ok, list.into_iter().map(Str::from).collect()),
                _ => (ResponseCode::StreamDoesNotExist, Vec::new()),
            }
        };
        self.send(RouteResponse {
            correlation_id: r.correlation_id,
            code,
            streams,
        });
        Next::Go
    }

    /// The response code RabbitMQ answers a super stream refusal with (logged once).
    fn super_stream_error(&self, name: &str, e: &SuperStreamError) -> ResponseCode {
        tracing::info!(conn = self.id, super_stream = %name, error = %e, "super stream operation refused");
        match e {
            SuperStreamError::ValidationFailed(_) => ResponseCode::PreconditionFailed,
            SuperStreamError::AlreadyExists(_) => ResponseCode::StreamAlreadyExists,
            SuperStreamError::NotFound(_) => ResponseCode::StreamDoesNotExist,
            _ => ResponseCode::InternalError,
        }
    }
}

/// The protocol's string map as a table of string values.
pub(super) fn table(properties: &Properties) -> Table {
    Table(
        properties
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    Value::Str(Bytes::copy_from_slice(v.as_bytes())),
                )
            })
            .collect(),
    )
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
