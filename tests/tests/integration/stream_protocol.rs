//! The RabbitMQ Stream protocol through the `rabbitmq-stream-client` crate: handshake,
//! streams, publishing with confirms, consuming from each offset specification, offsets kept
//! in the stream, de-duplication.

use crate::stream_protocol_support;

use pigeon_tests::within;
use rabbitmq_stream_client::error::{ClientError, StreamCreateError, StreamDeleteError};
use rabbitmq_stream_client::types::{Message, OffsetSpecification, ResponseCode};
use stream_protocol_support::{broker, consumer, env, env_as, new_stream, publish, take, Raw};

#[tokio::test]
async fn handshake_as_guest_and_refused_with_a_wrong_password() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let env = env(&broker).await;
    // A round trip after the handshake: the connection is open.
    let name = new_stream(&env).await;
    match env_as(&broker, "guest", "wrong").await {
        Err(ClientError::RequestError(code)) => {
            assert_eq!(code, ResponseCode::AuthenticationFailure)
        }
        Err(other) => panic!("expected an authentication failure, got {other:?}"),
        Ok(_) => panic!("a wrong password was accepted"),
    }
    // The broker keeps serving.
    within("Delete", env.delete_stream(&name)).await.unwrap();
}

#[tokio::test]
async fn create_twice_and_delete_twice() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let env = env(&broker).await;
    let name = new_stream(&env).await;
    match within("Create", env.stream_creator().create(&name)).await {
        Err(StreamCreateError::Create { status, .. }) => {
            assert_eq!(status, ResponseCode::StreamAlreadyExists)
        }
        other => panic!("expected STREAM_ALREADY_EXISTS, got {other:?}"),
    }
    // The same name with other arguments: PRECONDITION_FAILED, as RabbitMQ's
    // (rabbit_stream_manager `create`: the declare's equivalence check fails).
    let other = env
        .stream_creator()
        .max_age(std::time::Duration::from_secs(60))
        .create(&name);
    match within("Create", other).await {
        Err(StreamCreateError::Create { status, .. }) => {
            assert_eq!(status, ResponseCode::PrecoditionFailed) // (the crate's spelling)
        }
        other => panic!("expected PRECONDITION_FAILED, got {other:?}"),
    }
    within("Delete", env.delete_stream(&name)).await.unwrap();
    match within("Delete", env.delete_stream(&name)).await {
        Err(StreamDeleteError::Delete { status, .. }) => {
            assert_eq!(status, ResponseCode::StreamDoesNotExist)
        }
        other => panic!("expected STREAM_DOES_NOT_EXIST, got {other:?}"),
    }
    // The stream is a queue of the vhost: gone from it too.
    let vhost = broker.server().unwrap().broker().vhost("/").unwrap();
    assert!(vhost.queue(&name).is_err());
}

#[tokio::test]
async fn a_created_stream_is_a_durable_stream_queue_with_its_retention() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let env = env(&broker).await;
    let name = pigeon_tests::unique("sp");
    within(
        "Create",
        env.stream_creator()
            .max_age(std::time::Duration::from_secs(3600))
            .max_length(rabbitmq_stream_client::types::ByteCapacity::MB(5))
            .create(&name),
    )
    .await
    .unwrap();
    let vhost = broker.server().unwrap().broker().vhost("/").unwrap();
    let q = vhost.queue(&name).unwrap();
    assert!(q.is_stream());
    assert!(q.options().durable);
    let config = q.stream_log().unwrap().config();
    assert_eq!(config.max_length_bytes, Some(5_000_000));
    assert_eq!(config.max_age, Some(std::time::Duration::from_secs(3600)));
}

#[tokio::test]
async fn publish_with_confirms_and_consume_from_first() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let env = env(&broker).await;
    let name = new_stream(&env).await;
    publish(&env, &name, &["a", "b", "c"]).await;
    let mut c = consumer(&env, &name, OffsetSpecification::First).await;
    let got = take(&mut c, 3).await;
    assert_eq!(got, vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]);
}

#[tokio::test]
async fn each_offset_specification() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let env = env(&broker).await;
    let name = new_stream(&env).await;
    let before = chrono_ms();
    publish(&env, &name, &["m0", "m1", "m2", "m3", "m4"]).await;

    let mut first = consumer(&env, &name, OffsetSpecification::First).await;
    assert_eq!(take(&mut first, 5).await[0], (0, "m0".into()));

    // Each confirmed publish was a chunk of its own: `last` is the last chunk.
    let mut last = consumer(&env, &name, OffsetSpecification::Last).await;
    assert_eq!(take(&mut last, 1).await, vec![(4, "m4".into())]);

    let mut offset = consumer(&env, &name, OffsetSpecification::Offset(3)).await;
    assert_eq!(
        take(&mut offset, 2).await,
        vec![(3, "m3".into()), (4, "m4".into())]
    );

    let mut timestamp = consumer(&env, &name, OffsetSpecification::Timestamp(before)).await;
    assert_eq!(take(&mut timestamp, 1).await, vec![(0, "m0".into())]);

    // `next`: only what comes after the subscription.
    let mut next = consumer(&env, &name, OffsetSpecification::Next).await;
    publish(&env, &name, &["m5"]).await;
    assert_eq!(take(&mut next, 1).await, vec![(5, "m5".into())]);
    // And the others resume at the tail too.
    assert_eq!(take(&mut last, 1).await, vec![(5, "m5".into())]);
}

fn chrono_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        - 1000
}

#[tokio::test]
async fn stored_offsets_survive_a_reconnect() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let name = {
        let env = env(&broker).await;
        let name = new_stream(&env).await;
        publish(&env, &name, &["a", "b", "c"]).await;
        let c = within(
            "Subscribe",
            env.consumer()
                .name("tracker")
                .offset(OffsetSpecification::First)
                .build(&name),
        )
        .await
        .unwrap();
        match c.query_offset().await {
            Err(rabbitmq_stream_client::error::ConsumerStoreOffsetError::Client(
                ClientError::RequestError(code),
            )) => assert_eq!(code, ResponseCode::OffsetNotFound),
            other => panic!("expected NO_OFFSET, got {other:?}"),
        }
        c.store_offset(1).await.unwrap();
        // StoreOffset has no answer: a query on the same connection comes after it.
        assert_eq!(c.query_offset().await.unwrap(), 1);
        within("Close", c.handle().close()).await.unwrap();
        name
    };
    let env = env(&broker).await;
    let c = within(
        "Subscribe",
        env.consumer()
            .name("tracker")
            .offset(OffsetSpecification::First)
            .build(&name),
    )
    .await
    .unwrap();
    assert_eq!(c.query_offset().await.unwrap(), 1);
}

#[tokio::test]
async fn deduplication_across_a_producer_restart() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let env = env(&broker).await;
    let name = new_stream(&env).await;
    let send = |ids: std::ops::RangeInclusive<u64>| {
        let env = env.clone();
        let name = name.clone();
        async move {
            let mut producer = within("DeclarePublisher", env.producer().name("p1").build(&name))
                .await
                .unwrap();
            for id in ids {
                let m = Message::builder()
                    .body(format!("m{id}"))
                    .publising_id(id)
                    .build();
                let status = within("a confirm", producer.send_with_confirm(m))
                    .await
                    .unwrap();
                // Duplicates are confirmed too, as osiris confirms what it drops.
                assert!(status.confirmed(), "id {id}");
            }
            within("close", producer.close()).await.unwrap();
        }
    };
    send(1..=5).await;
    send(3..=8).await;
    let mut c = consumer(&env, &name, OffsetSpecification::First).await;
    let got: Vec<String> = take(&mut c, 8).await.into_iter().map(|(_, b)| b).collect();
    let want: Vec<String> = (1..=8).map(|i| format!("m{i}")).collect();
    assert_eq!(got, want);
    // Nothing after m8: a marker published now is the next delivery.
    publish(&env, &name, &["marker"]).await;
    assert_eq!(take(&mut c, 1).await[0].1, "marker");
}

#[tokio::test]
async fn peer_properties_name_the_rabbitmq_version_followed() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let mut raw = Raw::connect(broker.stream_addr().unwrap()).await;
    raw.send(stream_wire::PeerProperties {
        correlation_id: 1,
        properties: Default::default(),
    })
    .await;
    // Clients gate features on it (rabbitmq-stream-js-client: filtering, super streams and
    // Publish/Deliver v2 from 3.13.0 on): the version RabbitMQ's HTTP API says too.
    match raw.recv().await {
        Some(stream_wire::Command::PeerPropertiesResponse(r)) => {
            assert_eq!(r.properties.get("version").unwrap().as_str(), "3.13.7");
            assert_eq!(r.properties.get("product").unwrap().as_str(), "Pigeon");
        }
        other => panic!("expected PeerProperties' answer, got {other:?}"),
    }
}

#[tokio::test]
async fn stream_stats_give_osiris_first_last_and_committed_chunk_ids() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let env = env(&broker).await;
    let name = new_stream(&env).await;
    let mut raw = Raw::open(broker.stream_addr().unwrap()).await;
    // osiris:get_stats/1: -1 while the stream holds no chunk.
    let empty = stream_stats(&mut raw, &name, 10).await;
    for key in ["first_chunk_id", "last_chunk_id", "committed_chunk_id"] {
        assert!(empty.contains(&(key.to_string(), -1)), "{key} in {empty:?}");
    }
    publish(&env, &name, &["a", "b", "c"]).await;
    let full = stream_stats(&mut raw, &name, 11).await;
    let get = |key: &str| full.iter().find(|(k, _)| k == key).map(|(_, v)| *v);
    assert_eq!(get("first_chunk_id"), Some(0));
    // Confirmed, so committed: the last chunk written is the last committed.
    let last = get("last_chunk_id").unwrap();
    assert!(last >= 0, "{full:?}");
    assert_eq!(get("committed_chunk_id"), Some(last));
}

/// StreamStats of `name` as (key, value) pairs.
async fn stream_stats(raw: &mut Raw, name: &str, id: u32) -> Vec<(String, i64)> {
    raw.send(stream_wire::StreamStats {
        correlation_id: id,
        stream: name.into(),
    })
    .await;
    match raw.recv().await {
        Some(stream_wire::Command::StreamStatsResponse(r)) => {
            assert_eq!(r.code, stream_wire::ResponseCode::Ok);
            r.stats
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), *v))
                .collect()
        }
        other => panic!("expected StreamStats' answer, got {other:?}"),
    }
}
