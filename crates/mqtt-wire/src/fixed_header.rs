//! The fixed header every packet starts with: a byte holding the packet type (high nibble) and
//! flags (low nibble), then the Remaining Length, a Variable Byte Integer counting the bytes
//! after it (MQTT 5.0 section 2.1, 3.1.1 section 2.2).
//!
//! Only PUBLISH uses its flags (DUP, QoS, RETAIN); every other packet has fixed "reserved"
//! values that a receiver must check [MQTT-2.1.3-1]: 0b0010 for PUBREL, SUBSCRIBE and
//! UNSUBSCRIBE, 0 for the rest. MQTT 3.1 defined those bits as DUP/QoS on every packet, and its
//! clients set DUP when they resend a SUBSCRIBE or PUBREL, so for 3.1 the flags of packets other
//! than PUBLISH and CONNECT are not checked (as Mosquitto does).

use std::fmt;

use crate::codec::{read_var_int, var_int_len};
use crate::error::DecodeError;
use crate::{ProtocolVersion, QoS};

/// The control packet types (MQTT 5.0 table 2-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    /// Client to server: connection request.
    Connect = 1,
    /// Server to client: connect acknowledgement.
    ConnAck = 2,
    /// Either way: publish message.
    Publish = 3,
    /// Either way: publish acknowledgement (QoS 1).
    PubAck = 4,
    /// Either way: publish received (QoS 2, part 1).
    PubRec = 5,
    /// Either way: publish release (QoS 2, part 2).
    PubRel = 6,
    /// Either way: publish complete (QoS 2, part 3).
    PubComp = 7,
    /// Client to server: subscribe request.
    Subscribe = 8,
    /// Server to client: subscribe acknowledgement.
    SubAck = 9,
    /// Client to server: unsubscribe request.
    Unsubscribe = 10,
    /// Server to client: unsubscribe acknowledgement.
    UnsubAck = 11,
    /// Client to server: ping request.
    PingReq = 12,
    /// Server to client: ping response.
    PingResp = 13,
    /// Either way (client to server only before 5.0): disconnect notification.
    Disconnect = 14,
    /// Either way, 5.0 only: authentication exchange.
    Auth = 15,
}

impl PacketType {
    /// The packet type for a type nibble, or `None` for 0 (reserved) and anything above 15.
    pub fn from_nibble(n: u8) -> Option<PacketType> {
        use PacketType::*;
        Some(match n {
            1 => Connect,
            2 => ConnAck,
            3 => Publish,
            4 => PubAck,
            5 => PubRec,
            6 => PubRel,
            7 => PubComp,
            8 => Subscribe,
            9 => SubAck,
            10 => Unsubscribe,
            11 => UnsubAck,
            12 => PingReq,
            13 => PingResp,
            14 => Disconnect,
            15 => Auth,
            _ => return None,
        })
    }

    /// The flags nibble this packet type must carry, or `None` for PUBLISH (whose flags mean
    /// something). [MQTT-2.1.3-1], [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1].
    pub fn reserved_flags(self) -> Option<u8> {
        match self {
            PacketType::Publish => None,
            PacketType::PubRel | PacketType::Subscribe | PacketType::Unsubscribe => Some(0b0010),
            _ => Some(0),
        }
    }
}

impl fmt::Display for PacketType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            PacketType::Connect => "CONNECT",
            PacketType::ConnAck => "CONNACK",
            PacketType::Publish => "PUBLISH",
            PacketType::PubAck => "PUBACK",
            PacketType::PubRec => "PUBREC",
            PacketType::PubRel => "PUBREL",
            PacketType::PubComp => "PUBCOMP",
            PacketType::Subscribe => "SUBSCRIBE",
            PacketType::SubAck => "SUBACK",
            PacketType::Unsubscribe => "UNSUBSCRIBE",
            PacketType::UnsubAck => "UNSUBACK",
            PacketType::PingReq => "PINGREQ",
            PacketType::PingResp => "PINGRESP",
            PacketType::Disconnect => "DISCONNECT",
            PacketType::Auth => "AUTH",
        };
        f.write_str(name)
    }
}

/// The PUBLISH flags: DUP (bit 3), QoS (bits 2-1), RETAIN (bit 0) [MQTT-3.3.1].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PublishFlags {
    pub(crate) dup: bool,
    pub(crate) qos: QoS,
    pub(crate) retain: bool,
}

impl PublishFlags {
    pub(crate) fn parse(flags: u8) -> Result<Self, DecodeError> {
        // QoS 3 is malformed [MQTT-3.3.1-4].
        let qos = QoS::try_from((flags >> 1) & 0b11).map_err(|_| DecodeError::InvalidQoS)?;
        let dup = flags & 0b1000 != 0;
        // [MQTT-3.3.1-2] The DUP flag MUST be set to 0 for all QoS 0 messages.
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupWithQoS0);
        }
        Ok(PublishFlags {
            dup,
            qos,
            retain: flags & 1 != 0,
        })
    }

    pub(crate) fn bits(self) -> u8 {
        (u8::from(self.dup) << 3) | ((self.qos as u8) << 1) | u8::from(self.retain)
    }
}

/// A parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedHeader {
    pub(crate) packet_type: PacketType,
    /// The low nibble of the first byte.
    pub(crate) flags: u8,
    /// Bytes of the header itself (1 + the Remaining Length's own length).
    pub(crate) header_len: usize,
    /// The Remaining Length.
    pub(crate) remaining_len: usize,
}

impl FixedHeader {
    /// The size of the whole packet.
    pub(crate) fn packet_len(&self) -> usize {
        self.header_len + self.remaining_len
    }

    /// Parses the fixed header at the front of `buf`, checking the packet type and its flags
    /// against what may arrive on a connection at `version` (`None`: CONNECT not yet received).
    /// `Ok(None)` when the header is not complete. Each check runs as soon as the byte it needs
    /// is in, so garbage is rejected at its first byte.
    pub(crate) fn parse(
        buf: &[u8],
        version: Option<ProtocolVersion>,
    ) -> Result<Option<FixedHeader>, DecodeError> {
        let Some((&first, rest)) = buf.split_first() else {
            return Ok(None);
        };
        let nibble = first >> 4;
        let flags = first & 0x0f;
        let packet_type =
            PacketType::from_nibble(nibble).ok_or(DecodeError::InvalidPacketType(nibble))?;
        match (version, packet_type) {
            // AUTH is reserved before 5.0 (3.1.1 table 2.1: "15 Reserved, Forbidden").
            (Some(v), PacketType::Auth) if v != ProtocolVersion::V5 => {
                return Err(DecodeError::InvalidPacketType(nibble))
            }
            // [MQTT-3.1.0-1] the first packet is CONNECT; [MQTT-3.1.0-2] and only the first.
            (None, t) if t != PacketType::Connect => return Err(DecodeError::UnexpectedPacket(t)),
            (Some(_), PacketType::Connect) => {
                return Err(DecodeError::UnexpectedPacket(PacketType::Connect))
            }
            _ => {}
        }
        match packet_type.reserved_flags() {
            None => {
                PublishFlags::parse(flags)?;
            }
            Some(_) if version == Some(ProtocolVersion::V3_1) => {}
            Some(expected) if flags != expected => {
                return Err(DecodeError::InvalidFlags { packet_type, flags })
            }
            Some(_) => {}
        }
        let Some((remaining_len, len_len)) = read_var_int(rest)? else {
            return Ok(None);
        };
        Ok(Some(FixedHeader {
            packet_type,
            flags,
            header_len: 1 + len_len,
            remaining_len: remaining_len as usize,
        }))
    }
}

/// Bytes of a fixed header announcing `remaining_len` bytes.
pub(crate) fn header_len(remaining_len: usize) -> usize {
    1 + var_int_len(remaining_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: Option<ProtocolVersion> = Some(ProtocolVersion::V3_1_1);

    #[test]
    fn reads_type_flags_and_length() {
        let h = FixedHeader::parse(&[0x3b, 0x80, 0x01], V4)
            .unwrap()
            .unwrap();
        assert_eq!(h.packet_type, PacketType::Publish);
        assert_eq!(h.flags, 0b1011);
        assert_eq!(h.header_len, 3);
        assert_eq!(h.remaining_len, 128);
        assert_eq!(h.packet_len(), 131);
    }

    #[test]
    fn incomplete_header_asks_for_more() {
        assert_eq!(FixedHeader::parse(&[], V4), Ok(None));
        assert_eq!(FixedHeader::parse(&[0x30], V4), Ok(None));
        assert_eq!(FixedHeader::parse(&[0x30, 0xff], V4), Ok(None));
    }

    #[test]
    fn reserved_type_zero_is_rejected_at_the_first_byte() {
        assert_eq!(
            FixedHeader::parse(&[0x00], V4),
            Err(DecodeError::InvalidPacketType(0))
        );
    }

    #[test]
    fn auth_is_reserved_before_5() {
        assert_eq!(
            FixedHeader::parse(&[0xf0, 0x00], V4),
            Err(DecodeError::InvalidPacketType(15))
        );
        assert!(FixedHeader::parse(&[0xf0, 0x00], Some(ProtocolVersion::V5)).is_ok());
    }

    #[test]
    fn only_connect_comes_first_and_only_once() {
        assert_eq!(
            FixedHeader::parse(&[0xc0], None),
            Err(DecodeError::UnexpectedPacket(PacketType::PingReq))
        );
        assert_eq!(FixedHeader::parse(&[0x10], None), Ok(None));
        assert_eq!(
            FixedHeader::parse(&[0x10], V4),
            Err(DecodeError::UnexpectedPacket(PacketType::Connect))
        );
    }

    #[test]
    fn subscribe_flags_must_be_0010() {
        // [MQTT-3.8.1-1]
        assert_eq!(
            FixedHeader::parse(&[0x80, 0x00], V4),
            Err(DecodeError::InvalidFlags {
                packet_type: PacketType::Subscribe,
                flags: 0
            })
        );
        assert!(FixedHeader::parse(&[0x82, 0x00], V4).is_ok());
        // PUBREL [MQTT-3.6.1-1], UNSUBSCRIBE [MQTT-3.10.1-1]
        assert!(FixedHeader::parse(&[0x60, 0x02], V4).is_err());
        assert!(FixedHeader::parse(&[0xa0, 0x02], V4).is_err());
        // Everything else 0.
        assert!(FixedHeader::parse(&[0xc1, 0x00], V4).is_err());
        assert!(FixedHeader::parse(&[0x42, 0x02], V4).is_err());
    }

    #[test]
    fn mqtt_3_1_flags_are_not_checked_except_publish() {
        let v3 = Some(ProtocolVersion::V3_1);
        // A 3.1 client resending SUBSCRIBE with DUP set.
        assert!(FixedHeader::parse(&[0x8a, 0x00], v3).is_ok());
        assert_eq!(
            FixedHeader::parse(&[0x36, 0x00], v3),
            Err(DecodeError::InvalidQoS)
        );
    }

    #[test]
    fn publish_flags() {
        assert_eq!(
            FixedHeader::parse(&[0x36], V4),
            Err(DecodeError::InvalidQoS)
        );
        assert_eq!(
            FixedHeader::parse(&[0x38], V4),
            Err(DecodeError::DupWithQoS0)
        );
        let f = PublishFlags::parse(0b1101).unwrap();
        assert_eq!(
            f,
            PublishFlags {
                dup: true,
                qos: QoS::ExactlyOnce,
                retain: true
            }
        );
        assert_eq!(f.bits(), 0b1101);
    }
}
