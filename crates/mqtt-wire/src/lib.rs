//! The MQTT wire format: MQTT 3.1 ("MQIsdp", level 3), 3.1.1 (level 4) and 5.0 (level 5)
//! packets, properties, reason codes and topics. No I/O and no broker types: bytes in, values
//! out, and back.
//!
//! # Layout
//!
//! - `lib.rs`: [`ProtocolVersion`], [`QoS`], the [`Packet`] enum and the two entry points,
//!   [`decode`] for the connection's read loop and [`encode`] for its write buffer.
//! - `fixed_header.rs`: [`PacketType`], the flags nibble rules and the Remaining Length.
//! - One file per packet: `connect.rs`, `connack.rs`, `publish.rs`, `ack.rs` (PUBACK, PUBREC,
//!   PUBREL, PUBCOMP), `subscribe.rs`, `suback.rs`, `unsubscribe.rs`, `unsuback.rs`, `ping.rs`,
//!   `disconnect.rs`, `auth.rs`. Each holds the packet's struct, its properties struct, its
//!   decoder and its writer.
//! - `properties.rs`: [`PropertyId`], the typed property reader (range checks, duplicates) and
//!   the writers; `reason.rs`: [`ReasonCode`] and the 3.1.1 [`ConnectReturnCode`]; `topic.rs`:
//!   [`TopicName`], [`TopicFilter`], [`SharedSubscription`].
//! - `codec.rs`: the data representations (integers, strings, Variable Byte Integers) behind a
//!   bounds-checked reader and a writer that can also just count; `error.rs`: [`DecodeError`]
//!   with the reason code to disconnect with, and [`EncodeError`].
//!
//! # One model for three versions
//!
//! Packets are the 5.0 shape; older versions use a subset. Decoding 3.1 or 3.1.1 leaves the 5.0
//! fields at their defaults (no properties, reason code Success); encoding for 3.1 or 3.1.1 drops
//! them, mapping what has a 3.1.1 form (CONNACK return codes via [`ConnectReturnCode`], SUBACK
//! failures to 0x80). What differs between 3.1 and 3.1.1 on the wire is small and handled here:
//! the protocol name and level in CONNECT, no Session Present bit in a 3.1 CONNACK, the CONNECT
//! reserved bit and the fixed header flags of non-PUBLISH packets not checked for 3.1 (its
//! clients set DUP on resent SUBSCRIBE and PUBREL). The rest of 3.1 (client identifiers of 1 to
//! 23 characters, no empty client id) is the server's policy, visible from [`Connect::protocol`].
//!
//! # Guarantees
//!
//! - Decoding never panics and allocates in proportion to the packet at most; a packet larger
//!   than the caller's limit is refused from its fixed header, before it is buffered.
//! - Every rule the spec gives a receiver about a packet's form is checked by [`decode`], each
//!   with its own [`DecodeError`] variant. Rules that need session state (topic alias ranges,
//!   Receive Maximum, which side may send a packet, AUTH without an Authentication Method in
//!   CONNECT) are the server's.
//! - Decoding a PUBLISH allocates only the topic string; the payload and binary properties are
//!   slices of the read buffer. Keep in mind such a slice pins the whole buffer: copy a payload
//!   that will be kept (queued, stored) for long.
//! - Encoding measures the packet first, reserves once, and writes nothing if the packet cannot be
//!   encoded; [`Packet::encoded_len`] is exactly what [`encode`] writes.
//!
//! # Example
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use mqtt_wire::{decode, encode, Packet, ProtocolVersion, Publish, QoS, TopicName};
//!
//! let mut publish = Publish::new(TopicName::new("sensors/1/temp").unwrap(), Bytes::from("21.5"));
//! publish.qos = QoS::AtLeastOnce;
//! publish.packet_id = Some(7);
//! let packet = Packet::Publish(publish);
//!
//! let mut buf = BytesMut::new();
//! encode(&packet, ProtocolVersion::V3_1_1, &mut buf).unwrap();
//! assert_eq!(buf.len(), packet.encoded_len(ProtocolVersion::V3_1_1));
//! let decoded = decode(&mut buf, Some(ProtocolVersion::V3_1_1), 1 << 20).unwrap().unwrap();
//! assert_eq!(decoded, packet);
//! ```

#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod ack;
mod auth;
mod codec;
mod connack;
mod connect;
mod disconnect;
mod error;
mod fixed_header;
mod ping;
mod properties;
mod publish;
mod reason;
mod suback;
mod subscribe;
mod topic;
mod unsuback;
mod unsubscribe;

use bytes::{BufMut, BytesMut};

use codec::{Counter, Reader, Sink};
use fixed_header::FixedHeader;

pub use ack::{PubAck, PubComp, PubRec, PubRel};
pub use auth::{Auth, AuthProperties};
pub use codec::MAX_VAR_INT;
pub use connack::{ConnAck, ConnAckProperties};
pub use connect::{Connect, ConnectProperties, LastWill, WillProperties};
pub use disconnect::{Disconnect, DisconnectProperties};
pub use error::{DecodeError, EncodeError};
pub use fixed_header::PacketType;
pub use properties::{AckProperties, PayloadFormat, PropertyId};
pub use publish::{Publish, PublishProperties};
pub use reason::{ConnectReturnCode, ReasonCode};
pub use suback::SubAck;
pub use subscribe::{RetainHandling, Subscribe, SubscribeProperties, SubscriptionOptions};
pub use topic::{SharedSubscription, TopicError, TopicFilter, TopicName};
pub use unsuback::UnsubAck;
pub use unsubscribe::{Unsubscribe, UnsubscribeProperties};

/// The largest packet MQTT can express: 5 bytes of fixed header and a Remaining Length of
/// 268,435,455. Pass it to [`decode`] to impose no limit of your own.
pub const MAX_PACKET_SIZE: usize = 5 + MAX_VAR_INT as usize;

/// The protocol version a connection speaks, fixed by its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1: protocol name "MQIsdp", level 3.
    V3_1,
    /// MQTT 3.1.1: protocol name "MQTT", level 4.
    V3_1_1,
    /// MQTT 5.0: protocol name "MQTT", level 5.
    V5,
}

impl ProtocolVersion {
    /// The protocol name in CONNECT.
    pub fn protocol_name(self) -> &'static str {
        match self {
            ProtocolVersion::V3_1 => "MQIsdp",
            ProtocolVersion::V3_1_1 | ProtocolVersion::V5 => "MQTT",
        }
    }

    /// The protocol level byte in CONNECT.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V3_1 => 3,
            ProtocolVersion::V3_1_1 => 4,
            ProtocolVersion::V5 => 5,
        }
    }
}

/// Quality of service of a PUBLISH, a Will Message or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum QoS {
    /// 0: at most once, no acknowledgement.
    #[default]
    AtMostOnce = 0,
    /// 1: at least once, acknowledged by PUBACK.
    AtLeastOnce = 1,
    /// 2: exactly once, the PUBREC / PUBREL / PUBCOMP exchange.
    ExactlyOnce = 2,
}

impl TryFrom<u8> for QoS {
    type Error = DecodeError;

    /// 0, 1 or 2; anything else is [`DecodeError::InvalidQoS`].
    fn try_from(v: u8) -> Result<QoS, DecodeError> {
        match v {
            0 => Ok(QoS::AtMostOnce),
            1 => Ok(QoS::AtLeastOnce),
            2 => Ok(QoS::ExactlyOnce),
            _ => Err(DecodeError::InvalidQoS),
        }
    }
}

/// One MQTT control packet, of any direction and any version.
///
/// The decoder accepts server-to-client packets too (CONNACK, SUBACK, ...), so the same code
/// serves tests and clients; a server rejects them in its state machine (Protocol Error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT.
    Connect(Connect),
    /// CONNACK.
    ConnAck(ConnAck),
    /// PUBLISH.
    Publish(Publish),
    /// PUBACK.
    PubAck(PubAck),
    /// PUBREC.
    PubRec(PubRec),
    /// PUBREL.
    PubRel(PubRel),
    /// PUBCOMP.
    PubComp(PubComp),
    /// SUBSCRIBE.
    Subscribe(Subscribe),
    /// SUBACK.
    SubAck(SubAck),
    /// UNSUBSCRIBE.
    Unsubscribe(Unsubscribe),
    /// UNSUBACK.
    UnsubAck(UnsubAck),
    /// PINGREQ.
    PingReq,
    /// PINGRESP.
    PingResp,
    /// DISCONNECT.
    Disconnect(Disconnect),
    /// AUTH (5.0 only).
    Auth(Auth),
}

impl Packet {
    /// The packet's type.
    pub fn packet_type(&self) -> PacketType {
        match self {
            Packet::Connect(_) => PacketType::Connect,
            Packet::ConnAck(_) => PacketType::ConnAck,
            Packet::Publish(_) => PacketType::Publish,
            Packet::PubAck(_) => PacketType::PubAck,
            Packet::PubRec(_) => PacketType::PubRec,
            Packet::PubRel(_) => PacketType::PubRel,
            Packet::PubComp(_) => PacketType::PubComp,
            Packet::Subscribe(_) => PacketType::Subscribe,
            Packet::SubAck(_) => PacketType::SubAck,
            Packet::Unsubscribe(_) => PacketType::Unsubscribe,
            Packet::UnsubAck(_) => PacketType::UnsubAck,
            Packet::PingReq => PacketType::PingReq,
            Packet::PingResp => PacketType::PingResp,
            Packet::Disconnect(_) => PacketType::Disconnect,
            Packet::Auth(_) => PacketType::Auth,
        }
    }

    /// The number of bytes [`encode`] writes for this packet at `version`, fixed header
    /// included: what to compare with the peer's Maximum Packet Size [MQTT-3.1.2-24]. (If the
    /// packet cannot be encoded, the size it would have.)
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let body = Counter::count(|c| self.write_body(version, c)).len;
        fixed_header::header_len(body) + body
    }

    /// The flags nibble of the fixed header.
    fn flags(&self) -> u8 {
        match self {
            Packet::Publish(p) => p.flags(),
            _ => self.packet_type().reserved_flags().unwrap_or(0),
        }
    }

    /// Writes everything after the fixed header.
    fn write_body<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        match self {
            Packet::Connect(p) => p.write(version, s),
            Packet::ConnAck(p) => p.write(version, s),
            Packet::Publish(p) => p.write(version, s),
            Packet::PubAck(p) => p.write(version, s),
            Packet::PubRec(p) => p.write(version, s),
            Packet::PubRel(p) => p.write(version, s),
            Packet::PubComp(p) => p.write(version, s),
            Packet::Subscribe(p) => p.write(version, s),
            Packet::SubAck(p) => p.write(version, s),
            Packet::Unsubscribe(p) => p.write(version, s),
            Packet::UnsubAck(p) => p.write(version, s),
            Packet::PingReq | Packet::PingResp => {}
            Packet::Disconnect(p) => p.write(version, s),
            Packet::Auth(p) => p.write(version, s),
        }
    }
}

/// Decodes one packet from the front of `buf`, consuming it. `Ok(None)` when more bytes are
/// needed (nothing is consumed then).
///
/// `version` is the connection's protocol version, `None` until its CONNECT has been decoded:
/// then only CONNECT is accepted [MQTT-3.1.0-1], and the CONNECT tells the version
/// ([`Connect::protocol`]); afterwards a CONNECT is refused [MQTT-3.1.0-2].
///
/// The size of the whole packet (fixed header included, as 5.0's Maximum Packet Size counts it)
/// is checked against `max_packet_size` as soon as the fixed header is in, BEFORE waiting for
/// the rest, so a peer cannot make us buffer more than that. Once the size is accepted, capacity
/// for the whole packet is reserved so the next read can fill it. Use [`MAX_PACKET_SIZE`] for no
/// limit beyond the protocol's.
///
/// On error the connection must be closed (see [`DecodeError`] for what to send first); `buf`
/// is left in an unspecified state.
pub fn decode(
    buf: &mut BytesMut,
    version: Option<ProtocolVersion>,
    max_packet_size: usize,
) -> Result<Option<Packet>, DecodeError> {
    let Some(header) = FixedHeader::parse(buf, version)? else {
        return Ok(None);
    };
    let size = header.packet_len();
    if size > max_packet_size {
        return Err(DecodeError::PacketTooLarge {
            size,
            max: max_packet_size,
        });
    }
    if buf.len() < size {
        buf.reserve(size - buf.len());
        return Ok(None);
    }
    let mut packet = buf.split_to(size).freeze();
    let body = Reader::new(packet.split_off(header.header_len));
    // Only CONNECT comes without a version (checked by the fixed header), and it reads its own.
    let v = version.unwrap_or(ProtocolVersion::V5);
    let packet = match header.packet_type {
        PacketType::Connect => Packet::Connect(Connect::decode(body)?),
        PacketType::ConnAck => Packet::ConnAck(ConnAck::decode(body, v)?),
        PacketType::Publish => Packet::Publish(Publish::decode(header.flags, body, v)?),
        PacketType::PubAck => Packet::PubAck(PubAck::decode(body, v)?),
        PacketType::PubRec => Packet::PubRec(PubRec::decode(body, v)?),
        PacketType::PubRel => Packet::PubRel(PubRel::decode(body, v)?),
        PacketType::PubComp => Packet::PubComp(PubComp::decode(body, v)?),
        PacketType::Subscribe => Packet::Subscribe(Subscribe::decode(body, v)?),
        PacketType::SubAck => Packet::SubAck(SubAck::decode(body, v)?),
        PacketType::Unsubscribe => Packet::Unsubscribe(Unsubscribe::decode(body, v)?),
        PacketType::UnsubAck => Packet::UnsubAck(UnsubAck::decode(body, v)?),
        PacketType::PingReq => {
            ping::decode(body)?;
            Packet::PingReq
        }
        PacketType::PingResp => {
            ping::decode(body)?;
            Packet::PingResp
        }
        PacketType::Disconnect => Packet::Disconnect(Disconnect::decode(body, v)?),
        PacketType::Auth => Packet::Auth(Auth::decode(body)?),
    };
    Ok(Some(packet))
}

/// Appends `packet`, encoded for `version`, to `out`.
///
/// Fields that `version` does not have are dropped as the spec requires (properties and reason
/// codes before 5.0, with CONNACK and SUBACK codes mapped to their 3.1.1 forms). The packet is
/// measured and checked first and `out` reserved once; on error nothing is written.
pub fn encode(
    packet: &Packet,
    version: ProtocolVersion,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    let body = Counter::count(|c| packet.write_body(version, c));
    if let Some(error) = body.error {
        return Err(error);
    }
    if body.len > MAX_VAR_INT as usize {
        return Err(EncodeError::PacketTooLarge);
    }
    out.reserve(fixed_header::header_len(body.len) + body.len);
    out.put_u8(((packet.packet_type() as u8) << 4) | packet.flags());
    out.var_int(body.len);
    packet.write_body(version, out);
    Ok(())
}

macro_rules! into_packet {
    ($($t:ident),*) => {
        $(impl From<$t> for Packet {
            fn from(p: $t) -> Packet {
                Packet::$t(p)
            }
        })*
    };
}

into_packet!(
    Connect,
    ConnAck,
    Publish,
    PubAck,
    PubRec,
    PubRel,
    PubComp,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth
);

#[cfg(test)]
mod tests;
