//! SUBSCRIBE: a client asks for subscriptions (5.0 section 3.8, 3.1.1 section 3.8).
//!
//! Fixed header flags 0b0010 [MQTT-3.8.1-1]. Variable header: packet identifier and (5.0)
//! properties. Payload: at least one [MQTT-3.8.3-3] topic filter, each followed by a
//! Subscription Options byte: QoS in bits 0-1 (the only field before 5.0, whose other bits must
//! be 0 [MQTT-3-8.3-4]), then No Local, Retain As Published, Retain Handling (bits 4-5), and
//! two reserved bits that must be 0 [MQTT-3.8.3-5].

use crate::codec::{Reader, Sink};
use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::PacketType;
use crate::properties::{
    put_subscription_id, put_user_properties, read_properties, set_once, write_properties,
    Property, PropertyId as Id, WriteProperties,
};
use crate::topic::TopicFilter;
use crate::{ProtocolVersion, QoS};

/// A subscribe request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// The packet identifier the SUBACK will carry (non-zero).
    pub packet_id: u16,
    /// SUBSCRIBE properties (5.0).
    pub properties: SubscribeProperties,
    /// The filters, in order (the SUBACK answers in the same order [MQTT-3.8.4-6]).
    pub filters: Vec<(TopicFilter, SubscriptionOptions)>,
}

/// SUBSCRIBE properties (5.0 section 3.8.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeProperties {
    /// Identifier to attach to messages delivered for these subscriptions (1 to 268,435,455;
    /// at most once).
    pub subscription_identifier: Option<u32>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
}

/// How a subscription delivers (section 3.8.3.1). Before 5.0 only `qos` exists; the other
/// fields are read as their defaults and not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// The maximum QoS the subscriber wants messages at.
    pub qos: QoS,
    /// Do not deliver the client's own publications back to it. Not allowed on a shared
    /// subscription [MQTT-3.8.3-4].
    pub no_local: bool,
    /// Keep the RETAIN flag of forwarded messages instead of clearing it.
    pub retain_as_published: bool,
    /// When to send retained messages.
    pub retain_handling: RetainHandling,
}

/// When a new subscription gets the retained messages (section 3.8.3.1, Retain Handling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(u8)]
pub enum RetainHandling {
    /// 0: at subscribe time.
    #[default]
    SendAtSubscribe = 0,
    /// 1: at subscribe time, only if the subscription did not exist yet.
    SendIfNew = 1,
    /// 2: never.
    DoNotSend = 2,
}

const NO_LOCAL: u8 = 0x04;
const RETAIN_AS_PUBLISHED: u8 = 0x08;
const RETAIN_HANDLING_SHIFT: u8 = 4;

impl SubscriptionOptions {
    /// Options with this QoS and the defaults otherwise (the only kind 3.1.1 has).
    pub fn new(qos: QoS) -> Self {
        SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        }
    }

    fn decode(
        byte: u8,
        version: ProtocolVersion,
        filter: &TopicFilter,
    ) -> Result<Self, DecodeError> {
        if version != ProtocolVersion::V5 {
            // [MQTT-3-8.3-4] (3.1.1) reserved bits non-zero, or QoS 3: malformed.
            if byte & 0xfc != 0 {
                return Err(DecodeError::InvalidSubscriptionOptions);
            }
            return Ok(SubscriptionOptions::new(QoS::try_from(byte)?));
        }
        // [MQTT-3.8.3-5] The Server MUST treat a SUBSCRIBE packet as malformed if any of the
        // Reserved bits in the Payload are non-zero.
        if byte & 0xc0 != 0 {
            return Err(DecodeError::InvalidSubscriptionOptions);
        }
        let no_local = byte & NO_LOCAL != 0;
        // [MQTT-3.8.3-4] It is a Protocol Error to set No Local on a Shared Subscription.
        if no_local && filter.shared().is_some() {
            return Err(DecodeError::NoLocalOnSharedSubscription);
        }
        let retain_handling = match (byte >> RETAIN_HANDLING_SHIFT) & 0b11 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            // "It is a Protocol Error to send a Retain Handling value of 3."
            _ => return Err(DecodeError::InvalidRetainHandling),
        };
        Ok(SubscriptionOptions {
            qos: QoS::try_from(byte & 0b11)?,
            no_local,
            retain_as_published: byte & RETAIN_AS_PUBLISHED != 0,
            retain_handling,
        })
    }

    fn byte(&self, version: ProtocolVersion) -> u8 {
        let mut b = self.qos as u8;
        if version == ProtocolVersion::V5 {
            if self.no_local {
                b |= NO_LOCAL;
            }
            if self.retain_as_published {
                b |= RETAIN_AS_PUBLISHED;
            }
            b |= (self.retain_handling as u8) << RETAIN_HANDLING_SHIFT;
        }
        b
    }
}

impl Subscribe {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let properties = if version == ProtocolVersion::V5 {
            SubscribeProperties::decode(&mut r)?
        } else {
            SubscribeProperties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = TopicFilter::new(r.string()?).map_err(DecodeError::InvalidTopicFilter)?;
            let options = SubscriptionOptions::decode(r.u8()?, version, &filter)?;
            filters.push((filter, options));
        }
        // [MQTT-3.8.3-3] at least one topic filter.
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters(PacketType::Subscribe));
        }
        Ok(Subscribe {
            packet_id,
            properties,
            filters,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        if self.packet_id == 0 {
            s.fail(EncodeError::InvalidPacketId);
        }
        if self.filters.is_empty() {
            s.fail(EncodeError::NoTopicFilters(PacketType::Subscribe));
        }
        s.u16(self.packet_id);
        if version == ProtocolVersion::V5 {
            write_properties(&self.properties, s);
        }
        for (filter, options) in &self.filters {
            if version == ProtocolVersion::V5 && options.no_local && filter.shared().is_some() {
                s.fail(EncodeError::NoLocalOnSharedSubscription);
            }
            s.string(filter);
            s.u8(options.byte(version));
        }
    }
}

impl SubscribeProperties {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = SubscribeProperties::default();
        read_properties(r, |prop| match prop {
            Property::SubscriptionIdentifier(v) => set_once(
                &mut p.subscription_identifier,
                v,
                Id::SubscriptionIdentifier,
            ),
            Property::UserProperty(k, v) => {
                p.user_properties.push((k, v));
                Ok(())
            }
            other => Err(other.not_allowed(PacketType::Subscribe)),
        })?;
        Ok(p)
    }
}

impl WriteProperties for SubscribeProperties {
    fn write_items<S: Sink>(&self, s: &mut S) {
        if let Some(id) = self.subscription_identifier {
            put_subscription_id(s, id);
        }
        put_user_properties(s, &self.user_properties);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{decode_one, encode_err, encode_v};
    use crate::{Packet, TopicError};

    const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    fn filter(s: &str) -> TopicFilter {
        TopicFilter::new(s).unwrap()
    }

    #[test]
    fn subscribe_3_1_1() {
        // Two filters: "a/b" at QoS 1, "c/#" at QoS 2.
        let bytes = b"\x82\x0e\x00\x0a\x00\x03a/b\x01\x00\x03c/#\x02";
        let p = decode_one(bytes, Some(V4)).unwrap();
        assert_eq!(
            p,
            Packet::Subscribe(Subscribe {
                packet_id: 10,
                properties: SubscribeProperties::default(),
                filters: vec![
                    (filter("a/b"), SubscriptionOptions::new(QoS::AtLeastOnce)),
                    (filter("c/#"), SubscriptionOptions::new(QoS::ExactlyOnce)),
                ],
            })
        );
        assert_eq!(encode_v(&p, V4), bytes);
    }

    #[test]
    fn subscribe_5_with_options_and_identifier() {
        // Subscription Identifier 5; "$share/g/x" QoS 1 retain-as-published, handling 2.
        let bytes = b"\x82\x16\x00\x01\x02\x0b\x05\x00\x0a$share/g/x\x29\x00\x01y\x00";
        let Packet::Subscribe(p) = decode_one(bytes, Some(V5)).unwrap() else {
            panic!("not a SUBSCRIBE")
        };
        assert_eq!(p.properties.subscription_identifier, Some(5));
        let (f, o) = &p.filters[0];
        assert_eq!(f.shared().unwrap().group, "g");
        assert_eq!(o.qos, QoS::AtLeastOnce);
        assert!(o.retain_as_published && !o.no_local);
        assert_eq!(o.retain_handling, RetainHandling::DoNotSend);
        assert_eq!(encode_v(&Packet::Subscribe(p.clone()), V5), bytes);
        // For 3.1.1 only the QoS of the options survives.
        assert_eq!(
            encode_v(&Packet::Subscribe(p), V4),
            b"\x82\x13\x00\x01\x00\x0a$share/g/x\x01\x00\x01y\x00"
        );
    }

    #[test]
    fn invalid_subscribes() {
        // [MQTT-3.8.3-3] no filters.
        assert_eq!(
            decode_one(b"\x82\x02\x00\x01", Some(V4)),
            Err(DecodeError::NoTopicFilters(PacketType::Subscribe))
        );
        // 3.1.1 reserved bits in the QoS byte, QoS 3.
        assert_eq!(
            decode_one(b"\x82\x06\x00\x01\x00\x01a\x04", Some(V4)),
            Err(DecodeError::InvalidSubscriptionOptions)
        );
        assert_eq!(
            decode_one(b"\x82\x06\x00\x01\x00\x01a\x03", Some(V4)),
            Err(DecodeError::InvalidQoS)
        );
        // 5.0 reserved bits, retain handling 3, no local on a shared subscription.
        assert_eq!(
            decode_one(b"\x82\x07\x00\x01\x00\x00\x01a\x40", Some(V5)),
            Err(DecodeError::InvalidSubscriptionOptions)
        );
        assert_eq!(
            decode_one(b"\x82\x07\x00\x01\x00\x00\x01a\x30", Some(V5)),
            Err(DecodeError::InvalidRetainHandling)
        );
        assert_eq!(
            decode_one(b"\x82\x10\x00\x01\x00\x00\x0a$share/g/a\x04", Some(V5)),
            Err(DecodeError::NoLocalOnSharedSubscription)
        );
        // Invalid filter.
        assert_eq!(
            decode_one(b"\x82\x07\x00\x01\x00\x02a#\x00", Some(V4)),
            Err(DecodeError::InvalidTopicFilter(TopicError::InvalidWildcard))
        );
        // A filter without its options byte.
        assert_eq!(
            decode_one(b"\x82\x05\x00\x01\x00\x01a", Some(V4)),
            Err(DecodeError::Truncated)
        );
        // Subscription Identifier 0; twice.
        assert_eq!(
            decode_one(b"\x82\x09\x00\x01\x02\x0b\x00\x00\x01a\x00", Some(V5)),
            Err(DecodeError::InvalidPropertyValue(
                Id::SubscriptionIdentifier
            ))
        );
        assert_eq!(
            decode_one(
                b"\x82\x0b\x00\x01\x04\x0b\x01\x0b\x02\x00\x01a\x00",
                Some(V5)
            ),
            Err(DecodeError::DuplicateProperty(Id::SubscriptionIdentifier))
        );
    }

    #[test]
    fn encoder_refuses_empty_and_zero() {
        let s = Subscribe {
            packet_id: 1,
            properties: SubscribeProperties::default(),
            filters: vec![],
        };
        assert_eq!(
            encode_err(&Packet::Subscribe(s), V4),
            EncodeError::NoTopicFilters(PacketType::Subscribe)
        );
        let s = Subscribe {
            packet_id: 1,
            properties: SubscribeProperties {
                subscription_identifier: Some(0),
                user_properties: vec![],
            },
            filters: vec![(filter("a"), SubscriptionOptions::default())],
        };
        assert_eq!(
            encode_err(&Packet::Subscribe(s), V5),
            EncodeError::InvalidPropertyValue(Id::SubscriptionIdentifier)
        );
    }
}
