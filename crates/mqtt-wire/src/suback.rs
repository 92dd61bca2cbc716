//! SUBACK: the server's answer to SUBSCRIBE (5.0 section 3.9, 3.1.1 section 3.9).
//!
//! Variable header: packet identifier and (5.0) properties. Payload: one code per topic filter
//! of the SUBSCRIBE, in order [MQTT-3.8.4-6]. MQTT 3.1.1 has only the granted QoS (0, 1, 2) and
//! 0x80 Failure, which happens to be 5.0's Unspecified error: a 3.1.1 SUBACK decodes to
//! [`ReasonCode::granted`] codes and [`ReasonCode::UnspecifiedError`], and any 5.0 failure is
//! written as 0x80 for a 3.1.1 client. (MQTT 3.1 had no failure code at all; 0x80 is still the
//! best there is.)

use crate::codec::{Reader, Sink};
use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::PacketType;
use crate::properties::{write_properties, AckProperties};
use crate::reason::ReasonCode;
use crate::ProtocolVersion;

/// A subscribe acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// The SUBSCRIBE's packet identifier.
    pub packet_id: u16,
    /// Reason String and User Properties (5.0).
    pub properties: AckProperties,
    /// One per filter: [`ReasonCode::granted`] or a failure.
    pub reasons: Vec<ReasonCode>,
}

impl SubAck {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let packet_id = r.packet_id()?;
        let v5 = version == ProtocolVersion::V5;
        let properties = if v5 {
            AckProperties::decode(&mut r, PacketType::SubAck)?
        } else {
            AckProperties::default()
        };
        let mut reasons = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let byte = r.u8()?;
            let code = ReasonCode::from_u8(byte).filter(|c| match v5 {
                true => c.allowed_in(PacketType::SubAck),
                false => c.granted_qos().is_some() || *c == ReasonCode::UnspecifiedError,
            });
            reasons.push(code.ok_or(DecodeError::InvalidReasonCode {
                packet_type: PacketType::SubAck,
                code: byte,
            })?);
        }
        Ok(SubAck {
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
        let v5 = version == ProtocolVersion::V5;
        if v5 {
            write_properties(&self.properties, s);
        }
        for &code in &self.reasons {
            if !v5 {
                s.u8(code.granted_qos().map_or(0x80, |q| q as u8));
                continue;
            }
            if !code.allowed_in(PacketType::SubAck) {
                s.fail(EncodeError::InvalidReasonCode {
                    packet_type: PacketType::SubAck,
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
    use crate::{Packet, QoS};

    const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    #[test]
    fn suback_3_1_1() {
        let bytes = b"\x90\x06\x00\x0a\x00\x01\x02\x80";
        let p = decode_one(bytes, Some(V4)).unwrap();
        assert_eq!(
            p,
            Packet::SubAck(SubAck {
                packet_id: 10,
                properties: AckProperties::default(),
                reasons: vec![
                    ReasonCode::granted(QoS::AtMostOnce),
                    ReasonCode::GrantedQoS1,
                    ReasonCode::GrantedQoS2,
                    ReasonCode::UnspecifiedError,
                ],
            })
        );
        assert_eq!(encode_v(&p, V4), bytes);
        assert_eq!(
            decode_one(b"\x90\x03\x00\x0a\x87", Some(V4)),
            Err(DecodeError::InvalidReasonCode {
                packet_type: PacketType::SubAck,
                code: 0x87
            })
        );
    }

    #[test]
    fn suback_5_failures_map_to_0x80_for_3_1_1() {
        let bytes = b"\x90\x05\x00\x0a\x00\x01\x87";
        let p = decode_one(bytes, Some(V5)).unwrap();
        let Packet::SubAck(s) = &p else {
            panic!("not a SUBACK")
        };
        assert_eq!(
            s.reasons,
            [ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized]
        );
        assert_eq!(encode_v(&p, V5), bytes);
        assert_eq!(encode_v(&p, V4), b"\x90\x04\x00\x0a\x01\x80");
        // 0x92 is not a SUBACK code.
        assert!(decode_one(b"\x90\x04\x00\x0a\x00\x92", Some(V5)).is_err());
    }
}
