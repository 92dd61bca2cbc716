//! PINGREQ and PINGRESP: keep alive (5.0 sections 3.12-3.13, 3.1.1 sections 3.12-3.13). No
//! variable header, no payload: Remaining Length 0.

use crate::codec::Reader;
use crate::error::DecodeError;

/// Checks that a PINGREQ or PINGRESP is empty.
pub(crate) fn decode(r: Reader) -> Result<(), DecodeError> {
    r.finish()
}

#[cfg(test)]
mod tests {
    use crate::tests::{decode_one, encode_v};
    use crate::{DecodeError, Packet, ProtocolVersion};

    #[test]
    fn pings_are_two_bytes() {
        for v in [
            ProtocolVersion::V3_1,
            ProtocolVersion::V3_1_1,
            ProtocolVersion::V5,
        ] {
            assert_eq!(decode_one(b"\xc0\x00", Some(v)).unwrap(), Packet::PingReq);
            assert_eq!(decode_one(b"\xd0\x00", Some(v)).unwrap(), Packet::PingResp);
            assert_eq!(encode_v(&Packet::PingReq, v), b"\xc0\x00");
            assert_eq!(encode_v(&Packet::PingResp, v), b"\xd0\x00");
        }
        assert_eq!(
            decode_one(b"\xc0\x01\x00", Some(ProtocolVersion::V3_1_1)),
            Err(DecodeError::TrailingBytes)
        );
    }
}
