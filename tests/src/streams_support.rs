//! Helpers for the stream tests (tests/streams*.rs): declaring streams, publishing with
//! confirms, consuming with `x-stream-offset`.
#![allow(clippy::unwrap_used)] // a failed step fails the test at its own line

use crate::lapin_support::{self as lp, table, text};
use crate::{within, DataDir};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, Consumer};

pub fn data_dir() -> DataDir {
    DataDir::with(|c| c.fsync = true)
}

pub fn stream_args() -> FieldTable {
    table(&[("x-queue-type", text("stream"))])
}

pub async fn declare_stream(ch: &Channel, name: &str) {
    within(
        "queue.declare-ok",
        ch.queue_declare(name.into(), lp::durable(), stream_args()),
    )
    .await
    .unwrap();
}

/// A confirm channel on `conn` and a new stream declared on it.
pub async fn new_stream(conn: &Connection) -> (Channel, String) {
    let ch = confirm_channel(conn).await;
    let name = crate::unique("stream");
    declare_stream(&ch, &name).await;
    (ch, name)
}

/// Publishes `bodies` on a confirm channel and waits for every confirm.
pub async fn publish_confirmed(ch: &Channel, queue: &str, bodies: &[&str]) {
    let mut confirms = Vec::new();
    for b in bodies {
        confirms.push(
            ch.basic_publish(
                "".into(),
                queue.into(),
                Default::default(),
                b.as_bytes(),
                BasicProperties::default(),
            )
            .await
            .unwrap(),
        );
    }
    for c in confirms {
        assert!(within("a confirm", c).await.unwrap().is_ack());
    }
}

pub async fn stream_consumer(ch: &Channel, queue: &str, offset: Option<AMQPValue>) -> Consumer {
    within("basic.qos-ok", ch.basic_qos(10, BasicQosOptions::default()))
        .await
        .unwrap();
    let args = match offset {
        Some(v) => table(&[("x-stream-offset", v)]),
        None => FieldTable::default(),
    };
    within(
        "basic.consume-ok",
        ch.basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            args,
        ),
    )
    .await
    .unwrap()
}

/// The next delivery's body and `x-stream-offset` header; acked.
pub async fn next(consumer: &mut Consumer) -> (String, i64) {
    let d = lp::next_delivery(consumer).await;
    let headers = d.properties.headers().clone().expect("headers");
    let offset = match headers.inner().get("x-stream-offset") {
        Some(AMQPValue::LongLongInt(o)) => *o,
        other => panic!("x-stream-offset is a long, got {other:?}"),
    };
    d.ack(BasicAckOptions::default()).await.unwrap();
    (lp::body(&d), offset)
}

pub async fn confirm_channel(conn: &Connection) -> Channel {
    lp::confirm_channel(conn).await
}

pub fn reply_text(error: &lapin::Error) -> String {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => amqp.get_message().as_str().to_string(),
        other => panic!("expected a close from the server, got {other:?}"),
    }
}

pub fn assert_refused<T: std::fmt::Debug>(r: lapin::Result<T>, code: u16, text: &str) {
    let error = r.expect_err("the server should refuse");
    assert_eq!(lp::reply_code(&error), Some(code), "{error:?}");
    assert_eq!(reply_text(&error), text);
}
