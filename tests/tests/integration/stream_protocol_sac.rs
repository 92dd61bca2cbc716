//! Single active consumer on the partitions of a super stream, over a raw client, as
//! RabbitMQ's rabbit_stream_sac_coordinator: a group's partitions are spread over its
//! consumers (partition index mod number of consumers); a partition changes hands by
//! `ConsumerUpdate` (inactive) to its owner, whose answer comes before the `ConsumerUpdate`
//! (active) to the new one.

use crate::stream_protocol_support;

use stream_protocol_support::{broker, Raw};
use stream_wire::{
    Command, ConsumerUpdate, ConsumerUpdateResponse, CreateSuperStream, OffsetSpec, Properties,
    ResponseCode, Subscribe,
};

/// The next ConsumerUpdate, skipping the responses before it.
async fn next_update(raw: &mut Raw) -> ConsumerUpdate {
    loop {
        match raw.recv().await {
            Some(Command::ConsumerUpdate(u)) => return u,
            Some(Command::Response(r)) => assert_eq!(r.code, ResponseCode::Ok, "{r:?}"),
            Some(_) => {}
            None => panic!("the broker closed the connection"),
        }
    }
}

async fn answer(raw: &mut Raw, u: &ConsumerUpdate) {
    raw.send(ConsumerUpdateResponse {
        correlation_id: u.correlation_id,
        code: ResponseCode::Ok,
        offset: Some(OffsetSpec::Next),
    })
    .await;
}

async fn subscribe(raw: &mut Raw, id: u8, stream: &str, super_stream: &str) {
    let mut properties = Properties::new();
    properties.push("single-active-consumer", "true");
    properties.push("name", "group");
    properties.push("super-stream", super_stream);
    raw.send(Subscribe {
        correlation_id: 100 + u32::from(id),
        subscription_id: id,
        stream: stream.into(),
        offset: OffsetSpec::Next,
        credit: 10,
        properties,
    })
    .await;
}

#[tokio::test]
async fn partitions_are_shared_out_and_change_hands_after_the_owner_answers() {
    let Some((_data, broker)) = broker().await else {
        return;
    };
    let name = pigeon_tests::unique("ss");
    let partitions = [format!("{name}-0"), format!("{name}-1")];
    let mut a = Raw::open(broker.stream_addr().unwrap()).await;
    a.send(CreateSuperStream {
        correlation_id: 1,
        name: name.as_str().into(),
        partitions: partitions.iter().map(|p| p.as_str().into()).collect(),
        binding_keys: vec!["0".into(), "1".into()],
        arguments: Properties::new(),
    })
    .await;
    match a.recv().await {
        Some(Command::Response(r)) => assert_eq!(r.code, ResponseCode::Ok),
        other => panic!("expected CreateSuperStream's answer, got {other:?}"),
    }
    // Alone in the group, the first consumer owns both partitions.
    for (id, p) in partitions.iter().enumerate() {
        let id = u8::try_from(id).unwrap();
        subscribe(&mut a, id, p, &name).await;
        let u = next_update(&mut a).await;
        assert_eq!((u.subscription_id, u.active), (id, true));
        answer(&mut a, &u).await;
    }
    // A second consumer joins: partition 1 (1 mod 2) is its own. Its owner steps down first.
    let mut b = Raw::open(broker.stream_addr().unwrap()).await;
    subscribe(&mut b, 0, &partitions[0], &name).await;
    subscribe(&mut b, 1, &partitions[1], &name).await;
    let down = next_update(&mut a).await;
    assert_eq!((down.subscription_id, down.active), (1, false));
    answer(&mut a, &down).await;
    let up = next_update(&mut b).await;
    assert_eq!((up.subscription_id, up.active), (1, true));
    answer(&mut b, &up).await;
    // The second consumer leaves: partition 1 goes back to the first at once.
    drop(b);
    let back = next_update(&mut a).await;
    assert_eq!((back.subscription_id, back.active), (1, true));
}
