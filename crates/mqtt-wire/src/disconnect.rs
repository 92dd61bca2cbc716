//! DISCONNECT: the end of a connection (5.0 section 3.14, 3.1.1 section 3.14).
//!
//! MQTT 3.1.1: client to server only, Remaining Length 0. MQTT 5.0: either way, with a reason
//! code and properties, both omitted when the reason is Normal disconnection and there are no
//! properties (Remaining Length 0), and the Property Length omitted when there are no
//! properties ("If the Remaining Length is less than 2, a value of 0 is used").

use crate::codec::{Reader, Sink};
use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::PacketType;
use crate::properties::{
    put_str, put_u32, put_user_properties, read_properties, set_once, write_properties, Property,
    PropertyId as Id, WriteProperties,
};
use crate::reason::ReasonCode;
use crate::ProtocolVersion;

/// A disconnect notification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Disconnect {
    /// Why (5.0). [`ReasonCode::NORMAL_DISCONNECTION`] when read from 3.1.1; not sent to it.
    pub reason: ReasonCode,
    /// DISCONNECT properties (5.0).
    pub properties: DisconnectProperties,
}

/// DISCONNECT properties (5.0 section 3.14.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisconnectProperties {
    /// A new session expiry. Client only [MQTT-3.14.2-2], and a Protocol Error if the
    /// CONNECT's was 0 and this is not: the server checks, it knows the CONNECT.
    pub session_expiry_interval: Option<u32>,
    /// Human readable diagnostics.
    pub reason_string: Option<String>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
    /// Another server to use (with reason 0x9C or 0x9D).
    pub server_reference: Option<String>,
}

impl DisconnectProperties {
    /// True if there is nothing to send.
    pub fn is_empty(&self) -> bool {
        *self == DisconnectProperties::default()
    }
}

impl Disconnect {
    /// A DISCONNECT with `reason` and no properties.
    pub fn new(reason: ReasonCode) -> Self {
        Disconnect {
            reason,
            properties: DisconnectProperties::default(),
        }
    }

    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let mut d = Disconnect::default();
        if version == ProtocolVersion::V5 && !r.is_empty() {
            let byte = r.u8()?;
            d.reason = ReasonCode::from_u8(byte)
                .filter(|c| c.allowed_in(PacketType::Disconnect))
                .ok_or(DecodeError::InvalidReasonCode {
                    packet_type: PacketType::Disconnect,
                    code: byte,
                })?;
            if !r.is_empty() {
                d.properties = DisconnectProperties::decode(&mut r)?;
            }
        }
        r.finish()?;
        Ok(d)
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        let props_empty = self.properties.is_empty();
        if version != ProtocolVersion::V5 || (self.reason == ReasonCode::Success && props_empty) {
            return;
        }
        if !self.reason.allowed_in(PacketType::Disconnect) {
            s.fail(EncodeError::InvalidReasonCode {
                packet_type: PacketType::Disconnect,
                code: self.reason,
            });
        }
        s.u8(self.reason.code());
        if !props_empty {
            write_properties(&self.properties, s);
        }
    }
}

impl DisconnectProperties {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = DisconnectProperties::default();
        read_properties(r, |prop| match prop {
            Property::SessionExpiryInterval(v) => {
                set_once(&mut p.session_expiry_interval, v, Id::SessionExpiryInterval)
            }
            Property::ReasonString(v) => set_once(&mut p.reason_string, v, Id::ReasonString),
            Property::UserProperty(k, v) => {
                p.user_properties.push((k, v));
                Ok(())
            }
            Property::ServerReference(v) => {
                set_once(&mut p.server_reference, v, Id::ServerReference)
            }
            other => Err(other.not_allowed(PacketType::Disconnect)),
        })?;
        Ok(p)
    }
}

impl WriteProperties for DisconnectProperties {
    fn write_items<S: Sink>(&self, s: &mut S) {
        put_u32(s, Id::SessionExpiryInterval, self.session_expiry_interval);
        put_str(s, Id::ReasonString, self.reason_string.as_deref());
        put_user_properties(s, &self.user_properties);
        put_str(s, Id::ServerReference, self.server_reference.as_deref());
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
    fn normal_disconnect_is_two_bytes_everywhere() {
        for v in [ProtocolVersion::V3_1, V4, V5] {
            let p = decode_one(b"\xe0\x00", Some(v)).unwrap();
            assert_eq!(p, Packet::Disconnect(Disconnect::default()));
            assert_eq!(encode_v(&p, v), b"\xe0\x00");
        }
    }

    #[test]
    fn reason_and_properties_in_5() {
        // Reason only.
        let p = decode_one(b"\xe0\x01\x8e", Some(V5)).unwrap();
        assert_eq!(
            p,
            Packet::Disconnect(Disconnect::new(ReasonCode::SessionTakenOver))
        );
        assert_eq!(encode_v(&p, V5), b"\xe0\x01\x8e");
        // Dropped for 3.1.1.
        assert_eq!(encode_v(&p, V4), b"\xe0\x00");
        // Session Expiry Interval 0 with Normal disconnection.
        let bytes = b"\xe0\x07\x00\x05\x11\x00\x00\x00\x00";
        let Packet::Disconnect(d) = decode_one(bytes, Some(V5)).unwrap() else {
            panic!("not a DISCONNECT")
        };
        assert_eq!(d.properties.session_expiry_interval, Some(0));
        assert_eq!(encode_v(&Packet::Disconnect(d), V5), bytes);
    }

    #[test]
    fn invalid_disconnects() {
        assert_eq!(
            decode_one(b"\xe0\x01\x00", Some(V4)),
            Err(DecodeError::TrailingBytes)
        );
        assert_eq!(
            decode_one(b"\xe0\x01\x01", Some(V5)),
            Err(DecodeError::InvalidReasonCode {
                packet_type: PacketType::Disconnect,
                code: 1
            })
        );
        assert!(matches!(
            decode_one(b"\xe0\x05\x00\x03\x23\x00\x01", Some(V5)),
            Err(DecodeError::PropertyNotAllowed { .. })
        ));
    }
}
