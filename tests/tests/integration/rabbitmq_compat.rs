//! Connection and channel behaviours that RabbitMQ client libraries rely on, answered as
//! RabbitMQ 3.13 / 4.x answers them (rabbit_reader.erl, rabbit_channel.erl, rabbit_exchange.erl,
//! rabbit_amqqueue.erl): the close handshake that lets a client finish writing, the empty queue
//! name without a declared queue, unknown exchange and queue types, and the older protocol
//! headers. Where Pigeon departs on purpose (the quorum and stream queue types it does not
//! implement), the test says so and is skipped against an external broker.

use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ExchangeKind};
use pigeon_tests::lapin_support::{self as lp, table, text};
use pigeon_tests::raw::{method, Args, Frame, RawClient};
use pigeon_tests::reply::{NOT_FOUND, PRECONDITION_FAILED};
use pigeon_tests::{unique, within, TestBroker};

/// The reply text of a channel or connection close carried by a lapin error.
fn reply_text(error: &lapin::Error) -> String {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => amqp.get_message().as_str().to_string(),
        other => panic!("expected a close from the server, got {other:?}"),
    }
}

/// Asserts that `result` is a channel close with `code` and `text`, and that the connection
/// survived it.
fn assert_refused<T: std::fmt::Debug>(
    conn: &Connection,
    result: lapin::Result<T>,
    code: u16,
    text: &str,
) {
    let error = result.expect_err("the server should refuse");
    assert_eq!(lp::reply_code(&error), Some(code), "{error:?}");
    assert_eq!(reply_text(&error), text);
    assert!(
        conn.status().connected(),
        "a channel error closed the connection"
    );
}

/// basic.publish of `body` to the default exchange with `routing_key`, as raw frames.
fn publish_frames(channel: u16, routing_key: &str, body: &[u8]) -> Vec<u8> {
    let args = Args::new()
        .short(0)
        .shortstr("")
        .shortstr(routing_key)
        .bits(&[false, false]);
    let mut bytes = Frame::method(channel, method::BASIC_PUBLISH, args).encode();
    bytes.extend(Frame::content_header(channel, body.len() as u64).encode());
    bytes.extend(Frame::body(channel, body).encode());
    bytes
}

// ---------------------------------------------------------------------------------------------
// The close handshake (rabbit_reader: the `closed` state reads on until the client hangs up)

/// A client's multiplexer may send connection.close ahead of frames other channels still have
/// buffered (amqplib does), and go on writing them after our close-ok. The broker reads and
/// discards them until the client closes its socket, so the client's writes do not fail and it
/// sees an orderly end; nothing it sent after close is acted on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_after_connection_close_are_read_and_discarded_until_the_client_hangs_up() {
    let broker = TestBroker::start().await;
    let (admin_conn, admin) = lp::connect_channel(&broker).await;
    let queue = lp::shared_queue(&admin).await;
    let mut client = broker.raw_connection().await;
    client.open_channel(1).await;

    let close = Args::new().short(200).shortstr("bye").short(0).short(0);
    let mut bytes = Frame::method(0, method::CONNECTION_CLOSE, close).encode();
    let body = vec![b'x'; 4000];
    for _ in 0..100 {
        bytes.extend(publish_frames(1, &queue, &body));
    }
    client.send_bytes(&bytes).await;
    client.expect_method(method::CONNECTION_CLOSE_OK).await;

    // Still flushing after close-ok: several megabytes more, in many writes. A broker that had
    // hung up would reset the connection and these writes would fail.
    let burst: Vec<u8> = (0..16)
        .flat_map(|_| publish_frames(1, &queue, &body))
        .collect();
    for _ in 0..64 {
        client.send_bytes(&burst).await;
    }
    client.finish_writing().await;
    // The broker said nothing after close-ok, and closes its end once it has read ours.
    assert_eq!(client.read_frame().await, None);

    assert_eq!(lp::message_count(&admin, &queue).await, 0);
    lp::delete_queue(&admin, &queue).await;
    admin_conn.close(200, "bye".into()).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// The empty queue name (rabbit_channel `expand_queue_name_shortcut`)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_empty_queue_name_with_no_declared_queue_closes_the_channel_with_404() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let text = "NOT_FOUND - no previously declared queue";
    let fresh = || lp::open_channel(&conn);

    let ch = fresh().await;
    let r = within(
        "basic.get",
        ch.basic_get("".into(), BasicGetOptions::default()),
    )
    .await;
    assert_refused(&conn, r, NOT_FOUND, text);
    let ch = fresh().await;
    let r = within(
        "basic.consume",
        ch.basic_consume(
            "".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_refused(&conn, r, NOT_FOUND, text);
    let ch = fresh().await;
    let r = within(
        "queue.bind",
        ch.queue_bind(
            "".into(),
            "amq.direct".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_refused(&conn, r, NOT_FOUND, text);
    let ch = fresh().await;
    let r = within(
        "queue.unbind",
        ch.queue_unbind(
            "".into(),
            "amq.direct".into(),
            "k".into(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_refused(&conn, r, NOT_FOUND, text);
    let ch = fresh().await;
    let r = within(
        "queue.purge",
        ch.queue_purge("".into(), QueuePurgeOptions::default()),
    )
    .await;
    assert_refused(&conn, r, NOT_FOUND, text);
    let ch = fresh().await;
    let r = within(
        "queue.delete",
        ch.queue_delete("".into(), QueueDeleteOptions::default()),
    )
    .await;
    assert_refused(&conn, r, NOT_FOUND, text);

    // A passive declare has no shortcut: it asks for the queue named ''.
    let ch = fresh().await;
    let r = within(
        "queue.declare",
        ch.queue_declare(
            "".into(),
            QueueDeclareOptions::default().passive(),
            FieldTable::default(),
        ),
    )
    .await;
    assert_refused(&conn, r, NOT_FOUND, "NOT_FOUND - no queue '' in vhost '/'");

    let ch = fresh().await;
    lp::exclusive_queue(&ch).await;
    conn.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_empty_queue_name_means_the_last_queue_declared_on_the_channel() {
    let broker = TestBroker::start().await;
    let (conn, ch) = lp::confirm_connection(&broker).await;
    let queue = lp::exclusive_queue(&ch).await;

    // queue.bind with an empty queue and routing key binds the last queue by its own name.
    within(
        "queue.bind-ok",
        ch.queue_bind(
            "".into(),
            "amq.direct".into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    lp::publish(&ch, "amq.direct", &queue, b"one").await;
    lp::publish(&ch, "amq.direct", &queue, b"two").await;
    let got = lp::get(&ch, "")
        .await
        .expect("a message from the last queue");
    assert_eq!(got.delivery.data, b"one");
    got.delivery
        .acker
        .ack(Default::default())
        .await
        .expect("basic.ack");
    let purged = within(
        "queue.purge-ok",
        ch.queue_purge("".into(), QueuePurgeOptions::default()),
    )
    .await
    .unwrap();
    assert_eq!(purged, 1);
    // queue.unbind takes the same shortcuts: afterwards nothing routes to the queue.
    within(
        "queue.unbind-ok",
        ch.queue_unbind(
            "".into(),
            "amq.direct".into(),
            "".into(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    assert!(!lp::routed(&ch, "amq.direct", &queue, b"three").await);
    let mut consumer = lp::consume_acked(&ch, "").await;
    lp::publish(&ch, "", &queue, b"four").await;
    assert_eq!(lp::next_body(&mut consumer).await, "four");
    within(
        "queue.delete-ok",
        ch.queue_delete("".into(), QueueDeleteOptions::default()),
    )
    .await
    .unwrap();
    assert!(!lp::queue_exists(&conn, &queue).await);
    conn.close(200, "bye".into()).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Unknown exchange types (rabbit_exchange `check_type`: 406 since RabbitMQ 3.13)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_exchange_type_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let bogus = || ExchangeKind::Custom("x-no-such-type".into());
    let declare = |ch: Channel, name: String, options: ExchangeDeclareOptions| async move {
        within(
            "exchange.declare",
            ch.exchange_declare(
                name.as_str().into(),
                bogus(),
                options,
                FieldTable::default(),
            ),
        )
        .await
    };
    let text = "PRECONDITION_FAILED - unknown exchange type 'x-no-such-type'";

    let ch = lp::open_channel(&conn).await;
    let r = declare(ch, unique("x"), ExchangeDeclareOptions::default()).await;
    assert_refused(&conn, r, PRECONDITION_FAILED, text);
    // The type is checked before the name: redeclaring an existing exchange says the same.
    let ch = lp::open_channel(&conn).await;
    let r = declare(ch, "amq.direct".into(), ExchangeDeclareOptions::default()).await;
    assert_refused(&conn, r, PRECONDITION_FAILED, text);
    // A passive declare ignores the type.
    let ch = lp::open_channel(&conn).await;
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    declare(ch.clone(), "amq.direct".into(), passive)
        .await
        .unwrap();
    lp::exclusive_queue(&ch).await;
    conn.close(200, "bye".into()).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Queue types (rabbit_amqqueue `check_queue_type`)

async fn declare_typed(ch: &Channel, name: &str, queue_type: &str) -> lapin::Result<lapin::Queue> {
    within(
        "queue.declare",
        ch.queue_declare(
            name.into(),
            QueueDeclareOptions::exclusive(),
            table(&[("x-queue-type", text(queue_type))]),
        ),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_is_a_queue_type_and_an_unknown_one_closes_the_channel_with_406() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let ch = lp::open_channel(&conn).await;
    let name = unique("classic");
    declare_typed(&ch, &name, "classic").await.unwrap();
    lp::publish(&ch, "", &name, b"kept").await;
    assert_eq!(lp::message_count(&ch, &name).await, 1);

    let name = unique("bogus");
    let r = declare_typed(&ch, &name, "bogus").await;
    let text = format!(
        "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue '{name}' in vhost '/': \
         \"unsupported queue type 'bogus'\""
    );
    assert_refused(&conn, r, PRECONDITION_FAILED, &text);
    conn.close(200, "bye".into()).await.unwrap();
}

/// Pigeon's own answer: quorum queues run on every node with a data directory (a node without
/// `[cluster]` is a cluster of one: tests/integration/quorum_single.rs); a broker kept in memory
/// (no `data_dir`, as these tests' default configuration) has nowhere for their Raft log and
/// says so with RabbitMQ's code for a refused argument (RabbitMQ always has a data directory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_queues_are_refused_with_406_without_a_data_directory() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        println!("skipped against an external broker: RabbitMQ has quorum queues");
        return;
    }
    let conn = lp::connect(&broker).await;
    for queue_type in ["quorum"] {
        let ch = lp::open_channel(&conn).await;
        let name = unique(queue_type);
        let r = declare_typed(&ch, &name, queue_type).await;
        let text = format!(
            "PRECONDITION_FAILED - invalid arg 'x-queue-type' for queue '{name}' in vhost '/': \
             queue type '{queue_type}' needs a data directory (data_dir), where its Raft log \
             is kept; declare a classic queue on a node without one"
        );
        assert_refused(&conn, r, PRECONDITION_FAILED, &text);
        assert!(!lp::queue_exists(&conn, &name).await);
    }
    conn.close(200, "bye".into()).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Protocol headers (rabbit_reader `handshake` / `version_negotiation`, `refuse_connection`)

/// `AMQP 1 1 0 9`, AMQP 0-9's header, is served as 0-9-1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_amqp_0_9_header_is_served_as_0_9_1() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    let start = client.start_with_header(b"AMQP\x01\x01\x00\x09").await;
    assert_eq!((start.version_major, start.version_minor), (0, 9));
    let how = broker.raw_handshake();
    client
        .start_ok_plain(&how.user, &how.password, how.authentication_failure_close)
        .await;
    let tune = client.tune().await;
    client.tune_ok_and_open(tune).await;
    client.open_channel(1).await;
    client.declare_exclusive_queue(1).await;
    client.close().await;
}

/// Every other header gets the 0-9-1 header back, then the socket closes: the 0-8 ones that
/// RabbitMQ 4 no longer serves, other 0-9 revisions, AMQP 1.0, and bytes that are no header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_protocol_headers_are_answered_with_the_0_9_1_header_and_closed() {
    let broker = TestBroker::start().await;
    if broker.is_external() {
        // RabbitMQ 3.x serves 0-8; 4.x offers AMQP 1.0 (AMQP 3 1 0 0) for most of these.
        println!("skipped against an external broker: its answers depend on its version");
        return;
    }
    let headers: [&[u8; 8]; 8] = [
        b"AMQP\x01\x01\x08\x00",
        b"AMQP\x01\x01\x09\x01",
        b"AMQP\x00\x00\x09\x00",
        b"AMQP\x00\x00\x08\x00",
        b"AMQP\x00\x00\x0a\x00",
        b"AMQP\x00\x01\x00\x00",
        b"AMQP\x03\x01\x00\x00",
        b"HELLO123",
    ];
    for header in headers {
        let mut client = RawClient::connect(broker.addr()).await;
        client.send_bytes(header).await;
        assert_eq!(
            client.read_raw(8).await,
            b"AMQP\x00\x00\x09\x01",
            "answer to {header:?}"
        );
        client.expect_eof().await;
    }
}
