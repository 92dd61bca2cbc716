//! Primitive AMQP data types: [`ShortString`], and the reader and writer helpers every other
//! codec builds on.
//!
//! AMQP 0-9-1 section 4.2.5: integers are unsigned and big-endian ("network byte order"), a short
//! string is one length octet and up to 255 bytes of UTF-8, a long string is a 32-bit length and
//! that many bytes of anything, a timestamp is a 64-bit POSIX time in seconds.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::WireError;

/// UTF-8 short string (at most 255 bytes) backed by [`Bytes`] so decoding is zero-copy: a decoded
/// exchange name or routing key is a slice of the frame it arrived in.
///
/// Build one with [`ShortString::new`] when the length is not known to fit. The `From` impls are
/// for values the caller knows are short (names it made itself, literals): they never fail and
/// never panic, and if the value is longer than 255 bytes anyway, encoding writes only its first
/// 255 bytes (cut back to a character boundary). Such a value is a bug at the call site, but a
/// bug that cannot corrupt the framing.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ShortString(Bytes);

impl ShortString {
    /// The longest short string the wire format can carry (the length is one octet).
    pub const MAX_LEN: usize = 255;

    /// A short string holding `s`, or [`WireError::StringTooLong`] if it is over 255 bytes.
    pub fn new(s: &str) -> Result<Self, WireError> {
        if s.len() > Self::MAX_LEN {
            return Err(WireError::StringTooLong);
        }
        Ok(ShortString(Bytes::copy_from_slice(s.as_bytes())))
    }

    /// A short string pointing at a static string, without copying or allocating.
    pub fn from_static(s: &'static str) -> Self {
        ShortString(Bytes::from_static(s.as_bytes()))
    }

    /// The string. Every constructor validated UTF-8, so the check here always succeeds; it is
    /// repeated because this crate forbids `unsafe` (it is a SIMD-fast scan of at most a few
    /// hundred bytes).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }

    /// The UTF-8 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty string (the default exchange, a server-named queue).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The underlying bytes, without copying.
    pub fn into_bytes(self) -> Bytes {
        self.0
    }

    /// The bytes that go on the wire: all of them, unless a `From` caller broke the 255-byte
    /// limit, in which case the longest prefix that ends on a character boundary.
    pub(crate) fn wire_bytes(&self) -> &[u8] {
        let s = self.as_str();
        let mut end = s.len().min(Self::MAX_LEN);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.as_bytes().get(..end).unwrap_or_default()
    }
}

impl From<&str> for ShortString {
    fn from(s: &str) -> Self {
        ShortString(Bytes::copy_from_slice(s.as_bytes()))
    }
}

impl From<&String> for ShortString {
    fn from(s: &String) -> Self {
        ShortString::from(s.as_str())
    }
}

impl From<String> for ShortString {
    fn from(s: String) -> Self {
        ShortString(Bytes::from(s.into_bytes()))
    }
}

impl TryFrom<Bytes> for ShortString {
    type Error = WireError;

    /// Wraps the bytes without copying after checking they are UTF-8 and at most 255 long.
    fn try_from(b: Bytes) -> Result<Self, WireError> {
        if b.len() > Self::MAX_LEN {
            return Err(WireError::StringTooLong);
        }
        std::str::from_utf8(&b).map_err(|_| WireError::InvalidUtf8)?;
        Ok(ShortString(b))
    }
}

impl From<ShortString> for Bytes {
    fn from(s: ShortString) -> Bytes {
        s.0
    }
}

impl Deref for ShortString {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for ShortString {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<[u8]> for ShortString {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Borrow<str> for ShortString {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

// Hashes like `str` (not like `Bytes`, whose hash differs), as `Borrow<str>` requires, so a
// `HashMap<ShortString, _>` can be looked up with a `&str`.
impl Hash for ShortString {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialEq<str> for ShortString {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for ShortString {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<ShortString> for str {
    fn eq(&self, other: &ShortString) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<ShortString> for &str {
    fn eq(&self, other: &ShortString) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl fmt::Display for ShortString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for ShortString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

/// A read position in a received buffer. Every read checks the length first and fails with
/// [`WireError::Truncated`], so no input can make a decoder panic; strings come out as slices of
/// the buffer (a reference count, no copy).
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
        self.buf.len() - self.pos
    }

    /// Succeeds only if everything was read: a decoder that stops early has misread the layout.
    pub(crate) fn finish(&self) -> Result<(), WireError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(WireError::TrailingBytes)
        }
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let end = self.pos.checked_add(N).ok_or(WireError::Truncated)?;
        let bytes = self.buf.get(self.pos..end).ok_or(WireError::Truncated)?;
        let array = bytes.try_into().map_err(|_| WireError::Truncated)?;
        self.pos = end;
        Ok(array)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        self.array().map(u64::from_be_bytes)
    }

    pub(crate) fn i8(&mut self) -> Result<i8, WireError> {
        self.array().map(i8::from_be_bytes)
    }

    pub(crate) fn i16(&mut self) -> Result<i16, WireError> {
        self.array().map(i16::from_be_bytes)
    }

    pub(crate) fn i32(&mut self) -> Result<i32, WireError> {
        self.array().map(i32::from_be_bytes)
    }

    pub(crate) fn i64(&mut self) -> Result<i64, WireError> {
        self.array().map(i64::from_be_bytes)
    }

    pub(crate) fn f32(&mut self) -> Result<f32, WireError> {
        self.array().map(f32::from_be_bytes)
    }

    pub(crate) fn f64(&mut self) -> Result<f64, WireError> {
        self.array().map(f64::from_be_bytes)
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

    /// A short string: length octet, then that many bytes of UTF-8 (AMQP 0-9-1 section 4.2.5.3).
    pub(crate) fn shortstr(&mut self) -> Result<ShortString, WireError> {
        let len = self.u8()?;
        let bytes = self.bytes(usize::from(len))?;
        ShortString::try_from(bytes)
    }

    /// A long string: 32-bit length, then that many bytes, binary allowed (section 4.2.5.3).
    pub(crate) fn longstr(&mut self) -> Result<Bytes, WireError> {
        let len = self.u32()?;
        let len = usize::try_from(len).map_err(|_| WireError::Truncated)?;
        self.bytes(len)
    }
}

/// Writes a short string; see [`ShortString::wire_bytes`] for an over-long value.
pub(crate) fn put_shortstr(out: &mut BytesMut, s: &ShortString) {
    let bytes = s.wire_bytes();
    // wire_bytes is at most 255 long, so the cast cannot truncate.
    out.put_u8(bytes.len() as u8);
    out.put_slice(bytes);
}

/// Encoded size of a short string.
pub(crate) fn shortstr_len(s: &ShortString) -> usize {
    1 + s.len().min(ShortString::MAX_LEN)
}

/// Writes a long string. A value over 4 GiB cannot be framed at all (a frame's size is 32 bits);
/// rather than panic we write the first 4 GiB.
pub(crate) fn put_longstr(out: &mut BytesMut, s: &[u8]) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    out.put_u32(len);
    out.put_slice(s.get(..len as usize).unwrap_or(s));
}

/// Encoded size of a long string.
pub(crate) fn longstr_len(s: &[u8]) -> usize {
    4 + s.len()
}

/// Overwrites the 32-bit big-endian length placeholder at `at` with the number of bytes written
/// after it. Used by writers that learn a length only after encoding (tables, frame payloads).
pub(crate) fn patch_u32_len(out: &mut BytesMut, at: usize) {
    let len = out.len().saturating_sub(at + 4);
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    if let Some(slot) = out.get_mut(at..at + 4) {
        slot.copy_from_slice(&len.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn new_rejects_over_255_bytes() {
        assert!(ShortString::new(&"a".repeat(255)).is_ok());
        assert_eq!(
            ShortString::new(&"a".repeat(256)),
            Err(WireError::StringTooLong)
        );
    }

    #[test]
    fn try_from_bytes_checks_utf8_and_length() {
        assert_eq!(
            ShortString::try_from(Bytes::from_static(b"\xff")),
            Err(WireError::InvalidUtf8)
        );
        assert_eq!(
            ShortString::try_from(Bytes::from(vec![b'a'; 256])),
            Err(WireError::StringTooLong)
        );
        let s = ShortString::try_from(Bytes::from_static("héllo".as_bytes())).unwrap();
        assert_eq!(s, "héllo");
        assert_eq!(s.len(), 6);
    }

    #[test]
    fn behaves_like_a_str() {
        let s = ShortString::from("amq.topic");
        assert_eq!(s.as_str(), "amq.topic");
        assert!(s.starts_with("amq."));
        assert_eq!(format!("{s}"), "amq.topic");
        assert_eq!(format!("{s:?}"), "\"amq.topic\"");
        assert!("amq.topic" == s);
        assert!(ShortString::default().is_empty());
        let (a, b) = (ShortString::from("a"), ShortString::from("b"));
        assert!(a < b);
    }

    #[test]
    fn hash_map_lookup_by_str() {
        let mut m = HashMap::new();
        m.insert(ShortString::from("q1"), 1);
        assert_eq!(m.get("q1"), Some(&1));
    }

    #[test]
    fn over_long_from_value_is_clamped_on_a_char_boundary() {
        // 127 two-byte characters plus one more: 256 bytes, the limit falls mid-character.
        let s = ShortString::from("é".repeat(128));
        assert_eq!(s.len(), 256);
        let mut out = BytesMut::new();
        put_shortstr(&mut out, &s);
        assert_eq!(out[0], 254);
        assert_eq!(out.len(), 255);
        let mut c = Cursor::new(out.freeze());
        assert_eq!(c.shortstr().unwrap(), "é".repeat(127).as_str());
    }

    #[test]
    fn cursor_reads_big_endian_and_reports_truncation() {
        let mut c = Cursor::new(Bytes::from_static(&[0, 1, 0, 0, 0, 2, 9]));
        assert_eq!(c.u16().unwrap(), 1);
        assert_eq!(c.u32().unwrap(), 2);
        assert_eq!(c.u16(), Err(WireError::Truncated));
        assert_eq!(c.finish(), Err(WireError::TrailingBytes));
        assert_eq!(c.u8().unwrap(), 9);
        assert_eq!(c.finish(), Ok(()));
    }

    #[test]
    fn long_string_length_beyond_buffer_is_truncated_not_a_panic() {
        let mut c = Cursor::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 1]));
        assert_eq!(c.longstr(), Err(WireError::Truncated));
    }

    #[test]
    fn decoded_strings_are_slices_of_the_input() {
        let input = Bytes::from_static(b"\x03abc");
        let mut c = Cursor::new(input.clone());
        let s = c.shortstr().unwrap().into_bytes();
        assert_eq!(s.as_ptr(), input[1..].as_ptr());
    }
}
