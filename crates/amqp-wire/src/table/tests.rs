//! Unit tests for field tables: known bytes, every type, limits on nesting and lengths.

use super::*;

fn round_trip(t: &FieldTable) -> FieldTable {
    let mut out = BytesMut::new();
    t.encode(&mut out);
    assert_eq!(out.len(), t.encoded_len());
    FieldTable::decode(out.freeze()).unwrap()
}

#[test]
fn known_bytes_for_a_small_table() {
    let mut t = FieldTable::new();
    t.insert("x-message-ttl", FieldValue::I32(60_000));
    t.insert(
        "x-dead-letter-exchange",
        FieldValue::LongString("dlx".into()),
    );
    let mut out = BytesMut::new();
    t.encode(&mut out);
    let mut expected = Vec::new();
    expected.extend_from_slice(&(14 + 5 + 23 + 8u32).to_be_bytes());
    expected.extend_from_slice(b"\x0dx-message-ttlI");
    expected.extend_from_slice(&60_000i32.to_be_bytes());
    expected.extend_from_slice(b"\x16x-dead-letter-exchangeS\x00\x00\x00\x03dlx");
    assert_eq!(&out[..], &expected[..]);
    assert_eq!(round_trip(&t), t);
}

#[test]
fn every_type_round_trips() {
    let mut inner = FieldTable::new();
    inner.insert("k", FieldValue::Void);
    let t: FieldTable = [
        ("t", FieldValue::Bool(true)),
        ("b", FieldValue::I8(-1)),
        ("B", FieldValue::U8(255)),
        ("s", FieldValue::I16(-300)),
        ("u", FieldValue::U16(65_000)),
        ("I", FieldValue::I32(-70_000)),
        ("i", FieldValue::U32(4_000_000_000)),
        ("l", FieldValue::I64(-1 << 40)),
        ("L", FieldValue::U64(u64::MAX)),
        ("f", FieldValue::F32(1.5)),
        ("d", FieldValue::F64(-2.25)),
        (
            "D",
            FieldValue::Decimal {
                scale: 2,
                value: 12_345,
            },
        ),
        ("S", FieldValue::LongString(Bytes::from_static(b"\x00\xff"))),
        (
            "A",
            FieldValue::Array(vec![FieldValue::U8(1), FieldValue::Void]),
        ),
        ("T", FieldValue::Timestamp(1_700_000_000)),
        ("F", FieldValue::Table(inner)),
        ("V", FieldValue::Void),
        ("x", FieldValue::ByteArray(Bytes::from_static(b"raw"))),
    ]
    .into_iter()
    .map(|(k, v)| (ShortString::from(k), v))
    .collect();
    assert_eq!(round_trip(&t), t);
}

#[test]
fn insert_replaces_in_place_and_remove_works() {
    let mut t = FieldTable::new();
    t.insert("a", FieldValue::U8(1));
    t.insert("b", FieldValue::U8(2));
    t.insert("a", FieldValue::U8(3));
    let keys: Vec<&str> = t.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(t.get("a"), Some(&FieldValue::U8(3)));
    assert_eq!(t.remove("a"), Some(FieldValue::U8(3)));
    assert_eq!(t.remove("a"), None);
    assert_eq!(t.len(), 1);
}

#[test]
fn unknown_type_tag_is_rejected() {
    let buf = Bytes::from_static(b"\x00\x00\x00\x03\x01kZ");
    assert_eq!(
        FieldTable::decode(buf),
        Err(WireError::InvalidFieldType(b'Z'))
    );
}

#[test]
fn table_length_beyond_input_is_truncated() {
    let buf = Bytes::from_static(b"\x00\x00\x00\x09\x01kV");
    assert_eq!(FieldTable::decode(buf), Err(WireError::Truncated));
}

#[test]
fn value_overrunning_its_table_is_truncated() {
    // The table claims 4 bytes but its I32 value needs 4 more than that.
    let buf = Bytes::from_static(b"\x00\x00\x00\x04\x01kI\x00\x00\x00\x00\x01");
    assert_eq!(FieldTable::decode(buf), Err(WireError::Truncated));
}

/// A table nested `levels` deep: `{"k": {"k": ... {}}}`. Level k's body is 7 bytes per
/// level below it (`\x01kF` and a length), so it is written front to back in linear time.
fn nested(levels: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(levels * 7);
    for k in 1..=levels {
        out.extend_from_slice(&((7 * (levels - k)) as u32).to_be_bytes());
        if k < levels {
            out.extend_from_slice(b"\x01kF");
        }
    }
    out
}

#[test]
fn nesting_up_to_the_limit_is_fine_beyond_is_too_deep() {
    assert!(FieldTable::decode(Bytes::from(nested(MAX_TABLE_DEPTH))).is_ok());
    assert_eq!(
        FieldTable::decode(Bytes::from(nested(MAX_TABLE_DEPTH + 1))),
        Err(WireError::TooDeep)
    );
    // Far deeper than the stack would allow without the limit.
    assert_eq!(
        FieldTable::decode(Bytes::from(nested(100_000))),
        Err(WireError::TooDeep)
    );
}

#[test]
fn deep_arrays_are_limited_too() {
    // {"k": [[[...]]]}: each array level is `A` and a length, 5 bytes.
    let levels = 10_000;
    let mut buf = ((2 + 5 * levels) as u32).to_be_bytes().to_vec();
    buf.extend_from_slice(b"\x01k");
    for k in 1..=levels {
        buf.push(b'A');
        buf.extend_from_slice(&((5 * (levels - k)) as u32).to_be_bytes());
    }
    assert_eq!(
        FieldTable::decode(Bytes::from(buf)),
        Err(WireError::TooDeep)
    );
}

#[test]
fn integer_accessor_accepts_every_width() {
    assert_eq!(FieldValue::I8(-5).as_i64(), Some(-5));
    assert_eq!(FieldValue::U32(7).as_i64(), Some(7));
    assert_eq!(FieldValue::U64(u64::MAX).as_i64(), None);
    assert_eq!(FieldValue::LongString("1".into()).as_i64(), None);
    assert_eq!(FieldValue::LongString("abc".into()).as_str(), Some("abc"));
}
