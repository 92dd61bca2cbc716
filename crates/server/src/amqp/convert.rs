//! Crossing between AMQP wire types and the broker's neutral ones.

use amqp_wire::{BasicProperties, FieldTable, FieldValue, ReplyCode};
use bytes::Bytes;
use pigeon_broker::{BrokerError, PropertiesView, Table, Value};

/// An AMQP field table as broker arguments.
pub fn table(t: &FieldTable) -> Table {
    Table(
        t.iter()
            .map(|(k, v)| (k.as_str().to_string(), value(v)))
            .collect(),
    )
}

fn value(v: &FieldValue) -> Value {
    match v {
        FieldValue::Bool(b) => Value::Bool(*b),
        FieldValue::I8(i) => Value::Int(i64::from(*i)),
        FieldValue::U8(i) => Value::Int(i64::from(*i)),
        FieldValue::I16(i) => Value::Int(i64::from(*i)),
        FieldValue::U16(i) => Value::Int(i64::from(*i)),
        FieldValue::I32(i) => Value::Int(i64::from(*i)),
        FieldValue::U32(i) => Value::Int(i64::from(*i)),
        FieldValue::I64(i) => Value::Int(*i),
        FieldValue::U64(u) => i64::try_from(*u).map_or(Value::UInt(*u), Value::Int),
        FieldValue::F32(f) => Value::Float(f64::from(*f)),
        FieldValue::F64(f) => Value::Float(*f),
        FieldValue::Decimal { scale, value } => Value::Decimal {
            scale: *scale,
            value: *value,
        },
        FieldValue::LongString(b) => Value::Str(b.clone()),
        FieldValue::Array(a) => Value::Array(a.iter().map(value).collect()),
        FieldValue::Timestamp(t) => Value::Timestamp(*t),
        FieldValue::Table(t) => Value::Table(table(t)),
        FieldValue::Void => Value::Void,
        FieldValue::ByteArray(b) => Value::Bytes(b.clone()),
        // FieldValue is non-exhaustive-proof: anything new reads as no value.
        #[allow(unreachable_patterns)]
        _ => Value::Void,
    }
}

/// Decodes the neutral view of AMQP basic properties (the broker calls it on demand).
/// A malformed property list reads as no properties.
pub fn properties_view(raw: &Bytes) -> PropertiesView {
    let Ok(p) = BasicProperties::decode(raw) else {
        return PropertiesView::default();
    };
    PropertiesView {
        headers: p.headers.as_ref().map(table),
        delivery_mode: p.delivery_mode,
        priority: p.priority,
        expiration: p.expiration.map(|e| e.as_str().to_string()),
    }
}

/// The AMQP reply code for a broker refusal.
pub fn reply_code(e: &BrokerError) -> ReplyCode {
    match e {
        BrokerError::NotFound(_) => ReplyCode::NotFound,
        BrokerError::AccessRefused(_) => ReplyCode::AccessRefused,
        BrokerError::ResourceLocked(_) => ReplyCode::ResourceLocked,
        BrokerError::PreconditionFailed(_) => ReplyCode::PreconditionFailed,
        BrokerError::NotAllowed(_) => ReplyCode::NotAllowed,
        BrokerError::CommandInvalid(_) => ReplyCode::CommandInvalid,
        BrokerError::NotImplemented(_) => ReplyCode::NotImplemented,
        _ => ReplyCode::InternalError,
    }
}
