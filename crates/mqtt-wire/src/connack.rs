//! CONNACK: the server's answer to CONNECT (5.0 section 3.2, 3.1.1 section 3.2).
//!
//! Variable header: the Connect Acknowledge Flags (bit 0 Session Present, bits 7-1 reserved),
//! the reason code (3.1.1: return code 0-5), and (5.0) the CONNACK properties. No payload.
//! MQTT 3.1 had no Session Present bit: the byte is written as 0 and ignored when read.

use bytes::Bytes;

use crate::codec::{Reader, Sink};
use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::PacketType;
use crate::properties::{
    put_binary, put_byte, put_flag, put_non_zero_u16, put_str, put_u16, put_u32,
    put_user_properties, read_properties, set_once, write_properties, Property, PropertyId as Id,
    WriteProperties,
};
use crate::reason::{ConnectReturnCode, ReasonCode};
use crate::{ProtocolVersion, QoS};

/// A connect acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnAck {
    /// Whether the server resumed a session. Written as 0 whenever `code` is a refusal, as the
    /// spec requires [MQTT-3.2.2-6] (3.1.1: [MQTT-3.2.2-4]), and always 0 for 3.1.
    pub session_present: bool,
    /// The outcome. For 3.1 and 3.1.1 it is written as the closest return code
    /// ([`ConnectReturnCode::from`]); decoding a 3.1.1 return code gives its 5.0 twin.
    pub code: ReasonCode,
    /// CONNACK properties (5.0; empty otherwise).
    pub properties: ConnAckProperties,
}

/// CONNACK properties (5.0 section 3.2.2.3). Each is optional and at most once; an absent one
/// has the default the spec gives it (noted on each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnAckProperties {
    /// The session expiry the server uses instead of the client's.
    pub session_expiry_interval: Option<u32>,
    /// How many QoS 1 and 2 PUBLISHes the server processes at once (not 0; absent: 65,535).
    pub receive_maximum: Option<u16>,
    /// The highest QoS the server accepts (absent: 2). Only 0 or 1 can be sent; `Some(2)` is
    /// written as absent, which means the same.
    pub maximum_qos: Option<QoS>,
    /// Whether retained messages are supported (absent: true).
    pub retain_available: Option<bool>,
    /// The largest packet the server accepts (not 0; absent: no limit beyond the protocol's).
    pub maximum_packet_size: Option<u32>,
    /// The client identifier the server assigned (when the client sent an empty one).
    pub assigned_client_identifier: Option<String>,
    /// The highest topic alias the server accepts from the client (absent: 0, none).
    pub topic_alias_maximum: Option<u16>,
    /// Human readable diagnostics.
    pub reason_string: Option<String>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
    /// Whether wildcard subscriptions are supported (absent: true).
    pub wildcard_subscription_available: Option<bool>,
    /// Whether subscription identifiers are supported (absent: true).
    pub subscription_identifiers_available: Option<bool>,
    /// Whether shared subscriptions are supported (absent: true).
    pub shared_subscription_available: Option<bool>,
    /// The keep alive the client must use instead of its own.
    pub server_keep_alive: Option<u16>,
    /// Basis for response topics, if the client asked for it.
    pub response_information: Option<String>,
    /// Another server to use (with reason 0x9C or 0x9D).
    pub server_reference: Option<String>,
    /// Extended authentication method.
    pub authentication_method: Option<String>,
    /// Extended authentication data.
    pub authentication_data: Option<Bytes>,
}

impl ConnAck {
    /// A CONNACK with `code`, no session, no properties.
    pub fn new(code: ReasonCode) -> Self {
        ConnAck {
            session_present: false,
            code,
            properties: ConnAckProperties::default(),
        }
    }

    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<ConnAck, DecodeError> {
        let flags = r.u8()?;
        let session_present = match version {
            ProtocolVersion::V3_1 => false,
            _ if flags & 0xfe != 0 => return Err(DecodeError::InvalidConnAckFlags),
            _ => flags & 1 != 0,
        };
        let byte = r.u8()?;
        let code = match version {
            ProtocolVersion::V5 => {
                ReasonCode::from_u8(byte).filter(|c| c.allowed_in(PacketType::ConnAck))
            }
            _ => ConnectReturnCode::from_u8(byte).map(ReasonCode::from),
        }
        .ok_or(DecodeError::InvalidReasonCode {
            packet_type: PacketType::ConnAck,
            code: byte,
        })?;
        let properties = if version == ProtocolVersion::V5 {
            ConnAckProperties::decode(&mut r)?
        } else {
            ConnAckProperties::default()
        };
        r.finish()?;
        Ok(ConnAck {
            session_present,
            code,
            properties,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        let session_present =
            self.session_present && !self.code.is_error() && version != ProtocolVersion::V3_1;
        s.u8(u8::from(session_present));
        if version == ProtocolVersion::V5 {
            if !self.code.allowed_in(PacketType::ConnAck) {
                s.fail(EncodeError::InvalidReasonCode {
                    packet_type: PacketType::ConnAck,
                    code: self.code,
                });
            }
            s.u8(self.code.code());
            write_properties(&self.properties, s);
        } else {
            s.u8(ConnectReturnCode::from(self.code).code());
        }
    }
}

impl ConnAckProperties {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = ConnAckProperties::default();
        read_properties(r, |prop| match prop {
            Property::SessionExpiryInterval(v) => {
                set_once(&mut p.session_expiry_interval, v, Id::SessionExpiryInterval)
            }
            Property::ReceiveMaximum(v) => set_once(&mut p.receive_maximum, v, Id::ReceiveMaximum),
            Property::MaximumQoS(v) => set_once(&mut p.maximum_qos, v, Id::MaximumQoS),
            Property::RetainAvailable(v) => {
                set_once(&mut p.retain_available, v, Id::RetainAvailable)
            }
            Property::MaximumPacketSize(v) => {
                set_once(&mut p.maximum_packet_size, v, Id::MaximumPacketSize)
            }
            Property::AssignedClientIdentifier(v) => set_once(
                &mut p.assigned_client_identifier,
                v,
                Id::AssignedClientIdentifier,
            ),
            Property::TopicAliasMaximum(v) => {
                set_once(&mut p.topic_alias_maximum, v, Id::TopicAliasMaximum)
            }
            Property::ReasonString(v) => set_once(&mut p.reason_string, v, Id::ReasonString),
            Property::UserProperty(k, v) => {
                p.user_properties.push((k, v));
                Ok(())
            }
            Property::WildcardSubscriptionAvailable(v) => set_once(
                &mut p.wildcard_subscription_available,
                v,
                Id::WildcardSubscriptionAvailable,
            ),
            Property::SubscriptionIdentifierAvailable(v) => set_once(
                &mut p.subscription_identifiers_available,
                v,
                Id::SubscriptionIdentifierAvailable,
            ),
            Property::SharedSubscriptionAvailable(v) => set_once(
                &mut p.shared_subscription_available,
                v,
                Id::SharedSubscriptionAvailable,
            ),
            Property::ServerKeepAlive(v) => {
                set_once(&mut p.server_keep_alive, v, Id::ServerKeepAlive)
            }
            Property::ResponseInformation(v) => {
                set_once(&mut p.response_information, v, Id::ResponseInformation)
            }
            Property::ServerReference(v) => {
                set_once(&mut p.server_reference, v, Id::ServerReference)
            }
            Property::AuthenticationMethod(v) => {
                set_once(&mut p.authentication_method, v, Id::AuthenticationMethod)
            }
            Property::AuthenticationData(v) => {
                set_once(&mut p.authentication_data, v, Id::AuthenticationData)
            }
            other => Err(other.not_allowed(PacketType::ConnAck)),
        })?;
        Ok(p)
    }
}

impl WriteProperties for ConnAckProperties {
    fn write_items<S: Sink>(&self, s: &mut S) {
        put_u32(s, Id::SessionExpiryInterval, self.session_expiry_interval);
        put_non_zero_u16(s, Id::ReceiveMaximum, self.receive_maximum);
        // Maximum QoS 2 is the default and has no encoding (the property is 0 or 1).
        let max_qos = self.maximum_qos.filter(|q| *q != QoS::ExactlyOnce);
        put_byte(s, Id::MaximumQoS, max_qos.map(|q| q as u8));
        put_flag(s, Id::RetainAvailable, self.retain_available);
        if self.maximum_packet_size == Some(0) {
            s.fail(EncodeError::InvalidPropertyValue(Id::MaximumPacketSize));
        }
        put_u32(s, Id::MaximumPacketSize, self.maximum_packet_size);
        put_str(
            s,
            Id::AssignedClientIdentifier,
            self.assigned_client_identifier.as_deref(),
        );
        put_u16(s, Id::TopicAliasMaximum, self.topic_alias_maximum);
        put_str(s, Id::ReasonString, self.reason_string.as_deref());
        put_user_properties(s, &self.user_properties);
        put_flag(
            s,
            Id::WildcardSubscriptionAvailable,
            self.wildcard_subscription_available,
        );
        put_flag(
            s,
            Id::SubscriptionIdentifierAvailable,
            self.subscription_identifiers_available,
        );
        put_flag(
            s,
            Id::SharedSubscriptionAvailable,
            self.shared_subscription_available,
        );
        put_u16(s, Id::ServerKeepAlive, self.server_keep_alive);
        put_str(
            s,
            Id::ResponseInformation,
            self.response_information.as_deref(),
        );
        put_str(s, Id::ServerReference, self.server_reference.as_deref());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{decode_one, encode_v, roundtrip};
    use crate::Packet;

    const V3: ProtocolVersion = ProtocolVersion::V3_1;
    const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    #[test]
    fn accepted_with_session_in_3_1_1() {
        let bytes = b"\x20\x02\x01\x00";
        let p = decode_one(bytes, Some(V4)).unwrap();
        let mut expected = ConnAck::new(ReasonCode::Success);
        expected.session_present = true;
        assert_eq!(p, Packet::ConnAck(expected));
        assert_eq!(encode_v(&p, V4), bytes);
        // 3.1 has no session present bit.
        assert_eq!(encode_v(&p, V3), b"\x20\x02\x00\x00");
        // ... and its flags byte is not checked.
        assert_eq!(
            decode_one(b"\x20\x02\xff\x00", Some(V3)).unwrap(),
            Packet::ConnAck(ConnAck::new(ReasonCode::Success))
        );
    }

    #[test]
    fn reason_codes_map_to_3_1_1_return_codes() {
        for (code, byte) in [
            (ReasonCode::UnsupportedProtocolVersion, 1),
            (ReasonCode::ClientIdentifierNotValid, 2),
            (ReasonCode::ServerUnavailable, 3),
            (ReasonCode::BadUserNameOrPassword, 4),
            (ReasonCode::NotAuthorized, 5),
            (ReasonCode::Banned, 5),
            (ReasonCode::ServerBusy, 3),
        ] {
            let mut c = ConnAck::new(code);
            c.session_present = true; // dropped: a refusal has no session [MQTT-3.2.2-4]
            assert_eq!(encode_v(&Packet::ConnAck(c), V4), [0x20, 2, 0, byte]);
        }
    }

    #[test]
    fn mqtt_5_connack_with_properties() {
        // Success, Maximum QoS 1, Assigned Client Identifier "x1", Topic Alias Maximum 10.
        let bytes = b"\x20\x0d\x00\x00\x0a\x24\x01\x12\x00\x02x1\x22\x00\x0a";
        let p = decode_one(bytes, Some(V5)).unwrap();
        let Packet::ConnAck(c) = &p else {
            panic!("not a CONNACK")
        };
        assert_eq!(c.properties.maximum_qos, Some(QoS::AtLeastOnce));
        assert_eq!(
            c.properties.assigned_client_identifier.as_deref(),
            Some("x1")
        );
        assert_eq!(c.properties.topic_alias_maximum, Some(10));
        assert_eq!(encode_v(&p, V5), bytes);
        // The same CONNACK for a 3.1.1 client loses its properties.
        assert_eq!(encode_v(&p, V4), b"\x20\x02\x00\x00");
    }

    #[test]
    fn invalid_connacks() {
        assert_eq!(
            decode_one(b"\x20\x02\x02\x00", Some(V4)),
            Err(DecodeError::InvalidConnAckFlags)
        );
        assert_eq!(
            decode_one(b"\x20\x02\x00\x06", Some(V4)),
            Err(DecodeError::InvalidReasonCode {
                packet_type: PacketType::ConnAck,
                code: 6
            })
        );
        // 0x8E Session taken over is a DISCONNECT code, not a CONNACK one.
        assert_eq!(
            decode_one(b"\x20\x03\x00\x8e\x00", Some(V5)),
            Err(DecodeError::InvalidReasonCode {
                packet_type: PacketType::ConnAck,
                code: 0x8e
            })
        );
        // 5.0 requires the property length.
        assert_eq!(
            decode_one(b"\x20\x02\x00\x00", Some(V5)),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn maximum_qos_2_is_written_as_absent() {
        let mut c = ConnAck::new(ReasonCode::Success);
        c.properties.maximum_qos = Some(QoS::ExactlyOnce);
        assert_eq!(encode_v(&Packet::ConnAck(c), V5), b"\x20\x03\x00\x00\x00");
        roundtrip(&Packet::ConnAck(ConnAck::new(ReasonCode::Banned)), V5);
    }
}
