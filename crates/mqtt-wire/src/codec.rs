//! The data representations of MQTT section 1.5, read by [`Reader`] and written through
//! [`Sink`].
//!
//! Integers are big-endian. A UTF-8 Encoded String and Binary Data are a two-byte length and
//! that many bytes. A Variable Byte Integer holds 7 bits per byte, least significant group first,
//! the high bit saying "more follows", at most 4 bytes (so at most 268,435,455).
//!
//! Encoding runs the same code twice: once into a [`Counter`], which measures the packet and
//! checks every length and string on the way, then (if the count found nothing wrong) into the
//! `BytesMut`, reserved once for the exact size. One code path for both means `encoded_len` and
//! the bytes written can never disagree.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};

/// The largest value a Variable Byte Integer can hold (4 bytes of 7 bits).
pub const MAX_VAR_INT: u32 = 268_435_455;

/// Bytes a Variable Byte Integer takes for `v` (values above [`MAX_VAR_INT`] count as 4; the
/// [`Counter`] reports them as an error).
pub(crate) fn var_int_len(v: usize) -> usize {
    match v {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Reads a Variable Byte Integer from the front of `bytes`: `Ok(Some((value, length)))`,
/// `Ok(None)` if `bytes` ends before it does, an error if it runs over 4 bytes or is not in its
/// shortest form [MQTT-1.5.5-1].
pub(crate) fn read_var_int(bytes: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (i, &b) in bytes.iter().enumerate().take(4) {
        value |= u32::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            // A last byte of 0 after a continuation means a longer encoding than needed.
            if i > 0 && b == 0 {
                return Err(DecodeError::MalformedVarInt);
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if bytes.len() >= 4 {
        Err(DecodeError::MalformedVarInt)
    } else {
        Ok(None)
    }
}

/// A cursor over the body of one packet. Every read is bounds-checked and fails with
/// [`DecodeError::Truncated`]; slices share the packet's buffer (no copy).
#[derive(Debug)]
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Self {
        Reader { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// `Err(TrailingBytes)` unless everything was read.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes)
        }
    }

    /// The next `n` bytes, without copying.
    pub(crate) fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(self.buf.split_to(n))
    }

    /// Everything left, without copying (a PUBLISH payload).
    pub(crate) fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.buf)
    }

    /// The next `N` bytes, copied out and consumed. Integers and strings are read this way so
    /// the cursor moves without touching the buffer's reference count.
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = *self.buf.first_chunk::<N>().ok_or(DecodeError::Truncated)?;
        self.buf.advance(N);
        Ok(bytes)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A non-zero packet identifier [MQTT-2.2.1-3].
    pub(crate) fn packet_id(&mut self) -> Result<u16, DecodeError> {
        match self.u16()? {
            0 => Err(DecodeError::ZeroPacketId),
            id => Ok(id),
        }
    }

    pub(crate) fn var_int(&mut self) -> Result<u32, DecodeError> {
        match read_var_int(&self.buf)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(DecodeError::Truncated),
        }
    }

    /// Binary Data: a two-byte length and that many bytes, without copying.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.bytes(usize::from(len))
    }

    /// A UTF-8 Encoded String: well-formed UTF-8 (so no surrogates) [MQTT-1.5.4-1] and no
    /// U+0000 [MQTT-1.5.4-2]. A BOM (EF BB BF) is kept as the character U+FEFF
    /// [MQTT-1.5.4-3]. Allocates the `String`, and nothing else.
    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(self.u16()?);
        let raw = self.buf.get(..len).ok_or(DecodeError::Truncated)?;
        let s = std::str::from_utf8(raw).map_err(|_| DecodeError::InvalidUtf8)?;
        if s.contains('\0') {
            return Err(DecodeError::NullCharacter);
        }
        let s = s.to_owned();
        self.buf.advance(len);
        Ok(s)
    }

    /// A sub-reader over the next `n` bytes (a property section).
    pub(crate) fn take(&mut self, n: usize) -> Result<Reader, DecodeError> {
        Ok(Reader::new(self.bytes(n)?))
    }
}

/// Where encoding writes: the output buffer, or a [`Counter`] that measures and validates.
///
/// Encoders call [`Sink::fail`] for values they cannot encode; only the counter records it, and
/// [`crate::encode`] runs the counter first, so the buffer is never written with a bad packet.
pub(crate) trait Sink {
    fn u8(&mut self, v: u8);
    fn u16(&mut self, v: u16);
    fn u32(&mut self, v: u32);
    fn slice(&mut self, v: &[u8]);

    /// Records that the packet cannot be encoded. Ignored by the output buffer.
    fn fail(&mut self, _error: EncodeError) {}

    /// Checks a string before it is written (the counter rejects U+0000).
    fn check_str(&mut self, _s: &str) {}

    /// A Variable Byte Integer.
    fn var_int(&mut self, v: usize) {
        let Ok(mut v) = u32::try_from(v) else {
            return self.fail(EncodeError::PacketTooLarge);
        };
        if v > MAX_VAR_INT {
            return self.fail(EncodeError::PacketTooLarge);
        }
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                return self.u8(byte);
            }
            self.u8(byte | 0x80);
        }
    }

    /// Binary Data: a two-byte length and the bytes.
    fn binary(&mut self, b: &[u8]) {
        match u16::try_from(b.len()) {
            Ok(len) => {
                self.u16(len);
                self.slice(b);
            }
            Err(_) => self.fail(EncodeError::FieldTooLong),
        }
    }

    /// A UTF-8 Encoded String.
    fn string(&mut self, s: &str) {
        self.check_str(s);
        self.binary(s.as_bytes());
    }
}

impl Sink for BytesMut {
    fn u8(&mut self, v: u8) {
        self.put_u8(v);
    }
    fn u16(&mut self, v: u16) {
        self.put_u16(v);
    }
    fn u32(&mut self, v: u32) {
        self.put_u32(v);
    }
    fn slice(&mut self, v: &[u8]) {
        self.put_slice(v);
    }
}

/// A [`Sink`] that only counts bytes and keeps the first error.
#[derive(Debug, Default)]
pub(crate) struct Counter {
    pub(crate) len: usize,
    pub(crate) error: Option<EncodeError>,
}

impl Counter {
    /// Counts what `write` writes.
    pub(crate) fn count(write: impl FnOnce(&mut Counter)) -> Counter {
        let mut c = Counter::default();
        write(&mut c);
        c
    }
}

impl Sink for Counter {
    fn u8(&mut self, _: u8) {
        self.len += 1;
    }
    fn u16(&mut self, _: u16) {
        self.len += 2;
    }
    fn u32(&mut self, _: u32) {
        self.len += 4;
    }
    fn slice(&mut self, v: &[u8]) {
        self.len = self.len.saturating_add(v.len());
    }
    fn fail(&mut self, error: EncodeError) {
        self.error.get_or_insert(error);
    }
    fn check_str(&mut self, s: &str) {
        if s.contains('\0') {
            self.fail(EncodeError::NullCharacter);
        }
    }
    fn var_int(&mut self, v: usize) {
        if v > MAX_VAR_INT as usize {
            self.fail(EncodeError::PacketTooLarge);
        }
        self.len += var_int_len(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_var_int(v: usize) -> Vec<u8> {
        let mut out = BytesMut::new();
        out.var_int(v);
        out.to_vec()
    }

    #[test]
    fn var_int_boundaries_match_the_spec_table() {
        // MQTT 5.0 table 1-1 (3.1.1 table 2.4): the first and last value of each length.
        for (value, bytes) in [
            (0, &[0x00][..]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xff, 0x7f]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xff, 0xff, 0x7f]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xff, 0xff, 0xff, 0x7f]),
        ] {
            assert_eq!(encode_var_int(value), bytes, "{value}");
            assert_eq!(var_int_len(value), bytes.len());
            assert_eq!(
                read_var_int(bytes).unwrap(),
                Some((value as u32, bytes.len()))
            );
        }
    }

    #[test]
    fn var_int_over_four_bytes_is_malformed() {
        assert_eq!(
            read_var_int(&[0xff, 0xff, 0xff, 0xff, 0x01]),
            Err(DecodeError::MalformedVarInt)
        );
        assert_eq!(
            read_var_int(&[0x80, 0x80, 0x80, 0x80]),
            Err(DecodeError::MalformedVarInt)
        );
    }

    #[test]
    fn var_int_not_in_shortest_form_is_malformed() {
        assert_eq!(
            read_var_int(&[0x80, 0x00]),
            Err(DecodeError::MalformedVarInt)
        );
        assert_eq!(
            read_var_int(&[0xff, 0x80, 0x00]),
            Err(DecodeError::MalformedVarInt)
        );
    }

    #[test]
    fn incomplete_var_int_asks_for_more() {
        assert_eq!(read_var_int(&[]), Ok(None));
        assert_eq!(read_var_int(&[0x80]), Ok(None));
        assert_eq!(read_var_int(&[0xff, 0xff, 0xff]), Ok(None));
    }

    #[test]
    fn too_large_var_int_fails_the_counter() {
        let c = Counter::count(|c| c.var_int(MAX_VAR_INT as usize + 1));
        assert_eq!(c.error, Some(EncodeError::PacketTooLarge));
    }

    #[test]
    fn strings_are_checked() {
        let mut r = Reader::new(Bytes::from_static(b"\x00\x03a\x00b"));
        assert_eq!(r.string(), Err(DecodeError::NullCharacter));
        // U+D800 encoded as if it were a character: not UTF-8 [MQTT-1.5.4-1].
        let mut r = Reader::new(Bytes::from_static(b"\x00\x03\xed\xa0\x80"));
        assert_eq!(r.string(), Err(DecodeError::InvalidUtf8));
        // A BOM stays [MQTT-1.5.4-3].
        let mut r = Reader::new(Bytes::from_static(b"\x00\x04\xef\xbb\xbfA"));
        assert_eq!(r.string().unwrap(), "\u{feff}A");
        let mut r = Reader::new(Bytes::from_static(b"\x00\x05abc"));
        assert_eq!(r.string(), Err(DecodeError::Truncated));
    }

    #[test]
    fn counter_rejects_long_and_nul_strings() {
        let long = "x".repeat(65_536);
        assert_eq!(
            Counter::count(|c| c.string(&long)).error,
            Some(EncodeError::FieldTooLong)
        );
        assert_eq!(
            Counter::count(|c| c.string("a\0")).error,
            Some(EncodeError::NullCharacter)
        );
        assert_eq!(Counter::count(|c| c.string("abc")).len, 5);
    }
}
