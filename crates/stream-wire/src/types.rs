//! Primitive types of PROTOCOL.adoc's "Types" section, and the reader every decoder uses.
//!
//! Integers are big-endian. A `string` is an int16 length and that many bytes of UTF-8; a
//! `bytes` an int32 length and that many bytes; an array an int32 count and that many
//! elements. A length of -1 means null, which the protocol uses in two places only (a publish
//! v2 filter value, the SASL opaque data); anywhere else a negative length is an error.

use std::fmt;
use std::ops::Deref;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::WireError;

/// A protocol `string`: UTF-8, at most 32,767 bytes, backed by [`Bytes`] so a decoded stream
/// name or property is a slice of the frame it arrived in (no copy).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Str(Bytes);

impl Str {
    /// The longest string an int16 length can announce.
    pub const MAX_LEN: usize = i16::MAX as usize;

    /// A string holding `s`, or [`WireError::StringTooLong`].
    pub fn new(s: &str) -> Result<Self, WireError> {
        if s.len() > Self::MAX_LEN {
            return Err(WireError::StringTooLong);
        }
        Ok(Str(Bytes::copy_from_slice(s.as_bytes())))
    }

    /// A string pointing at a static string, without copying.
    pub fn from_static(s: &'static str) -> Self {
        Str(Bytes::from_static(s.as_bytes()))
    }

    /// The string. Every constructor checked UTF-8; the check is repeated because the crate
    /// forbids `unsafe`.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The UTF-8 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The underlying bytes, without copying.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// Encoded size: the int16 length and the bytes.
    pub fn encoded_len(&self) -> usize {
        2 + self.0.len().min(Self::MAX_LEN)
    }
}

/// For names the caller knows are short (literals, names it made). A longer value is a bug at
/// the call site; encoding then writes its first 32,767 bytes rather than corrupt the framing.
impl From<&str> for Str {
    fn from(s: &str) -> Self {
        Str(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<String> for Str {
    fn from(s: String) -> Self {
        Str(Bytes::from(s.into_bytes()))
    }
}

impl TryFrom<Bytes> for Str {
    type Error = WireError;

    /// Wraps the bytes without copying after checking length and UTF-8.
    fn try_from(b: Bytes) -> Result<Self, WireError> {
        if b.len() > Self::MAX_LEN {
            return Err(WireError::StringTooLong);
        }
        std::str::from_utf8(&b).map_err(|_| WireError::InvalidUtf8)?;
        Ok(Str(b))
    }
}

impl Deref for Str {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq<str> for Str {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for Str {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Display for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for Str {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A string-to-string map (`PeerProperties`, `Open`'s connection properties, `Subscribe` and
/// `ResolveOffsetSpec` properties, `Create` arguments), kept in wire order. RabbitMQ reads these
/// into an Erlang map, where a repeated key keeps its last value; [`Properties::get`] does the
/// same.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties(pub Vec<(Str, Str)>);

impl Properties {
    /// No properties.
    pub fn new() -> Self {
        Properties(Vec::new())
    }

    /// The value of `key` (the last one if the peer repeated it).
    pub fn get(&self, key: &str) -> Option<&Str> {
        self.0.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Appends a pair.
    pub fn push(&mut self, key: impl Into<Str>, value: impl Into<Str>) {
        self.0.push((key.into(), value.into()));
    }

    /// True when there is no pair.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// The pairs in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&Str, &Str)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    pub(crate) fn decode(c: &mut Cursor) -> Result<Self, WireError> {
        c.array(4, |c| Ok((c.str()?, c.str()?))).map(Properties)
    }

    pub(crate) fn encode(&self, out: &mut BytesMut) {
        put_count(out, self.0.len());
        for (k, v) in &self.0 {
            put_str(out, k);
            put_str(out, v);
        }
    }
}

impl<K: Into<Str>, V: Into<Str>> FromIterator<(K, V)> for Properties {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Properties(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

/// A read position in a received command. Every read checks the length first and fails with
/// [`WireError::Truncated`]; strings and payloads come out as slices of the frame.
#[derive(Debug, Clone)]
pub(crate) struct Cursor {
    buf: Bytes,
    pos: usize,
}

impl Cursor {
    pub(crate) fn new(buf: Bytes) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// Succeeds only if everything was read.
    pub(crate) fn finish(&self) -> Result<(), WireError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(WireError::TrailingBytes)
        }
    }

    /// Consumes whatever is left unread (where RabbitMQ ignores a command's tail).
    pub(crate) fn skip_rest(&mut self) {
        self.pos = self.buf.len();
    }

    fn array_of<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let end = self.pos.checked_add(N).ok_or(WireError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        let array = bytes.try_into().map_err(|_| WireError::Truncated)?;
        self.pos = end;
        Ok(array)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        self.array_of::<1>().map(|[b]| b)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        self.array_of().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        self.array_of().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        self.array_of().map(u64::from_be_bytes)
    }

    pub(crate) fn i16(&mut self) -> Result<i16, WireError> {
        self.array_of().map(i16::from_be_bytes)
    }

    pub(crate) fn i32(&mut self) -> Result<i32, WireError> {
        self.array_of().map(i32::from_be_bytes)
    }

    pub(crate) fn i64(&mut self) -> Result<i64, WireError> {
        self.array_of().map(i64::from_be_bytes)
    }

    /// The next `n` bytes as a zero-copy slice.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<Bytes, WireError> {
        if n > self.remaining() {
            return Err(WireError::Truncated);
        }
        let slice = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(slice)
    }

    /// Everything left, as a zero-copy slice.
    pub(crate) fn rest(&mut self) -> Bytes {
        let rest = self.buf.slice(self.pos.min(self.buf.len())..);
        self.pos = self.buf.len();
        rest
    }

    /// A `string` that may not be null.
    pub(crate) fn str(&mut self) -> Result<Str, WireError> {
        self.nullable_str()?.ok_or(WireError::NegativeLength(-1))
    }

    /// A `string` where -1 means null.
    pub(crate) fn nullable_str(&mut self) -> Result<Option<Str>, WireError> {
        let len = self.i16()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| WireError::NegativeLength(len.into()))?;
        Str::try_from(self.bytes(len)?).map(Some)
    }

    /// A `bytes` where -1 means null.
    pub(crate) fn nullable_bytes(&mut self) -> Result<Option<Bytes>, WireError> {
        let len = self.i32()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| WireError::NegativeLength(len))?;
        self.bytes(len).map(Some)
    }

    /// An array count: a non-negative int32.
    pub(crate) fn count(&mut self) -> Result<usize, WireError> {
        let n = self.i32()?;
        usize::try_from(n).map_err(|_| WireError::NegativeLength(n))
    }

    /// An array: a count, then `count` elements read by `item`, each at least `min_size` bytes
    /// on the wire. A count the remaining bytes cannot hold fails before anything is allocated,
    /// so the `Vec` is never larger than the input justifies.
    pub(crate) fn array<T>(
        &mut self,
        min_size: usize,
        mut item: impl FnMut(&mut Cursor) -> Result<T, WireError>,
    ) -> Result<Vec<T>, WireError> {
        let n = self.count()?;
        if n.saturating_mul(min_size.max(1)) > self.remaining() {
            return Err(WireError::Truncated);
        }
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(item(self)?);
        }
        Ok(items)
    }
}

/// Writes a `string`; see [`Str`]'s `From` impls for an over-long value.
pub(crate) fn put_str(out: &mut BytesMut, s: &Str) {
    let bytes = wire_str(s);
    // At most i16::MAX long, so the cast cannot wrap.
    out.put_i16(bytes.len() as i16);
    out.put_slice(bytes);
}

/// Writes a `string` where `None` is null (-1).
pub(crate) fn put_nullable_str(out: &mut BytesMut, s: Option<&Str>) {
    match s {
        Some(s) => put_str(out, s),
        None => out.put_i16(-1),
    }
}

/// The bytes of `s` that fit an int16 length, cut back to a character boundary.
fn wire_str(s: &Str) -> &[u8] {
    let s = s.as_str();
    let mut end = s.len().min(Str::MAX_LEN);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.as_bytes().get(..end).unwrap_or_default()
}

/// Writes a `bytes` (int32 length). Over 2 GiB cannot be framed (a frame's size is 32 bits);
/// rather than panic the first 2 GiB are written.
pub(crate) fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    let len = i32::try_from(b.len()).unwrap_or(i32::MAX);
    out.put_i32(len);
    out.put_slice(b.get(..len as usize).unwrap_or(b));
}

/// Writes an array count (int32).
pub(crate) fn put_count(out: &mut BytesMut, n: usize) {
    out.put_i32(i32::try_from(n).unwrap_or(i32::MAX));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn str_checks_length_and_utf8() {
        assert!(Str::new(&"a".repeat(Str::MAX_LEN)).is_ok());
        assert_eq!(
            Str::new(&"a".repeat(Str::MAX_LEN + 1)),
            Err(WireError::StringTooLong)
        );
        assert_eq!(
            Str::try_from(Bytes::from_static(b"\xc3")),
            Err(WireError::InvalidUtf8)
        );
        assert_eq!(Str::from("s1"), "s1");
        assert_eq!(format!("{:?}", Str::from("s1")), "\"s1\"");
    }

    #[test]
    fn over_long_str_is_clamped_on_a_char_boundary() {
        let s = Str::from("é".repeat(Str::MAX_LEN / 2 + 1));
        let mut out = BytesMut::new();
        put_str(&mut out, &s);
        let mut c = Cursor::new(out.freeze());
        let back = c.str().unwrap();
        assert_eq!(back.len(), Str::MAX_LEN - 1);
        c.finish().unwrap();
    }

    #[test]
    fn negative_lengths_are_errors_except_null() {
        let mut c = Cursor::new(Bytes::from_static(&[0xff, 0xff]));
        assert_eq!(c.nullable_str(), Ok(None));
        let mut c = Cursor::new(Bytes::from_static(&[0xff, 0xfe]));
        assert_eq!(c.nullable_str(), Err(WireError::NegativeLength(-2)));
        let mut c = Cursor::new(Bytes::from_static(&[0xff, 0xff]));
        assert_eq!(c.str(), Err(WireError::NegativeLength(-1)));
        let mut c = Cursor::new(Bytes::from_static(&[0x80, 0, 0, 0]));
        assert_eq!(c.count(), Err(WireError::NegativeLength(i32::MIN)));
    }

    #[test]
    fn lying_count_fails_before_allocating() {
        // 2^31-1 elements announced, 3 bytes present.
        let mut c = Cursor::new(Bytes::from_static(&[0x7f, 0xff, 0xff, 0xff, 0, 0, 0]));
        let r = c.array(2, |c| c.u16());
        assert_eq!(r, Err(WireError::Truncated));
    }

    #[test]
    fn decoded_strings_are_slices_of_the_input() {
        let input = Bytes::from_static(b"\x00\x03abc");
        let mut c = Cursor::new(input.clone());
        let s = c.str().unwrap().into_bytes();
        assert_eq!(s.as_ptr(), input[2..].as_ptr());
    }

    #[test]
    fn properties_get_the_last_repeated_key() {
        let p: Properties = [("a", "1"), ("b", "2"), ("a", "3")].into_iter().collect();
        assert_eq!(p.get("a").map(|v| v.as_str()), Some("3"));
        assert_eq!(p.get("c"), None);
        let mut out = BytesMut::new();
        p.encode(&mut out);
        let back = Properties::decode(&mut Cursor::new(out.freeze())).unwrap();
        assert_eq!(back, p);
    }
}
