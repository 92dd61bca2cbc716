//! Exchanges: the predeclared ones, declaration rules, deletion, exchange-to-exchange bindings and
//! alternate exchanges (AMQP 0-9-1 class `exchange`, RabbitMQ's extensions). Routing by topic
//! pattern and by headers is in `routing.rs`.

use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, ExchangeUnbindOptions,
    QueueBindOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ExchangeKind};
use pigeon_tests::lapin_support::{self as lp, assert_code};
use pigeon_tests::reply::{ACCESS_REFUSED, NOT_FOUND, PRECONDITION_FAILED};
use pigeon_tests::{unique, within, TestBroker};

fn headers(entries: &[(&str, &str)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert((*key).into(), AMQPValue::LongString((*value).into()));
    }
    table
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_exchange_routes_by_queue_name_and_cannot_be_bound() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = lp::exclusive_queue(&channel).await;

    assert!(lp::routed(&channel, "", &queue, b"hello").await);
    assert!(!lp::routed(&channel, "", &unique("no-such-queue"), b"lost").await);
    let got = lp::get(&channel, &queue)
        .await
        .expect("the message is in the queue");
    assert_eq!(got.delivery.data, b"hello");

    let bind = channel
        .queue_bind(
            queue.as_str().into(),
            "".into(),
            "other".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_code(bind, ACCESS_REFUSED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn predeclared_amq_exchanges_exist_and_route_by_their_type() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    // Unique keys and header values keep other tests' traffic out of our queues.
    let word = unique("w").replace('.', "_");
    let all = headers(&[("x-match", "all"), ("probe", &word)]);
    let cases: [(&str, String, FieldTable, String, FieldTable); 5] = [
        (
            "amq.direct",
            word.clone(),
            FieldTable::default(),
            word.clone(),
            FieldTable::default(),
        ),
        (
            "amq.fanout",
            String::new(),
            FieldTable::default(),
            "ignored".into(),
            FieldTable::default(),
        ),
        (
            "amq.topic",
            format!("{word}.*"),
            FieldTable::default(),
            format!("{word}.x"),
            FieldTable::default(),
        ),
        (
            "amq.headers",
            String::new(),
            all.clone(),
            "ignored".into(),
            headers(&[("probe", &word)]),
        ),
        (
            "amq.match",
            String::new(),
            all,
            "ignored".into(),
            headers(&[("probe", &word)]),
        ),
    ];
    for (exchange, binding_key, binding_args, routing_key, message_headers) in cases {
        assert!(
            lp::exchange_exists(&conn, exchange).await,
            "{exchange} exists"
        );
        let queue = lp::exclusive_queue(&channel).await;
        lp::bind(&channel, &queue, exchange, &binding_key, binding_args).await;
        let properties = BasicProperties::default().with_headers(message_headers);
        assert!(
            lp::routed_with(&channel, exchange, &routing_key, b"m", properties).await,
            "{exchange} routes"
        );
        assert!(
            lp::get(&channel, &queue).await.is_some(),
            "{exchange} delivered"
        );
        lp::delete_queue(&channel, &queue).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_declare_of_a_missing_exchange_closes_only_the_channel_with_404() {
    let broker = TestBroker::start().await;
    let (conn, channel) = lp::connect_channel(&broker).await;
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let missing = unique("missing");
    let result = lp::declare_exchange(
        &channel,
        &missing,
        ExchangeKind::Direct,
        passive,
        FieldTable::default(),
    )
    .await;
    assert_code(result, NOT_FOUND);
    assert!(!channel.status().connected(), "the channel is closed");
    assert!(conn.status().connected(), "the connection is not");
    let other = lp::open_channel(&conn).await;
    lp::exclusive_queue(&other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeclaring_an_exchange_with_another_type_or_durability_is_406() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let name = unique("x");
    let durable = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let declare = |kind, options| {
        let channel = channel.clone();
        let name = name.clone();
        async move { lp::declare_exchange(&channel, &name, kind, options, FieldTable::default()).await }
    };
    declare(ExchangeKind::Direct, durable).await.unwrap();
    // The same declaration again is fine.
    declare(ExchangeKind::Direct, durable).await.unwrap();
    assert_code(
        declare(ExchangeKind::Direct, Default::default()).await,
        PRECONDITION_FAILED,
    );

    let channel = lp::open_channel(&conn).await;
    let result = lp::declare_exchange(
        &channel,
        &name,
        ExchangeKind::Fanout,
        durable,
        FieldTable::default(),
    )
    .await;
    assert_code(result, PRECONDITION_FAILED);

    let channel = lp::open_channel(&conn).await;
    lp::delete_exchange(&channel, &name).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaring_an_exchange_with_the_reserved_amq_prefix_is_403() {
    let broker = TestBroker::start().await;
    let (_conn, channel) = lp::connect_channel(&broker).await;
    let result = lp::declare_exchange(
        &channel,
        &unique("amq.mine"),
        ExchangeKind::Direct,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await;
    assert_code(result, ACCESS_REFUSED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_delete_exchange_goes_when_its_last_binding_goes() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let name = unique("x");
    let auto_delete = ExchangeDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    lp::declare_exchange(
        &channel,
        &name,
        ExchangeKind::Fanout,
        auto_delete,
        FieldTable::default(),
    )
    .await
    .unwrap();
    // Never bound yet: it stays.
    assert!(lp::exchange_exists(&conn, &name).await);

    let first = lp::exclusive_queue(&channel).await;
    let second = lp::exclusive_queue(&channel).await;
    lp::bind(&channel, &first, &name, "", FieldTable::default()).await;
    lp::bind(&channel, &second, &name, "", FieldTable::default()).await;
    within(
        "queue.unbind-ok",
        channel.queue_unbind(
            first.as_str().into(),
            name.as_str().into(),
            "".into(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    assert!(
        lp::exchange_exists(&conn, &name).await,
        "one binding is left"
    );
    // Deleting the queue removes the last binding.
    lp::delete_queue(&channel, &second).await;
    assert!(!lp::exchange_exists(&conn, &name).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_exchange_refuses_publishes_with_403_but_routes_from_other_exchanges() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let internal = unique("internal");
    let options = ExchangeDeclareOptions {
        internal: true,
        ..Default::default()
    };
    lp::declare_exchange(
        &channel,
        &internal,
        ExchangeKind::Fanout,
        options,
        FieldTable::default(),
    )
    .await
    .unwrap();
    let source = lp::temp_exchange(&channel, ExchangeKind::Fanout).await;
    let queue = lp::exclusive_queue(&channel).await;
    lp::bind(&channel, &queue, &internal, "", FieldTable::default()).await;
    within(
        "exchange.bind-ok",
        channel.exchange_bind(
            internal.as_str().into(),
            source.as_str().into(),
            "".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    assert!(lp::routed(&channel, &source, "k", b"via the source").await);
    assert_eq!(
        lp::get(&channel, &queue).await.unwrap().delivery.data,
        b"via the source"
    );

    let publisher = lp::confirm_channel(&conn).await;
    let confirm = publisher
        .basic_publish(
            internal.as_str().into(),
            "k".into(),
            Default::default(),
            b"direct",
            Default::default(),
        )
        .await
        .unwrap();
    assert_code(
        within("the channel to close", confirm).await,
        ACCESS_REFUSED,
    );

    lp::delete_exchange(&channel, &source).await;
    lp::delete_exchange(&channel, &internal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_delete_if_unused_refuses_an_exchange_with_bindings_406() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::open_channel(&conn).await;
    let exchange = lp::temp_exchange(&channel, ExchangeKind::Direct).await;
    let queue = lp::exclusive_queue(&channel).await;
    lp::bind(&channel, &queue, &exchange, "k", FieldTable::default()).await;
    let if_unused = ExchangeDeleteOptions {
        if_unused: true,
        ..Default::default()
    };
    let result = within(
        "exchange.delete",
        channel.exchange_delete(exchange.as_str().into(), if_unused),
    )
    .await;
    assert_code(result, PRECONDITION_FAILED);
    assert!(
        lp::exchange_exists(&conn, &exchange).await,
        "a refused delete deletes nothing"
    );

    let channel = lp::open_channel(&conn).await;
    within(
        "queue.unbind-ok",
        channel.queue_unbind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "k".into(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    within(
        "exchange.delete-ok",
        channel.exchange_delete(exchange.as_str().into(), if_unused),
    )
    .await
    .unwrap();
    assert!(!lp::exchange_exists(&conn, &exchange).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_to_exchange_binding_routes_until_it_is_unbound() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let source = lp::temp_exchange(&channel, ExchangeKind::Direct).await;
    let destination = lp::temp_exchange(&channel, ExchangeKind::Fanout).await;
    let queue = lp::exclusive_queue(&channel).await;
    lp::bind(&channel, &queue, &destination, "", FieldTable::default()).await;
    within(
        "exchange.bind-ok",
        channel.exchange_bind(
            destination.as_str().into(),
            source.as_str().into(),
            "k".into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();

    assert!(lp::routed(&channel, &source, "k", b"one").await);
    assert!(
        !lp::routed(&channel, &source, "other", b"lost").await,
        "the binding key applies"
    );
    assert_eq!(lp::message_count(&channel, &queue).await, 1);

    within(
        "exchange.unbind-ok",
        channel.exchange_unbind(
            destination.as_str().into(),
            source.as_str().into(),
            "k".into(),
            ExchangeUnbindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    assert!(!lp::routed(&channel, &source, "k", b"two").await);
    assert_eq!(lp::message_count(&channel, &queue).await, 1);

    lp::delete_exchange(&channel, &source).await;
    lp::delete_exchange(&channel, &destination).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alternate_exchange_receives_what_the_exchange_cannot_route() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let alternate = lp::temp_exchange(&channel, ExchangeKind::Fanout).await;
    let unrouted = lp::exclusive_queue(&channel).await;
    lp::bind(&channel, &unrouted, &alternate, "", FieldTable::default()).await;

    let exchange = unique("x");
    let mut arguments = FieldTable::default();
    arguments.insert(
        "alternate-exchange".into(),
        AMQPValue::LongString(alternate.as_str().into()),
    );
    lp::declare_exchange(
        &channel,
        &exchange,
        ExchangeKind::Direct,
        Default::default(),
        arguments,
    )
    .await
    .unwrap();
    let known = lp::exclusive_queue(&channel).await;
    lp::bind(&channel, &known, &exchange, "known", FieldTable::default()).await;

    assert!(lp::routed(&channel, &exchange, "known", b"routed").await);
    assert_eq!(
        lp::message_count(&channel, &unrouted).await,
        0,
        "routable messages stay put"
    );
    // Mandatory is satisfied by the alternate exchange: no basic.return.
    assert!(lp::routed(&channel, &exchange, "unknown", b"caught").await);
    assert_eq!(
        lp::get(&channel, &unrouted).await.unwrap().delivery.data,
        b"caught"
    );
    assert_eq!(
        lp::get(&channel, &known).await.unwrap().delivery.data,
        b"routed"
    );

    lp::delete_exchange(&channel, &exchange).await;
    lp::delete_exchange(&channel, &alternate).await;
}
