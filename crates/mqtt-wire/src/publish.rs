//! PUBLISH: an application message, either way (5.0 section 3.3, 3.1.1 section 3.3).
//!
//! Fixed header flags: DUP, QoS, RETAIN. Variable header: topic name, packet identifier (QoS 1
//! and 2 only [MQTT-2.2.1-2]), and (5.0) the PUBLISH properties. Payload: everything else,
//! possibly nothing.
//!
//! This is the hot path: decoding allocates the topic string only (plus property strings, when
//! a 5.0 publisher sends them); the payload and Correlation Data are slices of the read buffer.
//!
//! # Topic aliases
//!
//! A 5.0 sender may replace the topic name by a Topic Alias (section 3.3.2.3.4): a PUBLISH
//! with a topic name and an alias sets the alias, one with an empty name and an alias uses it.
//! The decoder keeps no alias state. It gives [`Publish::topic`] = `None` for an empty name,
//! which is only allowed together with a Topic Alias (else [`DecodeError::MissingTopic`]), and
//! leaves `topic_alias` in the properties either way: the server resolves or records the alias
//! in the connection's alias table, and checks it against the Topic Alias Maximum it announced
//! (reason 0x94 Topic Alias invalid). Outbound, the server may do the reverse: `topic: None`
//! with a Topic Alias the client already knows. Encoding `topic: None` for 3.1 / 3.1.1, or
//! without a Topic Alias, is [`EncodeError::MissingTopic`].

use bytes::Bytes;

use crate::codec::{Reader, Sink};
use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::{PacketType, PublishFlags};
use crate::properties::{
    put_binary, put_byte, put_non_zero_u16, put_str, put_subscription_id, put_u32,
    put_user_properties, read_properties, set_once, write_properties, PayloadFormat, Property,
    PropertyId as Id, WriteProperties,
};
use crate::topic::TopicName;
use crate::{ProtocolVersion, QoS};

/// An application message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Publish {
    /// A re-delivery of an earlier attempt (QoS 1 and 2 only [MQTT-3.3.1-2]).
    pub dup: bool,
    /// Delivery guarantee.
    pub qos: QoS,
    /// Retain (or, from the server, "this was a retained message").
    pub retain: bool,
    /// The topic name; `None` only in 5.0 when the topic is given by
    /// [`PublishProperties::topic_alias`] alone (see the module docs).
    pub topic: Option<TopicName>,
    /// Present, and non-zero, exactly when `qos` is 1 or 2.
    pub packet_id: Option<u16>,
    /// PUBLISH properties (5.0; empty otherwise).
    pub properties: PublishProperties,
    /// The application message, a slice of the packet that carried it.
    pub payload: Bytes,
}

/// PUBLISH properties (5.0 section 3.3.2.3). All are forwarded to subscribers unaltered except
/// Topic Alias (per connection), Subscription Identifiers (set by the server per subscriber) and
/// Message Expiry Interval (reduced by the time waited) [MQTT-3.3.2-4] [MQTT-3.3.2-6].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishProperties {
    /// What the payload is declared to be.
    pub payload_format_indicator: Option<PayloadFormat>,
    /// Lifetime in seconds.
    pub message_expiry_interval: Option<u32>,
    /// Topic alias (1 to the receiver's Topic Alias Maximum; 0 is refused here).
    pub topic_alias: Option<u16>,
    /// Topic for a response (a topic name, no wildcards [MQTT-3.3.2-14]).
    pub response_topic: Option<TopicName>,
    /// Correlation data for the response.
    pub correlation_data: Option<Bytes>,
    /// User properties, in order [MQTT-3.3.2-18].
    pub user_properties: Vec<(String, String)>,
    /// Identifiers of the subscriptions that matched (server to client only
    /// [MQTT-3.3.4-6]: a server must refuse them from a client, this crate does not know the
    /// direction). Each 1 to 268,435,455.
    pub subscription_identifiers: Vec<u32>,
    /// MIME-type-like description of the payload.
    pub content_type: Option<String>,
}

impl Publish {
    /// A QoS 0 message to `topic`, not retained, without properties.
    pub fn new(topic: TopicName, payload: Bytes) -> Self {
        Publish {
            topic: Some(topic),
            payload,
            ..Publish::default()
        }
    }

    pub(crate) fn flags(&self) -> u8 {
        PublishFlags {
            dup: self.dup,
            qos: self.qos,
            retain: self.retain,
        }
        .bits()
    }

    pub(crate) fn decode(
        flags: u8,
        mut r: Reader,
        version: ProtocolVersion,
    ) -> Result<Publish, DecodeError> {
        let PublishFlags { dup, qos, retain } = PublishFlags::parse(flags)?;
        let topic = r.string()?;
        let packet_id = match qos {
            QoS::AtMostOnce => None,
            _ => Some(r.packet_id()?),
        };
        let properties = if version == ProtocolVersion::V5 {
            PublishProperties::decode(&mut r)?
        } else {
            PublishProperties::default()
        };
        let topic = if topic.is_empty() && version == ProtocolVersion::V5 {
            // "It is a Protocol Error if the Topic Name is zero length and there is no Topic
            // Alias." (section 3.3.2.1)
            if properties.topic_alias.is_none() {
                return Err(DecodeError::MissingTopic);
            }
            None
        } else {
            // [MQTT-3.3.2-2] The Topic Name MUST NOT contain wildcard characters.
            Some(TopicName::new(topic).map_err(DecodeError::InvalidTopicName)?)
        };
        Ok(Publish {
            dup,
            qos,
            retain,
            topic,
            packet_id,
            properties,
            payload: r.rest(),
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        if self.dup && self.qos == QoS::AtMostOnce {
            s.fail(EncodeError::DupWithQoS0);
        }
        let v5 = version == ProtocolVersion::V5;
        match &self.topic {
            Some(topic) => s.string(topic),
            None if v5 && self.properties.topic_alias.is_some() => s.string(""),
            None => s.fail(EncodeError::MissingTopic),
        }
        match (self.qos, self.packet_id) {
            (QoS::AtMostOnce, None) => {}
            (QoS::AtLeastOnce | QoS::ExactlyOnce, Some(id)) if id != 0 => s.u16(id),
            _ => s.fail(EncodeError::InvalidPacketId),
        }
        if v5 {
            write_properties(&self.properties, s);
        }
        s.slice(&self.payload);
    }
}

impl PublishProperties {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = PublishProperties::default();
        read_properties(r, |prop| match prop {
            Property::PayloadFormatIndicator(v) => set_once(
                &mut p.payload_format_indicator,
                v,
                Id::PayloadFormatIndicator,
            ),
            Property::MessageExpiryInterval(v) => {
                set_once(&mut p.message_expiry_interval, v, Id::MessageExpiryInterval)
            }
            Property::TopicAlias(v) => set_once(&mut p.topic_alias, v, Id::TopicAlias),
            Property::ResponseTopic(v) => set_once(&mut p.response_topic, v, Id::ResponseTopic),
            Property::CorrelationData(v) => {
                set_once(&mut p.correlation_data, v, Id::CorrelationData)
            }
            Property::UserProperty(k, v) => {
                p.user_properties.push((k, v));
                Ok(())
            }
            // The one property a PUBLISH may repeat: one per matching subscription.
            Property::SubscriptionIdentifier(v) => {
                p.subscription_identifiers.push(v);
                Ok(())
            }
            Property::ContentType(v) => set_once(&mut p.content_type, v, Id::ContentType),
            other => Err(other.not_allowed(PacketType::Publish)),
        })?;
        Ok(p)
    }
}

impl WriteProperties for PublishProperties {
    fn write_items<S: Sink>(&self, s: &mut S) {
        put_byte(
            s,
            Id::PayloadFormatIndicator,
            self.payload_format_indicator.map(|f| f as u8),
        );
        put_u32(s, Id::MessageExpiryInterval, self.message_expiry_interval);
        put_non_zero_u16(s, Id::TopicAlias, self.topic_alias);
        put_str(
            s,
            Id::ResponseTopic,
            self.response_topic.as_ref().map(TopicName::as_str),
        );
        put_binary(s, Id::CorrelationData, self.correlation_data.as_deref());
        put_user_properties(s, &self.user_properties);
        for id in &self.subscription_identifiers {
            put_subscription_id(s, *id);
        }
        put_str(s, Id::ContentType, self.content_type.as_deref());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{decode_one, encode_err, encode_v};
    use crate::{Packet, TopicError};

    const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    fn topic(s: &str) -> TopicName {
        TopicName::new(s).unwrap()
    }

    #[test]
    fn qos0_publish_3_1_1() {
        let bytes = b"\x30\x0b\x00\x03a/bhello\x21";
        let p = decode_one(bytes, Some(V4)).unwrap();
        assert_eq!(
            p,
            Packet::Publish(Publish::new(topic("a/b"), Bytes::from_static(b"hello!")))
        );
        assert_eq!(encode_v(&p, V4), bytes);
    }

    #[test]
    fn qos1_retained_dup_publish_3_1_1() {
        let bytes = b"\x3b\x07\x00\x01t\x12\x34xy";
        let Packet::Publish(p) = decode_one(bytes, Some(V4)).unwrap() else {
            panic!("not a PUBLISH")
        };
        assert!(p.dup && p.retain);
        assert_eq!(p.qos, QoS::AtLeastOnce);
        assert_eq!(p.packet_id, Some(0x1234));
        assert_eq!(&p.payload[..], b"xy");
        assert_eq!(encode_v(&Packet::Publish(p), V4), bytes);
    }

    #[test]
    fn mqtt_5_publish_with_properties() {
        // QoS 2, id 1, properties: Message Expiry 60, Content Type "t/p",
        // Subscription Identifier 2, Subscription Identifier 300, Payload Format UTF-8.
        let bytes = b"\x34\x1a\x00\x01x\x00\x01\x12\
            \x01\x01\x02\x00\x00\x00\x3c\x0b\x02\x0b\xac\x02\x03\x00\x03t/p\
            {}";
        let Packet::Publish(p) = decode_one(bytes, Some(V5)).unwrap() else {
            panic!("not a PUBLISH")
        };
        assert_eq!(p.properties.message_expiry_interval, Some(60));
        assert_eq!(p.properties.subscription_identifiers, [2, 300]);
        assert_eq!(p.properties.content_type.as_deref(), Some("t/p"));
        assert_eq!(
            p.properties.payload_format_indicator,
            Some(PayloadFormat::Utf8)
        );
        assert_eq!(&p.payload[..], b"{}");
        assert_eq!(encode_v(&Packet::Publish(p.clone()), V5), bytes);
        // For a 3.1.1 subscriber the properties go.
        assert_eq!(
            encode_v(&Packet::Publish(p), V4),
            b"\x34\x07\x00\x01x\x00\x01{}"
        );
    }

    #[test]
    fn topic_alias_without_topic_name() {
        let bytes = b"\x30\x08\x00\x00\x03\x23\x00\x05hi";
        let Packet::Publish(p) = decode_one(bytes, Some(V5)).unwrap() else {
            panic!("not a PUBLISH")
        };
        assert_eq!(p.topic, None);
        assert_eq!(p.properties.topic_alias, Some(5));
        assert_eq!(encode_v(&Packet::Publish(p.clone()), V5), bytes);
        // 3.1.1 has no aliases: the server must resolve the topic first.
        assert_eq!(
            encode_err(&Packet::Publish(p), V4),
            EncodeError::MissingTopic
        );
    }

    #[test]
    fn empty_topic_rules() {
        // 5.0 without alias: Protocol Error.
        assert_eq!(
            decode_one(b"\x30\x03\x00\x00\x00", Some(V5)),
            Err(DecodeError::MissingTopic)
        );
        // 3.1.1: an empty topic name is invalid.
        assert_eq!(
            decode_one(b"\x30\x02\x00\x00", Some(V4)),
            Err(DecodeError::InvalidTopicName(TopicError::Empty))
        );
    }

    #[test]
    fn invalid_publishes() {
        // [MQTT-3.3.2-2] wildcards in the topic name.
        assert_eq!(
            decode_one(b"\x30\x05\x00\x03a/+", Some(V4)),
            Err(DecodeError::InvalidTopicName(TopicError::WildcardInName))
        );
        // Packet identifier 0 at QoS 1.
        assert_eq!(
            decode_one(b"\x32\x05\x00\x01a\x00\x00", Some(V4)),
            Err(DecodeError::ZeroPacketId)
        );
        // QoS 3, DUP on QoS 0.
        assert_eq!(
            decode_one(b"\x36\x05\x00\x01a\x00\x01", Some(V4)),
            Err(DecodeError::InvalidQoS)
        );
        assert_eq!(
            decode_one(b"\x38\x03\x00\x01a", Some(V4)),
            Err(DecodeError::DupWithQoS0)
        );
        // Topic Alias 0 is "Topic Alias invalid".
        let err = decode_one(b"\x30\x07\x00\x01a\x03\x23\x00\x00", Some(V5)).unwrap_err();
        assert_eq!(err.reason_code(), crate::ReasonCode::TopicAliasInvalid);
        // Remaining length shorter than the topic.
        assert_eq!(
            decode_one(b"\x30\x03\x00\x05a", Some(V4)),
            Err(DecodeError::Truncated)
        );
        // U+0000 in the topic name.
        assert_eq!(
            decode_one(b"\x30\x04\x00\x02a\x00", Some(V4)),
            Err(DecodeError::NullCharacter)
        );
    }

    #[test]
    fn encoder_checks_packet_id_and_dup() {
        let mut p = Publish::new(topic("a"), Bytes::new());
        p.qos = QoS::AtLeastOnce;
        assert_eq!(
            encode_err(&Packet::Publish(p.clone()), V4),
            EncodeError::InvalidPacketId
        );
        p.packet_id = Some(0);
        assert_eq!(
            encode_err(&Packet::Publish(p.clone()), V4),
            EncodeError::InvalidPacketId
        );
        p.qos = QoS::AtMostOnce;
        p.packet_id = None;
        p.dup = true;
        assert_eq!(
            encode_err(&Packet::Publish(p), V4),
            EncodeError::DupWithQoS0
        );
    }

    #[test]
    fn payload_is_a_slice_of_the_read_buffer() {
        let mut buf = bytes::BytesMut::from(&b"\x30\x0b\x00\x03a/bhello\x21"[..]);
        let start = buf.as_ptr() as usize;
        let Some(Packet::Publish(p)) = crate::decode(&mut buf, Some(V4), 1024).unwrap() else {
            panic!("not a PUBLISH")
        };
        assert_eq!(p.payload.as_ptr() as usize, start + 7);
    }
}
