//! The same behaviour through a second, independent client: amqprs. Every area of the suite
//! (connection, exchanges, queues, basic, confirms and transactions, errors) has at least one
//! test here, so Pigeon is not merely compatible with lapin's reading of the protocol.

use amqprs::channel::{
    BasicAckArguments, BasicCancelArguments, BasicConsumeArguments, BasicGetArguments,
    BasicNackArguments, BasicPublishArguments, BasicQosArguments, Channel, ConfirmSelectArguments,
    ConsumerMessage, ExchangeBindArguments, ExchangeDeclareArguments, ExchangeDeleteArguments,
    QueueBindArguments, QueueDeclareArguments, QueueDeleteArguments, QueuePurgeArguments,
};
use amqprs::security::SecurityCredentials;
use amqprs::{BasicProperties, FieldTable};
use pigeon_tests::amqprs_support::{self as ar, body, delivery_tag, next_message, ChannelEvent};
use pigeon_tests::reply::{NOT_ALLOWED, NOT_FOUND, NO_ROUTE, PRECONDITION_FAILED, RESOURCE_LOCKED};
use pigeon_tests::{unique, within, TestBroker};
use tokio::sync::mpsc::UnboundedReceiver;

async fn declare_exclusive(channel: &Channel) -> String {
    let args = QueueDeclareArguments::new(&unique("q"))
        .exclusive(true)
        .finish();
    let (name, _, _) = channel.queue_declare(args).await.unwrap().unwrap();
    name
}

async fn publish(channel: &Channel, exchange: &str, key: &str, body: &str) {
    channel
        .basic_publish(
            BasicProperties::default(),
            body.as_bytes().to_vec(),
            BasicPublishArguments::new(exchange, key),
        )
        .await
        .unwrap();
}

async fn consume(channel: &Channel, queue: &str) -> (String, UnboundedReceiver<ConsumerMessage>) {
    channel
        .basic_consume_rx(BasicConsumeArguments::new(queue, ""))
        .await
        .unwrap()
}

async fn confirm_select(channel: &Channel) {
    channel
        .confirm_select(ConfirmSelectArguments::default())
        .await
        .unwrap();
}

/// Ready messages in a queue, via a passive declare. RabbitMQ answers this query ahead of
/// deliveries still on their way to the queue, so tests only count messages that were
/// confirmed (or delivered) first.
async fn ready(channel: &Channel, queue: &str) -> u32 {
    let args = QueueDeclareArguments::new(queue).passive(true).finish();
    channel.queue_declare(args).await.unwrap().unwrap().1
}

// --- connection ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_sees_the_rabbitmq_capabilities_and_default_limits() {
    let broker = TestBroker::start().await;
    let mut args = ar::open_args(&broker);
    args.heartbeat(5);
    let conn = ar::try_connect(&args).await.unwrap();
    let capabilities = conn.server_properties().capabilities();
    assert!(capabilities.publisher_confirms());
    assert!(capabilities.exchange_exchange_bindings());
    assert!(capabilities.basic_nack());
    assert!(capabilities.consumer_cancel_notify());
    assert!(capabilities.connection_blocked());
    assert!(capabilities.authentication_failure_close());
    assert!(capabilities.per_consumer_qos());
    assert!(!conn.server_properties().product().is_empty());
    // amqprs accepts the server's channel_max and frame_max and takes the smaller heartbeat.
    assert_eq!(
        (conn.channel_max(), conn.frame_max(), conn.heartbeat()),
        (2047, 131_072, 5)
    );
    within("connection.close-ok", conn.close()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_logs_in_with_plain_and_amqplain_but_not_with_a_wrong_password() {
    let broker = TestBroker::start().await;
    for credentials in [
        SecurityCredentials::new_plain(broker.user(), broker.password()),
        SecurityCredentials::new_amqplain(broker.user(), broker.password()),
    ] {
        let mut args = ar::open_args(&broker);
        args.credentials(credentials);
        let conn = ar::try_connect(&args).await.unwrap();
        let (channel, _events) = ar::open_channel(&conn).await;
        declare_exclusive(&channel).await;
        conn.close().await.unwrap();
    }
    let mut args = ar::open_args(&broker);
    args.credentials(SecurityCredentials::new_plain(broker.user(), "wrong"));
    assert!(ar::try_connect(&args).await.is_err());
}

// --- exchanges ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_topic_routes_through_an_exchange_binding_and_returns_the_unroutable() {
    let broker = TestBroker::start().await;
    let (conn, _) = ar::connect(&broker).await;
    let (channel, mut events) = ar::open_channel(&conn).await;
    let (source, topic) = (unique("src"), unique("topic"));
    let fanout = ExchangeDeclareArguments::new(&source, "fanout");
    channel.exchange_declare(fanout).await.unwrap();
    let topic_args = ExchangeDeclareArguments::new(&topic, "topic");
    channel.exchange_declare(topic_args).await.unwrap();
    channel
        .exchange_bind(ExchangeBindArguments::new(&topic, &source, ""))
        .await
        .unwrap();
    let queue = declare_exclusive(&channel).await;
    channel
        .queue_bind(QueueBindArguments::new(&queue, &topic, "a.#.b"))
        .await
        .unwrap();
    let (_tag, mut rx) = consume(&channel, &queue).await;

    publish(&channel, &source, "a.x.y.b", "matched").await;
    let message = next_message(&mut rx).await;
    assert_eq!(body(&message), "matched");

    let mandatory = BasicPublishArguments::new(&source, "a.x.c")
        .mandatory(true)
        .finish();
    channel
        .basic_publish(BasicProperties::default(), b"stray".to_vec(), mandatory)
        .await
        .unwrap();
    assert_eq!(
        events.next().await,
        ChannelEvent::Returned {
            code: NO_ROUTE,
            routing_key: "a.x.c".into(),
            body: b"stray".to_vec()
        }
    );
    for exchange in [&source, &topic] {
        channel
            .exchange_delete(ExchangeDeleteArguments::new(exchange))
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_headers_exchange_matches_any() {
    let broker = TestBroker::start().await;
    let (conn, _) = ar::connect(&broker).await;
    let (channel, _events) = ar::open_channel(&conn).await;
    let exchange = unique("headers");
    channel
        .exchange_declare(ExchangeDeclareArguments::new(&exchange, "headers"))
        .await
        .unwrap();
    let queue = declare_exclusive(&channel).await;
    let mut binding = FieldTable::new();
    binding.insert("x-match".try_into().unwrap(), "any".into());
    binding.insert("color".try_into().unwrap(), "red".into());
    binding.insert("size".try_into().unwrap(), "xl".into());
    let mut bind = QueueBindArguments::new(&queue, &exchange, "");
    bind.arguments = binding;
    channel.queue_bind(bind).await.unwrap();
    let (_tag, mut rx) = consume(&channel, &queue).await;

    for (color, text) in [("blue", "skipped"), ("red", "matched")] {
        let mut headers = FieldTable::new();
        headers.insert("color".try_into().unwrap(), color.into());
        let properties = BasicProperties::default().with_headers(headers).finish();
        let args = BasicPublishArguments::new(&exchange, "");
        channel
            .basic_publish(properties, text.as_bytes().to_vec(), args)
            .await
            .unwrap();
    }
    // Published after "skipped": arriving first shows "skipped" went nowhere.
    assert_eq!(body(&next_message(&mut rx).await), "matched");
    assert_eq!(ready(&channel, &queue).await, 0);
    channel
        .exchange_delete(ExchangeDeleteArguments::new(&exchange))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_passive_declare_of_a_missing_exchange_closes_the_channel_with_404() {
    let broker = TestBroker::start().await;
    let (conn, _) = ar::connect(&broker).await;
    let (channel, mut events) = ar::open_channel(&conn).await;
    let mut args = ExchangeDeclareArguments::new(&unique("missing"), "direct");
    args.passive = true;
    assert!(channel.exchange_declare(args).await.is_err());
    assert_eq!(events.closed().await, NOT_FOUND);
    assert!(conn.is_open());
    let (other, _) = ar::open_channel(&conn).await;
    declare_exclusive(&other).await;
}

// --- queues ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_queue_counts_purge_and_conditional_delete() {
    let broker = TestBroker::start().await;
    let (conn, _) = ar::connect(&broker).await;
    let (channel, mut channel_events) = ar::open_channel(&conn).await;
    confirm_select(&channel).await;
    let args = QueueDeclareArguments::exclusive_server_named();
    let (queue, messages, consumers) = channel.queue_declare(args).await.unwrap().unwrap();
    assert!(queue.starts_with("amq.gen-"), "{queue}");
    assert_eq!((messages, consumers), (0, 0));
    for n in 0..3 {
        publish(&channel, "", &queue, &n.to_string()).await;
    }
    let mut confirmed = 0;
    channel_events.confirmed_up_to(3, &mut confirmed).await;
    assert_eq!(ready(&channel, &queue).await, 3);
    let purged = channel
        .queue_purge(QueuePurgeArguments::new(&queue))
        .await
        .unwrap();
    assert_eq!(purged, Some(3));

    publish(&channel, "", &queue, "one more").await;
    channel_events.confirmed_up_to(4, &mut confirmed).await;
    let (doomed, mut events) = ar::open_channel(&conn).await;
    let mut if_empty = QueueDeleteArguments::new(&queue);
    if_empty.if_empty = true;
    assert!(doomed.queue_delete(if_empty).await.is_err());
    assert_eq!(events.closed().await, PRECONDITION_FAILED);
    let deleted = channel
        .queue_delete(QueueDeleteArguments::new(&queue))
        .await
        .unwrap();
    assert_eq!(deleted, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_exclusive_queue_is_locked_to_other_connections_with_405() {
    let broker = TestBroker::start().await;
    let (owner, _) = ar::connect(&broker).await;
    let (channel, _events) = ar::open_channel(&owner).await;
    let queue = declare_exclusive(&channel).await;
    let (other, _) = ar::connect(&broker).await;
    let (intruder, mut events) = ar::open_channel(&other).await;
    assert!(intruder
        .basic_consume_rx(BasicConsumeArguments::new(&queue, ""))
        .await
        .is_err());
    assert_eq!(events.closed().await, RESOURCE_LOCKED);
}

// --- basic ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_consumer_gets_a_server_tag_and_a_cancel_when_its_queue_is_deleted() {
    let broker = TestBroker::start().await;
    let (conn, _) = ar::connect(&broker).await;
    let (channel, mut events) = ar::open_channel(&conn).await;
    let queue = declare_exclusive(&channel).await;
    let (tag, mut rx) = consume(&channel, &queue).await;
    assert!(tag.starts_with("amq.ctag-"), "{tag}");
    publish(&channel, "", &queue, "hello").await;
    let message = next_message(&mut rx).await;
    assert_eq!(body(&message), "hello");
    assert!(!message.deliver.as_ref().unwrap().redelivered());
    channel
        .basic_ack(BasicAckArguments::new(delivery_tag(&message), false))
        .await
        .unwrap();

    let (other, _other_events) = ar::open_channel(&conn).await;
    other
        .queue_delete(QueueDeleteArguments::new(&queue))
        .await
        .unwrap();
    assert_eq!(
        events.next().await,
        ChannelEvent::Cancelled { consumer_tag: tag }
    );
    assert!(channel.is_open(), "basic.cancel leaves the channel open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_get_counts_down_to_get_empty() {
    let broker = TestBroker::start().await;
    let (conn, _) = ar::connect(&broker).await;
    let (channel, _events) = ar::open_channel(&conn).await;
    let queue = declare_exclusive(&channel).await;
    publish(&channel, "", &queue, "a").await;
    publish(&channel, "", &queue, "b").await;
    for (expected, remaining) in [("a", 1), ("b", 0)] {
        let mut args = BasicGetArguments::new(&queue);
        args.no_ack = true;
        let (get_ok, _, content) = channel.basic_get(args).await.unwrap().unwrap();
        assert_eq!(
            (content.as_slice(), get_ok.message_count()),
            (expected.as_bytes(), remaining)
        );
    }
    assert!(channel
        .basic_get(BasicGetArguments::new(&queue))
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_prefetch_nack_requeue_and_in_order_return_on_channel_close() {
    let broker = TestBroker::start().await;
    let (conn, _) = ar::connect(&broker).await;
    let (publisher, mut publisher_events) = ar::open_channel(&conn).await;
    confirm_select(&publisher).await;
    let queue = declare_exclusive(&publisher).await;
    for n in 1..=4 {
        publish(&publisher, "", &queue, &n.to_string()).await;
    }
    publisher_events.confirmed_up_to(4, &mut 0).await;
    let (channel, _events) = ar::open_channel(&conn).await;
    channel
        .basic_qos(BasicQosArguments::new(0, 2, false))
        .await
        .unwrap();
    let (_tag, mut rx) = consume(&channel, &queue).await;
    let first = next_message(&mut rx).await;
    let second = next_message(&mut rx).await;
    assert_eq!((body(&first), body(&second)), ("1".into(), "2".into()));
    assert_eq!(
        ready(&publisher, &queue).await,
        2,
        "prefetch 2 holds back the rest"
    );

    channel
        .basic_nack(BasicNackArguments::new(delivery_tag(&second), true, true))
        .await
        .unwrap();
    let again = [next_message(&mut rx).await, next_message(&mut rx).await];
    assert_eq!((body(&again[0]), body(&again[1])), ("1".into(), "2".into()));
    assert!(again
        .iter()
        .all(|m| m.deliver.as_ref().unwrap().redelivered()));

    within("channel.close-ok", channel.close()).await.unwrap();
    let (after, _after_events) = ar::open_channel(&conn).await;
    let (_tag, mut rx) = consume(&after, &queue).await;
    let order: Vec<String> = [
        next_message(&mut rx).await,
        next_message(&mut rx).await,
        next_message(&mut rx).await,
        next_message(&mut rx).await,
    ]
    .iter()
    .map(body)
    .collect();
    assert_eq!(order, ["1", "2", "3", "4"]);
}

// --- confirms and transactions ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_confirms_ack_every_publish_in_order() {
    let broker = TestBroker::start().await;
    let (conn, _) = ar::connect(&broker).await;
    let (channel, mut events) = ar::open_channel(&conn).await;
    confirm_select(&channel).await;
    let queue = declare_exclusive(&channel).await;
    for n in 0..10 {
        publish(&channel, "", &queue, &n.to_string()).await;
    }
    let mut confirmed = 0;
    events.confirmed_up_to(10, &mut confirmed).await;
    assert_eq!(ready(&channel, &queue).await, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_transaction_commit_publishes_and_rollback_discards() {
    let broker = TestBroker::start().await;
    let (conn, _) = ar::connect(&broker).await;
    let (observer, _observer_events) = ar::open_channel(&conn).await;
    let queue = declare_exclusive(&observer).await;
    let (tx, _events) = ar::open_channel(&conn).await;
    tx.tx_select().await.unwrap();
    publish(&tx, "", &queue, "discarded").await;
    tx.tx_rollback().await.unwrap();
    assert_eq!(ready(&observer, &queue).await, 0);
    publish(&tx, "", &queue, "committed").await;
    ready(&tx, &queue).await; // orders after the publish on the tx channel
    assert_eq!(ready(&observer, &queue).await, 0, "invisible until commit");
    tx.tx_commit().await.unwrap();
    let (get_ok, _, content) = observer
        .basic_get(BasicGetArguments::new(&queue))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (content.as_slice(), get_ok.message_count()),
        (&b"committed"[..], 0)
    );
}

// --- errors ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_soft_error_closes_the_channel_and_hard_error_the_connection() {
    let broker = TestBroker::start().await;
    let (conn, mut connection_events) = ar::connect(&broker).await;
    let (healthy, _healthy_events) = ar::open_channel(&conn).await;
    let queue = declare_exclusive(&healthy).await;

    // Soft: consuming from a missing queue closes that channel only.
    let (doomed, mut events) = ar::open_channel(&conn).await;
    let missing = BasicConsumeArguments::new(&unique("missing"), "");
    assert!(doomed.basic_consume_rx(missing).await.is_err());
    assert_eq!(events.closed().await, NOT_FOUND);
    let (_tag, mut rx) = consume(&healthy, &queue).await;
    publish(&healthy, "", &queue, "still fine").await;
    assert_eq!(body(&next_message(&mut rx).await), "still fine");

    // Hard: reusing a consumer tag on one channel closes the connection with 530.
    healthy
        .basic_consume_rx(BasicConsumeArguments::new(&queue, "twice"))
        .await
        .unwrap();
    let mut again = BasicConsumeArguments::new(&queue, "twice");
    again.no_wait = true;
    let _ = healthy.basic_consume_rx(again).await;
    let close = within("connection.close", connection_events.recv())
        .await
        .unwrap();
    assert_eq!(close.code, NOT_ALLOWED, "{close:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqprs_works_after_a_raw_client_sent_garbage() {
    let broker = TestBroker::start().await;
    let mut raw = broker.raw_connection().await;
    raw.send_bytes_lenient(&[0x41; 64]).await;
    raw.ending().await;

    let (conn, _) = ar::connect(&broker).await;
    let (channel, _events) = ar::open_channel(&conn).await;
    let queue = declare_exclusive(&channel).await;
    let (tag, mut rx) = consume(&channel, &queue).await;
    publish(&channel, "", &queue, "alive").await;
    assert_eq!(body(&next_message(&mut rx).await), "alive");
    channel
        .basic_cancel(BasicCancelArguments::new(&tag))
        .await
        .unwrap();
    within("connection.close-ok", conn.close()).await.unwrap();
}
