//! Protocol-neutral values for arguments and message headers.
//!
//! AMQP field tables and MQTT user properties both land here, so the core can read arguments
//! (`x-match`, `alternate-exchange`, ...) and match headers without knowing any wire format.

use bytes::Bytes;

/// One argument or header value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A boolean.
    Bool(bool),
    /// Any signed or unsigned integer that fits in 64 signed bits.
    Int(i64),
    /// An unsigned integer above `i64::MAX`.
    UInt(u64),
    /// A floating point number.
    Float(f64),
    /// A decimal: `value * 10^-scale`.
    Decimal {
        /// Number of decimal digits.
        scale: u8,
        /// Unscaled value.
        value: u32,
    },
    /// A string (bytes, usually UTF-8).
    Str(Bytes),
    /// Opaque bytes.
    Bytes(Bytes),
    /// Seconds since the epoch.
    Timestamp(u64),
    /// A list of values.
    Array(Vec<Value>),
    /// A nested table.
    Table(Table),
    /// No value.
    Void,
}

impl Value {
    /// The string content, when this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The integer content, when this is an integer that fits in i64.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::UInt(u) => i64::try_from(*u).ok(),
            _ => None,
        }
    }

    /// Whether two values are equal for header matching: integers compare by value whatever
    /// their width on the wire, strings by bytes.
    pub fn matches(&self, other: &Value) -> bool {
        match (self.as_i64(), other.as_i64()) {
            (Some(a), Some(b)) => a == b,
            _ => self == other,
        }
    }
}

/// An ordered table of named values (AMQP field table, MQTT user properties).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table(pub Vec<(String, Value)>);

impl Table {
    /// An empty table.
    pub fn new() -> Table {
        Table(Vec::new())
    }

    /// The value of `key`, if present (the first one when repeated).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// The string value of `key`, if present and a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(Value::as_str)
    }

    /// Whether the table has no entries.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Equality for redeclare checks: same keys with equal values, in any order.
    pub fn equivalent(&self, other: &Table) -> bool {
        self.0.len() == other.0.len()
            && self
                .0
                .iter()
                .all(|(k, v)| other.get(k).is_some_and(|o| o.matches(v)))
    }
}
