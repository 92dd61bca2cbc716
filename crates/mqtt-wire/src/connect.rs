//! CONNECT: the first packet of every connection (5.0 section 3.1, 3.1.1 section 3.1).
//!
//! Variable header: protocol name, protocol level, connect flags, keep alive, and (5.0) the
//! CONNECT properties. Payload, in order and each present only if its flag says so: client
//! identifier (always), (5.0) will properties, will topic, will payload, user name, password.

use bytes::Bytes;

use crate::codec::{Reader, Sink};
use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::PacketType;
use crate::properties::{
    put_binary, put_byte, put_flag, put_non_zero_u16, put_str, put_u16, put_u32,
    put_user_properties, read_properties, set_once, write_properties, PayloadFormat, Property,
    PropertyId as Id, WriteProperties,
};
use crate::topic::TopicName;
use crate::{ProtocolVersion, QoS};

const USERNAME: u8 = 0x80;
const PASSWORD: u8 = 0x40;
const WILL_RETAIN: u8 = 0x20;
const WILL_QOS_SHIFT: u8 = 3;
const WILL: u8 = 0x04;
const CLEAN_START: u8 = 0x02;
const RESERVED: u8 = 0x01;

/// A connection request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// The protocol version from the protocol name and level. [`crate::encode`] refuses to
    /// write it as another version.
    pub protocol: ProtocolVersion,
    /// Clean Start (5.0) / Clean Session (3.1, 3.1.1): start a new session instead of
    /// resuming one. In 3.x it also means "discard the session at disconnect"; in 5.0 that is
    /// Session Expiry Interval 0.
    pub clean_start: bool,
    /// Keep alive in seconds; 0 turns the mechanism off. (5.0: the CONNACK's Server Keep
    /// Alive can override it.)
    pub keep_alive: u16,
    /// The client identifier, possibly empty (the server assigns one, or refuses: 3.1.1 requires
    /// Clean Session with an empty id [MQTT-3.1.3-7], 3.1 does not allow it at all).
    pub client_id: String,
    /// The Will Message, if the Will Flag is set.
    pub will: Option<LastWill>,
    /// The user name, if the User Name Flag is set. (RabbitMQ-compatible `vhost:user` is parsed
    /// by the server.)
    pub username: Option<String>,
    /// The password, if the Password Flag is set (binary data in 3.1.1 and 5.0).
    pub password: Option<Bytes>,
    /// CONNECT properties (5.0; empty otherwise).
    pub properties: ConnectProperties,
}

/// The Will Message: published by the server when the connection ends without a DISCONNECT
/// (or, 5.0, with reason 0x04).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Where to publish it.
    pub topic: TopicName,
    /// The payload, a slice of the CONNECT packet.
    pub payload: Bytes,
    /// QoS to publish it with.
    pub qos: QoS,
    /// Publish it as a retained message.
    pub retain: bool,
    /// Will properties (5.0; empty otherwise).
    pub properties: WillProperties,
}

/// CONNECT properties (5.0 section 3.1.2.11). Each is optional and at most once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectProperties {
    /// Seconds the session outlives the connection; absent means 0, `u32::MAX` never expires.
    pub session_expiry_interval: Option<u32>,
    /// How many QoS 1 and 2 PUBLISHes the client processes at once (not 0; absent: 65,535).
    pub receive_maximum: Option<u16>,
    /// The largest packet the client accepts (not 0; absent: no limit beyond the protocol's).
    /// The server MUST NOT send it a larger packet [MQTT-3.1.2-24].
    pub maximum_packet_size: Option<u32>,
    /// The highest topic alias the client accepts from the server (absent: 0, none).
    pub topic_alias_maximum: Option<u16>,
    /// Ask for Response Information in the CONNACK.
    pub request_response_information: Option<bool>,
    /// Whether the server may send Reason Strings and User Properties on packets other than
    /// PUBLISH, CONNACK and DISCONNECT (absent: true).
    pub request_problem_information: Option<bool>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
    /// Extended authentication method (section 4.12).
    pub authentication_method: Option<String>,
    /// Extended authentication data (only with a method).
    pub authentication_data: Option<Bytes>,
}

/// Will properties (5.0 section 3.1.3.2): the PUBLISH properties the Will Message goes out with,
/// plus the delay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WillProperties {
    /// Seconds to wait after the connection ends before publishing the will (absent: 0).
    pub will_delay_interval: Option<u32>,
    /// The payload's declared format.
    pub payload_format_indicator: Option<PayloadFormat>,
    /// The will message's lifetime in seconds.
    pub message_expiry_interval: Option<u32>,
    /// MIME-type-like description of the payload.
    pub content_type: Option<String>,
    /// Topic for a response (makes the will a request).
    pub response_topic: Option<TopicName>,
    /// Correlation data for the response.
    pub correlation_data: Option<Bytes>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
}

impl Connect {
    /// A CONNECT for `protocol` with a clean session, no will, no credentials, no properties.
    pub fn new(protocol: ProtocolVersion, client_id: impl Into<String>, keep_alive: u16) -> Self {
        Connect {
            protocol,
            clean_start: true,
            keep_alive,
            client_id: client_id.into(),
            will: None,
            username: None,
            password: None,
            properties: ConnectProperties::default(),
        }
    }

    pub(crate) fn decode(mut r: Reader) -> Result<Connect, DecodeError> {
        let name = r.binary()?;
        let level = r.u8()?;
        let protocol = match (&name[..], level) {
            (b"MQIsdp", 3) => ProtocolVersion::V3_1,
            (b"MQTT", 4) => ProtocolVersion::V3_1_1,
            (b"MQTT", 5) => ProtocolVersion::V5,
            // A name we know with a level we do not: answer CONNACK 0x01 [MQTT-3.1.2-2].
            (b"MQIsdp" | b"MQTT", level) => {
                return Err(DecodeError::UnsupportedProtocolVersion { level })
            }
            _ => return Err(DecodeError::UnknownProtocolName),
        };
        let v5 = protocol == ProtocolVersion::V5;

        let flags = r.u8()?;
        // [MQTT-3.1.2-3] The Server MUST validate that the reserved flag is 0. MQTT 3.1 had no
        // such rule.
        if flags & RESERVED != 0 && protocol != ProtocolVersion::V3_1 {
            return Err(DecodeError::InvalidConnectFlags);
        }
        let has_will = flags & WILL != 0;
        // [MQTT-3.1.2-14] (3.1.1) Will QoS 3 is malformed.
        let will_qos = QoS::try_from((flags >> WILL_QOS_SHIFT) & 0b11)?;
        let will_retain = flags & WILL_RETAIN != 0;
        // [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15] Without a will, its QoS and Retain
        // are 0.
        if !has_will && (will_qos != QoS::AtMostOnce || will_retain) {
            return Err(DecodeError::InvalidWillFlags);
        }
        let has_username = flags & USERNAME != 0;
        let has_password = flags & PASSWORD != 0;
        // [MQTT-3.1.2-22] (3.1.1) If the User Name Flag is 0, the Password Flag MUST be 0.
        // 5.0 dropped the rule (a password can carry a token on its own).
        if has_password && !has_username && !v5 {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16()?;
        let properties = if v5 {
            ConnectProperties::decode(&mut r)?
        } else {
            ConnectProperties::default()
        };

        // [MQTT-3.1.3-3] The client identifier MUST be present and first in the payload.
        let client_id = r.string()?;
        let will = if has_will {
            let properties = if v5 {
                WillProperties::decode(&mut r)?
            } else {
                WillProperties::default()
            };
            let topic = TopicName::new(r.string()?).map_err(DecodeError::InvalidTopicName)?;
            Some(LastWill {
                topic,
                payload: r.binary()?,
                qos: will_qos,
                retain: will_retain,
                properties,
            })
        } else {
            None
        };
        let username = if has_username {
            Some(r.string()?)
        } else {
            None
        };
        let password = if has_password {
            Some(r.binary()?)
        } else {
            None
        };
        r.finish()?;
        Ok(Connect {
            protocol,
            clean_start: flags & CLEAN_START != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        if self.protocol != version {
            s.fail(EncodeError::VersionMismatch {
                packet: self.protocol,
                version,
            });
        }
        let v5 = version == ProtocolVersion::V5;
        if self.password.is_some() && self.username.is_none() && !v5 {
            s.fail(EncodeError::PasswordWithoutUsername);
        }
        s.string(version.protocol_name());
        s.u8(version.level());
        let mut flags = 0;
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        if let Some(will) = &self.will {
            flags |= WILL | ((will.qos as u8) << WILL_QOS_SHIFT);
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.clean_start {
            flags |= CLEAN_START;
        }
        s.u8(flags);
        s.u16(self.keep_alive);
        if v5 {
            write_properties(&self.properties, s);
        }
        s.string(&self.client_id);
        if let Some(will) = &self.will {
            if v5 {
                write_properties(&will.properties, s);
            }
            s.string(&will.topic);
            s.binary(&will.payload);
        }
        if let Some(username) = &self.username {
            s.string(username);
        }
        if let Some(password) = &self.password {
            s.binary(password);
        }
    }
}

impl ConnectProperties {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = ConnectProperties::default();
        read_properties(r, |prop| match prop {
            Property::SessionExpiryInterval(v) => {
                set_once(&mut p.session_expiry_interval, v, Id::SessionExpiryInterval)
            }
            Property::ReceiveMaximum(v) => set_once(&mut p.receive_maximum, v, Id::ReceiveMaximum),
            Property::MaximumPacketSize(v) => {
                set_once(&mut p.maximum_packet_size, v, Id::MaximumPacketSize)
            }
            Property::TopicAliasMaximum(v) => {
                set_once(&mut p.topic_alias_maximum, v, Id::TopicAliasMaximum)
            }
            Property::RequestResponseInformation(v) => set_once(
                &mut p.request_response_information,
                v,
                Id::RequestResponseInformation,
            ),
            Property::RequestProblemInformation(v) => set_once(
                &mut p.request_problem_information,
                v,
                Id::RequestProblemInformation,
            ),
            Property::UserProperty(k, v) => {
                p.user_properties.push((k, v));
                Ok(())
            }
            Property::AuthenticationMethod(v) => {
                set_once(&mut p.authentication_method, v, Id::AuthenticationMethod)
            }
            Property::AuthenticationData(v) => {
                set_once(&mut p.authentication_data, v, Id::AuthenticationData)
            }
            other => Err(other.not_allowed(PacketType::Connect)),
        })?;
        // "It is a Protocol Error to include Authentication Data if there is no
        // Authentication Method."
        if p.authentication_data.is_some() && p.authentication_method.is_none() {
            return Err(DecodeError::AuthDataWithoutMethod);
        }
        Ok(p)
    }
}

impl WriteProperties for ConnectProperties {
    fn write_items<S: Sink>(&self, s: &mut S) {
        if self.authentication_data.is_some() && self.authentication_method.is_none() {
            s.fail(EncodeError::AuthDataWithoutMethod);
        }
        put_u32(s, Id::SessionExpiryInterval, self.session_expiry_interval);
        put_non_zero_u16(s, Id::ReceiveMaximum, self.receive_maximum);
        if self.maximum_packet_size == Some(0) {
            s.fail(EncodeError::InvalidPropertyValue(Id::MaximumPacketSize));
        }
        put_u32(s, Id::MaximumPacketSize, self.maximum_packet_size);
        put_u16(s, Id::TopicAliasMaximum, self.topic_alias_maximum);
        put_flag(
            s,
            Id::RequestResponseInformation,
            self.request_response_information,
        );
        put_flag(
            s,
            Id::RequestProblemInformation,
            self.request_problem_information,
        );
        put_user_properties(s, &self.user_properties);
        put_str(
            s,
            Id::AuthenticationMethod,
            self.authentication_method.as_deref(),
        );
        put_binary(
            s,
            Id::AuthenticationData,
            self.authentication_data.as_deref(),
        );
    }
}

impl WillProperties {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = WillProperties::default();
        read_properties(r, |prop| match prop {
            Property::WillDelayInterval(v) => {
                set_once(&mut p.will_delay_interval, v, Id::WillDelayInterval)
            }
            Property::PayloadFormatIndicator(v) => set_once(
                &mut p.payload_format_indicator,
                v,
                Id::PayloadFormatIndicator,
            ),
            Property::MessageExpiryInterval(v) => {
                set_once(&mut p.message_expiry_interval, v, Id::MessageExpiryInterval)
            }
            Property::ContentType(v) => set_once(&mut p.content_type, v, Id::ContentType),
            Property::ResponseTopic(v) => set_once(&mut p.response_topic, v, Id::ResponseTopic),
            Property::CorrelationData(v) => {
                set_once(&mut p.correlation_data, v, Id::CorrelationData)
            }
            Property::UserProperty(k, v) => {
                p.user_properties.push((k, v));
                Ok(())
            }
            // Will properties sit in the CONNECT payload.
            other => Err(other.not_allowed(PacketType::Connect)),
        })?;
        Ok(p)
    }
}

impl WriteProperties for WillProperties {
    fn write_items<S: Sink>(&self, s: &mut S) {
        put_u32(s, Id::WillDelayInterval, self.will_delay_interval);
        put_byte(
            s,
            Id::PayloadFormatIndicator,
            self.payload_format_indicator.map(|f| f as u8),
        );
        put_u32(s, Id::MessageExpiryInterval, self.message_expiry_interval);
        put_str(s, Id::ContentType, self.content_type.as_deref());
        put_str(
            s,
            Id::ResponseTopic,
            self.response_topic.as_ref().map(TopicName::as_str),
        );
        put_binary(s, Id::CorrelationData, self.correlation_data.as_deref());
        put_user_properties(s, &self.user_properties);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{decode_one, encode_v, roundtrip};
    use crate::{DecodeError, Packet};

    /// The 3.1.1 spec's variable header example (figure 3.6): protocol "MQTT", level 4, flags
    /// 0xCE (user name, password, will QoS 1, will flag, clean session), keep alive 10.
    #[test]
    fn mqtt_3_1_1_spec_example() {
        let bytes = b"\x10\x2a\x00\x04MQTT\x04\xce\x00\x0a\
            \x00\x06client\
            \x00\x04will\x00\x04gone\
            \x00\x04user\x00\x04pass";
        let Packet::Connect(c) = decode_one(bytes, None).unwrap() else {
            panic!("not a CONNECT")
        };
        assert_eq!(c.protocol, ProtocolVersion::V3_1_1);
        assert!(c.clean_start);
        assert_eq!(c.keep_alive, 10);
        assert_eq!(c.client_id, "client");
        let will = c.will.as_ref().unwrap();
        assert_eq!(will.topic, "will");
        assert_eq!(&will.payload[..], b"gone");
        assert_eq!(will.qos, QoS::AtLeastOnce);
        assert!(!will.retain);
        assert_eq!(c.username.as_deref(), Some("user"));
        assert_eq!(c.password.as_deref(), Some(&b"pass"[..]));
        assert_eq!(
            encode_v(&Packet::Connect(c), ProtocolVersion::V3_1_1),
            bytes
        );
    }

    /// The 5.0 spec's variable header example (figure 3-6): level 5, flags 0xCE, keep alive
    /// 10, properties length 5, Session Expiry Interval 10.
    #[test]
    fn mqtt_5_spec_example() {
        let bytes = b"\x10\x28\x00\x04MQTT\x05\xce\x00\x0a\x05\x11\x00\x00\x00\x0a\
            \x00\x02id\
            \x05\x18\x00\x00\x00\x05\x00\x03a/b\x00\x01x\
            \x00\x01u\x00\x01p";
        let Packet::Connect(c) = decode_one(bytes, None).unwrap() else {
            panic!("not a CONNECT")
        };
        assert_eq!(c.protocol, ProtocolVersion::V5);
        assert_eq!(c.properties.session_expiry_interval, Some(10));
        let will = c.will.as_ref().unwrap();
        assert_eq!(will.properties.will_delay_interval, Some(5));
        assert_eq!(will.topic, "a/b");
        assert_eq!(encode_v(&Packet::Connect(c), ProtocolVersion::V5), bytes);
    }

    #[test]
    fn mqtt_3_1_connect() {
        // "MQIsdp" level 3, clean session, keep alive 60; reserved bit set is tolerated.
        let bytes = b"\x10\x12\x00\x06MQIsdp\x03\x03\x00\x3c\x00\x04abcd";
        let Packet::Connect(c) = decode_one(bytes, None).unwrap() else {
            panic!("not a CONNECT")
        };
        assert_eq!(c.protocol, ProtocolVersion::V3_1);
        assert_eq!(c.client_id, "abcd");
        // Re-encoded without the reserved bit.
        let out = encode_v(&Packet::Connect(c), ProtocolVersion::V3_1);
        assert_eq!(out, b"\x10\x12\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x04abcd");
    }

    #[test]
    fn minimal_connect_round_trips_in_every_version() {
        for v in [
            ProtocolVersion::V3_1,
            ProtocolVersion::V3_1_1,
            ProtocolVersion::V5,
        ] {
            roundtrip(&Packet::Connect(Connect::new(v, "", 0)), v);
        }
    }

    #[test]
    fn unknown_protocols() {
        let level6 = b"\x10\x0c\x00\x04MQTT\x06\x02\x00\x00\x00\x00";
        assert_eq!(
            decode_one(level6, None),
            Err(DecodeError::UnsupportedProtocolVersion { level: 6 })
        );
        let mqisdp4 = b"\x10\x0e\x00\x06MQIsdp\x04\x02\x00\x00\x00\x00";
        assert_eq!(
            decode_one(mqisdp4, None),
            Err(DecodeError::UnsupportedProtocolVersion { level: 4 })
        );
        let http = b"\x10\x0c\x00\x04HTTP\x04\x02\x00\x00\x00\x00";
        assert_eq!(
            decode_one(http, None),
            Err(DecodeError::UnknownProtocolName)
        );
    }

    #[test]
    fn flag_rules() {
        let with_flags = |flags: u8| {
            let mut b = b"\x10\x0c\x00\x04MQTT\x04\x00\x00\x00\x00\x00".to_vec();
            b[9] = flags;
            decode_one(&b, None)
        };
        // [MQTT-3.1.2-3]
        assert_eq!(with_flags(0x03), Err(DecodeError::InvalidConnectFlags));
        // [MQTT-3.1.2-13] will QoS without will flag, [MQTT-3.1.2-15] will retain without it.
        assert_eq!(with_flags(0x08), Err(DecodeError::InvalidWillFlags));
        assert_eq!(with_flags(0x20), Err(DecodeError::InvalidWillFlags));
        // [MQTT-3.1.2-14] will QoS 3.
        assert_eq!(with_flags(0x1c), Err(DecodeError::InvalidQoS));
        // [MQTT-3.1.2-22] password without user name.
        assert_eq!(with_flags(0x42), Err(DecodeError::PasswordWithoutUsername));
        // The payload ends before the will the flag promised.
        assert_eq!(with_flags(0x06), Err(DecodeError::Truncated));
    }

    #[test]
    fn password_without_username_is_fine_in_5() {
        let mut c = Connect::new(ProtocolVersion::V5, "c", 30);
        c.password = Some(Bytes::from_static(b"token"));
        roundtrip(&Packet::Connect(c.clone()), ProtocolVersion::V5);
        c.protocol = ProtocolVersion::V3_1_1;
        let mut out = bytes::BytesMut::new();
        assert_eq!(
            crate::encode(&Packet::Connect(c), ProtocolVersion::V3_1_1, &mut out),
            Err(EncodeError::PasswordWithoutUsername)
        );
        assert!(out.is_empty());
    }

    #[test]
    fn will_topic_must_be_a_topic_name() {
        // Will flag, topic "a/#".
        let bytes = b"\x10\x15\x00\x04MQTT\x04\x06\x00\x00\x00\x01c\x00\x03a/#\x00\x01x";
        assert!(matches!(
            decode_one(bytes, None),
            Err(DecodeError::InvalidTopicName(_))
        ));
    }

    #[test]
    fn connect_property_rules() {
        // Authentication Data without Authentication Method.
        let bytes = b"\x10\x11\x00\x04MQTT\x05\x02\x00\x00\x04\x16\x00\x01x\x00\x00";
        assert_eq!(
            decode_one(bytes, None),
            Err(DecodeError::AuthDataWithoutMethod)
        );
        // Topic Alias is not a CONNECT property.
        let bytes = b"\x10\x10\x00\x04MQTT\x05\x02\x00\x00\x03\x23\x00\x01\x00\x00";
        assert_eq!(
            decode_one(bytes, None),
            Err(DecodeError::PropertyNotAllowed {
                packet_type: PacketType::Connect,
                property: Id::TopicAlias
            })
        );
        // Receive Maximum twice.
        let bytes = b"\x10\x13\x00\x04MQTT\x05\x02\x00\x00\x06\x21\x00\x01\x21\x00\x02\x00\x00";
        assert_eq!(
            decode_one(bytes, None),
            Err(DecodeError::DuplicateProperty(Id::ReceiveMaximum))
        );
    }

    #[test]
    fn version_mismatch_is_refused() {
        let c = Connect::new(ProtocolVersion::V5, "c", 0);
        let mut out = bytes::BytesMut::new();
        assert!(matches!(
            crate::encode(&Packet::Connect(c), ProtocolVersion::V3_1_1, &mut out),
            Err(EncodeError::VersionMismatch { .. })
        ));
    }
}
