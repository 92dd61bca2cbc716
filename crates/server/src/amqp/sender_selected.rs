//! Sender-selected distribution: the `CC` and `BCC` headers of a published message name more
//! routing keys, used with the routing key for every exchange on the way; `BCC` is removed
//! before the message is stored or delivered. RabbitMQ: `rabbit_basic:header_routes/1` and
//! the `BCC` strip in `rabbit_basic:strip_bcc/1` (docs: "Sender-selected Distribution").

use super::error::{AmqpError, AmqpResult};
use amqp_wire::{BasicProperties, FieldValue, ReplyCode};
use bytes::Bytes;

/// The `headers` bit of the first property-flags byte (bit 13 of the 16-bit flags).
const FLAG_HEADERS_HIGH: u8 = 0x20;

/// The extra routing keys of a publish whose encoded properties are `props`, and the
/// properties to store (without `BCC`). Costs one flag test for a message without headers
/// and a byte search for one with headers that name neither key.
pub(super) fn extra_keys(props: &mut Bytes) -> AmqpResult<Vec<String>> {
    let has_headers = props.first().is_some_and(|f| f & FLAG_HEADERS_HIGH != 0);
    if !has_headers || !(contains(props, b"\x02CC") || contains(props, b"\x03BCC")) {
        return Ok(Vec::new());
    }
    let Ok(mut bp) = BasicProperties::decode(props) else {
        // Malformed properties are the header frame's business, not routing's.
        return Ok(Vec::new());
    };
    let Some(headers) = bp.headers.as_mut() else {
        return Ok(Vec::new());
    };
    let mut keys = Vec::new();
    for name in ["CC", "BCC"] {
        if let Some(value) = headers.get(name) {
            routes(name, value, &mut keys)?;
        }
    }
    if headers.remove("BCC").is_some() {
        *props = bp.to_bytes();
    }
    Ok(keys)
}

/// The `CC` keys of a stored message's properties (`BCC` went at publish), for
/// dead-lettering. A `CC` that is not an array names none: it was refused at publish, so only
/// a message converted from another protocol could carry one.
pub(super) fn cc_keys(props: &Bytes) -> Vec<String> {
    let has_headers = props.first().is_some_and(|f| f & FLAG_HEADERS_HIGH != 0);
    if !has_headers || !contains(props, b"\x02CC") {
        return Vec::new();
    }
    let mut keys = Vec::new();
    if let Some(cc) = BasicProperties::decode(props)
        .ok()
        .and_then(|p| p.headers)
        .and_then(|mut h| h.remove("CC"))
    {
        let _ = routes("CC", &cc, &mut keys);
    }
    keys
}

/// The routing keys of one header: an array of long strings. Anything else is refused as
/// RabbitMQ refuses it (`unacceptable_type_in_header`, a 406 from `rabbit_channel`).
fn routes(name: &str, value: &FieldValue, keys: &mut Vec<String>) -> AmqpResult<()> {
    let refuse = |tag: u8| {
        AmqpError::new(
            ReplyCode::PreconditionFailed,
            format!(
                "invalid message: {{unacceptable_type_in_header,\"{name}\",{}}}",
                type_name(tag)
            ),
        )
    };
    let FieldValue::Array(items) = value else {
        return Err(refuse(value.tag()));
    };
    for item in items {
        // RabbitMQ keeps the long strings of the array and skips anything else in it.
        if let FieldValue::LongString(s) = item {
            keys.push(String::from_utf8_lossy(s).into_owned());
        }
    }
    Ok(())
}

/// The name RabbitMQ's table parser (`rabbit_binary_parser`) gives a field type.
fn type_name(tag: u8) -> &'static str {
    match tag {
        b'S' => "longstr",
        b'I' => "signedint",
        b'i' => "unsignedint",
        b'l' => "long",
        b'L' => "unsignedlong",
        b'b' => "byte",
        b'B' => "unsignedbyte",
        b's' => "short",
        b'u' => "unsignedshort",
        b'f' => "float",
        b'd' => "double",
        b'D' => "decimal",
        b't' => "bool",
        b'T' => "timestamp",
        b'F' => "table",
        b'x' => "binary",
        b'V' => "void",
        _ => "unknown",
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use amqp_wire::FieldTable;

    fn props(headers: Option<FieldTable>) -> Bytes {
        BasicProperties {
            headers,
            ..BasicProperties::default()
        }
        .to_bytes()
    }

    fn array(keys: &[&str]) -> FieldValue {
        FieldValue::Array(
            keys.iter()
                .map(|k| FieldValue::LongString(Bytes::copy_from_slice(k.as_bytes())))
                .collect(),
        )
    }

    #[test]
    fn cc_and_bcc_add_keys_and_bcc_is_removed() {
        let mut h = FieldTable::new();
        h.insert("CC", array(&["a", "b"]));
        h.insert("BCC", array(&["c"]));
        h.insert("other", FieldValue::I32(1));
        let mut p = props(Some(h));
        assert_eq!(extra_keys(&mut p).unwrap(), ["a", "b", "c"]);
        let left = BasicProperties::decode(&p).unwrap().headers.unwrap();
        assert!(left.get("BCC").is_none());
        assert!(left.get("CC").is_some() && left.get("other").is_some());
    }

    #[test]
    fn cc_keys_reads_the_cc_array_of_stored_properties() {
        let mut h = FieldTable::new();
        h.insert("CC", array(&["a", "b"]));
        assert_eq!(cc_keys(&props(Some(h))), ["a", "b"]);
        let mut h = FieldTable::new();
        h.insert("CC", FieldValue::LongString(Bytes::from_static(b"a")));
        assert!(cc_keys(&props(Some(h))).is_empty(), "not an array: no keys");
        assert!(cc_keys(&props(None)).is_empty());
    }

    #[test]
    fn no_headers_or_no_cc_leaves_the_properties_alone() {
        for headers in [None, Some(FieldTable::new())] {
            let mut p = props(headers);
            let before = p.clone();
            assert!(extra_keys(&mut p).unwrap().is_empty());
            assert_eq!(p, before);
        }
    }

    #[test]
    fn a_cc_header_that_is_not_an_array_is_refused_with_406() {
        let mut h = FieldTable::new();
        h.insert("CC", FieldValue::LongString(Bytes::from_static(b"a")));
        let e = extra_keys(&mut props(Some(h))).unwrap_err();
        assert_eq!(e.code, ReplyCode::PreconditionFailed);
        // RabbitMQ 3.10's words, compared through pika.
        assert_eq!(
            e.text,
            "PRECONDITION_FAILED - invalid message: {unacceptable_type_in_header,\"CC\",longstr}"
        );
    }
}
