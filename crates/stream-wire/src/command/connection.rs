//! The connection's life: `PeerProperties`, `SaslHandshake`, `SaslAuthenticate`, `Tune`,
//! `Open` (in that order, PROTOCOL.adoc "Authentication"), then `Heartbeat`, `Close` and
//! `ExchangeCommandVersions`.

use bytes::{BufMut, Bytes, BytesMut};

use super::{key, Body};
use crate::error::WireError;
use crate::response_code::ResponseCode;
use crate::types::{put_bytes, put_count, put_str, Cursor, Properties, Str};

/// `PeerProperties` (0x0011), client to server: the client's properties (product, version,
/// `connection_name`...).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerProperties {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The client's properties.
    pub properties: Properties,
}

impl Body for PeerProperties {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(PeerProperties {
            correlation_id: c.u32()?,
            properties: Properties::decode(c)?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        self.properties.encode(out);
    }
}

/// `PeerProperties` response (0x8011): the server's properties.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerPropertiesResponse {
    /// The request's correlation id.
    pub correlation_id: u32,
    /// The outcome.
    pub code: ResponseCode,
    /// The server's properties (product, version, cluster name...).
    pub properties: Properties,
}

impl Body for PeerPropertiesResponse {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(PeerPropertiesResponse {
            correlation_id: c.u32()?,
            code: c.u16()?.into(),
            properties: Properties::decode(c)?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u16(self.code.code());
        self.properties.encode(out);
    }
}

/// `SaslHandshake` (0x0012): which mechanisms does the server offer? PROTOCOL.adoc's first
/// line names a `Mechanism` field but its field list has none, and RabbitMQ reads none: the
/// request is the correlation id alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SaslHandshake {
    /// Correlates the response.
    pub correlation_id: u32,
}

impl Body for SaslHandshake {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(SaslHandshake {
            correlation_id: c.u32()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
    }
}

/// `SaslHandshake` response (0x8012): the mechanisms offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslHandshakeResponse {
    /// The request's correlation id.
    pub correlation_id: u32,
    /// The outcome.
    pub code: ResponseCode,
    /// Mechanism names (`PLAIN`, `AMQPLAIN`, `EXTERNAL`, `ANONYMOUS`...).
    pub mechanisms: Vec<Str>,
}

impl Body for SaslHandshakeResponse {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(SaslHandshakeResponse {
            correlation_id: c.u32()?,
            code: c.u16()?.into(),
            mechanisms: c.array(2, Cursor::str)?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u16(self.code.code());
        put_count(out, self.mechanisms.len());
        for m in &self.mechanisms {
            put_str(out, m);
        }
    }
}

/// `SaslAuthenticate` (0x0013): the mechanism picked and its response (for PLAIN,
/// `\0user\0password`). RabbitMQ writes an empty response as null (-1) and reads null as
/// empty; `None` is null.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SaslAuthenticate {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The mechanism's name.
    pub mechanism: Str,
    /// The SASL response; `None` for null.
    pub data: Option<Bytes>,
}

impl Body for SaslAuthenticate {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(SaslAuthenticate {
            correlation_id: c.u32()?,
            mechanism: c.str()?,
            data: c.nullable_bytes()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        put_str(out, &self.mechanism);
        match &self.data {
            Some(data) => put_bytes(out, data),
            None => out.put_i32(-1),
        }
    }
}

/// `SaslAuthenticate` response (0x8013), with a challenge when the code is
/// [`ResponseCode::SaslChallenge`].
///
/// The challenge is written as PROTOCOL.adoc's `bytes` (int32 length), which is what the Java
/// client (the reference implementation) reads. RabbitMQ's own encoder writes it with an int16
/// length (`?STRING(Challenge)` in `rabbit_stream_core:response_body/1`); none of its built-in
/// mechanisms ever issues a challenge, so the disagreement does not show in practice. Nothing
/// follows the code when there is no challenge (as RabbitMQ writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslAuthenticateResponse {
    /// The request's correlation id.
    pub correlation_id: u32,
    /// The outcome.
    pub code: ResponseCode,
    /// The server's challenge, if any.
    pub challenge: Option<Bytes>,
}

impl Body for SaslAuthenticateResponse {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        let correlation_id = c.u32()?;
        let code = c.u16()?.into();
        let challenge = if c.remaining() == 0 {
            None
        } else {
            let len = c.count()?;
            Some(c.bytes(len)?)
        };
        Ok(SaslAuthenticateResponse {
            correlation_id,
            code,
            challenge,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u16(self.code.code());
        if let Some(challenge) = &self.challenge {
            put_bytes(out, challenge);
        }
    }
}

/// `Tune` (0x0014), server to client after authentication: the server's proposal. No
/// correlation id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tune {
    /// Largest frame in bytes (size prefix not counted); 0 = no limit.
    pub frame_max: u32,
    /// Heartbeat interval in seconds; 0 = none.
    pub heartbeat: u32,
}

impl Body for Tune {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(Tune {
            frame_max: c.u32()?,
            heartbeat: c.u32()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.frame_max);
        out.put_u32(self.heartbeat);
    }
}

/// `Tune` response (0x8014), client to server: the values the client agrees on ("TuneResponse
/// => TuneRequest": no correlation id). RabbitMQ also accepts the client's tune with the
/// request key 0x0014, which decodes as [`Tune`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TuneResponse {
    /// Largest frame in bytes; 0 = no limit.
    pub frame_max: u32,
    /// Heartbeat interval in seconds; 0 = none.
    pub heartbeat: u32,
}

impl Body for TuneResponse {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(TuneResponse {
            frame_max: c.u32()?,
            heartbeat: c.u32()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.frame_max);
        out.put_u32(self.heartbeat);
    }
}

/// `Open` (0x0015): the virtual host to use.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Open {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The virtual host's name.
    pub virtual_host: Str,
}

impl Body for Open {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(Open {
            correlation_id: c.u32()?,
            virtual_host: c.str()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        put_str(out, &self.virtual_host);
    }
}

/// `Open` response (0x8015) with the connection properties (RabbitMQ sends
/// `advertised_host` and `advertised_port`). RabbitMQ writes nothing after the code when
/// there are no properties, and reads either form; so does this type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenResponse {
    /// The request's correlation id.
    pub correlation_id: u32,
    /// The outcome.
    pub code: ResponseCode,
    /// Connection properties; empty is written as nothing.
    pub properties: Properties,
}

impl Body for OpenResponse {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        let correlation_id = c.u32()?;
        let code = c.u16()?.into();
        let properties = if c.remaining() == 0 {
            Properties::new()
        } else {
            Properties::decode(c)?
        };
        Ok(OpenResponse {
            correlation_id,
            code,
            properties,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u16(self.code.code());
        if !self.properties.is_empty() {
            self.properties.encode(out);
        }
    }
}

/// `Close` (0x0016), either direction; answered by a code-only [`super::Response`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// Correlates the response. RabbitMQ uses 1 for the closes it initiates.
    pub correlation_id: u32,
    /// Why ([`ResponseCode::Ok`] for a normal close).
    pub code: ResponseCode,
    /// Human-readable reason.
    pub reason: Str,
}

impl Body for Close {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(Close {
            correlation_id: c.u32()?,
            code: c.u16()?.into(),
            reason: c.str()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u16(self.code.code());
        put_str(out, &self.reason);
    }
}

/// `Heartbeat` (0x0017), either direction: key and version only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Heartbeat;

impl Body for Heartbeat {
    fn decode(_: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(Heartbeat)
    }

    fn encode(&self, _: &mut BytesMut) {}
}

/// One entry of `ExchangeCommandVersions`: a command and the versions a peer supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommandVersion {
    /// The command's key (without response bit).
    pub key: u16,
    /// Lowest version supported.
    pub min_version: u16,
    /// Highest version supported.
    pub max_version: u16,
}

impl CommandVersion {
    fn decode(c: &mut Cursor) -> Result<Self, WireError> {
        Ok(CommandVersion {
            key: c.u16()?,
            min_version: c.u16()?,
            max_version: c.u16()?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.key);
        out.put_u16(self.min_version);
        out.put_u16(self.max_version);
    }
}

const fn v(key: u16, min_version: u16, max_version: u16) -> CommandVersion {
    CommandVersion {
        key,
        min_version,
        max_version,
    }
}

/// The versions RabbitMQ's server announces (`rabbit_stream_utils:command_versions/0`):
/// everything at 1, `Publish` at 1 to 2. `Deliver` is absent: the server picks `Deliver` v2
/// when the *client* announces deliver up to 2.
pub const SERVER_COMMAND_VERSIONS: &[CommandVersion] = &[
    v(key::DECLARE_PUBLISHER, 1, 1),
    v(key::PUBLISH, 1, 2),
    v(key::QUERY_PUBLISHER_SEQUENCE, 1, 1),
    v(key::DELETE_PUBLISHER, 1, 1),
    v(key::SUBSCRIBE, 1, 1),
    v(key::CREDIT, 1, 1),
    v(key::STORE_OFFSET, 1, 1),
    v(key::QUERY_OFFSET, 1, 1),
    v(key::UNSUBSCRIBE, 1, 1),
    v(key::CREATE, 1, 1),
    v(key::DELETE, 1, 1),
    v(key::METADATA, 1, 1),
    v(key::CLOSE, 1, 1),
    v(key::HEARTBEAT, 1, 1),
    v(key::ROUTE, 1, 1),
    v(key::PARTITIONS, 1, 1),
    v(key::STREAM_STATS, 1, 1),
    v(key::CREATE_SUPER_STREAM, 1, 1),
    v(key::DELETE_SUPER_STREAM, 1, 1),
    v(key::RESOLVE_OFFSET_SPEC, 1, 1),
];

/// `ExchangeCommandVersions` (0x001b), client to server: the versions the client supports.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExchangeCommandVersions {
    /// Correlates the response.
    pub correlation_id: u32,
    /// The client's commands and versions.
    pub commands: Vec<CommandVersion>,
}

impl Body for ExchangeCommandVersions {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(ExchangeCommandVersions {
            correlation_id: c.u32()?,
            commands: c.array(6, CommandVersion::decode)?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        put_count(out, self.commands.len());
        for cv in &self.commands {
            cv.encode(out);
        }
    }
}

/// `ExchangeCommandVersions` response (0x801b): the server's commands and versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeCommandVersionsResponse {
    /// The request's correlation id.
    pub correlation_id: u32,
    /// The outcome.
    pub code: ResponseCode,
    /// The server's commands and versions.
    pub commands: Vec<CommandVersion>,
}

impl Body for ExchangeCommandVersionsResponse {
    fn decode(c: &mut Cursor, _: u16) -> Result<Self, WireError> {
        Ok(ExchangeCommandVersionsResponse {
            correlation_id: c.u32()?,
            code: c.u16()?.into(),
            commands: c.array(6, CommandVersion::decode)?,
        })
    }

    fn encode(&self, out: &mut BytesMut) {
        out.put_u32(self.correlation_id);
        out.put_u16(self.code.code());
        put_count(out, self.commands.len());
        for cv in &self.commands {
            cv.encode(out);
        }
    }
}
