//! The content properties of the basic class: what a publisher says about a message besides its
//! body (content type, headers, delivery mode, expiration, ...).
//!
//! On the wire they follow the fixed part of a content header frame: a 16-bit property-flags word
//! whose bits, from bit 15 down, say which properties are present, then the present values in
//! order (AMQP 0-9-1 section 4.2.6.1). Bit 0 means "another flags word follows"; the basic class
//! has only 14 properties, so a following word must announce nothing.
//!
//! The server does not decode these on the hot path: [`crate::Frame::Header`] keeps them raw and
//! the broker forwards them as they came. This module is for when someone needs to look inside.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::WireError;
use crate::table::FieldTable;
use crate::types::{put_shortstr, shortstr_len, Cursor, ShortString};

const CONTENT_TYPE: u16 = 1 << 15;
const CONTENT_ENCODING: u16 = 1 << 14;
const HEADERS: u16 = 1 << 13;
const DELIVERY_MODE: u16 = 1 << 12;
const PRIORITY: u16 = 1 << 11;
const CORRELATION_ID: u16 = 1 << 10;
const REPLY_TO: u16 = 1 << 9;
const EXPIRATION: u16 = 1 << 8;
const MESSAGE_ID: u16 = 1 << 7;
const TIMESTAMP: u16 = 1 << 6;
const TYPE: u16 = 1 << 5;
const USER_ID: u16 = 1 << 4;
const APP_ID: u16 = 1 << 3;
const CLUSTER_ID: u16 = 1 << 2;
/// Bit 1 belongs to no basic property.
const UNUSED: u16 = 1 << 1;
/// Bit 0: another property-flags word follows.
const CONTINUATION: u16 = 1;

/// The 14 basic-class content properties (AMQP 0-9-1 basic class, "property" fields). `None`
/// means absent on the wire, which is not the same as empty.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BasicProperties {
    /// MIME content type, e.g. `application/json`.
    pub content_type: Option<ShortString>,
    /// MIME content encoding, e.g. `gzip`.
    pub content_encoding: Option<ShortString>,
    /// Application headers; also what a headers exchange matches on.
    pub headers: Option<FieldTable>,
    /// 1 = non-persistent, 2 = persistent.
    pub delivery_mode: Option<u8>,
    /// Message priority, 0 to 9.
    pub priority: Option<u8>,
    /// Application correlation identifier (RPC replies).
    pub correlation_id: Option<ShortString>,
    /// Address to reply to (RPC requests).
    pub reply_to: Option<ShortString>,
    /// Per-message TTL in milliseconds, as a decimal string (RabbitMQ's convention).
    pub expiration: Option<ShortString>,
    /// Application message identifier.
    pub message_id: Option<ShortString>,
    /// Message timestamp, POSIX seconds.
    pub timestamp: Option<u64>,
    /// Message type name (the spec's `type` property).
    pub kind: Option<ShortString>,
    /// Creating user id; RabbitMQ checks it against the connection's user.
    pub user_id: Option<ShortString>,
    /// Creating application id.
    pub app_id: Option<ShortString>,
    /// Deprecated by the spec ("intra-cluster routing"); kept so it survives a round trip.
    pub cluster_id: Option<ShortString>,
}

impl BasicProperties {
    /// Writes the property flags (16-bit words, continuation bit) followed by the present
    /// property values.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        let mut flags = 0u16;
        let mut flag = |present: bool, bit: u16| {
            if present {
                flags |= bit;
            }
        };
        flag(self.content_type.is_some(), CONTENT_TYPE);
        flag(self.content_encoding.is_some(), CONTENT_ENCODING);
        flag(self.headers.is_some(), HEADERS);
        flag(self.delivery_mode.is_some(), DELIVERY_MODE);
        flag(self.priority.is_some(), PRIORITY);
        flag(self.correlation_id.is_some(), CORRELATION_ID);
        flag(self.reply_to.is_some(), REPLY_TO);
        flag(self.expiration.is_some(), EXPIRATION);
        flag(self.message_id.is_some(), MESSAGE_ID);
        flag(self.timestamp.is_some(), TIMESTAMP);
        flag(self.kind.is_some(), TYPE);
        flag(self.user_id.is_some(), USER_ID);
        flag(self.app_id.is_some(), APP_ID);
        flag(self.cluster_id.is_some(), CLUSTER_ID);
        out.put_u16(flags);

        let short = |out: &mut BytesMut, s: &Option<ShortString>| {
            if let Some(s) = s {
                put_shortstr(out, s);
            }
        };
        short(out, &self.content_type);
        short(out, &self.content_encoding);
        if let Some(t) = &self.headers {
            t.write(out);
        }
        if let Some(v) = self.delivery_mode {
            out.put_u8(v);
        }
        if let Some(v) = self.priority {
            out.put_u8(v);
        }
        short(out, &self.correlation_id);
        short(out, &self.reply_to);
        short(out, &self.expiration);
        short(out, &self.message_id);
        if let Some(v) = self.timestamp {
            out.put_u64(v);
        }
        short(out, &self.kind);
        short(out, &self.user_id);
        short(out, &self.app_id);
        short(out, &self.cluster_id);
    }

    /// The encoded properties as one buffer, ready for [`crate::encode_header_frame`].
    pub fn to_bytes(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }

    /// Encoded size in bytes, flags included.
    pub fn encoded_len(&self) -> usize {
        let short = |s: &Option<ShortString>| s.as_ref().map_or(0, shortstr_len);
        2 + short(&self.content_type)
            + short(&self.content_encoding)
            + self.headers.as_ref().map_or(0, FieldTable::encoded_len)
            + self.delivery_mode.map_or(0, |_| 1)
            + self.priority.map_or(0, |_| 1)
            + short(&self.correlation_id)
            + short(&self.reply_to)
            + short(&self.expiration)
            + short(&self.message_id)
            + self.timestamp.map_or(0, |_| 8)
            + short(&self.kind)
            + short(&self.user_id)
            + short(&self.app_id)
            + short(&self.cluster_id)
    }

    /// Decodes the raw properties of a content header (as in [`crate::Frame::Header`]).
    /// Strings are zero-copy slices of `raw`; only a `headers` table allocates.
    pub fn decode(raw: &Bytes) -> Result<BasicProperties, WireError> {
        let mut cur = Cursor::new(raw.clone());
        let flags = cur.u16()?;
        if flags & UNUSED != 0 {
            return Err(WireError::BadPropertyFlags);
        }
        // A further flags word may follow (section 4.2.6.1), but it can only announce
        // properties the basic class does not have.
        let mut more = flags & CONTINUATION != 0;
        while more {
            let word = cur.u16()?;
            if word & !CONTINUATION != 0 {
                return Err(WireError::BadPropertyFlags);
            }
            more = word & CONTINUATION != 0;
        }

        let short = |cur: &mut Cursor, bit: u16| -> Result<Option<ShortString>, WireError> {
            if flags & bit != 0 {
                cur.shortstr().map(Some)
            } else {
                Ok(None)
            }
        };
        let octet = |cur: &mut Cursor, bit: u16| -> Result<Option<u8>, WireError> {
            if flags & bit != 0 {
                cur.u8().map(Some)
            } else {
                Ok(None)
            }
        };
        // Struct fields are evaluated in the order written, which is the wire order.
        let props = BasicProperties {
            content_type: short(&mut cur, CONTENT_TYPE)?,
            content_encoding: short(&mut cur, CONTENT_ENCODING)?,
            headers: if flags & HEADERS != 0 {
                Some(FieldTable::read(&mut cur)?)
            } else {
                None
            },
            delivery_mode: octet(&mut cur, DELIVERY_MODE)?,
            priority: octet(&mut cur, PRIORITY)?,
            correlation_id: short(&mut cur, CORRELATION_ID)?,
            reply_to: short(&mut cur, REPLY_TO)?,
            expiration: short(&mut cur, EXPIRATION)?,
            message_id: short(&mut cur, MESSAGE_ID)?,
            timestamp: if flags & TIMESTAMP != 0 {
                Some(cur.u64()?)
            } else {
                None
            },
            kind: short(&mut cur, TYPE)?,
            user_id: short(&mut cur, USER_ID)?,
            app_id: short(&mut cur, APP_ID)?,
            cluster_id: short(&mut cur, CLUSTER_ID)?,
        };
        cur.finish()?;
        Ok(props)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::FieldValue;

    fn all_fourteen() -> BasicProperties {
        let mut headers = FieldTable::new();
        headers.insert("h", FieldValue::Bool(true));
        BasicProperties {
            content_type: Some("text/plain".into()),
            content_encoding: Some("gzip".into()),
            headers: Some(headers),
            delivery_mode: Some(2),
            priority: Some(5),
            correlation_id: Some("c1".into()),
            reply_to: Some("r".into()),
            expiration: Some("60000".into()),
            message_id: Some("m1".into()),
            timestamp: Some(0x0102_0304_0506_0708),
            kind: Some("t".into()),
            user_id: Some("guest".into()),
            app_id: Some("app".into()),
            cluster_id: Some("cl".into()),
        }
    }

    #[test]
    fn all_fourteen_properties_known_bytes() {
        let props = all_fourteen();
        let mut out = BytesMut::new();
        props.encode(&mut out);
        let mut expected: Vec<u8> = vec![0xff, 0xfc]; // bits 15..2 set
        expected.extend_from_slice(b"\x0atext/plain\x04gzip");
        expected.extend_from_slice(b"\x00\x00\x00\x04\x01ht\x01");
        expected.extend_from_slice(b"\x02\x05\x02c1\x01r\x0560000\x02m1");
        expected.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        expected.extend_from_slice(b"\x01t\x05guest\x03app\x02cl");
        assert_eq!(&out[..], &expected[..]);
        assert_eq!(out.len(), props.encoded_len());
        assert_eq!(BasicProperties::decode(&out.freeze()).unwrap(), props);
    }

    #[test]
    fn no_properties_is_two_zero_bytes() {
        let raw = BasicProperties::default().to_bytes();
        assert_eq!(&raw[..], &[0, 0]);
        assert_eq!(
            BasicProperties::decode(&raw).unwrap(),
            BasicProperties::default()
        );
    }

    #[test]
    fn sparse_properties_keep_their_order() {
        let props = BasicProperties {
            delivery_mode: Some(1),
            expiration: Some("5".into()),
            ..Default::default()
        };
        let raw = props.to_bytes();
        assert_eq!(&raw[..], b"\x11\x00\x01\x015");
        assert_eq!(BasicProperties::decode(&raw).unwrap(), props);
    }

    #[test]
    fn bad_flags_are_rejected() {
        let decode = |b: &'static [u8]| BasicProperties::decode(&Bytes::from_static(b));
        assert_eq!(decode(b"\x00\x02"), Err(WireError::BadPropertyFlags));
        assert_eq!(
            decode(b"\x00\x01\x80\x00"),
            Err(WireError::BadPropertyFlags)
        );
        // An empty continuation word is harmless.
        assert_eq!(decode(b"\x00\x01\x00\x00"), Ok(BasicProperties::default()));
        assert_eq!(decode(b"\x00\x01"), Err(WireError::Truncated));
        assert_eq!(decode(b""), Err(WireError::Truncated));
    }

    #[test]
    fn missing_and_extra_values_are_rejected() {
        let decode = |b: &'static [u8]| BasicProperties::decode(&Bytes::from_static(b));
        assert_eq!(decode(b"\x10\x00"), Err(WireError::Truncated));
        assert_eq!(decode(b"\x10\x00\x02\x00"), Err(WireError::TrailingBytes));
    }
}
