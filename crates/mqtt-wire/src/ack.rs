//! PUBACK, PUBREC, PUBREL and PUBCOMP: the QoS 1 and QoS 2 exchanges (5.0 sections 3.4-3.7,
//! 3.1.1 sections 3.4-3.7). The four share one shape, so one macro declares them.
//!
//! Variable header: packet identifier; in 5.0 then a reason code and properties. The 5.0 short
//! forms: "The Reason Code and Property Length can be omitted if the Reason Code is 0x00
//! (Success) and there are no Properties" (Remaining Length 2), and "If the Remaining Length is
//! less than 4 there is no Property Length" (Remaining Length 3). The encoder uses the shortest
//! form that holds the value. PUBREL's fixed header flags are 0b0010 [MQTT-3.6.1-1].

use crate::codec::{Reader, Sink};
use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::PacketType;
use crate::properties::{write_properties, AckProperties};
use crate::reason::ReasonCode;
use crate::ProtocolVersion;

fn decode(
    mut r: Reader,
    version: ProtocolVersion,
    packet_type: PacketType,
) -> Result<(u16, ReasonCode, AckProperties), DecodeError> {
    let packet_id = r.packet_id()?;
    let mut reason = ReasonCode::Success;
    let mut properties = AckProperties::default();
    if version == ProtocolVersion::V5 && !r.is_empty() {
        let byte = r.u8()?;
        reason = ReasonCode::from_u8(byte)
            .filter(|c| c.allowed_in(packet_type))
            .ok_or(DecodeError::InvalidReasonCode {
                packet_type,
                code: byte,
            })?;
        if !r.is_empty() {
            properties = AckProperties::decode(&mut r, packet_type)?;
        }
    }
    r.finish()?;
    Ok((packet_id, reason, properties))
}

fn write<S: Sink>(
    s: &mut S,
    version: ProtocolVersion,
    packet_type: PacketType,
    packet_id: u16,
    reason: ReasonCode,
    properties: &AckProperties,
) {
    if packet_id == 0 {
        s.fail(EncodeError::InvalidPacketId);
    }
    s.u16(packet_id);
    if version != ProtocolVersion::V5 || (reason == ReasonCode::Success && properties.is_empty()) {
        return;
    }
    if !reason.allowed_in(packet_type) {
        s.fail(EncodeError::InvalidReasonCode {
            packet_type,
            code: reason,
        });
    }
    s.u8(reason.code());
    if !properties.is_empty() {
        write_properties(properties, s);
    }
}

macro_rules! ack_packet {
    ($(#[$doc:meta])* $name:ident, $packet_type:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            /// The packet identifier of the exchange (non-zero).
            pub packet_id: u16,
            /// The outcome (5.0; always Success when read from an older version, and not sent
            /// to one).
            pub reason: ReasonCode,
            /// Reason String and User Properties (5.0).
            pub properties: AckProperties,
        }

        impl $name {
            /// A successful one for `packet_id`, without properties.
            pub fn new(packet_id: u16) -> Self {
                $name {
                    packet_id,
                    reason: ReasonCode::Success,
                    properties: AckProperties::default(),
                }
            }

            pub(crate) fn decode(r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
                let (packet_id, reason, properties) = decode(r, version, $packet_type)?;
                Ok($name {
                    packet_id,
                    reason,
                    properties,
                })
            }

            pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
                write(
                    s,
                    version,
                    $packet_type,
                    self.packet_id,
                    self.reason,
                    &self.properties,
                );
            }
        }
    };
}

ack_packet!(
    /// PUBACK: the answer to a QoS 1 PUBLISH.
    PubAck,
    PacketType::PubAck
);
ack_packet!(
    /// PUBREC: the first answer to a QoS 2 PUBLISH. A reason of 0x80 or above ends the
    /// exchange (5.0).
    PubRec,
    PacketType::PubRec
);
ack_packet!(
    /// PUBREL: the answer to a PUBREC.
    PubRel,
    PacketType::PubRel
);
ack_packet!(
    /// PUBCOMP: the answer to a PUBREL, ending a QoS 2 exchange.
    PubComp,
    PacketType::PubComp
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{decode_one, encode_err, encode_v};
    use crate::Packet;

    const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
    const V5: ProtocolVersion = ProtocolVersion::V5;

    #[test]
    fn short_forms() {
        for (bytes, version) in [
            (&b"\x40\x02\x00\x07"[..], V4),
            (b"\x50\x02\x00\x07", V4),
            (b"\x62\x02\x00\x07", V4),
            (b"\x70\x02\x00\x07", V4),
            (b"\x40\x02\x00\x07", V5),
            (b"\x62\x02\x00\x07", V5),
        ] {
            let p = decode_one(bytes, Some(version)).unwrap();
            assert_eq!(encode_v(&p, version), bytes);
        }
        assert_eq!(
            decode_one(b"\x40\x02\x00\x07", Some(V5)).unwrap(),
            Packet::PubAck(PubAck::new(7))
        );
        // Reason code without property length (Remaining Length 3), and with an empty one:
        // both re-encode to the 3-byte form.
        for bytes in [&b"\x40\x03\x00\x07\x10"[..], b"\x40\x04\x00\x07\x10\x00"] {
            let p = decode_one(bytes, Some(V5)).unwrap();
            let mut expected = PubAck::new(7);
            expected.reason = ReasonCode::NoMatchingSubscribers;
            assert_eq!(p, Packet::PubAck(expected));
            assert_eq!(encode_v(&p, V5), b"\x40\x03\x00\x07\x10");
        }
    }

    #[test]
    fn pubrel_with_reason_and_reason_string() {
        let bytes = b"\x62\x08\x00\x01\x92\x04\x1f\x00\x01?";
        let Packet::PubRel(p) = decode_one(bytes, Some(V5)).unwrap() else {
            panic!("not a PUBREL")
        };
        assert_eq!(p.reason, ReasonCode::PacketIdentifierNotFound);
        assert_eq!(p.properties.reason_string.as_deref(), Some("?"));
        assert_eq!(encode_v(&Packet::PubRel(p.clone()), V5), bytes);
        // A 3.1.1 peer gets the identifier only.
        assert_eq!(encode_v(&Packet::PubRel(p), V4), b"\x62\x02\x00\x01");
    }

    #[test]
    fn invalid_acks() {
        // Packet identifier 0.
        assert_eq!(
            decode_one(b"\x40\x02\x00\x00", Some(V4)),
            Err(DecodeError::ZeroPacketId)
        );
        // 3.1.1 has no reason code: the byte is trailing garbage.
        assert_eq!(
            decode_one(b"\x40\x03\x00\x01\x00", Some(V4)),
            Err(DecodeError::TrailingBytes)
        );
        // 0x92 is a PUBREL/PUBCOMP code, not a PUBACK one.
        assert_eq!(
            decode_one(b"\x40\x03\x00\x01\x92", Some(V5)),
            Err(DecodeError::InvalidReasonCode {
                packet_type: PacketType::PubAck,
                code: 0x92
            })
        );
        // Too short.
        assert_eq!(
            decode_one(b"\x40\x01\x00", Some(V4)),
            Err(DecodeError::Truncated)
        );
        let mut p = PubComp::new(1);
        p.reason = ReasonCode::QuotaExceeded;
        assert!(matches!(
            encode_err(&Packet::PubComp(p), V5),
            EncodeError::InvalidReasonCode { .. }
        ));
        assert_eq!(
            encode_err(&Packet::PubAck(PubAck::new(0)), V4),
            EncodeError::InvalidPacketId
        );
    }
}
