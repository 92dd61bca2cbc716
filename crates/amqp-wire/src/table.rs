//! Field tables and field values: the `arguments` of declarations and bindings, the `headers`
//! property, and the peer properties of `connection.start`.
//!
//! A table is a 32-bit byte length followed by entries, each a short-string name, a one-octet type
//! tag and a value (AMQP 0-9-1 section 4.2.5.5). The type tags are RabbitMQ's, not the 0-9-1
//! grammar's: the published grammar and every real client disagree (RabbitMQ's "AMQP 0-9-1 errata",
//! section "Field types"), and interoperating with those clients is what matters. In particular
//! `s` is a signed 16-bit integer, `l` a signed 64-bit integer and `x` a byte array.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::WireError;
use crate::types::{patch_u32_len, put_longstr, put_shortstr, shortstr_len, Cursor, ShortString};

/// How deeply tables and arrays may nest before decoding gives up with [`WireError::TooDeep`].
/// Real headers nest one or two levels; the limit exists so that a hostile peer cannot exhaust
/// the stack with a few kilobytes of `F` tags.
pub const MAX_TABLE_DEPTH: usize = 64;

/// An AMQP field table. Entries keep the order they arrived in (RabbitMQ does too, and
/// `x-death` headers are read positionally by some tools). Tables built with [`FieldTable::insert`]
/// hold each key once; a decoded table holds whatever the peer sent, and lookups find the first
/// entry with the key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FieldTable(Vec<(ShortString, FieldValue)>);

/// One value in a field table or field array, tagged with RabbitMQ's type octets.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    /// `t`: boolean, one octet, non-zero is true.
    Bool(bool),
    /// `b`: signed 8-bit integer.
    I8(i8),
    /// `B`: unsigned 8-bit integer.
    U8(u8),
    /// `s`: signed 16-bit integer (RabbitMQ's meaning; the 0-9-1 grammar says "short string").
    I16(i16),
    /// `u`: unsigned 16-bit integer.
    U16(u16),
    /// `I`: signed 32-bit integer.
    I32(i32),
    /// `i`: unsigned 32-bit integer.
    U32(u32),
    /// `l`: signed 64-bit integer.
    I64(i64),
    /// `L`: unsigned 64-bit integer. RabbitMQ never sends it but some clients do, so it is
    /// accepted, and written back with the same tag.
    U64(u64),
    /// `f`: IEEE-754 single precision.
    F32(f32),
    /// `d`: IEEE-754 double precision.
    F64(f64),
    /// `D`: decimal, `value` × 10^-`scale`.
    Decimal {
        /// Number of decimal digits after the point.
        scale: u8,
        /// The unscaled value.
        value: u32,
    },
    /// `S`: long string. Usually UTF-8 but may be binary, so it stays bytes.
    LongString(Bytes),
    /// `A`: array of values (a 32-bit byte length, then tagged values).
    Array(Vec<FieldValue>),
    /// `T`: timestamp, 64-bit POSIX seconds.
    Timestamp(u64),
    /// `F`: nested field table.
    Table(FieldTable),
    /// `V`: no value.
    Void,
    /// `x`: byte array (a 32-bit length, then bytes).
    ByteArray(Bytes),
}

impl FieldTable {
    /// An empty table.
    pub fn new() -> Self {
        FieldTable(Vec::new())
    }

    /// The value under `key` (the first, if a peer sent the key twice).
    pub fn get(&self, key: &str) -> Option<&FieldValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Sets `key` to `value`, replacing (in place) an existing entry with the same key.
    pub fn insert(&mut self, key: impl Into<ShortString>, value: FieldValue) {
        let key = key.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => self.0.push((key, value)),
        }
    }

    /// Appends an entry even if the key is already present. The wire format allows repeated
    /// keys (decoding keeps them); MQTT 5 user properties, carried as headers, need them.
    pub fn push(&mut self, key: impl Into<ShortString>, value: FieldValue) {
        self.0.push((key.into(), value));
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<FieldValue> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.remove(i).1)
    }

    /// The entries in wire order.
    pub fn iter(&self) -> impl Iterator<Item = (&ShortString, &FieldValue)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if there are no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Writes the table with its 32-bit length prefix, as it appears in method arguments.
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        self.write(out);
    }

    /// Decodes a table with its 32-bit length prefix that fills `buf` exactly.
    pub fn decode(buf: Bytes) -> Result<FieldTable, WireError> {
        let mut cur = Cursor::new(buf);
        let table = FieldTable::read(&mut cur)?;
        cur.finish()?;
        Ok(table)
    }

    /// Encoded size in bytes, length prefix included.
    pub fn encoded_len(&self) -> usize {
        4 + self
            .0
            .iter()
            .map(|(k, v)| shortstr_len(k) + v.encoded_len())
            .sum::<usize>()
    }

    pub(crate) fn write(&self, out: &mut BytesMut) {
        let at = out.len();
        out.put_u32(0);
        for (k, v) in &self.0 {
            put_shortstr(out, k);
            v.write(out);
        }
        patch_u32_len(out, at);
    }

    pub(crate) fn read(cur: &mut Cursor) -> Result<FieldTable, WireError> {
        read_table(cur, 1)
    }
}

/// A table at nesting level `depth` (the outermost table is level 1).
fn read_table(cur: &mut Cursor, depth: usize) -> Result<FieldTable, WireError> {
    if depth > MAX_TABLE_DEPTH {
        return Err(WireError::TooDeep);
    }
    let mut body = Cursor::new(cur.longstr()?);
    let mut entries = Vec::new();
    while body.remaining() > 0 {
        let key = body.shortstr()?;
        let value = read_value(&mut body, depth)?;
        // Duplicate keys violate AMQP 0-9-1 section 4.2.5.5 ("field names MUST be unique") but
        // are kept as sent, like RabbitMQ does: `get` finds the first. Checking here would make
        // decoding quadratic in the number of entries, a cheap way to burn our CPU.
        entries.push((key, value));
    }
    Ok(FieldTable(entries))
}

fn read_array(cur: &mut Cursor, depth: usize) -> Result<Vec<FieldValue>, WireError> {
    if depth > MAX_TABLE_DEPTH {
        return Err(WireError::TooDeep);
    }
    let mut body = Cursor::new(cur.longstr()?);
    let mut values = Vec::new();
    while body.remaining() > 0 {
        values.push(read_value(&mut body, depth)?);
    }
    Ok(values)
}

/// A tagged value inside a table or array at level `depth`.
fn read_value(cur: &mut Cursor, depth: usize) -> Result<FieldValue, WireError> {
    let tag = cur.u8()?;
    Ok(match tag {
        b't' => FieldValue::Bool(cur.u8()? != 0),
        b'b' => FieldValue::I8(cur.i8()?),
        b'B' => FieldValue::U8(cur.u8()?),
        b's' => FieldValue::I16(cur.i16()?),
        b'u' => FieldValue::U16(cur.u16()?),
        b'I' => FieldValue::I32(cur.i32()?),
        b'i' => FieldValue::U32(cur.u32()?),
        b'l' => FieldValue::I64(cur.i64()?),
        b'L' => FieldValue::U64(cur.u64()?),
        b'f' => FieldValue::F32(cur.f32()?),
        b'd' => FieldValue::F64(cur.f64()?),
        b'D' => FieldValue::Decimal {
            scale: cur.u8()?,
            value: cur.u32()?,
        },
        b'S' => FieldValue::LongString(cur.longstr()?),
        b'A' => FieldValue::Array(read_array(cur, depth + 1)?),
        b'T' => FieldValue::Timestamp(cur.u64()?),
        b'F' => FieldValue::Table(read_table(cur, depth + 1)?),
        b'V' => FieldValue::Void,
        b'x' => FieldValue::ByteArray(cur.longstr()?),
        other => return Err(WireError::InvalidFieldType(other)),
    })
}

impl FieldValue {
    /// The type octet this value is written with.
    pub fn tag(&self) -> u8 {
        match self {
            FieldValue::Bool(_) => b't',
            FieldValue::I8(_) => b'b',
            FieldValue::U8(_) => b'B',
            FieldValue::I16(_) => b's',
            FieldValue::U16(_) => b'u',
            FieldValue::I32(_) => b'I',
            FieldValue::U32(_) => b'i',
            FieldValue::I64(_) => b'l',
            FieldValue::U64(_) => b'L',
            FieldValue::F32(_) => b'f',
            FieldValue::F64(_) => b'd',
            FieldValue::Decimal { .. } => b'D',
            FieldValue::LongString(_) => b'S',
            FieldValue::Array(_) => b'A',
            FieldValue::Timestamp(_) => b'T',
            FieldValue::Table(_) => b'F',
            FieldValue::Void => b'V',
            FieldValue::ByteArray(_) => b'x',
        }
    }

    /// Any integer value as an `i64`, whatever width the client chose (clients send
    /// `x-message-ttl` as `b`, `s`, `I`, `l`, ...); `None` for other types or a `U64` above
    /// `i64::MAX`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            FieldValue::I8(v) => Some(v.into()),
            FieldValue::U8(v) => Some(v.into()),
            FieldValue::I16(v) => Some(v.into()),
            FieldValue::U16(v) => Some(v.into()),
            FieldValue::I32(v) => Some(v.into()),
            FieldValue::U32(v) => Some(v.into()),
            FieldValue::I64(v) => Some(v),
            FieldValue::U64(v) => i64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The bytes of a long string or byte array.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            FieldValue::LongString(b) | FieldValue::ByteArray(b) => Some(b),
            _ => None,
        }
    }

    /// A long string that is valid UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::LongString(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The value of a `Bool`.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            FieldValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// The nested table of a `Table`.
    pub fn as_table(&self) -> Option<&FieldTable> {
        match self {
            FieldValue::Table(t) => Some(t),
            _ => None,
        }
    }

    /// Encoded size in bytes, type octet included.
    pub fn encoded_len(&self) -> usize {
        1 + match self {
            FieldValue::Void => 0,
            FieldValue::Bool(_) | FieldValue::I8(_) | FieldValue::U8(_) => 1,
            FieldValue::I16(_) | FieldValue::U16(_) => 2,
            FieldValue::I32(_) | FieldValue::U32(_) | FieldValue::F32(_) => 4,
            FieldValue::Decimal { .. } => 5,
            FieldValue::I64(_)
            | FieldValue::U64(_)
            | FieldValue::F64(_)
            | FieldValue::Timestamp(_) => 8,
            FieldValue::LongString(b) | FieldValue::ByteArray(b) => 4 + b.len(),
            FieldValue::Array(vs) => 4 + vs.iter().map(FieldValue::encoded_len).sum::<usize>(),
            FieldValue::Table(t) => t.encoded_len(),
        }
    }

    fn write(&self, out: &mut BytesMut) {
        out.put_u8(self.tag());
        match self {
            FieldValue::Bool(v) => out.put_u8(u8::from(*v)),
            FieldValue::I8(v) => out.put_i8(*v),
            FieldValue::U8(v) => out.put_u8(*v),
            FieldValue::I16(v) => out.put_i16(*v),
            FieldValue::U16(v) => out.put_u16(*v),
            FieldValue::I32(v) => out.put_i32(*v),
            FieldValue::U32(v) => out.put_u32(*v),
            FieldValue::I64(v) => out.put_i64(*v),
            FieldValue::U64(v) => out.put_u64(*v),
            FieldValue::F32(v) => out.put_f32(*v),
            FieldValue::F64(v) => out.put_f64(*v),
            FieldValue::Decimal { scale, value } => {
                out.put_u8(*scale);
                out.put_u32(*value);
            }
            FieldValue::LongString(b) | FieldValue::ByteArray(b) => put_longstr(out, b),
            FieldValue::Array(values) => {
                let at = out.len();
                out.put_u32(0);
                for v in values {
                    v.write(out);
                }
                patch_u32_len(out, at);
            }
            FieldValue::Timestamp(v) => out.put_u64(*v),
            FieldValue::Table(t) => t.write(out),
            FieldValue::Void => {}
        }
    }
}

impl FromIterator<(ShortString, FieldValue)> for FieldTable {
    /// Collects entries; a repeated key keeps its first position and its last value.
    fn from_iter<I: IntoIterator<Item = (ShortString, FieldValue)>>(iter: I) -> Self {
        let mut table = FieldTable::new();
        table.extend(iter);
        table
    }
}

impl Extend<(ShortString, FieldValue)> for FieldTable {
    fn extend<I: IntoIterator<Item = (ShortString, FieldValue)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl IntoIterator for FieldTable {
    type Item = (ShortString, FieldValue);
    type IntoIter = std::vec::IntoIter<(ShortString, FieldValue)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a FieldTable {
    type Item = (&'a ShortString, &'a FieldValue);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (ShortString, FieldValue)>,
        fn(&'a (ShortString, FieldValue)) -> (&'a ShortString, &'a FieldValue),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

#[cfg(test)]
mod tests;
