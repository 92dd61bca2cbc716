//! UNSUBACK: the server's answer to UNSUBSCRIBE (5.0 section 3.11, 3.1.1 section 3.11).
//!
//! Variable header: packet identifier; in 5.0 then properties and a payload of one reason code
//! per topic filter. MQTT 3.1.1's UNSUBACK is the packet identifier alone.

use crate::codec::{Reader, Sink};
use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::PacketType;
use crate::properties::{write_properties, AckProperties};
use crate::reason::ReasonCode;
use crate::ProtocolVersion;

/// An unsubscribe acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsubAck {
    /// The UNSUBSCRIBE's packet identifier.
    pub packet_id: u16,
    /// Reason String and User Properties (5.0).
    pub properties: AckProperties,
    /// One per filter, in order (5.0; empty when read from 3.1.1 and not sent to it).
    pub reasons: Vec<ReasonCode>,
}

impl UnsubAck {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let mut properties = AckProperties::default();
        let mut reasons = Vec::new();
        if version == ProtocolVersion::V5 {
            properties = AckProperties::decode(&mut r, PacketType::UnsubAck)?;
            reasons.reserve(r.remaining());
            while !r.is_empty() {
                let byte = r.u8()?;
                let code = ReasonCode::from_u8(byte)
                    .filter(|c| c.allowed_in(PacketType::UnsubAck))
                    .ok_or(DecodeError::InvalidReasonCode {
                        packet_type: PacketType::UnsubAck,
                        code: byte,
                    })?;
                reasons.push(code);
            }
        }
        r.finish()?;
        Ok(UnsubAck {
            packet_id,
            properties,
            reasons,
        })
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        if self.packet_id == 0 {
            s.fail(EncodeError::InvalidPacketId);
        }
        s.u16(self.packet_id);
        if version != ProtocolVersion::V5 {
            return;
        }
        write_properties(&self.properties, s);
        for &code in &self.reasons {
            if !code.allowed_in(PacketType::UnsubAck) {
                s.fail(EncodeError::InvalidReasonCode {
                    packet_type: PacketType::UnsubAck,
                    code,
                });
            }
            s.u8(code.code());
        }
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
    fn unsuback_in_both_versions() {
        let bytes = b"\xb0\x05\x00\x03\x00\x00\x11";
        let p = decode_one(bytes, Some(V5)).unwrap();
        let Packet::UnsubAck(u) = &p else {
            panic!("not an UNSUBACK")
        };
        assert_eq!(
            u.reasons,
            [ReasonCode::Success, ReasonCode::NoSubscriptionExisted]
        );
        assert_eq!(encode_v(&p, V5), bytes);
        assert_eq!(encode_v(&p, V4), b"\xb0\x02\x00\x03");
        assert_eq!(
            decode_one(b"\xb0\x02\x00\x03", Some(V4)).unwrap(),
            Packet::UnsubAck(UnsubAck {
                packet_id: 3,
                properties: AckProperties::default(),
                reasons: vec![],
            })
        );
        assert_eq!(
            decode_one(b"\xb0\x03\x00\x03\x00", Some(V4)),
            Err(DecodeError::TrailingBytes)
        );
        // Granted QoS 1 is a SUBACK code.
        assert!(decode_one(b"\xb0\x04\x00\x03\x00\x01", Some(V5)).is_err());
    }
}
