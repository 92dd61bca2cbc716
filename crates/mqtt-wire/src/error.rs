//! The errors of this crate: [`DecodeError`] for bytes from a peer, [`EncodeError`] for values
//! that cannot be put on the wire.
//!
//! Every decoding error ends the connection: once a packet cannot be trusted, neither can the
//! session state it would have changed. What the server sends before closing depends on the
//! protocol version and on how far the connection got:
//!
//! - Before CONNECT was accepted, MQTT 5.0 answers with a CONNACK carrying
//!   [`DecodeError::reason_code`] (e.g. 0x84 Unsupported Protocol Version) [MQTT-4.13.1-1]; MQTT
//!   3.1.1 only has a CONNACK return code for an unsupported protocol level (0x01, see
//!   [`DecodeError::UnsupportedProtocolVersion`]) and otherwise just closes [MQTT-3.1.4-1].
//! - After CONNECT, MQTT 5.0 sends a DISCONNECT with [`DecodeError::reason_code`] then closes;
//!   MQTT 3.1.1 closes without a word [MQTT-4.8.0-1].

use crate::fixed_header::PacketType;
use crate::properties::PropertyId;
use crate::reason::ReasonCode;
use crate::topic::TopicError;
use crate::ProtocolVersion;

/// Why bytes from the wire could not be decoded into a [`crate::Packet`].
///
/// Each variant says which rule the peer broke; [`DecodeError::reason_code`] is the MQTT 5.0
/// reason code to send with the CONNACK or DISCONNECT that closes the connection. The spec splits
/// errors in two (section 4.13): a *Malformed Packet* (0x81) cannot be parsed by the rules of
/// chapter 2 and 3, a *Protocol Error* (0x82) parses but breaks a rule about what may be sent.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The fixed header announces a packet (header included) larger than the maximum packet size
    /// the server allows. Detected from the fixed header alone, before the rest is buffered.
    /// Reason code 0x95 Packet too large [MQTT-3.2.2-15] (the server's Maximum Packet Size).
    #[error("packet of {size} bytes exceeds the maximum packet size {max}")]
    PacketTooLarge {
        /// The whole packet's size: fixed header plus remaining length.
        size: usize,
        /// The limit it was checked against.
        max: usize,
    },
    /// The packet type nibble is 0 (reserved), or 15 (AUTH) in a version before 5.0.
    #[error("invalid packet type {0}")]
    InvalidPacketType(u8),
    /// A packet that may not come now: anything but CONNECT as the first packet
    /// [MQTT-3.1.0-1], or a second CONNECT [MQTT-3.1.0-2]. Protocol Error.
    #[error("unexpected {0} packet")]
    UnexpectedPacket(PacketType),
    /// The flags nibble of the fixed header is not the one the packet type requires
    /// [MQTT-2.1.3-1] (e.g. SUBSCRIBE, UNSUBSCRIBE and PUBREL need 0b0010 [MQTT-3.8.1-1]).
    #[error("invalid fixed header flags {flags:#06b} for {packet_type}")]
    InvalidFlags {
        /// The packet whose flags are wrong.
        packet_type: PacketType,
        /// The four low bits of the first byte.
        flags: u8,
    },
    /// A Variable Byte Integer runs over 4 bytes, or is not in its shortest form
    /// [MQTT-1.5.5-1].
    #[error("malformed variable byte integer")]
    MalformedVarInt,
    /// The packet ends before a field that must be there: the remaining length is too short for
    /// the contents.
    #[error("packet truncated")]
    Truncated,
    /// Bytes are left after the last field: the remaining length is too long for the contents.
    #[error("trailing bytes after packet contents")]
    TrailingBytes,
    /// A UTF-8 Encoded String is not well-formed UTF-8, e.g. it encodes a surrogate
    /// [MQTT-1.5.4-1].
    #[error("string is not valid UTF-8")]
    InvalidUtf8,
    /// A UTF-8 Encoded String contains U+0000 [MQTT-1.5.4-2].
    #[error("string contains U+0000")]
    NullCharacter,
    /// A QoS field holds 3: PUBLISH [MQTT-3.3.1-4], Will QoS (3.1.1 [MQTT-3.1.2-14]),
    /// subscription options (3.1.1 [MQTT-3-8.3-4]).
    #[error("QoS 3 is not a QoS level")]
    InvalidQoS,
    /// A QoS 0 PUBLISH has the DUP flag set [MQTT-3.3.1-2].
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupWithQoS0,
    /// A packet identifier is 0 [MQTT-2.2.1-3]. Protocol Error.
    #[error("packet identifier 0")]
    ZeroPacketId,
    /// The CONNECT protocol name is none of "MQTT" and "MQIsdp" (3.1). The server may close at
    /// once, or (5.0) answer CONNACK 0x84 first [MQTT-3.1.2-1].
    #[error("unknown protocol name")]
    UnknownProtocolName,
    /// The CONNECT protocol level is not one this crate speaks with that protocol name (3 with
    /// "MQIsdp", 4 or 5 with "MQTT"). The server should answer with CONNACK return code 0x01
    /// encoded as MQTT 3.1.1 (remaining length 2: `20 02 00 01`), which every client version can
    /// read, then close [MQTT-3.1.2-2]; 0x84 is the 5.0 reason code for it.
    #[error("unsupported protocol level {level}")]
    UnsupportedProtocolVersion {
        /// The protocol level byte from CONNECT.
        level: u8,
    },
    /// The reserved bit 0 of the CONNECT flags is set [MQTT-3.1.2-3].
    #[error("CONNECT reserved flag set")]
    InvalidConnectFlags,
    /// The reserved bits 7-1 of the CONNACK Acknowledge Flags are set ("Bits 7-1 are reserved
    /// and MUST be set to 0", 3.1.1 and 5.0 section 3.2.2.1).
    #[error("CONNACK reserved flags set")]
    InvalidConnAckFlags,
    /// Will QoS or Will Retain set without the Will Flag [MQTT-3.1.2-11] [MQTT-3.1.2-13]
    /// [MQTT-3.1.2-15].
    #[error("will QoS or retain set without the will flag")]
    InvalidWillFlags,
    /// The Password Flag is set without the User Name Flag, which 3.1 and 3.1.1 forbid
    /// [MQTT-3.1.2-22] (5.0 allows it).
    #[error("password without user name")]
    PasswordWithoutUsername,
    /// A SUBSCRIBE or UNSUBSCRIBE without a single topic filter [MQTT-3.8.3-3]
    /// [MQTT-3.10.3-2]. Protocol Error.
    #[error("{0} without topic filters")]
    NoTopicFilters(PacketType),
    /// A topic name (PUBLISH, Will Topic, Response Topic) breaks the topic rules of section 4.7,
    /// e.g. contains a wildcard [MQTT-3.3.2-2].
    #[error("invalid topic name: {0}")]
    InvalidTopicName(TopicError),
    /// A topic filter (SUBSCRIBE, UNSUBSCRIBE) breaks the topic rules of section 4.7.
    #[error("invalid topic filter: {0}")]
    InvalidTopicFilter(TopicError),
    /// A 5.0 PUBLISH has an empty topic name and no Topic Alias ("It is a Protocol Error if the
    /// Topic Name is zero length and there is no Topic Alias", section 3.3.2.1).
    #[error("empty topic name without topic alias")]
    MissingTopic,
    /// Subscription options have reserved bits set [MQTT-3.8.3-5], or (3.1.1) the requested QoS
    /// byte has bits above the QoS set [MQTT-3-8.3-4].
    #[error("subscription options reserved bits set")]
    InvalidSubscriptionOptions,
    /// Retain Handling is 3. Protocol Error.
    #[error("retain handling 3")]
    InvalidRetainHandling,
    /// No Local set on a shared subscription [MQTT-3.8.3-4]. Protocol Error.
    #[error("no local set on a shared subscription")]
    NoLocalOnSharedSubscription,
    /// A property identifier that MQTT 5.0 does not define.
    #[error("unknown property identifier {0:#04x}")]
    UnknownProperty(u8),
    /// A property that the packet (or the Will Properties) may not carry (section 2.2.2.2: "a
    /// Control Packet which contains an Identifier which is not valid for its packet type ... is
    /// a Malformed Packet").
    #[error("property {property:?} not allowed in {packet_type}")]
    PropertyNotAllowed {
        /// The packet whose properties were read (CONNECT for Will Properties).
        packet_type: PacketType,
        /// The property.
        property: PropertyId,
    },
    /// A property the spec allows once appears more than once ("It is a Protocol Error to
    /// include X more than once").
    #[error("duplicate property {0:?}")]
    DuplicateProperty(PropertyId),
    /// A property value out of its range: a Topic Alias of 0 [MQTT-3.3.2-8] (reason 0x94), a
    /// Subscription Identifier of 0, a Receive Maximum or Maximum Packet Size of 0, a byte
    /// property that must be 0 or 1 and is not. Protocol Error otherwise.
    #[error("invalid value for property {0:?}")]
    InvalidPropertyValue(PropertyId),
    /// Authentication Data without an Authentication Method. Protocol Error.
    #[error("authentication data without authentication method")]
    AuthDataWithoutMethod,
    /// A reason code (or 3.1.1 return code) that this packet type may not carry. Protocol Error.
    #[error("reason code {code:#04x} not allowed in {packet_type}")]
    InvalidReasonCode {
        /// The packet.
        packet_type: PacketType,
        /// The byte read.
        code: u8,
    },
}

impl DecodeError {
    /// The MQTT 5.0 reason code for this error, for the CONNACK (before the session exists) or
    /// DISCONNECT (after) that the server sends before closing the connection.
    pub fn reason_code(&self) -> ReasonCode {
        use DecodeError::*;
        match self {
            PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            UnknownProtocolName | UnsupportedProtocolVersion { .. } => {
                ReasonCode::UnsupportedProtocolVersion
            }
            InvalidPropertyValue(PropertyId::TopicAlias) => ReasonCode::TopicAliasInvalid,
            UnexpectedPacket(_)
            | ZeroPacketId
            | InvalidWillFlags
            | PasswordWithoutUsername
            | NoTopicFilters(_)
            | MissingTopic
            | InvalidRetainHandling
            | NoLocalOnSharedSubscription
            | DuplicateProperty(_)
            | InvalidPropertyValue(_)
            | AuthDataWithoutMethod
            | InvalidReasonCode { .. } => ReasonCode::ProtocolError,
            InvalidPacketType(_)
            | InvalidFlags { .. }
            | MalformedVarInt
            | Truncated
            | TrailingBytes
            | InvalidUtf8
            | NullCharacter
            | InvalidQoS
            | DupWithQoS0
            | InvalidConnectFlags
            | InvalidConnAckFlags
            | InvalidTopicName(_)
            | InvalidTopicFilter(_)
            | InvalidSubscriptionOptions
            | UnknownProperty(_)
            | PropertyNotAllowed { .. } => ReasonCode::MalformedPacket,
        }
    }
}

/// Why a value could not be encoded. Nothing is written to the output buffer when encoding
/// fails, so the connection's write buffer stays well-framed.
///
/// These are bugs or unchecked input at the call site (a user property longer than 65,535 bytes
/// that came from an AMQP header, a PUBLISH without a packet identifier at QoS 1); the server
/// should drop or fix the packet, not the connection.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EncodeError {
    /// A string or binary field is longer than 65,535 bytes (its length is two bytes).
    #[error("string or binary field longer than 65535 bytes")]
    FieldTooLong,
    /// A UTF-8 string field contains U+0000, which the peer would reject [MQTT-1.5.4-2].
    #[error("string contains U+0000")]
    NullCharacter,
    /// The packet's remaining length would exceed 268,435,455, the largest a Variable Byte
    /// Integer holds (or a property section would).
    #[error("packet too large to encode")]
    PacketTooLarge,
    /// The packet does not exist in this protocol version (AUTH before 5.0).
    #[error("{packet_type} does not exist in {version:?}")]
    NotInVersion {
        /// The packet.
        packet_type: PacketType,
        /// The version asked for.
        version: ProtocolVersion,
    },
    /// A CONNECT whose `protocol` field differs from the version asked for.
    #[error("CONNECT for {packet:?} encoded as {version:?}")]
    VersionMismatch {
        /// The CONNECT's own protocol version.
        packet: ProtocolVersion,
        /// The version asked for.
        version: ProtocolVersion,
    },
    /// A packet identifier is missing (PUBLISH at QoS 1 or 2), present where it must not be
    /// (PUBLISH at QoS 0) [MQTT-2.2.1-2], or 0 [MQTT-2.2.1-3].
    #[error("packet identifier missing, unexpected or 0")]
    InvalidPacketId,
    /// DUP set on a QoS 0 PUBLISH [MQTT-3.3.1-2].
    #[error("DUP flag set on a QoS 0 PUBLISH")]
    DupWithQoS0,
    /// A PUBLISH without a topic name, and (5.0) without a Topic Alias to stand for it.
    #[error("PUBLISH without topic name")]
    MissingTopic,
    /// The reason code cannot be carried by this packet type.
    #[error("reason code {code:?} not allowed in {packet_type}")]
    InvalidReasonCode {
        /// The packet.
        packet_type: PacketType,
        /// The reason code.
        code: ReasonCode,
    },
    /// A property value out of range (Topic Alias 0, Subscription Identifier 0 or above
    /// 268,435,455, Receive Maximum 0, Maximum Packet Size 0).
    #[error("invalid value for property {0:?}")]
    InvalidPropertyValue(PropertyId),
    /// A SUBSCRIBE or UNSUBSCRIBE with no topic filters [MQTT-3.8.3-3].
    #[error("{0} without topic filters")]
    NoTopicFilters(PacketType),
    /// A password without a user name, which 3.1 and 3.1.1 cannot express [MQTT-3.1.2-22].
    #[error("password without user name")]
    PasswordWithoutUsername,
    /// Authentication Data without an Authentication Method.
    #[error("authentication data without authentication method")]
    AuthDataWithoutMethod,
    /// No Local on a shared subscription [MQTT-3.8.3-4].
    #[error("no local set on a shared subscription")]
    NoLocalOnSharedSubscription,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_errors_are_packet_too_large() {
        let e = DecodeError::PacketTooLarge { size: 10, max: 5 };
        assert_eq!(e.reason_code(), ReasonCode::PacketTooLarge);
        assert_eq!(e.reason_code().code(), 0x95);
    }

    #[test]
    fn protocol_version_errors_are_0x84() {
        assert_eq!(DecodeError::UnknownProtocolName.reason_code().code(), 0x84);
        let e = DecodeError::UnsupportedProtocolVersion { level: 6 };
        assert_eq!(e.reason_code().code(), 0x84);
    }

    #[test]
    fn parse_errors_are_malformed_and_rule_errors_are_protocol_errors() {
        for e in [
            DecodeError::Truncated,
            DecodeError::TrailingBytes,
            DecodeError::MalformedVarInt,
            DecodeError::InvalidUtf8,
            DecodeError::NullCharacter,
            DecodeError::InvalidQoS,
            DecodeError::InvalidConnectFlags,
            DecodeError::UnknownProperty(0x7f),
        ] {
            assert_eq!(e.reason_code(), ReasonCode::MalformedPacket, "{e}");
        }
        for e in [
            DecodeError::ZeroPacketId,
            DecodeError::DuplicateProperty(PropertyId::ReasonString),
            DecodeError::NoTopicFilters(PacketType::Subscribe),
            DecodeError::UnexpectedPacket(PacketType::Connect),
            DecodeError::InvalidPropertyValue(PropertyId::SubscriptionIdentifier),
        ] {
            assert_eq!(e.reason_code(), ReasonCode::ProtocolError, "{e}");
        }
    }

    #[test]
    fn topic_alias_zero_is_topic_alias_invalid() {
        let e = DecodeError::InvalidPropertyValue(PropertyId::TopicAlias);
        assert_eq!(e.reason_code(), ReasonCode::TopicAliasInvalid);
    }
}
