//! UNSUBSCRIBE: a client drops subscriptions (5.0 section 3.10, 3.1.1 section 3.10).
//!
//! Fixed header flags 0b0010 [MQTT-3.10.1-1]. Variable header: packet identifier and (5.0)
//! properties (User Properties only). Payload: at least one topic filter [MQTT-3.10.3-2].

use crate::codec::{Reader, Sink};
use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::PacketType;
use crate::properties::{
    put_user_properties, read_properties, write_properties, Property, WriteProperties,
};
use crate::topic::TopicFilter;
use crate::ProtocolVersion;

/// An unsubscribe request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// The packet identifier the UNSUBACK will carry (non-zero).
    pub packet_id: u16,
    /// UNSUBSCRIBE properties (5.0).
    pub properties: UnsubscribeProperties,
    /// The filters to remove, compared character by character with existing subscriptions
    /// [MQTT-3.10.4-1].
    pub filters: Vec<TopicFilter>,
}

/// UNSUBSCRIBE properties (5.0 section 3.10.2.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnsubscribeProperties {
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
}

impl Unsubscribe {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let mut properties = UnsubscribeProperties::default();
        if version == ProtocolVersion::V5 {
            read_properties(&mut r, |prop| match prop {
                Property::UserProperty(k, v) => {
                    properties.user_properties.push((k, v));
                    Ok(())
                }
                other => Err(other.not_allowed(PacketType::Unsubscribe)),
            })?;
        }
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(TopicFilter::new(r.string()?).map_err(DecodeError::InvalidTopicFilter)?);
        }
        // [MQTT-3.10.3-2] at least one topic filter.
        if filters.is_empty() {
            return Err(DecodeError::NoTopicFilters(PacketType::Unsubscribe));
        }
        Ok(Unsubscribe {
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
            s.fail(EncodeError::NoTopicFilters(PacketType::Unsubscribe));
        }
        s.u16(self.packet_id);
        if version == ProtocolVersion::V5 {
            write_properties(&self.properties, s);
        }
        for filter in &self.filters {
            s.string(filter);
        }
    }
}

impl WriteProperties for UnsubscribeProperties {
    fn write_items<S: Sink>(&self, s: &mut S) {
        put_user_properties(s, &self.user_properties);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{decode_one, encode_v};
    use crate::Packet;

    const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    #[test]
    fn unsubscribe_3_1_1_and_5() {
        let bytes = b"\xa2\x0b\x00\x03\x00\x01a\x00\x04b/+/";
        let p = decode_one(bytes, Some(V4)).unwrap();
        let Packet::Unsubscribe(u) = &p else {
            panic!("not an UNSUBSCRIBE")
        };
        assert_eq!(u.packet_id, 3);
        assert_eq!(
            u.filters,
            [
                TopicFilter::new("a").unwrap(),
                TopicFilter::new("b/+/").unwrap()
            ]
        );
        assert_eq!(encode_v(&p, V4), bytes);
        assert_eq!(
            encode_v(&p, V5),
            b"\xa2\x0c\x00\x03\x00\x00\x01a\x00\x04b/+/"
        );
    }

    #[test]
    fn invalid_unsubscribes() {
        assert_eq!(
            decode_one(b"\xa2\x02\x00\x03", Some(V4)),
            Err(DecodeError::NoTopicFilters(PacketType::Unsubscribe))
        );
        assert_eq!(
            decode_one(b"\xa2\x03\x00\x03\x00", Some(V5)),
            Err(DecodeError::NoTopicFilters(PacketType::Unsubscribe))
        );
        // Reason String is not an UNSUBSCRIBE property.
        assert!(matches!(
            decode_one(b"\xa2\x0a\x00\x03\x04\x1f\x00\x01x\x00\x01a", Some(V5)),
            Err(DecodeError::PropertyNotAllowed { .. })
        ));
    }
}
