//! One stream, two protocols: a stream declared over AMQP 0-9-1 consumed through the stream
//! protocol, one created through the stream protocol consumed over AMQP 0-9-1; credit counted
//! in chunks; MetadataUpdate when a stream in use is deleted.

use crate::stream_protocol_support;

use pigeon_tests::lapin_support as lp;
use pigeon_tests::streams_support::{declare_stream, next, publish_confirmed, stream_consumer};
use pigeon_tests::within;
use rabbitmq_stream_client::types::OffsetSpecification;
use stream_protocol_support::{broker, consumer, env, new_stream, publish, take};
use stream_wire::{
    Command, Credit, DeclarePublisher, Delete, Metadata, Publish, PublishedMessage, Subscribe,
};

#[tokio::test]
async fn a_stream_declared_over_amqp_is_consumed_through_the_stream_protocol() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let ch = pigeon_tests::streams_support::confirm_channel(&conn).await;
    let name = pigeon_tests::unique("amqp-declared");
    declare_stream(&ch, &name).await;
    publish_confirmed(&ch, &name, &["x", "y", "z"]).await;
    let env = env(&broker).await;
    let mut c = consumer(&env, &name, OffsetSpecification::First).await;
    let got: Vec<String> = take(&mut c, 3).await.into_iter().map(|(_, b)| b).collect();
    assert_eq!(got, ["x", "y", "z"]);
}

#[tokio::test]
async fn a_stream_created_through_the_stream_protocol_is_consumed_over_amqp() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let env = env(&broker).await;
    let name = new_stream(&env).await;
    publish(&env, &name, &["one", "two"]).await;
    let conn = lp::connect(&broker).await;
    let ch = within("channel.open", conn.create_channel()).await.unwrap();
    let mut c = stream_consumer(&ch, &name, Some(lp::text("first"))).await;
    assert_eq!(next(&mut c).await, ("one".to_string(), 0));
    assert_eq!(next(&mut c).await, ("two".to_string(), 1));
    // And a message published over AMQP afterwards reaches a stream-protocol consumer.
    let mut sc = consumer(&env, &name, OffsetSpecification::Next).await;
    let pch = pigeon_tests::streams_support::confirm_channel(&conn).await;
    publish_confirmed(&pch, &name, &["three"]).await;
    assert_eq!(take(&mut sc, 1).await, vec![(2, "three".to_string())]);
}

/// Deliveries of a raw subscription: (subscription, chunk id, records).
fn deliveries(commands: &[Command]) -> Vec<u64> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::Deliver(d) => Some(d.chunk.header.chunk_id),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn credit_is_counted_in_chunks() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let env = env(&broker).await;
    let name = new_stream(&env).await;
    // Three confirmed publishes: three chunks.
    publish(&env, &name, &["a", "b", "c"]).await;
    let mut raw = stream_protocol_support::Raw::open(broker.stream_addr().unwrap()).await;
    raw.send(Subscribe {
        correlation_id: 10,
        subscription_id: 7,
        stream: name.as_str().into(),
        offset: stream_wire::OffsetSpec::First,
        credit: 1,
        properties: Default::default(),
    })
    .await;
    let mut seen = Vec::new();
    // The answer, one chunk, then nothing until credit comes: a Metadata round trip after
    // the Subscribe shows that no second chunk was sent before it.
    raw.send(Metadata {
        correlation_id: 11,
        streams: vec![name.as_str().into()],
    })
    .await;
    loop {
        let c = raw.recv().await.expect("the connection stays open");
        let done = matches!(c, Command::MetadataResponse(_));
        seen.push(c);
        if done {
            break;
        }
    }
    assert_eq!(deliveries(&seen), vec![0]);
    raw.send(Credit {
        subscription_id: 7,
        credit: 2,
    })
    .await;
    let mut got = Vec::new();
    while got.len() < 2 {
        if let Some(Command::Deliver(d)) = raw.recv().await {
            got.push(d.chunk.header.chunk_id);
        }
    }
    assert_eq!(got, vec![1, 2]);
    // Credit for a subscription that does not exist: the only answer Credit ever gets.
    raw.send(Credit {
        subscription_id: 99,
        credit: 1,
    })
    .await;
    match raw.recv().await {
        Some(Command::CreditResponse(r)) => {
            assert_eq!(
                r.code,
                stream_wire::ResponseCode::SubscriptionIdDoesNotExist
            )
        }
        other => panic!("expected a credit response, got {other:?}"),
    }
}

#[tokio::test]
async fn deleting_a_stream_sends_metadata_update_to_its_publishers_and_consumers() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let env = env(&broker).await;
    let name = new_stream(&env).await;
    let mut raw = stream_protocol_support::Raw::open(broker.stream_addr().unwrap()).await;
    raw.send(DeclarePublisher {
        correlation_id: 1,
        publisher_id: 0,
        reference: "".into(),
        stream: name.as_str().into(),
    })
    .await;
    assert!(matches!(raw.recv().await, Some(Command::Response(r)) if r.code.is_ok()));
    raw.send(Publish::new(
        0,
        &[PublishedMessage::simple(1, bytes::Bytes::from_static(b"x"))],
    ))
    .await;
    assert!(
        matches!(raw.recv().await, Some(Command::PublishConfirm(c)) if c.publishing_ids == [1])
    );
    // Deleted by another connection.
    let mut other = stream_protocol_support::Raw::open(broker.stream_addr().unwrap()).await;
    other
        .send(Delete {
            correlation_id: 5,
            stream: name.as_str().into(),
        })
        .await;
    assert!(matches!(other.recv().await, Some(Command::Response(r)) if r.code.is_ok()));
    match raw.recv().await {
        Some(Command::MetadataUpdate(u)) => {
            assert_eq!(u.stream.as_str(), name);
            assert_eq!(u.code, stream_wire::ResponseCode::StreamNotAvailable);
        }
        other => panic!("expected MetadataUpdate, got {other:?}"),
    }
    // The publisher is gone with its stream.
    raw.send(Publish::new(
        0,
        &[PublishedMessage::simple(2, bytes::Bytes::from_static(b"y"))],
    ))
    .await;
    match raw.recv().await {
        Some(Command::PublishError(e)) => assert_eq!(
            e.errors[0].code,
            stream_wire::ResponseCode::PublisherDoesNotExist
        ),
        other => panic!("expected PublishError, got {other:?}"),
    }
}

#[tokio::test]
async fn single_active_consumer_hands_over_when_the_active_one_leaves() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let env = env(&broker).await;
    let name = new_stream(&env).await;
    let member = |offset: OffsetSpecification| {
        env.consumer()
            .name("group")
            .enable_single_active_consumer(true)
            .offset(OffsetSpecification::First)
            .consumer_update(move |_active, _ctx| {
                let offset = offset.clone();
                async move { offset }
            })
            .build(&name)
    };
    // The first to join is activated and starts where its answer says (first).
    let mut a = within("Subscribe", member(OffsetSpecification::First))
        .await
        .unwrap();
    let mut b = within("Subscribe", member(OffsetSpecification::Next))
        .await
        .unwrap();
    publish(&env, &name, &["a", "b"]).await;
    assert_eq!(
        take(&mut a, 2).await,
        vec![(0, "a".to_string()), (1, "b".to_string())]
    );
    // The active one leaves: the other is activated and resumes where its answer says
    // (next), so the first thing it ever receives is what comes after.
    within("close", a.handle().close()).await.unwrap();
    publish(&env, &name, &["after"]).await;
    assert_eq!(take(&mut b, 1).await, vec![(2, "after".to_string())]);
}
