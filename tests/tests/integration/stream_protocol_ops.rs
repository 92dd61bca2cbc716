//! Stream connections as the operator sees them, what survives a restart, and what is stored
//! as the client sent it (sub-entry batches, filter values), over a raw client.

use crate::stream_protocol_support;

use bytes::Bytes;
use stream_protocol_support::{broker, Raw};
use stream_wire::{
    compression, Command, Entry, OffsetSpec, Properties, Publish, PublishedMessage, QueryOffset,
    QueryPublisherSequence, ResponseCode, StoreOffset, SubBatch, Subscribe,
};

/// Sends `publish` and waits for its confirm.
async fn publish_confirmed(raw: &mut Raw, publish: Publish) {
    let n = publish.len() as usize;
    raw.send(publish).await;
    match raw.recv().await {
        Some(Command::PublishConfirm(c)) => assert_eq!(c.publishing_ids.len(), n),
        other => panic!("expected PublishConfirm, got {other:?}"),
    }
}

/// Subscribes from `first` with `properties` and returns the chunks delivered before the
/// answer to a later round trip (a QueryOffset).
async fn chunks_from_first(
    raw: &mut Raw,
    name: &str,
    properties: Properties,
) -> Vec<stream_wire::Chunk> {
    raw.send(Subscribe {
        correlation_id: 3,
        subscription_id: 0,
        stream: name.into(),
        offset: OffsetSpec::First,
        credit: 100,
        properties,
    })
    .await;
    raw.send(QueryOffset {
        correlation_id: 4,
        reference: "marker".into(),
        stream: name.into(),
    })
    .await;
    let mut chunks = Vec::new();
    loop {
        match raw.recv().await.expect("open") {
            Command::Deliver(d) => chunks.push(d.chunk),
            Command::QueryOffsetResponse(_) => return chunks,
            _ => {}
        }
    }
}

#[tokio::test]
async fn stream_connections_are_listed_and_closed_by_an_operator() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let server = broker.server().unwrap();
    let mut raw = Raw::open(broker.stream_addr().unwrap()).await;
    let port = raw.local.port();
    let conn = server
        .connections()
        .into_iter()
        .find(|c| c.peer_port == port)
        .expect("the stream connection is listed");
    assert_eq!(conn.protocol, "stream");
    assert_eq!(conn.user, "guest");
    assert_eq!(conn.vhost, "/");
    assert_eq!(conn.state, "running");
    assert!(server.close_connection(&conn.name, "maintenance"));
    // rabbit_stream_reader closes the socket with no Close frame (rabbitmq-stream-js-client
    // fails on a server Close: its "closed_connection listener is invoked by the server"
    // test found it).
    assert!(raw.until_closed().await.is_empty());
}

#[tokio::test]
async fn offsets_and_publisher_sequences_survive_a_restart() {
    let Some((data, broker)) = broker().await else {
        return;
    };
    let name = pigeon_tests::unique("sp-restart");
    let mut raw = Raw::open(broker.stream_addr().unwrap()).await;
    raw.create(&name).await;
    raw.declare_publisher(&name, "p1").await;
    let messages: Vec<PublishedMessage> = (1..=3)
        .map(|i| PublishedMessage::simple(i, Bytes::from(format!("m{i}"))))
        .collect();
    publish_confirmed(&mut raw, Publish::new(1, &messages)).await;
    raw.send(StoreOffset {
        reference: "reader".into(),
        stream: name.as_str().into(),
        offset: 2,
    })
    .await;
    // StoreOffset has no answer: a round trip after it shows it was handled.
    raw.send(QueryOffset {
        correlation_id: 8,
        reference: "reader".into(),
        stream: name.as_str().into(),
    })
    .await;
    assert!(matches!(raw.recv().await, Some(Command::QueryOffsetResponse(r)) if r.offset == 2));
    drop(raw);
    let broker = data.restart(broker).await;
    let mut raw = Raw::open(broker.stream_addr().unwrap()).await;
    raw.send(QueryOffset {
        correlation_id: 9,
        reference: "reader".into(),
        stream: name.as_str().into(),
    })
    .await;
    match raw.recv().await {
        Some(Command::QueryOffsetResponse(r)) => {
            assert_eq!((r.code, r.offset), (ResponseCode::Ok, 2))
        }
        other => panic!("expected QueryOffset's answer, got {other:?}"),
    }
    raw.send(QueryPublisherSequence {
        correlation_id: 10,
        reference: "p1".into(),
        stream: name.as_str().into(),
    })
    .await;
    match raw.recv().await {
        Some(Command::QueryPublisherSequenceResponse(r)) => {
            assert_eq!((r.code, r.sequence), (ResponseCode::Ok, 3))
        }
        other => panic!("expected QueryPublisherSequence's answer, got {other:?}"),
    }
    let chunks = chunks_from_first(&mut raw, &name, Properties::new()).await;
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].header.num_records, 3);
}

#[tokio::test]
async fn one_publish_frame_is_one_chunk_and_sub_entry_batches_pass_untouched() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let name = pigeon_tests::unique("sp-batch");
    let mut raw = Raw::open(broker.stream_addr().unwrap()).await;
    raw.create(&name).await;
    raw.declare_publisher(&name, "").await;
    // Bytes the broker cannot read (claimed gzip): stored and delivered as they came.
    let batch = SubBatch {
        compression: compression::GZIP,
        records: 3,
        uncompressed_len: 99,
        body: Bytes::from_static(b"\x1f\x8bnot really gzip"),
    };
    let messages = vec![
        PublishedMessage::simple(1, Bytes::from_static(b"plain")),
        PublishedMessage {
            publishing_id: 2,
            filter_value: None,
            entry: Entry::SubBatch(batch.clone()),
        },
        PublishedMessage::simple(3, Bytes::from_static(b"after")),
    ];
    publish_confirmed(&mut raw, Publish::new(1, &messages)).await;
    let chunks = chunks_from_first(&mut raw, &name, Properties::new()).await;
    assert_eq!(chunks.len(), 1, "one frame, one chunk");
    assert_eq!(chunks[0].header.num_records, 5);
    let entries: Vec<Entry> = chunks[0].entries().map(Result::unwrap).collect();
    assert_eq!(
        entries,
        vec![
            Entry::Simple(Bytes::from_static(b"plain")),
            Entry::SubBatch(batch),
            Entry::Simple(Bytes::from_static(b"after")),
        ]
    );
}

#[tokio::test]
async fn filter_values_let_subscribers_skip_chunks() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let name = pigeon_tests::unique("sp-filter");
    let mut raw = Raw::open(broker.stream_addr().unwrap()).await;
    raw.create(&name).await;
    raw.declare_publisher(&name, "").await;
    for (id, colour) in [(1, "red"), (2, "blue"), (3, "red")] {
        let m = PublishedMessage {
            publishing_id: id,
            filter_value: Some(colour.into()),
            entry: Entry::Simple(Bytes::from(colour)),
        };
        // Publish v2: the filter value travels beside the message.
        publish_confirmed(&mut raw, Publish::with_version(1, true, &[m])).await;
    }
    let mut properties = Properties::new();
    properties.push("filter.0", "blue");
    let chunks = chunks_from_first(&mut raw, &name, properties).await;
    let ids: Vec<u64> = chunks.iter().map(|c| c.header.chunk_id).collect();
    assert_eq!(ids, vec![1]);
}

#[tokio::test]
async fn super_streams_created_routed_and_deleted_through_the_protocol() {
    use stream_wire::{CreateSuperStream, DeleteSuperStream, Partitions, Route};
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let name = pigeon_tests::unique("sp-super");
    let mut raw = Raw::open(broker.stream_addr().unwrap()).await;
    let partitions: Vec<String> = (0..3).map(|i| format!("{name}-{i}")).collect();
    raw.send(CreateSuperStream {
        correlation_id: 1,
        name: name.as_str().into(),
        partitions: partitions.iter().map(|p| p.as_str().into()).collect(),
        binding_keys: ["0", "1", "2"].into_iter().map(Into::into).collect(),
        arguments: Default::default(),
    })
    .await;
    assert!(matches!(raw.recv().await, Some(Command::Response(r)) if r.code.is_ok()));
    raw.send(Partitions {
        correlation_id: 2,
        super_stream: name.as_str().into(),
    })
    .await;
    match raw.recv().await {
        Some(Command::PartitionsResponse(r)) => {
            let got: Vec<String> = r.streams.iter().map(|s| s.to_string()).collect();
            assert_eq!((r.code, got), (ResponseCode::Ok, partitions.clone()));
        }
        other => panic!("expected Partitions' answer, got {other:?}"),
    }
    for (key, want) in [("1", vec![partitions[1].clone()]), ("none", vec![])] {
        raw.send(Route {
            correlation_id: 3,
            routing_key: key.into(),
            super_stream: name.as_str().into(),
        })
        .await;
        match raw.recv().await {
            Some(Command::RouteResponse(r)) => {
                let got: Vec<String> = r.streams.iter().map(|s| s.to_string()).collect();
                assert_eq!((r.code, got), (ResponseCode::Ok, want));
            }
            other => panic!("expected Route's answer, got {other:?}"),
        }
    }
    raw.send(DeleteSuperStream {
        correlation_id: 4,
        name: name.as_str().into(),
    })
    .await;
    assert!(matches!(raw.recv().await, Some(Command::Response(r)) if r.code.is_ok()));
    raw.send(Route {
        correlation_id: 5,
        routing_key: "1".into(),
        super_stream: name.as_str().into(),
    })
    .await;
    match raw.recv().await {
        Some(Command::RouteResponse(r)) => assert_eq!(r.code, ResponseCode::StreamDoesNotExist),
        other => panic!("expected Route's answer, got {other:?}"),
    }
    let vhost = broker.server().unwrap().broker().vhost("/").unwrap();
    assert!(vhost.queue(&partitions[0]).is_err());
}
