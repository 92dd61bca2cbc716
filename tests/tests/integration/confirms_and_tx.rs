//! Publisher confirms (RabbitMQ's `confirm` class) and transactions (AMQP 0-9-1 class `tx`).

use lapin::options::{BasicAckOptions, ConfirmSelectOptions};
use lapin::Confirmation;
use pigeon_tests::lapin_support::{self as lp, assert_code};
use pigeon_tests::raw::{frame_type, method, Args, Frame};
use pigeon_tests::reply::PRECONDITION_FAILED;
use pigeon_tests::{within, TestBroker};

const CONFIRM_SELECT: method::Id = (85, 10);
const CONFIRM_SELECT_OK: method::Id = (85, 11);
const BASIC_ACK: method::Id = (60, 80);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_publish_on_a_confirm_channel_is_acked() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = lp::exclusive_queue(&channel).await;
    let mut pending = Vec::new();
    for n in 0..50 {
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                Default::default(),
                format!("{n}").as_bytes(),
                Default::default(),
            )
            .await
            .unwrap();
        pending.push(confirm);
    }
    for confirm in pending {
        assert_eq!(
            within("a confirm", confirm).await.unwrap(),
            Confirmation::Ack(None)
        );
    }
    // Confirmed means enqueued.
    assert_eq!(lp::message_count(&channel, &queue).await, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_acks_count_publishes_from_one_in_order_and_may_cover_several() {
    let broker = TestBroker::start().await;
    let mut client = broker.raw_connection().await;
    client.open_channel(1).await;
    let queue = client.declare_exclusive_queue(1).await;
    client
        .send(&Frame::method(
            1,
            CONFIRM_SELECT,
            Args::new().bits(&[false]),
        ))
        .await;
    client.expect_method(CONFIRM_SELECT_OK).await;
    for _ in 0..20 {
        client.publish(1, &queue, b"confirm me", 131_072).await;
    }
    // Acks arrive with growing tags; a `multiple` ack covers every tag up to its own.
    let mut confirmed = 0u64;
    while confirmed < 20 {
        let frame = client.read_frame().await.expect("a basic.ack");
        if frame.kind == frame_type::HEARTBEAT {
            continue;
        }
        assert_eq!(frame.method_id(), Some(BASIC_ACK), "{frame:?}");
        assert_eq!(frame.channel, 1);
        let mut args = frame.method_args();
        let (tag, multiple) = (args.longlong(), args.octet() & 1 == 1);
        if multiple {
            assert!(tag > confirmed, "ack {tag} (multiple) after {confirmed}");
        } else {
            assert_eq!(tag, confirmed + 1, "single acks come in order");
        }
        confirmed = tag;
    }
    assert_eq!(confirmed, 20);
    client.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirm_and_tx_modes_exclude_each_other_with_406() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let confirming = lp::confirm_channel(&conn).await;
    assert_code(confirming.tx_select().await, PRECONDITION_FAILED);

    let transactional = lp::open_channel(&conn).await;
    transactional.tx_select().await.unwrap();
    assert_code(
        transactional
            .confirm_select(ConfirmSelectOptions::default())
            .await,
        PRECONDITION_FAILED,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tx_commit_or_rollback_on_a_non_transactional_channel_is_406() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    assert_code(
        lp::open_channel(&conn).await.tx_commit().await,
        PRECONDITION_FAILED,
    );
    assert_code(
        lp::open_channel(&conn).await.tx_rollback().await,
        PRECONDITION_FAILED,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_publishes_appear_only_on_commit() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let observer = lp::open_channel(&conn).await;
    let queue = lp::exclusive_queue(&observer).await;
    let tx = lp::open_channel(&conn).await;
    tx.tx_select().await.unwrap();
    lp::publish(&tx, "", &queue, b"1").await;
    lp::publish(&tx, "", &queue, b"2").await;
    // A synchronous method on the tx channel orders after both publishes.
    lp::message_count(&tx, &queue).await;
    assert_eq!(lp::message_count(&observer, &queue).await, 0);
    within("tx.commit-ok", tx.tx_commit()).await.unwrap();
    assert_eq!(lp::message_count(&observer, &queue).await, 2);
    // The channel stays transactional: the next batch waits for the next commit.
    lp::publish(&tx, "", &queue, b"3").await;
    lp::message_count(&tx, &queue).await;
    assert_eq!(lp::message_count(&observer, &queue).await, 2);
    within("tx.commit-ok", tx.tx_commit()).await.unwrap();
    assert_eq!(lp::message_count(&observer, &queue).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transaction_rollback_discards_publishes() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let observer = lp::open_channel(&conn).await;
    let queue = lp::exclusive_queue(&observer).await;
    let tx = lp::open_channel(&conn).await;
    tx.tx_select().await.unwrap();
    lp::publish(&tx, "", &queue, b"never").await;
    within("tx.rollback-ok", tx.tx_rollback()).await.unwrap();
    lp::publish(&tx, "", &queue, b"kept").await;
    within("tx.commit-ok", tx.tx_commit()).await.unwrap();
    let got = lp::get(&observer, &queue).await.unwrap();
    assert_eq!(
        (got.delivery.data.as_slice(), got.message_count),
        (&b"kept"[..], 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactional_acks_take_effect_on_commit_and_vanish_on_rollback() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let observer = lp::open_channel(&conn).await;
    let queue = lp::exclusive_queue(&observer).await;
    lp::publish(&observer, "", &queue, b"rolled back").await;
    lp::publish(&observer, "", &queue, b"committed").await;

    let tx = lp::open_channel(&conn).await;
    tx.tx_select().await.unwrap();
    let first = lp::get(&tx, &queue).await.unwrap();
    tx.basic_ack(first.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    within("tx.rollback-ok", tx.tx_rollback()).await.unwrap();
    let second = lp::get(&tx, &queue).await.unwrap();
    tx.basic_ack(second.delivery.delivery_tag, BasicAckOptions::default())
        .await
        .unwrap();
    within("tx.commit-ok", tx.tx_commit()).await.unwrap();

    // Closing the channel requeues what is still unacked: only the rolled-back ack's message.
    within("channel.close-ok", tx.close(200, "bye".into()))
        .await
        .unwrap();
    let back = lp::get(&observer, &queue).await.unwrap();
    assert_eq!(
        (back.delivery.data.as_slice(), back.message_count),
        (&b"rolled back"[..], 0)
    );
}
