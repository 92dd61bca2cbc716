//! Every command of PROTOCOL.adoc: one struct per request, response and server command, and
//! [`Command`] over all of them, dispatched on key and version.
//!
//! Files follow the protocol's areas: `connection.rs` (handshake, tune, open, close,
//! heartbeat, command versions), `publish.rs` (publishers, publish, confirms, errors),
//! `consume.rs` (subscriptions, deliver, credit, offsets, consumer update, offset resolution),
//! `streams.rs` (create, delete, metadata, super streams, routes, partitions, stats).
//!
//! Where PROTOCOL.adoc and RabbitMQ's code (`rabbit_stream_core.erl`) differ, the code wins,
//! because that is what clients interoperate with; each such place says so.
//!
//! # Unknown and unsupported commands
//!
//! A key this crate does not know, or a version it does not support for that key (version 1
//! for everything, 1 and 2 for `Publish` and `Deliver`, as RabbitMQ's parser), decodes to
//! [`Command::Unknown`]; a known command whose content is malformed is a [`WireError`]. RabbitMQ
//! treats both the same way (see `error.rs`): before `Open` it closes the socket, after it it
//! sends `Close` with [`crate::ResponseCode::UnknownFrame`].

mod connection;
mod consume;
mod publish;
mod publish_ref;
mod streams;

pub use connection::*;
pub use consume::*;
pub use publish::*;
pub use publish_ref::{EntryRef, PublishedRef, PublishedRefs};
pub use streams::*;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::WireError;
use crate::frame::{patch_size, RawFrame, RESPONSE_FLAG};
use crate::response_code::ResponseCode;
use crate::types::Cursor;

/// Command keys (PROTOCOL.adoc, "Commands"); a response's key is the same with
/// [`RESPONSE_FLAG`] set.
pub mod key {
    /// DeclarePublisher.
    pub const DECLARE_PUBLISHER: u16 = 0x0001;
    /// Publish.
    pub const PUBLISH: u16 = 0x0002;
    /// PublishConfirm.
    pub const PUBLISH_CONFIRM: u16 = 0x0003;
    /// PublishError.
    pub const PUBLISH_ERROR: u16 = 0x0004;
    /// QueryPublisherSequence.
    pub const QUERY_PUBLISHER_SEQUENCE: u16 = 0x0005;
    /// DeletePublisher.
    pub const DELETE_PUBLISHER: u16 = 0x0006;
    /// Subscribe.
    pub const SUBSCRIBE: u16 = 0x0007;
    /// Deliver.
    pub const DELIVER: u16 = 0x0008;
    /// Credit.
    pub const CREDIT: u16 = 0x0009;
    /// StoreOffset.
    pub const STORE_OFFSET: u16 = 0x000a;
    /// QueryOffset.
    pub const QUERY_OFFSET: u16 = 0x000b;
    /// Unsubscribe.
    pub const UNSUBSCRIBE: u16 = 0x000c;
    /// Create (a stream).
    pub const CREATE: u16 = 0x000d;
    /// Delete (a stream).
    pub const DELETE: u16 = 0x000e;
    /// Metadata.
    pub const METADATA: u16 = 0x000f;
    /// MetadataUpdate.
    pub const METADATA_UPDATE: u16 = 0x0010;
    /// PeerProperties.
    pub const PEER_PROPERTIES: u16 = 0x0011;
    /// SaslHandshake.
    pub const SASL_HANDSHAKE: u16 = 0x0012;
    /// SaslAuthenticate.
    pub const SASL_AUTHENTICATE: u16 = 0x0013;
    /// Tune.
    pub const TUNE: u16 = 0x0014;
    /// Open.
    pub const OPEN: u16 = 0x0015;
    /// Close.
    pub const CLOSE: u16 = 0x0016;
    /// Heartbeat.
    pub const HEARTBEAT: u16 = 0x0017;
    /// Route.
    pub const ROUTE: u16 = 0x0018;
    /// Partitions.
    pub const PARTITIONS: u16 = 0x0019;
    /// ConsumerUpdate.
    pub const CONSUMER_UPDATE: u16 = 0x001a;
    /// ExchangeCommandVersions.
    pub const EXCHANGE_COMMAND_VERSIONS: u16 = 0x001b;
    /// StreamStats.
    pub const STREAM_STATS: u16 = 0x001c;
    /// CreateSuperStream.
    pub const CREATE_SUPER_STREAM: u16 = 0x001d;
    /// DeleteSuperStream.
    pub const DELETE_SUPER_STREAM: u16 = 0x001e;
    /// ResolveOffsetSpec.
    pub const RESOLVE_OFFSET_SPEC: u16 = 0x001f;
}

const R: u16 = RESPONSE_FLAG;

/// The content of one command: how it is read and written after key and version.
pub(crate) trait Body: Sized {
    /// Reads the content; `version` is one [`Body::supports`] accepted.
    fn decode(c: &mut Cursor, version: u16) -> Result<Self, WireError>;
    /// Writes the content.
    fn encode(&self, out: &mut BytesMut);
    /// The version this value is written with.
    fn version(&self) -> u16 {
        1
    }
    /// Versions the decoder reads.
    fn supports(version: u16) -> bool {
        version == 1
    }
}

macro_rules! commands {
    ($( $variant:ident = $key:expr ),* $(,)?) => {
        /// Any command of the stream protocol. Each variant wraps the struct of the same name.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Command {
            $(
                #[doc = concat!("See [`", stringify!($variant), "`].")]
                $variant($variant),
            )*
            /// A response that carries only a response code: to `DeclarePublisher`,
            /// `DeletePublisher`, `Subscribe`, `Unsubscribe`, `Create`, `Delete`, `Close`,
            /// `CreateSuperStream` and `DeleteSuperStream`.
            Response(Response),
            /// A key, or a version of a key, this crate does not know; the content is kept.
            Unknown {
                /// The key, response bit included.
                key: u16,
                /// The version.
                version: u16,
                /// The content after key and version.
                content: Bytes,
            },
        }

        impl Command {
            /// Decodes a frame's content. Strings and payloads are zero-copy slices of it;
            /// arrays allocate at most what the bytes present can hold.
            pub fn decode(frame: RawFrame) -> Result<Command, WireError> {
                let RawFrame { key, version, content } = frame;
                let mut c = Cursor::new(content);
                let command = match key {
                    $(
                        k if k == $key && <$variant as Body>::supports(version) => {
                            Command::$variant(<$variant as Body>::decode(&mut c, version)?)
                        }
                    )*
                    k if version == 1 && Response::is_plain(k) => {
                        Command::Response(Response::decode(k & !R, &mut c)?)
                    }
                    _ => return Ok(Command::Unknown { key, version, content: c.rest() }),
                };
                c.finish()?;
                Ok(command)
            }

            /// The key, response bit included.
            pub fn key(&self) -> u16 {
                match self {
                    $( Command::$variant(_) => $key, )*
                    Command::Response(r) => r.command | R,
                    Command::Unknown { key, .. } => *key,
                }
            }

            /// The version the command is written with.
            pub fn version(&self) -> u16 {
                match self {
                    $( Command::$variant(b) => b.version(), )*
                    Command::Response(_) => 1,
                    Command::Unknown { version, .. } => *version,
                }
            }

            /// Writes the whole frame: size, key, version, content.
            pub fn encode(&self, out: &mut BytesMut) {
                let at = out.len();
                out.put_u32(0);
                out.put_u16(self.key());
                out.put_u16(self.version());
                match self {
                    $( Command::$variant(b) => b.encode(out), )*
                    Command::Response(r) => r.encode(out),
                    Command::Unknown { content, .. } => out.put_slice(content),
                }
                patch_size(out, at);
            }
        }

        $(
            impl From<$variant> for Command {
                fn from(b: $variant) -> Command {
                    Command::$variant(b)
                }
            }
        )*
    };
}

commands! {
    DeclarePublisher = key::DECLARE_PUBLISHER,
    Publish = key::PUBLISH,
    PublishConfirm = key::PUBLISH_CONFIRM,
    PublishError = key::PUBLISH_ERROR,
    QueryPublisherSequence = key::QUERY_PUBLISHER_SEQUENCE,
    QueryPublisherSequenceResponse = key::QUERY_PUBLISHER_SEQUENCE | R,
    DeletePublisher = key::DELETE_PUBLISHER,
    Subscribe = key::SUBSCRIBE,
    Deliver = key::DELIVER,
    Credit = key::CREDIT,
    CreditResponse = key::CREDIT | R,
    StoreOffset = key::STORE_OFFSET,
    QueryOffset = key::QUERY_OFFSET,
    QueryOffsetResponse = key::QUERY_OFFSET | R,
    Unsubscribe = key::UNSUBSCRIBE,
    Create = key::CREATE,
    Delete = key::DELETE,
    Metadata = key::METADATA,
    MetadataResponse = key::METADATA | R,
    MetadataUpdate = key::METADATA_UPDATE,
    PeerProperties = key::PEER_PROPERTIES,
    PeerPropertiesResponse = key::PEER_PROPERTIES | R,
    SaslHandshake = key::SASL_HANDSHAKE,
    SaslHandshakeResponse = key::SASL_HANDSHAKE | R,
    SaslAuthenticate = key::SASL_AUTHENTICATE,
    SaslAuthenticateResponse = key::SASL_AUTHENTICATE | R,
    Tune = key::TUNE,
    TuneResponse = key::TUNE | R,
    Open = key::OPEN,
    OpenResponse = key::OPEN | R,
    Close = key::CLOSE,
    Heartbeat = key::HEARTBEAT,
    Route = key::ROUTE,
    RouteResponse = key::ROUTE | R,
    Partitions = key::PARTITIONS,
    PartitionsResponse = key::PARTITIONS | R,
    ConsumerUpdate = key::CONSUMER_UPDATE,
    ConsumerUpdateResponse = key::CONSUMER_UPDATE | R,
    ExchangeCommandVersions = key::EXCHANGE_COMMAND_VERSIONS,
    ExchangeCommandVersionsResponse = key::EXCHANGE_COMMAND_VERSIONS | R,
    StreamStats = key::STREAM_STATS,
    StreamStatsResponse = key::STREAM_STATS | R,
    CreateSuperStream = key::CREATE_SUPER_STREAM,
    DeleteSuperStream = key::DELETE_SUPER_STREAM,
    ResolveOffsetSpec = key::RESOLVE_OFFSET_SPEC,
    ResolveOffsetSpecResponse = key::RESOLVE_OFFSET_SPEC | R,
}

impl Command {
    /// The whole frame as bytes.
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }

    /// True for what a client may send before `Open` succeeds: `PeerProperties`,
    /// `SaslHandshake`, `SaslAuthenticate`, `Tune` (either key: RabbitMQ accepts the client's
    /// tune as a request or a response), `Open` and `Heartbeat`
    /// (`rabbit_stream_reader:handle_frame_pre_auth/4`). Anything else before `Open` makes
    /// RabbitMQ close the socket without answering.
    pub fn allowed_before_open(&self) -> bool {
        matches!(
            self,
            Command::PeerProperties(_)
                | Command::SaslHandshake(_)
                | Command::SaslAuthenticate(_)
                | Command::Tune(_)
                | Command::TuneResponse(_)
                | Command::Open(_)
                | Command::Heartbeat(_)
        )
    }
}

/// A response carrying only a correlation id and a response code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    /// The command answered, without the response bit (one of the keys listed on
    /// [`Command::Response`]).
    pub command: u16,
    /// The request's correlation id.
    pub correlation_id: u32,
    /// The outcome.
    pub code: ResponseCode,
}

impl Response {
    /// A response to `command` (a key of [`key`], without the response bit).
    pub fn new(command: u16, correlation_id: u32, code: ResponseCode) -> Self {
        Response {
            command: command & !R,
            correlation_id,
            code,
        }
    }

    /// True for the keys whose response is code-only.
    fn is_plain(k: u16) -> bool {
        k & R != 0
            && matches!(
                k & !R,
                key::DECLARE_PUBLISHER
                    | key::DELETE_PUBLISHER
                    | key::SUBSCRIBE
                    | key::UNSUBSCRIBE
                    | key::CREATE
                    | key::DELETE
                    | key::CLOSE
                    | key::CREATE_SUPER_STREAM
                    | key::DELETE_SUPER_STREAM
            )
    }

    fn decode(command: u16, c: &mut Cursor) -> Result<Self, WireError> {
        Ok(Response {
            command,
            correlation_id: c.u32()?,
            code: c.u16()?.into(),
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u16(self.code.code());
    }
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
