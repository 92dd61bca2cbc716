//! AUTH: an extended authentication exchange step, 5.0 only (section 3.15).
//!
//! Variable header: reason code (Success, Continue authentication, Re-authenticate
//! [MQTT-3.15.2-1]) and properties; both omitted when the reason is Success and there are no
//! properties (Remaining Length 0). The encoder always writes the Property Length after a reason
//! code (the spec gives AUTH no 1-byte form); the decoder also accepts a lone reason code.
//! The rules about the exchange (the Authentication Method must match CONNECT's) are the
//! server's.

use bytes::Bytes;

use crate::codec::{Reader, Sink};
use crate::error::{DecodeError, EncodeError};
use crate::fixed_header::PacketType;
use crate::properties::{
    put_binary, put_str, put_user_properties, read_properties, set_once, write_properties,
    Property, PropertyId as Id, WriteProperties,
};
use crate::reason::ReasonCode;
use crate::ProtocolVersion;

/// An authentication exchange step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Auth {
    /// Success, ContinueAuthentication or ReAuthenticate.
    pub reason: ReasonCode,
    /// AUTH properties.
    pub properties: AuthProperties,
}

/// AUTH properties (section 3.15.2.2).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthProperties {
    /// The authentication method (the same as in CONNECT).
    pub authentication_method: Option<String>,
    /// Method-specific data.
    pub authentication_data: Option<Bytes>,
    /// Human readable diagnostics.
    pub reason_string: Option<String>,
    /// User properties, in order.
    pub user_properties: Vec<(String, String)>,
}

impl Auth {
    pub(crate) fn decode(mut r: Reader) -> Result<Self, DecodeError> {
        let mut a = Auth::default();
        if !r.is_empty() {
            let byte = r.u8()?;
            a.reason = ReasonCode::from_u8(byte)
                .filter(|c| c.allowed_in(PacketType::Auth))
                .ok_or(DecodeError::InvalidReasonCode {
                    packet_type: PacketType::Auth,
                    code: byte,
                })?;
            if !r.is_empty() {
                a.properties = AuthProperties::decode(&mut r)?;
            }
        }
        r.finish()?;
        Ok(a)
    }

    pub(crate) fn write<S: Sink>(&self, version: ProtocolVersion, s: &mut S) {
        if version != ProtocolVersion::V5 {
            return s.fail(EncodeError::NotInVersion {
                packet_type: PacketType::Auth,
                version,
            });
        }
        if self.reason == ReasonCode::Success && self.properties == AuthProperties::default() {
            return;
        }
        if !self.reason.allowed_in(PacketType::Auth) {
            s.fail(EncodeError::InvalidReasonCode {
                packet_type: PacketType::Auth,
                code: self.reason,
            });
        }
        s.u8(self.reason.code());
        write_properties(&self.properties, s);
    }
}

impl AuthProperties {
    fn decode(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut p = AuthProperties::default();
        read_properties(r, |prop| match prop {
            Property::AuthenticationMethod(v) => {
                set_once(&mut p.authentication_method, v, Id::AuthenticationMethod)
            }
            Property::AuthenticationData(v) => {
                set_once(&mut p.authentication_data, v, Id::AuthenticationData)
            }
            Property::ReasonString(v) => set_once(&mut p.reason_string, v, Id::ReasonString),
            Property::UserProperty(k, v) => {
                p.user_properties.push((k, v));
                Ok(())
            }
            other => Err(other.not_allowed(PacketType::Auth)),
        })?;
        Ok(p)
    }
}

impl WriteProperties for AuthProperties {
    fn write_items<S: Sink>(&self, s: &mut S) {
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
        put_str(s, Id::ReasonString, self.reason_string.as_deref());
        put_user_properties(s, &self.user_properties);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests::{decode_one, encode_err, encode_v};
    use crate::Packet;

    const V5: ProtocolVersion = ProtocolVersion::V5;

    #[test]
    fn continue_authentication() {
        // Continue, method "SCRAM", data "abc".
        let bytes = b"\xf0\x10\x18\x0e\x15\x00\x05SCRAM\x16\x00\x03abc";
        let Packet::Auth(a) = decode_one(bytes, Some(V5)).unwrap() else {
            panic!("not an AUTH")
        };
        assert_eq!(a.reason, ReasonCode::ContinueAuthentication);
        assert_eq!(a.properties.authentication_method.as_deref(), Some("SCRAM"));
        assert_eq!(
            a.properties.authentication_data.as_deref(),
            Some(&b"abc"[..])
        );
        assert_eq!(encode_v(&Packet::Auth(a), V5), bytes);
    }

    #[test]
    fn short_forms_and_errors() {
        assert_eq!(
            decode_one(b"\xf0\x00", Some(V5)).unwrap(),
            Packet::Auth(Auth::default())
        );
        assert_eq!(encode_v(&Packet::Auth(Auth::default()), V5), b"\xf0\x00");
        let p = decode_one(b"\xf0\x01\x19", Some(V5)).unwrap();
        assert_eq!(encode_v(&p, V5), b"\xf0\x02\x19\x00");
        assert!(decode_one(b"\xf0\x01\x87", Some(V5)).is_err());
        assert!(matches!(
            encode_err(&Packet::Auth(Auth::default()), ProtocolVersion::V3_1_1),
            EncodeError::NotInVersion { .. }
        ));
    }
}
