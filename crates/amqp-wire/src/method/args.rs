//! Reading and writing method arguments, including the packing of bit arguments.
//!
//! Arguments are laid out back to back with no padding or tags, in the order the spec lists them
//! (AMQP 0-9-1 section 4.2.5). The one subtlety is bits: consecutive `bit` arguments share
//! octets, the first in the least significant bit, and any other argument (or the end of the
//! method) closes the octet (section 4.2.5.2). The reader and writers below keep that state, so
//! the method declarations can simply list their arguments.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::WireError;
use crate::table::FieldTable;
use crate::types::{longstr_len, put_longstr, put_shortstr, shortstr_len, Cursor, ShortString};

// No method argument has the `timestamp` domain (only the basic `timestamp` property does), so
// there is no timestamp codec here; it would be `longlong`.

/// Something method arguments are written to: the encoder, or a counter that computes the
/// encoded length for reserving capacity. One trait so both stay in step by construction.
pub(crate) trait ArgSink {
    fn octet(&mut self, v: &u8);
    fn short(&mut self, v: &u16);
    fn long(&mut self, v: &u32);
    fn longlong(&mut self, v: &u64);
    fn bit(&mut self, v: &bool);
    fn shortstr(&mut self, v: &ShortString);
    fn longstr(&mut self, v: &Bytes);
    fn table(&mut self, v: &FieldTable);
    /// Closes a partly filled bit octet; call after the last argument.
    fn finish(&mut self);
}

/// Octet being filled with bits, and how many bits it holds (0 = none pending).
#[derive(Default)]
struct PendingBits {
    octet: u8,
    count: u8,
}

impl PendingBits {
    /// Adds a bit; returns a full octet to emit first if the current one has no room.
    fn push(&mut self, v: bool) -> Option<u8> {
        let full = if self.count == 8 { self.take() } else { None };
        self.octet |= u8::from(v) << self.count;
        self.count += 1;
        full
    }

    fn take(&mut self) -> Option<u8> {
        if self.count == 0 {
            return None;
        }
        let octet = self.octet;
        *self = PendingBits::default();
        Some(octet)
    }
}

/// Writes arguments to a buffer.
pub(crate) struct ArgWriter<'a> {
    out: &'a mut BytesMut,
    bits: PendingBits,
}

impl<'a> ArgWriter<'a> {
    pub(crate) fn new(out: &'a mut BytesMut) -> Self {
        ArgWriter {
            out,
            bits: PendingBits::default(),
        }
    }

    fn flush_bits(&mut self) {
        if let Some(octet) = self.bits.take() {
            self.out.put_u8(octet);
        }
    }
}

impl ArgSink for ArgWriter<'_> {
    fn octet(&mut self, v: &u8) {
        self.flush_bits();
        self.out.put_u8(*v);
    }
    fn short(&mut self, v: &u16) {
        self.flush_bits();
        self.out.put_u16(*v);
    }
    fn long(&mut self, v: &u32) {
        self.flush_bits();
        self.out.put_u32(*v);
    }
    fn longlong(&mut self, v: &u64) {
        self.flush_bits();
        self.out.put_u64(*v);
    }
    fn bit(&mut self, v: &bool) {
        if let Some(octet) = self.bits.push(*v) {
            self.out.put_u8(octet);
        }
    }
    fn shortstr(&mut self, v: &ShortString) {
        self.flush_bits();
        put_shortstr(self.out, v);
    }
    fn longstr(&mut self, v: &Bytes) {
        self.flush_bits();
        put_longstr(self.out, v);
    }
    fn table(&mut self, v: &FieldTable) {
        self.flush_bits();
        v.write(self.out);
    }
    fn finish(&mut self) {
        self.flush_bits();
    }
}

/// Counts the bytes [`ArgWriter`] would write.
#[derive(Default)]
pub(crate) struct ArgCounter {
    pub(crate) len: usize,
    bits: PendingBits,
}

impl ArgCounter {
    fn flush_bits(&mut self) {
        if self.bits.take().is_some() {
            self.len += 1;
        }
    }
}

impl ArgSink for ArgCounter {
    fn octet(&mut self, _: &u8) {
        self.flush_bits();
        self.len += 1;
    }
    fn short(&mut self, _: &u16) {
        self.flush_bits();
        self.len += 2;
    }
    fn long(&mut self, _: &u32) {
        self.flush_bits();
        self.len += 4;
    }
    fn longlong(&mut self, _: &u64) {
        self.flush_bits();
        self.len += 8;
    }
    fn bit(&mut self, v: &bool) {
        if self.bits.push(*v).is_some() {
            self.len += 1;
        }
    }
    fn shortstr(&mut self, v: &ShortString) {
        self.flush_bits();
        self.len += shortstr_len(v);
    }
    fn longstr(&mut self, v: &Bytes) {
        self.flush_bits();
        self.len += longstr_len(v);
    }
    fn table(&mut self, v: &FieldTable) {
        self.flush_bits();
        self.len += v.encoded_len();
    }
    fn finish(&mut self) {
        self.flush_bits();
    }
}

/// Reads arguments from a method frame's payload. Strings are zero-copy slices of it.
pub(crate) struct ArgReader {
    cur: Cursor,
    /// The octet bits are being taken from, and the index of the next bit (8 = none left).
    bits: u8,
    next_bit: u8,
}

impl ArgReader {
    pub(crate) fn new(args: Bytes) -> Self {
        ArgReader {
            cur: Cursor::new(args),
            bits: 0,
            next_bit: 8,
        }
    }

    /// Any non-bit argument ends a run of bits: the next bit starts a fresh octet.
    fn end_bits(&mut self) -> &mut Cursor {
        self.next_bit = 8;
        &mut self.cur
    }

    pub(crate) fn octet(&mut self) -> Result<u8, WireError> {
        self.end_bits().u8()
    }
    pub(crate) fn short(&mut self) -> Result<u16, WireError> {
        self.end_bits().u16()
    }
    pub(crate) fn long(&mut self) -> Result<u32, WireError> {
        self.end_bits().u32()
    }
    pub(crate) fn longlong(&mut self) -> Result<u64, WireError> {
        self.end_bits().u64()
    }
    pub(crate) fn bit(&mut self) -> Result<bool, WireError> {
        if self.next_bit >= 8 {
            self.bits = self.cur.u8()?;
            self.next_bit = 0;
        }
        let v = self.bits & (1 << self.next_bit) != 0;
        self.next_bit += 1;
        Ok(v)
    }
    pub(crate) fn shortstr(&mut self) -> Result<ShortString, WireError> {
        self.end_bits().shortstr()
    }
    pub(crate) fn longstr(&mut self) -> Result<Bytes, WireError> {
        self.end_bits().longstr()
    }
    pub(crate) fn table(&mut self) -> Result<FieldTable, WireError> {
        FieldTable::read(self.end_bits())
    }
    /// Fails if arguments are left over: RabbitMQ rejects those too, and accepting them would
    /// hide a client that encodes a different layout than we decode.
    pub(crate) fn finish(&self) -> Result<(), WireError> {
        self.cur.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nine_bits_take_two_octets_lsb_first() {
        let mut out = BytesMut::new();
        let mut w = ArgWriter::new(&mut out);
        for i in 0..9 {
            w.bit(&(i % 2 == 0));
        }
        w.finish();
        assert_eq!(&out[..], &[0b0101_0101, 0b0000_0001]);

        let mut r = ArgReader::new(out.freeze());
        for i in 0..9 {
            assert_eq!(r.bit().unwrap(), i % 2 == 0);
        }
        r.finish().unwrap();
    }

    #[test]
    fn another_argument_closes_the_bit_octet() {
        let mut out = BytesMut::new();
        let mut w = ArgWriter::new(&mut out);
        w.bit(&true);
        w.short(&7);
        w.bit(&true);
        w.finish();
        assert_eq!(&out[..], &[1, 0, 7, 1]);

        let mut c = ArgCounter::default();
        c.bit(&true);
        c.short(&7);
        c.bit(&true);
        c.finish();
        assert_eq!(c.len, 4);

        let mut r = ArgReader::new(out.freeze());
        assert!(r.bit().unwrap());
        assert_eq!(r.short().unwrap(), 7);
        assert!(r.bit().unwrap());
        r.finish().unwrap();
    }
}
