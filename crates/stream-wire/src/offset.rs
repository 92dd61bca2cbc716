//! Offset specifications: where a subscription starts (`Subscribe`), what a consumer-update
//! response resumes from, what `ResolveOffsetSpec` resolves.
//!
//! PROTOCOL.adoc: `OffsetType => uint16 // 1 (first), 2 (last), 3 (next), 4 (offset),
//! 5 (timestamp)`, followed by `uint64` for an offset and `int64` for a timestamp (Erlang
//! system time, milliseconds since the epoch) and nothing for the others. `ConsumerUpdate`'s
//! response also allows 0 (none).

use bytes::{BufMut, BytesMut};

use crate::error::WireError;
use crate::types::Cursor;

/// Offset type 0: no offset (only in a `ConsumerUpdate` response).
pub const OFFSET_TYPE_NONE: u16 = 0;
/// Offset type 1: the first offset in the stream.
pub const OFFSET_TYPE_FIRST: u16 = 1;
/// Offset type 2: the last chunk of the stream.
pub const OFFSET_TYPE_LAST: u16 = 2;
/// Offset type 3: the next offset to be written.
pub const OFFSET_TYPE_NEXT: u16 = 3;
/// Offset type 4: an absolute offset (uint64).
pub const OFFSET_TYPE_OFFSET: u16 = 4;
/// Offset type 5: a timestamp (int64, milliseconds since the epoch).
pub const OFFSET_TYPE_TIMESTAMP: u16 = 5;

/// Where to start reading a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetSpec {
    /// The first offset still in the stream.
    First,
    /// The beginning of the last chunk (osiris `last`).
    Last,
    /// The next offset to be written: only new messages.
    Next,
    /// An absolute offset.
    Offset(u64),
    /// The first chunk at or after this time, in milliseconds since the Unix epoch.
    Timestamp(i64),
}

impl OffsetSpec {
    /// The offset type number.
    pub fn type_code(self) -> u16 {
        match self {
            OffsetSpec::First => OFFSET_TYPE_FIRST,
            OffsetSpec::Last => OFFSET_TYPE_LAST,
            OffsetSpec::Next => OFFSET_TYPE_NEXT,
            OffsetSpec::Offset(_) => OFFSET_TYPE_OFFSET,
            OffsetSpec::Timestamp(_) => OFFSET_TYPE_TIMESTAMP,
        }
    }

    pub(crate) fn decode(c: &mut Cursor) -> Result<Self, WireError> {
        let t = c.u16()?;
        Self::decode_typed(t, c)
    }

    /// Like `decode`, but also accepts type 0 as `None`.
    pub(crate) fn decode_optional(c: &mut Cursor) -> Result<Option<Self>, WireError> {
        match c.u16()? {
            OFFSET_TYPE_NONE => Ok(None),
            t => Self::decode_typed(t, c).map(Some),
        }
    }

    fn decode_typed(t: u16, c: &mut Cursor) -> Result<Self, WireError> {
        Ok(match t {
            OFFSET_TYPE_FIRST => OffsetSpec::First,
            OFFSET_TYPE_LAST => OffsetSpec::Last,
            OFFSET_TYPE_NEXT => OffsetSpec::Next,
            OFFSET_TYPE_OFFSET => OffsetSpec::Offset(c.u64()?),
            OFFSET_TYPE_TIMESTAMP => OffsetSpec::Timestamp(c.i64()?),
            other => return Err(WireError::InvalidOffsetType(other)),
        })
    }

    pub(crate) fn encode(self, out: &mut BytesMut) {
        out.put_u16(self.type_code());
        match self {
            OffsetSpec::Offset(o) => out.put_u64(o),
            OffsetSpec::Timestamp(t) => out.put_i64(t),
            OffsetSpec::First | OffsetSpec::Last | OffsetSpec::Next => {}
        }
    }

    pub(crate) fn encode_optional(spec: Option<Self>, out: &mut BytesMut) {
        match spec {
            Some(spec) => spec.encode(out),
            None => out.put_u16(OFFSET_TYPE_NONE),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn round_trip(spec: OffsetSpec) -> Vec<u8> {
        let mut out = BytesMut::new();
        spec.encode(&mut out);
        let bytes = out.freeze();
        let mut c = Cursor::new(bytes.clone());
        assert_eq!(OffsetSpec::decode(&mut c).unwrap(), spec);
        c.finish().unwrap();
        bytes.to_vec()
    }

    #[test]
    fn wire_forms() {
        assert_eq!(round_trip(OffsetSpec::First), [0, 1]);
        assert_eq!(round_trip(OffsetSpec::Last), [0, 2]);
        assert_eq!(round_trip(OffsetSpec::Next), [0, 3]);
        assert_eq!(
            round_trip(OffsetSpec::Offset(258)),
            [0, 4, 0, 0, 0, 0, 0, 0, 1, 2]
        );
        assert_eq!(
            round_trip(OffsetSpec::Timestamp(-1)),
            [0, 5, 255, 255, 255, 255, 255, 255, 255, 255]
        );
    }

    #[test]
    fn none_only_where_allowed() {
        let mut c = Cursor::new(Bytes::from_static(&[0, 0]));
        assert_eq!(OffsetSpec::decode_optional(&mut c), Ok(None));
        let mut c = Cursor::new(Bytes::from_static(&[0, 0]));
        assert_eq!(
            OffsetSpec::decode(&mut c),
            Err(WireError::InvalidOffsetType(0))
        );
        let mut c = Cursor::new(Bytes::from_static(&[0, 6]));
        assert_eq!(
            OffsetSpec::decode(&mut c),
            Err(WireError::InvalidOffsetType(6))
        );
        let mut c = Cursor::new(Bytes::from_static(&[0, 4, 0, 0]));
        assert_eq!(OffsetSpec::decode(&mut c), Err(WireError::Truncated));
    }
}
