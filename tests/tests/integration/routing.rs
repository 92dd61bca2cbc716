//! How each exchange type chooses queues: direct and fanout, topic patterns exactly as RabbitMQ
//! matches them, and the headers exchange's `x-match` modes. Each case publishes with the
//! mandatory flag on a confirm channel, so "not routed" is observed (a basic.return before the
//! ack), never inferred from silence.

use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use pigeon_tests::lapin_support as lp;
use pigeon_tests::TestBroker;

/// Declares an exchange of `kind` with one exclusive queue bound by `key` and `arguments`.
async fn exchange_with_binding(
    channel: &Channel,
    kind: ExchangeKind,
    key: &str,
    arguments: FieldTable,
) -> (String, String) {
    let exchange = lp::temp_exchange(channel, kind).await;
    let queue = lp::exclusive_queue(channel).await;
    lp::bind(channel, &queue, &exchange, key, arguments).await;
    (exchange, queue)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_exchange_routes_on_the_exact_key_to_every_matching_queue() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let (exchange, first) =
        exchange_with_binding(&channel, ExchangeKind::Direct, "key", FieldTable::default()).await;
    let second = lp::exclusive_queue(&channel).await;
    lp::bind(&channel, &second, &exchange, "key", FieldTable::default()).await;

    for near_miss in ["Key", "key.", "ke", ""] {
        assert!(
            !lp::routed(&channel, &exchange, near_miss, b"no").await,
            "{near_miss:?}"
        );
    }
    assert!(lp::routed(&channel, &exchange, "key", b"yes").await);
    assert_eq!(lp::message_count(&channel, &first).await, 1);
    assert_eq!(lp::message_count(&channel, &second).await, 1);
    lp::delete_exchange(&channel, &exchange).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_exchange_ignores_the_key_and_copies_to_every_queue() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let (exchange, first) = exchange_with_binding(
        &channel,
        ExchangeKind::Fanout,
        "bound-key",
        FieldTable::default(),
    )
    .await;
    let second = lp::exclusive_queue(&channel).await;
    lp::bind(&channel, &second, &exchange, "", FieldTable::default()).await;

    assert!(lp::routed(&channel, &exchange, "anything.at.all", b"copy").await);
    for queue in [&first, &second] {
        let got = lp::get(&channel, queue).await.unwrap();
        assert_eq!(got.delivery.data, b"copy");
        assert_eq!(got.delivery.routing_key.as_str(), "anything.at.all");
    }
    lp::delete_exchange(&channel, &exchange).await;
}

/// `(binding pattern, routing key, routed?)`, as RabbitMQ's topic exchange decides.
const TOPIC_CASES: &[(&str, &str, bool)] = &[
    ("#", "", true),
    ("#", "a", true),
    ("#", "a.b.c", true),
    ("#.#", "", true),
    ("#.#", "a.b", true),
    ("*", "a", true),
    ("*", "a.b", false),
    ("*.*", "a", false),
    ("*.*", "a.b", true),
    ("*.*", "a.b.c", false),
    ("a.*", "a", false),
    ("a.*", "a.b", true),
    ("a.*", "a.", true), // an empty word is still a word
    ("a.#", "a", true),
    ("a.#", "a.b.c", true),
    ("a.#", "ab", false),
    ("#.a", "a", true),
    ("#.a", "x.y.a", true),
    ("#.a", "a.x", false),
    ("a.#.b", "a.b", true),
    ("a.#.b", "a.x.y.b", true),
    ("a.#.b", "a.b.c", false),
    ("#.b.#", "b", true),
    ("#.b.#", "a.b.c", true),
    ("*.b.#", "a.b", true),
    ("*.b.#", "b", false),
    ("a.*.#", "a", false),
    ("a.*.#", "a.b", true),
    ("#.*", "", false),
    ("#.*", "a.b.c", true),
    ("a..b", "a..b", true),
    ("a.*.b", "a..b", true),
    ("a.b", "a.b.c", false),
    ("a.b", "A.b", false), // case matters
    ("a", "a", true),
    ("*", "", false),
    ("", "", true),
    ("", "a", false),
    ("a.#.#.b", "a.b", true),
    ("#.#.a", "a", true),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_exchange_matches_star_and_hash_patterns_like_rabbitmq() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let mut failures = Vec::new();
    for (pattern, key, expected) in TOPIC_CASES {
        let (exchange, _queue) = exchange_with_binding(
            &channel,
            ExchangeKind::Topic,
            pattern,
            FieldTable::default(),
        )
        .await;
        if lp::routed(&channel, &exchange, key, b"t").await != *expected {
            failures.push(format!(
                "pattern {pattern:?} key {key:?}: expected {expected}"
            ));
        }
        lp::delete_exchange(&channel, &exchange).await;
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_matched_by_several_bindings_gets_one_copy() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let (exchange, queue) =
        exchange_with_binding(&channel, ExchangeKind::Topic, "a.*", FieldTable::default()).await;
    lp::bind(&channel, &queue, &exchange, "#", FieldTable::default()).await;
    lp::bind(&channel, &queue, &exchange, "a.b", FieldTable::default()).await;
    assert!(lp::routed(&channel, &exchange, "a.b", b"once").await);
    assert_eq!(lp::message_count(&channel, &queue).await, 1);
    lp::delete_exchange(&channel, &exchange).await;
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(value.into())
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in entries {
        table.insert((*key).into(), value.clone());
    }
    table
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_exchange_matches_all_any_and_the_with_x_variants() {
    let int = AMQPValue::LongInt;
    // (binding arguments, message headers, routed?)
    let cases: Vec<(FieldTable, FieldTable, bool)> = vec![
        // x-match all (also the default when x-match is absent)
        (
            table(&[("x-match", text("all")), ("a", int(1)), ("b", text("2"))]),
            table(&[("a", int(1)), ("b", text("2"))]),
            true,
        ),
        (
            table(&[("x-match", text("all")), ("a", int(1)), ("b", text("2"))]),
            table(&[("a", int(1)), ("b", text("2")), ("c", int(3))]),
            true,
        ),
        (
            table(&[("x-match", text("all")), ("a", int(1)), ("b", text("2"))]),
            table(&[("a", int(1))]),
            false,
        ),
        (
            table(&[("x-match", text("all")), ("a", int(1)), ("b", text("2"))]),
            table(&[("a", int(1)), ("b", text("3"))]),
            false,
        ),
        (table(&[("a", int(1))]), table(&[("a", int(1))]), true),
        (table(&[("a", int(1))]), table(&[("a", int(2))]), false),
        // x-match any
        (
            table(&[("x-match", text("any")), ("a", int(1)), ("b", text("2"))]),
            table(&[("a", int(1))]),
            true,
        ),
        (
            table(&[("x-match", text("any")), ("a", int(1)), ("b", text("2"))]),
            table(&[("b", text("2")), ("c", int(9))]),
            true,
        ),
        (
            table(&[("x-match", text("any")), ("a", int(1)), ("b", text("2"))]),
            table(&[("a", int(2))]),
            false,
        ),
        (
            table(&[("x-match", text("any")), ("a", int(1))]),
            FieldTable::default(),
            false,
        ),
        // a void binding value asks only that the header be present
        (
            table(&[("x-match", text("all")), ("a", AMQPValue::Void)]),
            table(&[("a", text("whatever"))]),
            true,
        ),
        (
            table(&[("x-match", text("all")), ("a", AMQPValue::Void)]),
            table(&[("b", int(1))]),
            false,
        ),
        // values compare by type class: a string is not an integer
        (
            table(&[("x-match", text("all")), ("a", text("1"))]),
            table(&[("a", int(1))]),
            false,
        ),
        (
            table(&[("x-match", text("all")), ("a", int(1))]),
            table(&[("a", AMQPValue::ShortInt(1))]),
            true,
        ),
        // all/any ignore x- arguments; all-with-x/any-with-x compare them too
        (
            table(&[("x-match", text("all")), ("x-tag", text("t"))]),
            FieldTable::default(),
            true,
        ),
        (
            table(&[("x-match", text("all-with-x")), ("x-tag", text("t"))]),
            FieldTable::default(),
            false,
        ),
        (
            table(&[("x-match", text("all-with-x")), ("x-tag", text("t"))]),
            table(&[("x-tag", text("t"))]),
            true,
        ),
        (
            table(&[
                ("x-match", text("any")),
                ("x-tag", text("t")),
                ("a", int(1)),
            ]),
            table(&[("x-tag", text("t"))]),
            false,
        ),
        (
            table(&[
                ("x-match", text("any-with-x")),
                ("x-tag", text("t")),
                ("a", int(1)),
            ]),
            table(&[("x-tag", text("t"))]),
            true,
        ),
        (
            table(&[("x-match", text("any-with-x")), ("x-tag", text("t"))]),
            table(&[("x-tag", text("u"))]),
            false,
        ),
    ];
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let mut failures = Vec::new();
    for (binding, message_headers, expected) in cases {
        let (exchange, _queue) =
            exchange_with_binding(&channel, ExchangeKind::Headers, "", binding.clone()).await;
        let properties = BasicProperties::default().with_headers(message_headers.clone());
        if lp::routed_with(&channel, &exchange, "ignored", b"h", properties).await != expected {
            failures.push(format!(
                "binding {binding:?} headers {message_headers:?}: expected {expected}"
            ));
        }
        lp::delete_exchange(&channel, &exchange).await;
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_exchange_routes_nothing_for_a_message_without_headers() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let binding = table(&[("x-match", text("any")), ("a", AMQPValue::LongInt(1))]);
    let (exchange, queue) =
        exchange_with_binding(&channel, ExchangeKind::Headers, "", binding).await;
    assert!(!lp::routed(&channel, &exchange, "", b"bare").await);
    assert_eq!(lp::message_count(&channel, &queue).await, 0);
    lp::delete_exchange(&channel, &exchange).await;
}

/// A message is one allocation holding its routing key, properties and (up to 256 bytes) its
/// body, with a larger body shared beside it (docs/performance.md, "Memory per message"): on
/// both sides of that line, and for a body over several frames, every queue a fanout exchange
/// copies it to delivers it whole, to a consumer (`basic.deliver`) and to `basic.get`, with its
/// exchange, routing key and properties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanned_out_messages_arrive_whole_whatever_their_size() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let (exchange, first) =
        exchange_with_binding(&channel, ExchangeKind::Fanout, "", FieldTable::default()).await;
    let second = lp::exclusive_queue(&channel).await;
    lp::bind(&channel, &second, &exchange, "", FieldTable::default()).await;
    let key = "k".repeat(255);
    let mut consumer = lp::consume_acked(&channel, &first).await;
    for size in [0, 16, 255, 256, 257, 300_000] {
        let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
        let properties = BasicProperties::default()
            .with_content_type("application/octet-stream".into())
            .with_headers(lp::table(&[("size", lp::int(size))]));
        lp::publish_with(&channel, &exchange, &key, &body, properties).await;

        let d = lp::next_delivery(&mut consumer).await;
        assert_eq!(d.data, body, "{size}");
        assert_eq!(d.exchange.as_str(), exchange);
        assert_eq!(d.routing_key.as_str(), key);
        let headers = d.properties.headers().as_ref().unwrap();
        assert_eq!(headers.inner().get("size"), Some(&lp::int(size)));
        d.ack(Default::default()).await.unwrap();

        let g = lp::get(&channel, &second).await.unwrap();
        assert_eq!(g.delivery.data, body, "{size}");
        assert_eq!(g.delivery.routing_key.as_str(), key);
        assert_eq!(
            g.delivery
                .properties
                .content_type()
                .as_ref()
                .map(|s| s.as_str()),
            Some("application/octet-stream")
        );
        g.delivery.ack(Default::default()).await.unwrap();
    }
    lp::delete_exchange(&channel, &exchange).await;
}

/// A message published to the default exchange is stored without its routing key (the name of
/// the queue it goes to: docs/performance.md, "Memory per message"); every reader must still see
/// that key: deliveries, basic.get, basic.return, dead-lettering's `x-death`, a queue's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_exchange_gives_the_queue_name_as_the_routing_key_everywhere() {
    use lapin::options::{BasicAckOptions, BasicRejectOptions};
    use lapin::Confirmation;
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let channel = lp::confirm_channel(&conn).await;
    let queue = lp::exclusive_queue(&channel).await;
    let dead = lp::exclusive_queue(&channel).await;
    let source = pigeon_tests::unique("dl-source");
    let arguments = lp::table(&[
        ("x-dead-letter-exchange", lp::text("")),
        ("x-dead-letter-routing-key", lp::text(&dead)),
    ]);
    channel
        .queue_declare(
            source.as_str().into(),
            lapin::options::QueueDeclareOptions::exclusive(),
            arguments,
        )
        .await
        .unwrap();

    let props = BasicProperties::default;
    let routed = lp::publish_mandatory(&channel, "", &queue, b"got", props()).await;
    assert!(matches!(routed, Confirmation::Ack(None)), "{routed:?}");
    let g = lp::get(&channel, &queue).await.unwrap();
    let d = &g.delivery;
    assert_eq!((d.exchange.as_str(), d.routing_key.as_str()), ("", &*queue));
    d.ack(BasicAckOptions::default()).await.unwrap();

    lp::publish(&channel, "", &queue, b"consumed").await;
    let mut consumer = lp::consume_acked(&channel, &queue).await;
    let d = lp::next_delivery(&mut consumer).await;
    assert_eq!(
        (lp::body(&d).as_str(), d.routing_key.as_str()),
        ("consumed", &*queue)
    );
    d.ack(BasicAckOptions::default()).await.unwrap();

    let nowhere = pigeon_tests::unique("nowhere");
    let back = lp::publish_mandatory(&channel, "", &nowhere, b"back", props()).await;
    let Confirmation::Ack(Some(returned)) = back else {
        panic!("expected basic.return then basic.ack, got {back:?}");
    };
    assert_eq!(returned.delivery.routing_key.as_str(), nowhere);

    lp::publish(&channel, "", &source, b"rejected").await;
    let g = lp::get(&channel, &source).await.unwrap();
    assert_eq!(g.delivery.routing_key.as_str(), source);
    let requeue = BasicRejectOptions { requeue: false };
    g.delivery.reject(requeue).await.unwrap();
    let g = pigeon_tests::within("the dead-lettered message", async {
        loop {
            if let Some(g) = lp::get(&channel, &dead).await {
                return g;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    let d = &g.delivery;
    assert_eq!((d.exchange.as_str(), d.routing_key.as_str()), ("", &*dead));
    let headers = d.properties.headers().as_ref().unwrap();
    let Some(AMQPValue::FieldArray(deaths)) = headers.inner().get("x-death") else {
        panic!("no x-death in {headers:?}");
    };
    let Some(AMQPValue::FieldTable(death)) = deaths.as_slice().first() else {
        panic!("x-death {deaths:?}");
    };
    let keys = death.inner().get("routing-keys");
    let Some(AMQPValue::FieldArray(keys)) = keys else {
        panic!("routing-keys {keys:?}");
    };
    assert_eq!(
        keys.as_slice(),
        [AMQPValue::LongString(source.as_str().into())]
    );
}

/// The same for a stream: its entries keep the key (the stream's name) of a message published
/// through the default exchange.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_entry_published_through_the_default_exchange_keeps_its_routing_key() {
    use pigeon_tests::streams_support::{data_dir, new_stream, publish_confirmed, stream_consumer};
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let conn = lp::connect(&broker).await;
    let (ch, s) = new_stream(&conn).await;
    publish_confirmed(&ch, &s, &["a"]).await;
    let mut c = stream_consumer(&ch, &s, Some(lp::text("first"))).await;
    let d = lp::next_delivery(&mut c).await;
    assert_eq!((lp::body(&d).as_str(), d.exchange.as_str()), ("a", ""));
    assert_eq!(d.routing_key.as_str(), s);
}
