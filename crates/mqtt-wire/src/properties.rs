//! MQTT 5.0 properties (section 2.2.2): every property identifier with its data type, the
//! reader that turns a property section into typed values, and the writers.
//!
//! A property section is a Variable Byte Integer length followed by that many bytes of
//! (identifier, value) pairs. Each packet's own properties struct (e.g.
//! [`crate::PublishProperties`], in the packet's file) takes the values it allows from
//! [`read_properties`] and rejects the rest, so the rules live in one place per packet:
//!
//! - a property not defined for the packet is a Malformed Packet (section 2.2.2.2);
//! - a property given twice where the spec says "It is a Protocol Error to include X more than
//!   once" is a Protocol Error (every property except User Property, and Subscription Identifier
//!   in PUBLISH);
//! - values with a restricted range are checked here, whatever the packet: byte flags must be 0
//!   or 1, Maximum QoS 0 or 1, Receive Maximum, Maximum Packet Size, Topic Alias and
//!   Subscription Identifier non-zero, Response Topic a valid topic name [MQTT-3.3.2-14].
//!
//! User properties keep their order and duplicates, as the spec requires (section 3.3.2.3.7:
//! "the same name is allowed to appear more than once", order preserved [MQTT-3.3.2-18]).

use bytes::Bytes;

use crate::codec::{Counter, Reader, Sink, MAX_VAR_INT};
use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::PacketType;
use crate::topic::TopicName;
use crate::QoS;

macro_rules! property_ids {
    ($($(#[$doc:meta])* $name:ident = $value:literal,)*) => {
        /// An MQTT 5.0 property identifier (table 2-4).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u8)]
        pub enum PropertyId {
            $($(#[$doc])* $name = $value,)*
        }

        impl PropertyId {
            /// The property with this identifier, if MQTT 5.0 defines one.
            pub fn from_u8(id: u8) -> Option<PropertyId> {
                match id {
                    $($value => Some(PropertyId::$name),)*
                    _ => None,
                }
            }
        }
    };
}

property_ids! {
    /// 0x01, Byte: PUBLISH, Will Properties.
    PayloadFormatIndicator = 0x01,
    /// 0x02, Four Byte Integer: PUBLISH, Will Properties.
    MessageExpiryInterval = 0x02,
    /// 0x03, UTF-8 String: PUBLISH, Will Properties.
    ContentType = 0x03,
    /// 0x08, UTF-8 String: PUBLISH, Will Properties.
    ResponseTopic = 0x08,
    /// 0x09, Binary Data: PUBLISH, Will Properties.
    CorrelationData = 0x09,
    /// 0x0B, Variable Byte Integer: PUBLISH, SUBSCRIBE.
    SubscriptionIdentifier = 0x0b,
    /// 0x11, Four Byte Integer: CONNECT, CONNACK, DISCONNECT.
    SessionExpiryInterval = 0x11,
    /// 0x12, UTF-8 String: CONNACK.
    AssignedClientIdentifier = 0x12,
    /// 0x13, Two Byte Integer: CONNACK.
    ServerKeepAlive = 0x13,
    /// 0x15, UTF-8 String: CONNECT, CONNACK, AUTH.
    AuthenticationMethod = 0x15,
    /// 0x16, Binary Data: CONNECT, CONNACK, AUTH.
    AuthenticationData = 0x16,
    /// 0x17, Byte: CONNECT.
    RequestProblemInformation = 0x17,
    /// 0x18, Four Byte Integer: Will Properties.
    WillDelayInterval = 0x18,
    /// 0x19, Byte: CONNECT.
    RequestResponseInformation = 0x19,
    /// 0x1A, UTF-8 String: CONNACK.
    ResponseInformation = 0x1a,
    /// 0x1C, UTF-8 String: CONNACK, DISCONNECT.
    ServerReference = 0x1c,
    /// 0x1F, UTF-8 String: CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK,
    /// DISCONNECT, AUTH.
    ReasonString = 0x1f,
    /// 0x21, Two Byte Integer: CONNECT, CONNACK.
    ReceiveMaximum = 0x21,
    /// 0x22, Two Byte Integer: CONNECT, CONNACK.
    TopicAliasMaximum = 0x22,
    /// 0x23, Two Byte Integer: PUBLISH.
    TopicAlias = 0x23,
    /// 0x24, Byte: CONNACK.
    MaximumQoS = 0x24,
    /// 0x25, Byte: CONNACK.
    RetainAvailable = 0x25,
    /// 0x26, UTF-8 String Pair: every packet with properties.
    UserProperty = 0x26,
    /// 0x27, Four Byte Integer: CONNECT, CONNACK.
    MaximumPacketSize = 0x27,
    /// 0x28, Byte: CONNACK.
    WildcardSubscriptionAvailable = 0x28,
    /// 0x29, Byte: CONNACK.
    SubscriptionIdentifierAvailable = 0x29,
    /// 0x2A, Byte: CONNACK.
    SharedSubscriptionAvailable = 0x2a,
}

/// The Payload Format Indicator (section 3.3.2.3.2): what the payload is declared to be.
/// The server forwards it unaltered [MQTT-3.3.2-4]; it MAY check a UTF-8 payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum PayloadFormat {
    /// 0: unspecified bytes (the meaning of an absent indicator).
    #[default]
    Unspecified = 0,
    /// 1: UTF-8 Encoded Character Data.
    Utf8 = 1,
}

/// One decoded property, its value already range-checked. Variants are named as the spec names
/// the properties (hence `UserProperty`).
#[derive(Debug)]
#[allow(clippy::enum_variant_names)]
pub(crate) enum Property {
    PayloadFormatIndicator(PayloadFormat),
    MessageExpiryInterval(u32),
    ContentType(String),
    ResponseTopic(TopicName),
    CorrelationData(Bytes),
    SubscriptionIdentifier(u32),
    SessionExpiryInterval(u32),
    AssignedClientIdentifier(String),
    ServerKeepAlive(u16),
    AuthenticationMethod(String),
    AuthenticationData(Bytes),
    RequestProblemInformation(bool),
    WillDelayInterval(u32),
    RequestResponseInformation(bool),
    ResponseInformation(String),
    ServerReference(String),
    ReasonString(String),
    ReceiveMaximum(u16),
    TopicAliasMaximum(u16),
    TopicAlias(u16),
    MaximumQoS(QoS),
    RetainAvailable(bool),
    UserProperty(String, String),
    MaximumPacketSize(u32),
    WildcardSubscriptionAvailable(bool),
    SubscriptionIdentifierAvailable(bool),
    SharedSubscriptionAvailable(bool),
}

impl Property {
    pub(crate) fn id(&self) -> PropertyId {
        use Property as P;
        use PropertyId as I;
        match self {
            P::PayloadFormatIndicator(_) => I::PayloadFormatIndicator,
            P::MessageExpiryInterval(_) => I::MessageExpiryInterval,
            P::ContentType(_) => I::ContentType,
            P::ResponseTopic(_) => I::ResponseTopic,
            P::CorrelationData(_) => I::CorrelationData,
            P::SubscriptionIdentifier(_) => I::SubscriptionIdentifier,
            P::SessionExpiryInterval(_) => I::SessionExpiryInterval,
            P::AssignedClientIdentifier(_) => I::AssignedClientIdentifier,
            P::ServerKeepAlive(_) => I::ServerKeepAlive,
            P::AuthenticationMethod(_) => I::AuthenticationMethod,
            P::AuthenticationData(_) => I::AuthenticationData,
            P::RequestProblemInformation(_) => I::RequestProblemInformation,
            P::WillDelayInterval(_) => I::WillDelayInterval,
            P::RequestResponseInformation(_) => I::RequestResponseInformation,
            P::ResponseInformation(_) => I::ResponseInformation,
            P::ServerReference(_) => I::ServerReference,
            P::ReasonString(_) => I::ReasonString,
            P::ReceiveMaximum(_) => I::ReceiveMaximum,
            P::TopicAliasMaximum(_) => I::TopicAliasMaximum,
            P::TopicAlias(_) => I::TopicAlias,
            P::MaximumQoS(_) => I::MaximumQoS,
            P::RetainAvailable(_) => I::RetainAvailable,
            P::UserProperty(..) => I::UserProperty,
            P::MaximumPacketSize(_) => I::MaximumPacketSize,
            P::WildcardSubscriptionAvailable(_) => I::WildcardSubscriptionAvailable,
            P::SubscriptionIdentifierAvailable(_) => I::SubscriptionIdentifierAvailable,
            P::SharedSubscriptionAvailable(_) => I::SharedSubscriptionAvailable,
        }
    }

    /// The error for a property that `packet_type` does not allow.
    pub(crate) fn not_allowed(&self, packet_type: PacketType) -> DecodeError {
        DecodeError::PropertyNotAllowed {
            packet_type,
            property: self.id(),
        }
    }
}

/// Reads a property section (length, then properties) and hands each property to `each`.
pub(crate) fn read_properties(
    r: &mut Reader,
    mut each: impl FnMut(Property) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let len = r.var_int()?;
    let mut section = r.take(len as usize)?;
    while !section.is_empty() {
        each(read_property(&mut section)?)?;
    }
    Ok(())
}

/// Stores a single-occurrence property, or fails if it was already given.
pub(crate) fn set_once<T>(
    slot: &mut Option<T>,
    value: T,
    id: PropertyId,
) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty(id));
    }
    *slot = Some(value);
    Ok(())
}

fn read_property(r: &mut Reader) -> Result<Property, DecodeError> {
    use Property as P;
    use PropertyId as I;
    // The identifier is a Variable Byte Integer, but every defined one is below 0x80, so one
    // byte; a first byte of 0x80 or more could only start an identifier nobody defines.
    let byte = r.u8()?;
    let id = I::from_u8(byte).ok_or(DecodeError::UnknownProperty(byte))?;
    let invalid = || DecodeError::InvalidPropertyValue(id);
    let flag = |r: &mut Reader| match r.u8()? {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(invalid()),
    };
    let non_zero_u16 = |r: &mut Reader| match r.u16()? {
        0 => Err(invalid()),
        v => Ok(v),
    };
    Ok(match id {
        I::PayloadFormatIndicator => P::PayloadFormatIndicator(match r.u8()? {
            0 => PayloadFormat::Unspecified,
            1 => PayloadFormat::Utf8,
            _ => return Err(invalid()),
        }),
        I::MessageExpiryInterval => P::MessageExpiryInterval(r.u32()?),
        I::ContentType => P::ContentType(r.string()?),
        I::ResponseTopic => {
            P::ResponseTopic(TopicName::new(r.string()?).map_err(DecodeError::InvalidTopicName)?)
        }
        I::CorrelationData => P::CorrelationData(r.binary()?),
        // "It is a Protocol Error if the Subscription Identifier has a value of 0."
        I::SubscriptionIdentifier => match r.var_int()? {
            0 => return Err(invalid()),
            v => P::SubscriptionIdentifier(v),
        },
        I::SessionExpiryInterval => P::SessionExpiryInterval(r.u32()?),
        I::AssignedClientIdentifier => P::AssignedClientIdentifier(r.string()?),
        I::ServerKeepAlive => P::ServerKeepAlive(r.u16()?),
        I::AuthenticationMethod => P::AuthenticationMethod(r.string()?),
        I::AuthenticationData => P::AuthenticationData(r.binary()?),
        I::RequestProblemInformation => P::RequestProblemInformation(flag(r)?),
        I::WillDelayInterval => P::WillDelayInterval(r.u32()?),
        I::RequestResponseInformation => P::RequestResponseInformation(flag(r)?),
        I::ResponseInformation => P::ResponseInformation(r.string()?),
        I::ServerReference => P::ServerReference(r.string()?),
        I::ReasonString => P::ReasonString(r.string()?),
        // "It is a Protocol Error to include the value 0."
        I::ReceiveMaximum => P::ReceiveMaximum(non_zero_u16(r)?),
        I::TopicAliasMaximum => P::TopicAliasMaximum(r.u16()?),
        // [MQTT-3.3.2-8] A Topic Alias of 0 is not permitted.
        I::TopicAlias => P::TopicAlias(non_zero_u16(r)?),
        // "It is a Protocol Error to include Maximum QoS ... a value other than 0 or 1."
        I::MaximumQoS => P::MaximumQoS(match r.u8()? {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => return Err(invalid()),
        }),
        I::RetainAvailable => P::RetainAvailable(flag(r)?),
        I::UserProperty => {
            let name = r.string()?;
            P::UserProperty(name, r.string()?)
        }
        // "It is a Protocol Error to include ... the value zero."
        I::MaximumPacketSize => match r.u32()? {
            0 => return Err(invalid()),
            v => P::MaximumPacketSize(v),
        },
        I::WildcardSubscriptionAvailable => P::WildcardSubscriptionAvailable(flag(r)?),
        I::SubscriptionIdentifierAvailable => P::SubscriptionIdentifierAvailable(flag(r)?),
        I::SharedSubscriptionAvailable => P::SharedSubscriptionAvailable(flag(r)?),
    })
}

/// A properties struct that can write its properties (without the section length).
pub(crate) trait WriteProperties {
    fn write_items<S: Sink>(&self, s: &mut S);
}

/// Writes a property section: its length, then the properties.
pub(crate) fn write_properties<P: WriteProperties, S: Sink>(props: &P, s: &mut S) {
    let len = Counter::count(|c| props.write_items(c)).len;
    s.var_int(len);
    props.write_items(s);
}

pub(crate) fn put_byte<S: Sink>(s: &mut S, id: PropertyId, v: Option<u8>) {
    if let Some(v) = v {
        s.u8(id as u8);
        s.u8(v);
    }
}

pub(crate) fn put_flag<S: Sink>(s: &mut S, id: PropertyId, v: Option<bool>) {
    put_byte(s, id, v.map(u8::from));
}

pub(crate) fn put_u16<S: Sink>(s: &mut S, id: PropertyId, v: Option<u16>) {
    if let Some(v) = v {
        s.u8(id as u8);
        s.u16(v);
    }
}

/// A Two Byte Integer property whose value may not be 0.
pub(crate) fn put_non_zero_u16<S: Sink>(s: &mut S, id: PropertyId, v: Option<u16>) {
    if v == Some(0) {
        s.fail(EncodeError::InvalidPropertyValue(id));
    }
    put_u16(s, id, v);
}

pub(crate) fn put_u32<S: Sink>(s: &mut S, id: PropertyId, v: Option<u32>) {
    if let Some(v) = v {
        s.u8(id as u8);
        s.u32(v);
    }
}

/// A Subscription Identifier: 1 to 268,435,455.
pub(crate) fn put_subscription_id<S: Sink>(s: &mut S, v: u32) {
    if v == 0 || v > MAX_VAR_INT {
        s.fail(EncodeError::InvalidPropertyValue(
            PropertyId::SubscriptionIdentifier,
        ));
    }
    s.u8(PropertyId::SubscriptionIdentifier as u8);
    s.var_int(v as usize);
}

pub(crate) fn put_str<S: Sink>(s: &mut S, id: PropertyId, v: Option<&str>) {
    if let Some(v) = v {
        s.u8(id as u8);
        s.string(v);
    }
}

pub(crate) fn put_binary<S: Sink>(s: &mut S, id: PropertyId, v: Option<&[u8]>) {
    if let Some(v) = v {
        s.u8(id as u8);
        s.binary(v);
    }
}

pub(crate) fn put_user_properties<S: Sink>(s: &mut S, props: &[(String, String)]) {
    for (name, value) in props {
        s.u8(PropertyId::UserProperty as u8);
        s.string(name);
        s.string(value);
    }
}

/// The properties of PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK and UNSUBACK: a Reason String
/// and User Properties, both for diagnostics only. The sender MUST NOT send them if that would
/// exceed the peer's Maximum Packet Size [MQTT-3.4.2-2] [MQTT-3.4.2-3].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AckProperties {
    /// Human readable diagnostics; the receiver should not parse it.
    pub reason_string: Option<String>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
}

impl AckProperties {
    /// True if there is nothing to send (so the short packet forms can be used).
    pub fn is_empty(&self) -> bool {
        self.reason_string.is_none() && self.user_properties.is_empty()
    }

    pub(crate) fn decode(r: &mut Reader, packet_type: PacketType) -> Result<Self, DecodeError> {
        let mut p = AckProperties::default();
        read_properties(r, |prop| match prop {
            Property::ReasonString(v) => {
                set_once(&mut p.reason_string, v, PropertyId::ReasonString)
            }
            Property::UserProperty(k, v) => {
                p.user_properties.push((k, v));
                Ok(())
            }
            other => Err(other.not_allowed(packet_type)),
        })?;
        Ok(p)
    }
}

impl WriteProperties for AckProperties {
    fn write_items<S: Sink>(&self, s: &mut S) {
        put_str(s, PropertyId::ReasonString, self.reason_string.as_deref());
        put_user_properties(s, &self.user_properties);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

    fn reader(bytes: &'static [u8]) -> Reader {
        Reader::new(Bytes::from_static(bytes))
    }

    #[test]
    fn every_identifier_round_trips() {
        let mut defined = 0;
        for b in 0..=255u8 {
            if let Some(id) = PropertyId::from_u8(b) {
                assert_eq!(id as u8, b);
                defined += 1;
            }
        }
        assert_eq!(defined, 27);
    }

    #[test]
    fn ack_properties_keep_user_property_order_and_duplicates() {
        let mut r = reader(b"\x0e\x26\x00\x01a\x00\x011\x26\x00\x01a\x00\x012");
        let p = AckProperties::decode(&mut r, PacketType::PubAck).unwrap();
        assert_eq!(
            p.user_properties,
            [("a".into(), "1".into()), ("a".into(), "2".into())]
        );
        assert!(r.is_empty());
        let mut out = BytesMut::new();
        write_properties(&p, &mut out);
        assert_eq!(
            &out[..],
            b"\x0e\x26\x00\x01a\x00\x011\x26\x00\x01a\x00\x012"
        );
    }

    #[test]
    fn duplicate_reason_string_is_a_protocol_error() {
        let mut r = reader(b"\x08\x1f\x00\x01a\x1f\x00\x01b");
        assert_eq!(
            AckProperties::decode(&mut r, PacketType::PubAck),
            Err(DecodeError::DuplicateProperty(PropertyId::ReasonString))
        );
    }

    #[test]
    fn property_not_defined_for_the_packet_is_malformed() {
        let mut r = reader(b"\x03\x23\x00\x01");
        assert_eq!(
            AckProperties::decode(&mut r, PacketType::SubAck),
            Err(DecodeError::PropertyNotAllowed {
                packet_type: PacketType::SubAck,
                property: PropertyId::TopicAlias
            })
        );
    }

    #[test]
    fn unknown_identifier_and_bad_values() {
        let mut r = reader(b"\x02\x7f\x00");
        assert_eq!(
            AckProperties::decode(&mut r, PacketType::PubAck),
            Err(DecodeError::UnknownProperty(0x7f))
        );
        let mut r = reader(b"\x02\x01\x02");
        assert_eq!(
            read_properties(&mut r, |_| Ok(())),
            Err(DecodeError::InvalidPropertyValue(
                PropertyId::PayloadFormatIndicator
            ))
        );
        let mut r = reader(b"\x03\x23\x00\x00");
        assert_eq!(
            read_properties(&mut r, |_| Ok(())),
            Err(DecodeError::InvalidPropertyValue(PropertyId::TopicAlias))
        );
        let mut r = reader(b"\x02\x0b\x00");
        assert_eq!(
            read_properties(&mut r, |_| Ok(())),
            Err(DecodeError::InvalidPropertyValue(
                PropertyId::SubscriptionIdentifier
            ))
        );
        let mut r = reader(b"\x02\x24\x02");
        assert_eq!(
            read_properties(&mut r, |_| Ok(())),
            Err(DecodeError::InvalidPropertyValue(PropertyId::MaximumQoS))
        );
        let mut r = reader(b"\x05\x08\x00\x02a#");
        assert!(matches!(
            read_properties(&mut r, |_| Ok(())),
            Err(DecodeError::InvalidTopicName(_))
        ));
    }

    #[test]
    fn section_longer_than_the_packet_is_truncated() {
        let mut r = reader(b"\x09\x1f\x00\x01a");
        assert_eq!(
            read_properties(&mut r, |_| Ok(())),
            Err(DecodeError::Truncated)
        );
        // A value running past the section's end, even if the packet has more bytes.
        let mut r = reader(b"\x02\x1f\x00\x01a");
        assert_eq!(
            read_properties(&mut r, |_| Ok(())),
            Err(DecodeError::Truncated)
        );
    }
}
