//! Unit tests for commands: every command round-trips, byte vectors match what RabbitMQ's
//! `rabbit_stream_core:frame/1` writes, and hostile content is refused with a typed error.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::chunk::{Chunk, Entry, SubBatch};
use crate::frame::{decode, decode_frame};
use crate::offset::OffsetSpec;
use crate::types::{Properties, Str};

fn props(pairs: &[(&str, &str)]) -> Properties {
    pairs.iter().copied().collect()
}

fn s(v: &str) -> Str {
    Str::from(v)
}

/// One value of every command, with non-default contents.
pub(crate) fn every_command() -> Vec<Command> {
    let chunk = Chunk::from_entries(
        1_700_000_000_000,
        2,
        100,
        &[
            Entry::Simple(Bytes::from_static(b"m1")),
            Entry::SubBatch(SubBatch {
                compression: 1,
                records: 3,
                uncompressed_len: 30,
                body: Bytes::from_static(b"gz"),
            }),
        ],
    );
    let published = vec![
        PublishedMessage::simple(1, Bytes::from_static(b"hello")),
        PublishedMessage {
            publishing_id: 2,
            filter_value: Some(s("eu")),
            entry: Entry::Simple(Bytes::from_static(b"world")),
        },
    ];
    vec![
        DeclarePublisher {
            correlation_id: 1,
            publisher_id: 7,
            reference: s("app-1"),
            stream: s("orders"),
        }
        .into(),
        Publish::new(7, &published[..1]).into(),
        Publish::new(7, &published).into(),
        Publish::with_version(7, true, &published[..1]).into(),
        Publish::new(7, &[]).into(),
        PublishConfirm {
            publisher_id: 7,
            publishing_ids: vec![1, 2, u64::MAX],
        }
        .into(),
        PublishError {
            publisher_id: 7,
            errors: vec![PublishingError {
                publishing_id: 3,
                code: ResponseCode::PublisherDoesNotExist,
            }],
        }
        .into(),
        QueryPublisherSequence {
            correlation_id: 2,
            reference: s("app-1"),
            stream: s("orders"),
        }
        .into(),
        QueryPublisherSequenceResponse {
            correlation_id: 2,
            code: ResponseCode::Ok,
            sequence: 99,
        }
        .into(),
        DeletePublisher {
            correlation_id: 3,
            publisher_id: 7,
        }
        .into(),
        Subscribe {
            correlation_id: 4,
            subscription_id: 1,
            stream: s("orders"),
            offset: OffsetSpec::Offset(12),
            credit: 10,
            properties: Properties::new(),
        }
        .into(),
        Subscribe {
            correlation_id: 4,
            subscription_id: 2,
            stream: s("orders"),
            offset: OffsetSpec::Timestamp(-5),
            credit: 1,
            properties: props(&[("single-active-consumer", "true"), ("name", "g")]),
        }
        .into(),
        Deliver {
            subscription_id: 1,
            committed_chunk_id: None,
            chunk: chunk.clone(),
        }
        .into(),
        Deliver {
            subscription_id: 1,
            committed_chunk_id: Some(100),
            chunk,
        }
        .into(),
        Credit {
            subscription_id: 1,
            credit: 5,
        }
        .into(),
        CreditResponse {
            code: ResponseCode::SubscriptionIdDoesNotExist,
            subscription_id: 9,
        }
        .into(),
        StoreOffset {
            reference: s("c1"),
            stream: s("orders"),
            offset: 77,
        }
        .into(),
        QueryOffset {
            correlation_id: 5,
            reference: s("c1"),
            stream: s("orders"),
        }
        .into(),
        QueryOffsetResponse {
            correlation_id: 5,
            code: ResponseCode::NoOffset,
            offset: 0,
        }
        .into(),
        Unsubscribe {
            correlation_id: 6,
            subscription_id: 1,
        }
        .into(),
        Create {
            correlation_id: 7,
            stream: s("orders"),
            arguments: props(&[("x-max-age", "1D")]),
        }
        .into(),
        Create {
            correlation_id: 7,
            stream: s("empty-args"),
            arguments: Properties::new(),
        }
        .into(),
        Delete {
            correlation_id: 8,
            stream: s("orders"),
        }
        .into(),
        Metadata {
            correlation_id: 9,
            streams: vec![s("a"), s("b")],
        }
        .into(),
        MetadataResponse {
            correlation_id: 9,
            brokers: vec![Broker {
                reference: 0,
                host: s("localhost"),
                port: 5552,
            }],
            streams: vec![
                StreamMetadata {
                    stream: s("a"),
                    code: ResponseCode::Ok,
                    leader: 0,
                    replicas: vec![0, 1],
                },
                StreamMetadata {
                    stream: s("b"),
                    code: ResponseCode::StreamDoesNotExist,
                    leader: NO_LEADER,
                    replicas: vec![],
                },
            ],
        }
        .into(),
        MetadataUpdate {
            code: ResponseCode::StreamNotAvailable,
            stream: s("a"),
        }
        .into(),
        PeerProperties {
            correlation_id: 10,
            properties: props(&[("product", "pigeon"), ("connection_name", "c")]),
        }
        .into(),
        PeerPropertiesResponse {
            correlation_id: 10,
            code: ResponseCode::Ok,
            properties: props(&[("product", "RabbitMQ")]),
        }
        .into(),
        SaslHandshake { correlation_id: 11 }.into(),
        SaslHandshakeResponse {
            correlation_id: 11,
            code: ResponseCode::Ok,
            mechanisms: vec![s("PLAIN"), s("AMQPLAIN")],
        }
        .into(),
        SaslAuthenticate {
            correlation_id: 12,
            mechanism: s("PLAIN"),
            data: Some(Bytes::from_static(b"\0guest\0guest")),
        }
        .into(),
        SaslAuthenticate {
            correlation_id: 12,
            mechanism: s("ANONYMOUS"),
            data: None,
        }
        .into(),
        SaslAuthenticateResponse {
            correlation_id: 12,
            code: ResponseCode::Ok,
            challenge: None,
        }
        .into(),
        SaslAuthenticateResponse {
            correlation_id: 12,
            code: ResponseCode::SaslChallenge,
            challenge: Some(Bytes::from_static(b"nonce")),
        }
        .into(),
        Tune {
            frame_max: 1_048_576,
            heartbeat: 60,
        }
        .into(),
        TuneResponse {
            frame_max: 131_072,
            heartbeat: 0,
        }
        .into(),
        Open {
            correlation_id: 13,
            virtual_host: s("/"),
        }
        .into(),
        OpenResponse {
            correlation_id: 13,
            code: ResponseCode::Ok,
            properties: props(&[("advertised_host", "h"), ("advertised_port", "5552")]),
        }
        .into(),
        OpenResponse {
            correlation_id: 13,
            code: ResponseCode::VirtualHostAccessFailure,
            properties: Properties::new(),
        }
        .into(),
        Close {
            correlation_id: 14,
            code: ResponseCode::Ok,
            reason: s("bye"),
        }
        .into(),
        Heartbeat.into(),
        Route {
            correlation_id: 15,
            routing_key: s("k"),
            super_stream: s("invoices"),
        }
        .into(),
        RouteResponse {
            correlation_id: 15,
            code: ResponseCode::Ok,
            streams: vec![s("invoices-0")],
        }
        .into(),
        Partitions {
            correlation_id: 16,
            super_stream: s("invoices"),
        }
        .into(),
        PartitionsResponse {
            correlation_id: 16,
            code: ResponseCode::Ok,
            streams: vec![s("invoices-0"), s("invoices-1")],
        }
        .into(),
        ConsumerUpdate {
            correlation_id: 17,
            subscription_id: 2,
            active: true,
        }
        .into(),
        ConsumerUpdateResponse {
            correlation_id: 17,
            code: ResponseCode::Ok,
            offset: Some(OffsetSpec::Next),
        }
        .into(),
        ConsumerUpdateResponse {
            correlation_id: 17,
            code: ResponseCode::Ok,
            offset: None,
        }
        .into(),
        ExchangeCommandVersions {
            correlation_id: 18,
            commands: vec![CommandVersion {
                key: key::DELIVER,
                min_version: 1,
                max_version: 2,
            }],
        }
        .into(),
        ExchangeCommandVersionsResponse {
            correlation_id: 18,
            code: ResponseCode::Ok,
            commands: SERVER_COMMAND_VERSIONS.to_vec(),
        }
        .into(),
        StreamStats {
            correlation_id: 19,
            stream: s("orders"),
        }
        .into(),
        StreamStatsResponse {
            correlation_id: 19,
            code: ResponseCode::Ok,
            stats: vec![(s("first_chunk_id"), 0), (s("committed_chunk_id"), -1)],
        }
        .into(),
        CreateSuperStream {
            correlation_id: 20,
            name: s("invoices"),
            partitions: vec![s("invoices-0"), s("invoices-1")],
            binding_keys: vec![s("0"), s("1")],
            arguments: props(&[("x-queue-leader-locator", "balanced")]),
        }
        .into(),
        DeleteSuperStream {
            correlation_id: 21,
            name: s("invoices"),
        }
        .into(),
        ResolveOffsetSpec {
            correlation_id: 22,
            stream: s("orders"),
            offset: OffsetSpec::First,
            properties: Properties::new(),
        }
        .into(),
        ResolveOffsetSpec {
            correlation_id: 22,
            stream: s("orders"),
            offset: OffsetSpec::Last,
            properties: props(&[("chunk_selector", "all")]),
        }
        .into(),
        ResolveOffsetSpecResponse {
            correlation_id: 22,
            code: ResponseCode::Ok,
            offset_type: crate::OFFSET_TYPE_OFFSET,
            offset: 1234,
        }
        .into(),
        Command::Response(Response::new(key::DECLARE_PUBLISHER, 1, ResponseCode::Ok)),
        Command::Response(Response::new(key::DELETE_PUBLISHER, 3, ResponseCode::Ok)),
        Command::Response(Response::new(
            key::SUBSCRIBE,
            4,
            ResponseCode::SubscriptionIdAlreadyExists,
        )),
        Command::Response(Response::new(key::UNSUBSCRIBE, 6, ResponseCode::Ok)),
        Command::Response(Response::new(
            key::CREATE,
            7,
            ResponseCode::StreamAlreadyExists,
        )),
        Command::Response(Response::new(key::DELETE, 8, ResponseCode::Ok)),
        Command::Response(Response::new(key::CLOSE, 14, ResponseCode::Ok)),
        Command::Response(Response::new(
            key::CREATE_SUPER_STREAM,
            20,
            ResponseCode::Ok,
        )),
        Command::Response(Response::new(
            key::DELETE_SUPER_STREAM,
            21,
            ResponseCode::Ok,
        )),
        Command::Unknown {
            key: 0x0042,
            version: 1,
            content: Bytes::from_static(b"?"),
        },
    ]
}

fn round_trip(command: &Command) -> Bytes {
    let bytes = command.to_bytes();
    let mut buf = BytesMut::from(&bytes[..]);
    let back = decode(&mut buf, 0).unwrap().unwrap();
    assert!(buf.is_empty());
    assert_eq!(&back, command);
    assert_eq!(back.to_bytes(), bytes);
    bytes
}

#[test]
fn every_command_round_trips() {
    let all = every_command();
    for command in &all {
        round_trip(command);
    }
    // Every key of PROTOCOL.adoc's table appears, as request or server command and (where it
    // has one) as response.
    let keys: std::collections::HashSet<u16> = all.iter().map(Command::key).collect();
    for k in 0x0001..=0x001f {
        assert!(keys.contains(&k), "key {k:#06x} missing from every_command");
    }
    for k in [
        1, 5, 6, 7, 9, 11, 12, 13, 14, 15, 17, 18, 19, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30, 31,
    ] {
        assert!(
            keys.contains(&(k | RESPONSE_FLAG)),
            "response {k:#06x} missing"
        );
    }
}

#[test]
fn byte_vectors_match_rabbitmq() {
    // heartbeat: <<4:32, 0:1, 23:15, 1:16>>
    assert_eq!(
        &round_trip(&Heartbeat.into())[..],
        &[0, 0, 0, 4, 0, 0x17, 0, 1]
    );
    // tune from the server: frame max, heartbeat, no correlation id.
    assert_eq!(
        &round_trip(
            &Tune {
                frame_max: 0x0010_0000,
                heartbeat: 60
            }
            .into()
        )[..],
        &[0, 0, 0, 12, 0, 0x14, 0, 1, 0, 0x10, 0, 0, 0, 0, 0, 60]
    );
    // credit response: code before subscription id, no correlation id.
    assert_eq!(
        &round_trip(
            &CreditResponse {
                code: ResponseCode::SubscriptionIdDoesNotExist,
                subscription_id: 3
            }
            .into()
        )[..],
        &[0, 0, 0, 7, 0x80, 0x09, 0, 1, 0, 4, 3]
    );
    // subscribe at "next" with no properties: nothing after the credit.
    assert_eq!(
        &round_trip(
            &Subscribe {
                correlation_id: 1,
                subscription_id: 0,
                stream: s("s"),
                offset: OffsetSpec::Next,
                credit: 10,
                properties: Properties::new(),
            }
            .into()
        )[..],
        &[0, 0, 0, 16, 0, 7, 0, 1, 0, 0, 0, 1, 0, 0, 1, b's', 0, 3, 0, 10]
    );
    // open response without properties: just the code.
    assert_eq!(
        &round_trip(
            &OpenResponse {
                correlation_id: 2,
                code: ResponseCode::Ok,
                properties: Properties::new()
            }
            .into()
        )[..],
        &[0, 0, 0, 10, 0x80, 0x15, 0, 1, 0, 0, 0, 2, 0, 1]
    );
    // an empty SASL response is null.
    let auth = round_trip(
        &SaslAuthenticate {
            correlation_id: 1,
            mechanism: s("A"),
            data: None,
        }
        .into(),
    );
    assert_eq!(&auth[auth.len() - 4..], &[0xff, 0xff, 0xff, 0xff]);
}

#[test]
fn publish_v1_and_v2_wire_forms() {
    let v1 = round_trip(
        &Publish::new(1, &[PublishedMessage::simple(5, Bytes::from_static(b"ab"))]).into(),
    );
    assert_eq!(
        &v1[..],
        &[0, 0, 0, 23, 0, 2, 0, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 2, b'a', b'b']
    );
    let v2 = Publish::new(
        1,
        &[PublishedMessage {
            publishing_id: 5,
            filter_value: Some(s("f")),
            entry: Entry::Simple(Bytes::from_static(b"ab")),
        }],
    );
    assert!(v2.is_filtered());
    let bytes = round_trip(&v2.clone().into());
    assert_eq!(&bytes[6..8], &[0, 2], "version 2");
    assert_eq!(
        &bytes[21..24],
        &[0, 1, b'f'],
        "filter value before the entry"
    );
    let messages: Vec<_> = v2.messages().collect();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].filter_value.as_deref(), Some("f"));

    // Version 2 with a null filter value.
    let null = Publish::with_version(1, true, &[PublishedMessage::simple(1, Bytes::new())]);
    let bytes = round_trip(&null.into());
    assert_eq!(&bytes[21..23], &[0xff, 0xff]);
}

#[test]
fn publish_bodies_are_slices_of_the_frame() {
    let bytes = Command::from(Publish::new(
        1,
        &[PublishedMessage::simple(1, Bytes::from_static(b"body"))],
    ))
    .to_bytes();
    let mut buf = BytesMut::from(&bytes[..]);
    let frame = decode_frame(&mut buf, 0).unwrap().unwrap();
    let content = frame.content.clone();
    let Command::Publish(p) = Command::decode(frame).unwrap() else {
        panic!("not a publish")
    };
    let Some(PublishedMessage {
        entry: Entry::Simple(body),
        ..
    }) = p.messages().next()
    else {
        panic!("no message")
    };
    assert_eq!(body.as_ptr(), content[content.len() - 4..].as_ptr());
}

#[test]
fn deliver_header_matches_the_encoded_frame() {
    for committed in [None, Some(9)] {
        let chunk = Chunk::from_entries(1, 1, 0, &[Entry::Simple(Bytes::from_static(b"x"))]);
        let full = Command::from(Deliver {
            subscription_id: 4,
            committed_chunk_id: committed,
            chunk: chunk.clone(),
        })
        .to_bytes();
        let mut split = BytesMut::new();
        Deliver::encode_header(4, committed, chunk.encoded_len(), &mut split);
        chunk.encode(&mut split);
        assert_eq!(split.freeze(), full);
    }
}
