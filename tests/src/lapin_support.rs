//! Small helpers over lapin so the tests read as the behaviour they check, not as client
//! boilerplate. Every wait goes through [`crate::within`].

use futures_lite::StreamExt;
use lapin::message::{BasicGetMessage, Delivery};
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, Consumer,
    ExchangeKind,
};

use crate::{unique, within, TestBroker};

/// Connects lapin to the broker as the test user.
pub async fn connect(broker: &TestBroker) -> Connection {
    connect_url(&broker.amqp_url())
        .await
        .expect("lapin connects to the broker")
}

/// Connects lapin to any URL (with query options such as `?heartbeat=5`), keeping the error.
pub async fn connect_url(url: &str) -> lapin::Result<Connection> {
    within(
        "lapin to connect",
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
}

/// A connection and one open channel on it.
pub async fn connect_channel(broker: &TestBroker) -> (Connection, Channel) {
    let conn = connect(broker).await;
    let channel = open_channel(&conn).await;
    (conn, channel)
}

/// Opens a channel.
pub async fn open_channel(conn: &Connection) -> Channel {
    within("channel.open-ok", conn.create_channel())
        .await
        .expect("channel.open")
}

/// The AMQP reply code carried by a lapin error (channel.close or connection.close from the
/// server), if it is one.
pub fn reply_code(error: &lapin::Error) -> Option<u16> {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

/// Asserts that `result` failed because the server replied with `code`.
pub fn assert_code<T: std::fmt::Debug>(result: lapin::Result<T>, code: u16) {
    match result {
        Ok(value) => panic!("expected the server to refuse with {code}, it answered {value:?}"),
        Err(error) => assert_eq!(
            reply_code(&error),
            Some(code),
            "expected reply code {code}, got {error:?}"
        ),
    }
}

/// Opens a channel in publisher-confirm mode.
pub async fn confirm_channel(conn: &Connection) -> Channel {
    let channel = open_channel(conn).await;
    within(
        "confirm.select-ok",
        channel.confirm_select(ConfirmSelectOptions::default()),
    )
    .await
    .expect("confirm.select");
    channel
}

/// A connection and a confirm-mode channel on it.
pub async fn confirm_connection(broker: &TestBroker) -> (Connection, Channel) {
    let conn = connect(broker).await;
    let channel = confirm_channel(&conn).await;
    (conn, channel)
}

/// Publishes with the mandatory flag on a confirm-mode channel and returns the confirmation: an
/// ack carrying the returned message if the broker could not route it.
pub async fn publish_mandatory(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Confirmation {
    let options = BasicPublishOptions {
        mandatory: true,
        ..Default::default()
    };
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            options,
            body,
            properties,
        )
        .await
        .expect("basic.publish");
    within("the publisher confirm", confirm)
        .await
        .expect("publisher confirm")
}

/// Publishes mandatory on a confirm-mode channel and reports whether the broker routed it to at
/// least one queue (`false`: it came back as basic.return).
pub async fn routed(channel: &Channel, exchange: &str, routing_key: &str, body: &[u8]) -> bool {
    routed_with(
        channel,
        exchange,
        routing_key,
        body,
        BasicProperties::default(),
    )
    .await
}

/// [`routed`] with message properties (for the headers exchange).
pub async fn routed_with(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> bool {
    let confirmation = publish_mandatory(channel, exchange, routing_key, body, properties).await;
    assert!(
        confirmation.is_ack(),
        "the broker acks routed and unroutable messages alike"
    );
    confirmation.take_message().is_none()
}

/// Declares an exchange.
pub async fn declare_exchange(
    channel: &Channel,
    name: &str,
    kind: ExchangeKind,
    options: ExchangeDeclareOptions,
    arguments: FieldTable,
) -> lapin::Result<()> {
    within(
        "exchange.declare-ok",
        channel.exchange_declare(name.into(), kind, options, arguments),
    )
    .await
}

/// Declares a fresh transient exchange of `kind` and returns its name; the test deletes it.
pub async fn temp_exchange(channel: &Channel, kind: ExchangeKind) -> String {
    let name = unique("x");
    declare_exchange(
        channel,
        &name,
        kind,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("exchange.declare");
    name
}

/// Whether an exchange exists, asked with a passive declare on a channel of its own (a missing
/// exchange closes that channel with 404, which is the answer, not a failure).
pub async fn exchange_exists(conn: &Connection, name: &str) -> bool {
    let channel = open_channel(conn).await;
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let result = declare_exchange(
        &channel,
        name,
        ExchangeKind::Direct,
        passive,
        FieldTable::default(),
    )
    .await;
    exists_or_404(&channel, result).await
}

/// Whether a queue exists, asked like [`exchange_exists`].
pub async fn queue_exists(conn: &Connection, name: &str) -> bool {
    let channel = open_channel(conn).await;
    let result = within(
        "queue.declare-ok",
        channel.queue_declare(
            name.into(),
            QueueDeclareOptions::default().passive(),
            FieldTable::default(),
        ),
    )
    .await;
    exists_or_404(&channel, result).await
}

async fn exists_or_404<T: std::fmt::Debug>(channel: &Channel, result: lapin::Result<T>) -> bool {
    match result {
        Ok(_) => {
            within("channel.close-ok", channel.close(200, "done".into()))
                .await
                .expect("channel.close");
            true
        }
        Err(error) if reply_code(&error) == Some(crate::reply::NOT_FOUND) => false,
        Err(error) => panic!("passive declare failed with {error:?}"),
    }
}

/// Deletes an exchange unconditionally.
pub async fn delete_exchange(channel: &Channel, name: &str) {
    within(
        "exchange.delete-ok",
        channel.exchange_delete(name.into(), ExchangeDeleteOptions::default()),
    )
    .await
    .expect("exchange.delete");
}

/// Binds a queue to an exchange.
pub async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str, args: FieldTable) {
    within(
        "queue.bind-ok",
        channel.queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            args,
        ),
    )
    .await
    .expect("queue.bind");
}

/// Declares a fresh exclusive queue (gone when the connection closes) and returns its name.
pub async fn exclusive_queue(channel: &Channel) -> String {
    let name = unique("q");
    declare(channel, &name, QueueDeclareOptions::exclusive()).await;
    name
}

/// Declares a fresh non-exclusive queue that other connections may use; the test deletes it.
pub async fn shared_queue(channel: &Channel) -> String {
    let name = unique("q");
    declare(channel, &name, QueueDeclareOptions::default()).await;
    name
}

/// The options of a durable (non-exclusive, not auto-deleted) queue.
pub fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..Default::default()
    }
}

/// Declares `name` with `options` and no arguments.
pub async fn declare(channel: &Channel, name: &str, options: QueueDeclareOptions) -> lapin::Queue {
    within(
        "queue.declare-ok",
        channel.queue_declare(name.into(), options, FieldTable::default()),
    )
    .await
    .expect("queue.declare")
}

/// Deletes a queue unconditionally.
pub async fn delete_queue(channel: &Channel, name: &str) {
    within(
        "queue.delete-ok",
        channel.queue_delete(name.into(), QueueDeleteOptions::default()),
    )
    .await
    .expect("queue.delete");
}

/// How many ready messages a queue holds, read with a passive queue.declare.
///
/// RabbitMQ answers this query ahead of deliveries still on their way to the queue, so a plain
/// publish followed by a count may not see the message yet: tests count only messages whose
/// publisher confirm (or a commit, or a delivery) has already been observed.
pub async fn message_count(channel: &Channel, queue: &str) -> u32 {
    declare(channel, queue, QueueDeclareOptions::default().passive())
        .await
        .message_count()
}

/// Publishes `body` and, on a confirm-mode channel, waits for the broker's confirmation.
pub async fn publish(channel: &Channel, exchange: &str, routing_key: &str, body: &[u8]) {
    publish_with(
        channel,
        exchange,
        routing_key,
        body,
        BasicProperties::default(),
    )
    .await;
}

/// Publishes with properties (headers, expiration, ...).
pub async fn publish_with(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) {
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .expect("basic.publish");
    within("the publish to complete", confirm)
        .await
        .expect("publisher confirm");
}

/// Starts a consumer with a server-generated tag.
pub async fn consume(channel: &Channel, queue: &str, options: BasicConsumeOptions) -> Consumer {
    within(
        "basic.consume-ok",
        channel.basic_consume(queue.into(), "".into(), options, FieldTable::default()),
    )
    .await
    .expect("basic.consume")
}

/// Starts an acknowledging consumer.
pub async fn consume_acked(channel: &Channel, queue: &str) -> Consumer {
    consume(channel, queue, BasicConsumeOptions::default()).await
}

/// Waits for the consumer's next delivery.
pub async fn next_delivery(consumer: &mut Consumer) -> Delivery {
    within("a delivery", consumer.next())
        .await
        .expect("the consumer ended while a delivery was expected")
        .expect("delivery")
}

/// Waits for the next delivery and returns its body as text.
pub async fn next_body(consumer: &mut Consumer) -> String {
    body(&next_delivery(consumer).await)
}

/// A delivery's body as text.
pub fn body(delivery: &Delivery) -> String {
    String::from_utf8_lossy(&delivery.data).into_owned()
}

/// Waits for the consumer's stream to end, as it does when the server sends basic.cancel.
pub async fn consumer_ends(consumer: &mut Consumer) {
    match within("the consumer to be cancelled", consumer.next()).await {
        None => {}
        Some(Ok(delivery)) => panic!("unexpected delivery {:?}", body(&delivery)),
        Some(Err(error)) => panic!("consumer failed instead of ending: {error:?}"),
    }
}

/// Waits for the error a consumer reports when the server closes its channel or connection
/// (lapin hands it to every consumer of the channel, then ends the stream). This is how a test
/// learns the reply code of a close provoked by a method that has no reply, such as basic.ack.
pub async fn consumer_error(consumer: &mut Consumer) -> lapin::Error {
    match within("the consumer to report the close", consumer.next()).await {
        Some(Err(error)) => error,
        Some(Ok(delivery)) => panic!("unexpected delivery {:?}", body(&delivery)),
        None => panic!("the consumer ended without an error"),
    }
}

/// basic.get with acknowledgement required.
pub async fn get(channel: &Channel, queue: &str) -> Option<BasicGetMessage> {
    within(
        "basic.get-ok / get-empty",
        channel.basic_get(queue.into(), BasicGetOptions::default()),
    )
    .await
    .expect("basic.get")
}

/// A lapin field table from `(key, value)` pairs (queue and consume arguments).
pub fn table(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in pairs {
        t.insert((*k).into(), v.clone());
    }
    t
}

/// A long-string argument value.
pub fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// An integer argument value.
pub fn int(i: i32) -> AMQPValue {
    AMQPValue::LongInt(i)
}

/// Queue arguments for a delivery limit of `limit`. RabbitMQ keeps delivery limits to quorum
/// queues; Pigeon has them on its classic queues and refuses `x-queue-type: quorum`, so the type
/// is asked for only when the tests run against an external broker.
pub fn delivery_limit(broker: &TestBroker, limit: i32) -> Vec<(&'static str, AMQPValue)> {
    let mut args = vec![("x-delivery-limit", int(limit))];
    if broker.is_external() {
        args.push(("x-queue-type", text("quorum")));
    }
    args
}
