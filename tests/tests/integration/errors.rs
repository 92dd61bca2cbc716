//! Errors: soft errors close only their channel, hard errors close the connection with the
//! spec's reply code (AMQP 0-9-1 section 1.9 and the "channel" / "connection" exceptions), and
//! hostile bytes never hang the server. After every abuse, a well-behaved client must still be
//! able to publish and consume.

use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use pigeon_tests::lapin_support::{self as lp, assert_code};
use pigeon_tests::raw::{self, method, Args, Ending, Frame, RawClient};
use pigeon_tests::reply::{
    CHANNEL_ERROR, COMMAND_INVALID, FRAME_ERROR, NOT_ALLOWED, NOT_FOUND, SYNTAX_ERROR,
    UNEXPECTED_FRAME,
};
use pigeon_tests::{unique, TestBroker};

const BASIC_CONSUME: method::Id = (60, 20);
const BASIC_CONSUME_OK: method::Id = (60, 21);

/// A fresh lapin connection publishes and consumes: the broker survived whatever came before.
async fn assert_broker_still_serves(broker: &TestBroker) {
    let (conn, channel) = lp::connect_channel(broker).await;
    let queue = lp::exclusive_queue(&channel).await;
    let mut consumer = lp::consume_acked(&channel, &queue).await;
    lp::publish(&channel, "", &queue, b"still here").await;
    assert_eq!(lp::next_body(&mut consumer).await, "still here");
    conn.close(200, "bye".into()).await.unwrap();
}

/// A raw client past the handshake with channel 1 open.
async fn raw_with_channel(broker: &TestBroker) -> RawClient {
    let mut client = broker.raw_connection().await;
    client.open_channel(1).await;
    client
}

/// basic.publish of a message to the default exchange, the method frame alone.
fn publish_method(channel: u16) -> Frame {
    let args = Args::new()
        .short(0)
        .shortstr("")
        .shortstr("key")
        .bits(&[false, false]);
    Frame::method(channel, method::BASIC_PUBLISH, args)
}

/// queue.declare of a server-named queue.
fn queue_declare(channel: u16) -> Frame {
    let args = Args::new()
        .short(0)
        .shortstr("")
        .bits(&[false, false, false, true, false])
        .longstr(&[]);
    Frame::method(channel, method::QUEUE_DECLARE, args)
}

/// Sends `bytes` to a fresh connection with channel 1 open and returns the server's reply code.
async fn hard_error_for(broker: &TestBroker, bytes: &[u8]) -> u16 {
    let mut client = raw_with_channel(broker).await;
    client.send_bytes(bytes).await;
    let close = client.expect_connection_close().await;
    client.expect_eof().await;
    close.code
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consuming_from_a_missing_queue_closes_only_that_channel_with_404() {
    let broker = TestBroker::start().await;
    let conn = lp::connect(&broker).await;
    let healthy = lp::open_channel(&conn).await;
    let queue = lp::exclusive_queue(&healthy).await;
    let mut consumer = lp::consume_acked(&healthy, &queue).await;

    let doomed = lp::open_channel(&conn).await;
    let result = doomed
        .basic_consume(
            unique("missing").into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert_code(result, NOT_FOUND);
    assert!(!doomed.status().connected());

    assert!(
        conn.status().connected(),
        "a soft error leaves the connection"
    );
    lp::publish(&healthy, "", &queue, b"other channels carry on").await;
    assert_eq!(
        lp::next_body(&mut consumer).await,
        "other channels carry on"
    );
    let fresh = lp::open_channel(&conn).await;
    lp::exclusive_queue(&fresh).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_on_a_channel_that_is_not_open_are_504_channel_error() {
    let broker = TestBroker::start().await;
    // Never opened.
    assert_eq!(
        hard_error_for(&broker, &queue_declare(3).encode()).await,
        CHANNEL_ERROR
    );
    // Opened twice.
    let open_again = Frame::method(1, method::CHANNEL_OPEN, Args::new().shortstr(""));
    assert_eq!(
        hard_error_for(&broker, &open_again.encode()).await,
        CHANNEL_ERROR
    );
    // Closed, then used.
    let mut client = raw_with_channel(&broker).await;
    let close = Args::new().short(200).shortstr("bye").short(0).short(0);
    client
        .send(&Frame::method(1, method::CHANNEL_CLOSE, close))
        .await;
    client.expect_method(method::CHANNEL_CLOSE_OK).await;
    client.send(&queue_declare(1)).await;
    assert_eq!(client.expect_connection_close().await.code, CHANNEL_ERROR);
    assert_broker_still_serves(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reusing_a_consumer_tag_on_one_channel_is_530_not_allowed() {
    let broker = TestBroker::start().await;
    let mut client = raw_with_channel(&broker).await;
    let queue = client.declare_exclusive_queue(1).await;
    let consume = Args::new()
        .short(0)
        .shortstr(&queue)
        .shortstr("mine")
        .bits(&[false, false, false, false]) // no-local no-ack exclusive no-wait
        .longstr(&[]);
    let consume = Frame::method(1, BASIC_CONSUME, consume);
    client.send(&consume).await;
    client.expect_method(BASIC_CONSUME_OK).await;
    client.send(&consume).await;
    let close = client.expect_connection_close().await;
    assert_eq!(close.code, NOT_ALLOWED, "{close:?}");
    assert_broker_still_serves(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_close_ok_that_answers_nothing_is_503_command_invalid() {
    let broker = TestBroker::start().await;
    let stray = Frame::method(1, method::CHANNEL_CLOSE_OK, Args::new());
    assert_eq!(
        hard_error_for(&broker, &stray.encode()).await,
        COMMAND_INVALID
    );
    assert_broker_still_serves(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn content_frames_out_of_place_are_505_unexpected_frame() {
    let broker = TestBroker::start().await;
    // A body with no publish before it.
    let body = Frame::body(1, b"orphan").encode();
    assert_eq!(hard_error_for(&broker, &body).await, UNEXPECTED_FRAME);
    // A header with no publish before it.
    let header = Frame::content_header(1, 6).encode();
    assert_eq!(hard_error_for(&broker, &header).await, UNEXPECTED_FRAME);
    // A method where the publish's content header should be.
    let mut bytes = publish_method(1).encode();
    bytes.extend(queue_declare(1).encode());
    assert_eq!(hard_error_for(&broker, &bytes).await, UNEXPECTED_FRAME);
    // A content header for another class than basic.
    let mut bytes = publish_method(1).encode();
    let mut header = Frame::content_header(1, 3);
    header.payload[..2].copy_from_slice(&50u16.to_be_bytes());
    bytes.extend(header.encode());
    assert_eq!(hard_error_for(&broker, &bytes).await, UNEXPECTED_FRAME);
    assert_broker_still_serves(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_on_a_channel_other_than_zero_is_a_connection_error() {
    let broker = TestBroker::start().await;
    let mut heartbeat = Frame::heartbeat();
    heartbeat.channel = 1;
    let code = hard_error_for(&broker, &heartbeat.encode()).await;
    // The spec says 501 FRAME_ERROR; RabbitMQ answers 505 UNEXPECTED_FRAME.
    assert!(matches!(code, FRAME_ERROR | UNEXPECTED_FRAME), "{code}");
    assert_broker_still_serves(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_are_501_frame_error() {
    let broker = TestBroker::start().await;
    // A frame whose last octet is not 0xCE.
    let mut bad_end = Frame::method(1, method::CHANNEL_OPEN, Args::new().shortstr("")).encode();
    *bad_end.last_mut().unwrap() = 0x00;
    assert_eq!(hard_error_for(&broker, &bad_end).await, FRAME_ERROR);
    // An unknown frame type.
    let unknown_type = Frame {
        kind: 7,
        channel: 1,
        payload: b"abcd".to_vec(),
    };
    assert_eq!(
        hard_error_for(&broker, &unknown_type.encode()).await,
        FRAME_ERROR
    );
    // A frame header announcing almost 4 GiB: refused at once, not buffered.
    let huge = [raw::frame_type::METHOD, 0, 1, 0xFF, 0xFF, 0xFF, 0xF0];
    assert_eq!(hard_error_for(&broker, &huge).await, FRAME_ERROR);
    assert_broker_still_serves(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_method_arguments_are_a_frame_or_syntax_error() {
    let broker = TestBroker::start().await;
    // queue.declare whose queue name claims 5 bytes and has 2, and nothing after.
    let truncated = Frame::method(
        1,
        method::QUEUE_DECLARE,
        Args::new().short(0).raw(b"\x05ab"),
    );
    let code = hard_error_for(&broker, &truncated.encode()).await;
    // RabbitMQ answers 501 FRAME_ERROR ("cannot decode"); 502 SYNTAX_ERROR is also the spec's.
    assert!(matches!(code, FRAME_ERROR | SYNTAX_ERROR), "{code}");
    assert_broker_still_serves(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_class_or_method_ends_the_connection() {
    let broker = TestBroker::start().await;
    for id in [(99, 99), (50, 99), (60, 255)] {
        let mut client = raw_with_channel(&broker).await;
        client.send(&Frame::method(1, id, Args::new())).await;
        // RabbitMQ drops the socket; a connection.close with a hard error code is also fine.
        if let Ending::Closed(close) = client.ending().await {
            assert!(close.code >= 500, "{id:?}: {close:?}");
        }
    }
    assert_broker_still_serves(&broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_garbage_after_the_handshake_ends_the_connection() {
    let broker = TestBroker::start().await;
    for seed in 1..=8u64 {
        let mut client = raw_with_channel(&broker).await;
        client.send_bytes_lenient(&garbage(seed, 4096)).await;
        // Whatever the bytes happen to say, the server answers with connection.close or hangs
        // up; it must not sit waiting for a frame the garbage announced but never sent.
        if let Ending::Closed(close) = client.ending().await {
            assert!(close.code >= 500, "seed {seed}: {close:?}");
        }
    }
    assert_broker_still_serves(&broker).await;
}

/// Deterministic noise (xorshift64*), whose first octet is never a valid frame type.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect();
    out[0] = 0x40 | (out[0] & 0x3F);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_handshake_ends_the_connection() {
    let broker = TestBroker::start().await;
    let mut client = RawClient::connect(broker.addr()).await;
    client.start().await;
    client.send_bytes_lenient(&garbage(42, 1024)).await;
    if let Ending::Closed(close) = client.ending().await {
        assert!(close.code >= 500, "{close:?}");
    }
    assert_broker_still_serves(&broker).await;
}
