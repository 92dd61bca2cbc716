//! Unit tests for method encoding: known byte vectors, bit packing, and every method's defaults.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::table::{FieldTable, FieldValue};

/// One default value of every method.
fn every_method() -> Vec<Method> {
    vec![
        ConnectionStart::default().into(),
        ConnectionStartOk::default().into(),
        ConnectionSecure::default().into(),
        ConnectionSecureOk::default().into(),
        ConnectionTune::default().into(),
        ConnectionTuneOk::default().into(),
        ConnectionOpen::default().into(),
        ConnectionOpenOk::default().into(),
        ConnectionClose::default().into(),
        ConnectionCloseOk::default().into(),
        ConnectionBlocked::default().into(),
        ConnectionUnblocked::default().into(),
        ConnectionUpdateSecret::default().into(),
        ConnectionUpdateSecretOk::default().into(),
        ChannelOpen::default().into(),
        ChannelOpenOk::default().into(),
        ChannelFlow::default().into(),
        ChannelFlowOk::default().into(),
        ChannelClose::default().into(),
        ChannelCloseOk::default().into(),
        AccessRequest::default().into(),
        AccessRequestOk::default().into(),
        ExchangeDeclare::default().into(),
        ExchangeDeclareOk::default().into(),
        ExchangeDelete::default().into(),
        ExchangeDeleteOk::default().into(),
        ExchangeBind::default().into(),
        ExchangeBindOk::default().into(),
        ExchangeUnbind::default().into(),
        ExchangeUnbindOk::default().into(),
        QueueDeclare::default().into(),
        QueueDeclareOk::default().into(),
        QueueBind::default().into(),
        QueueBindOk::default().into(),
        QueuePurge::default().into(),
        QueuePurgeOk::default().into(),
        QueueDelete::default().into(),
        QueueDeleteOk::default().into(),
        QueueUnbind::default().into(),
        QueueUnbindOk::default().into(),
        BasicQos::default().into(),
        BasicQosOk::default().into(),
        BasicConsume::default().into(),
        BasicConsumeOk::default().into(),
        BasicCancel::default().into(),
        BasicCancelOk::default().into(),
        BasicPublish::default().into(),
        BasicReturn::default().into(),
        BasicDeliver::default().into(),
        BasicGet::default().into(),
        BasicGetOk::default().into(),
        BasicGetEmpty::default().into(),
        BasicAck::default().into(),
        BasicReject::default().into(),
        BasicRecoverAsync::default().into(),
        BasicRecover::default().into(),
        BasicRecoverOk::default().into(),
        BasicNack::default().into(),
        TxSelect::default().into(),
        TxSelectOk::default().into(),
        TxCommit::default().into(),
        TxCommitOk::default().into(),
        TxRollback::default().into(),
        TxRollbackOk::default().into(),
        ConfirmSelect::default().into(),
        ConfirmSelectOk::default().into(),
    ]
}

fn encode(m: &Method) -> BytesMut {
    let mut out = BytesMut::new();
    m.encode(&mut out);
    out
}

/// Splits an encoded method into its ids and arguments and decodes it again.
fn decode(encoded: &[u8]) -> Result<Method, WireError> {
    let class_id = u16::from_be_bytes([encoded[0], encoded[1]]);
    let method_id = u16::from_be_bytes([encoded[2], encoded[3]]);
    Method::decode(class_id, method_id, Bytes::copy_from_slice(&encoded[4..]))
}

#[test]
fn all_66_methods_have_distinct_ids_and_names() {
    let all = every_method();
    assert_eq!(all.len(), 66);
    let mut ids: Vec<(u16, u16)> = all.iter().map(|m| (m.class_id(), m.method_id())).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 66);
    let mut names: Vec<&str> = all.iter().map(Method::name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), 66);
}

#[test]
fn every_default_method_round_trips() {
    for m in every_method() {
        let out = encode(&m);
        assert_eq!(out.len(), m.encoded_len(), "{}", m.name());
        assert_eq!(decode(&out).unwrap(), m, "{}", m.name());
    }
}

#[test]
fn every_truncation_and_every_extra_byte_is_an_error() {
    for m in every_method() {
        let out = encode(&m);
        for cut in 4..out.len() {
            assert_eq!(
                decode(&out[..cut]),
                Err(WireError::Truncated),
                "{} cut at {cut}",
                m.name()
            );
        }
        let mut longer = out.to_vec();
        longer.push(0);
        assert_eq!(
            decode(&longer),
            Err(WireError::TrailingBytes),
            "{}",
            m.name()
        );
    }
}

#[test]
fn only_publish_return_deliver_and_get_ok_carry_content() {
    let with_content: Vec<&str> = every_method()
        .iter()
        .filter(|m| m.has_content())
        .map(Method::name)
        .collect();
    assert_eq!(
        with_content,
        [
            "basic.publish",
            "basic.return",
            "basic.deliver",
            "basic.get-ok"
        ]
    );
}

#[test]
fn basic_publish_known_bytes() {
    let m: Method = BasicPublish {
        exchange: "".into(),
        routing_key: "hello".into(),
        mandatory: true,
        immediate: false,
    }
    .into();
    // class 60, method 40, reserved ticket 0, exchange "", routing key "hello", bits 0b01.
    let expected = b"\x00\x3c\x00\x28\x00\x00\x00\x05hello\x01";
    assert_eq!(&encode(&m)[..], expected);
    assert_eq!(decode(expected).unwrap(), m);
    assert_eq!(m.name(), "basic.publish");
}

#[test]
fn queue_declare_packs_five_bits_into_one_octet_lsb_first() {
    let m: Method = QueueDeclare {
        queue: "q".into(),
        passive: false,
        durable: true,
        exclusive: false,
        auto_delete: true,
        no_wait: true,
        arguments: FieldTable::new(),
    }
    .into();
    // durable = bit 1, auto-delete = bit 3, no-wait = bit 4: 0b0001_1010.
    let expected = b"\x00\x32\x00\x0a\x00\x00\x01q\x1a\x00\x00\x00\x00";
    assert_eq!(&encode(&m)[..], expected);
    assert_eq!(decode(expected).unwrap(), m);
}

#[test]
fn exchange_declare_carries_its_kind_and_arguments() {
    let mut arguments = FieldTable::new();
    arguments.insert("alternate-exchange", FieldValue::LongString("ae".into()));
    let m: Method = ExchangeDeclare {
        exchange: "logs".into(),
        kind: "fanout".into(),
        durable: true,
        internal: true,
        arguments,
        ..Default::default()
    }
    .into();
    let out = encode(&m);
    assert_eq!(&out[..18], b"\x00\x28\x00\x0a\x00\x00\x04logs\x06fanout");
    // durable = bit 1, internal = bit 3.
    assert_eq!(out[18], 0b0000_1010);
    assert_eq!(decode(&out).unwrap(), m);
}

#[test]
fn connection_tune_known_bytes() {
    let m: Method = ConnectionTune {
        channel_max: 2047,
        frame_max: 131_072,
        heartbeat: 60,
    }
    .into();
    let expected = b"\x00\x0a\x00\x1e\x07\xff\x00\x02\x00\x00\x00\x3c";
    assert_eq!(&encode(&m)[..], expected);
}

#[test]
fn reserved_arguments_are_written_empty_and_skipped() {
    // connection.open: virtual host "/", reserved capabilities "" and insist bit 0.
    let open: Method = ConnectionOpen {
        virtual_host: "/".into(),
    }
    .into();
    assert_eq!(&encode(&open)[..], b"\x00\x0a\x00\x28\x01/\x00\x00");
    // A client that fills the reserved fields in is still understood.
    assert_eq!(decode(b"\x00\x0a\x00\x28\x01/\x03abc\x01").unwrap(), open);
    // channel.open-ok: reserved channel-id, an empty long string.
    let ok: Method = ChannelOpenOk {}.into();
    assert_eq!(&encode(&ok)[..], b"\x00\x14\x00\x0b\x00\x00\x00\x00");
}

#[test]
fn spec_defaults_are_the_struct_defaults() {
    let start = ConnectionStart::default();
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    assert_eq!(&start.mechanisms[..], b"PLAIN");
    assert_eq!(ConnectionOpen::default().virtual_host, "/");
    assert_eq!(ExchangeDeclare::default().kind, "direct");
    assert!(BasicReject::default().requeue);
    assert!(BasicNack::default().requeue);
    assert_eq!(AccessRequestOk::default().ticket, 1);
}

#[test]
fn unknown_method_is_reported_with_its_ids() {
    assert_eq!(
        Method::decode(60, 999, Bytes::new()),
        Err(WireError::UnknownMethod {
            class_id: 60,
            method_id: 999
        })
    );
    // exchange.unbind-ok is 51, not 41.
    assert!(Method::decode(40, 41, Bytes::new()).is_err());
    assert!(Method::decode(40, 51, Bytes::new()).is_ok());
}

#[test]
fn invalid_utf8_in_a_short_string_is_rejected() {
    let args = Bytes::from_static(b"\x00\x00\x00\x01\xff\x00");
    assert_eq!(Method::decode(60, 40, args), Err(WireError::InvalidUtf8));
}

#[test]
fn decoded_strings_point_into_the_frame() {
    let args = Bytes::from_static(b"\x00\x00\x03amq\x05hello\x00");
    let Ok(Method::BasicPublish(p)) = Method::decode(60, 40, args.clone()) else {
        panic!("not a publish");
    };
    assert_eq!(p.routing_key, "hello");
    assert_eq!(p.routing_key.as_bytes().as_ptr(), args[7..].as_ptr());
}
