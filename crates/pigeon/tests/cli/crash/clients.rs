//! The crash test's clients: connections, topology, producers, consumers, draining.

use super::*;

pub(super) async fn connect(url: &str) -> Connection {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match tokio::time::timeout(
            TIMEOUT,
            Connection::connect(url, ConnectionProperties::default()),
        )
        .await
        {
            Ok(Ok(conn)) => return conn,
            Ok(Err(e)) if Instant::now() < deadline => {
                eprintln!("connect to {url}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(Err(e)) => panic!("cannot connect to {url}: {e}"),
            Err(_) => panic!("timed out connecting to {url}"),
        }
    }
}

/// Declares the durable topology (first round), or checks that it was recovered (passive).
pub(super) async fn topology(channel: &Channel, passive: bool) {
    let exchange = ExchangeDeclareOptions {
        durable: true,
        passive,
        ..Default::default()
    };
    within(
        "exchange.declare",
        channel.exchange_declare(
            EXCHANGE.into(),
            ExchangeKind::Topic,
            exchange,
            FieldTable::default(),
        ),
    )
    .await
    .expect("the durable exchange");
    let queue = QueueDeclareOptions {
        durable: true,
        passive,
        ..Default::default()
    };
    for q in [QUEUE, FANOUT_QUEUE] {
        within(
            "queue.declare",
            channel.queue_declare(q.into(), queue, FieldTable::default()),
        )
        .await
        .expect("the durable queue");
        if !passive {
            within(
                "queue.bind",
                channel.queue_bind(
                    q.into(),
                    EXCHANGE.into(),
                    "crash.#".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                ),
            )
            .await
            .unwrap();
        }
    }
}

/// Publishes persistent messages with confirms, `WINDOW` in flight, until the broker goes
/// away; returns what was attempted and confirmed. Says on `started` when the first confirm
/// arrived.
pub(super) async fn produce(
    url: String,
    round: u32,
    producer: u32,
    started: tokio::sync::mpsc::Sender<()>,
) -> Produced {
    let mut out = Produced::default();
    let conn = connect(&url).await;
    let channel = within("channel.open", conn.create_channel()).await.unwrap();
    within(
        "confirm.select",
        channel.confirm_select(ConfirmSelectOptions::default()),
    )
    .await
    .unwrap();
    let properties = BasicProperties::default().with_delivery_mode(2);
    let mut in_flight = VecDeque::new();
    let settle = |out: &mut Produced, seq: u64, result: lapin::Result<Confirmation>| match result {
        Ok(Confirmation::Ack(None)) => {
            out.confirmed.insert(seq);
            true
        }
        Ok(Confirmation::Ack(Some(returned))) => panic!("message {seq} came back: {returned:?}"),
        Ok(_) => {
            out.nacked += 1;
            true
        }
        Err(_) => false,
    };
    loop {
        let id = Id {
            round,
            producer,
            seq: out.attempted,
        };
        let (exchange, key) = if id.via_exchange() {
            (EXCHANGE.to_string(), format!("crash.p{producer}"))
        } else {
            (String::new(), QUEUE.to_string())
        };
        out.attempted += 1;
        let publish = channel
            .basic_publish(
                exchange.as_str().into(),
                key.as_str().into(),
                BasicPublishOptions::default(),
                &id.body(),
                properties.clone(),
            )
            .await;
        match publish {
            Ok(confirm) => in_flight.push_back((id.seq, confirm)),
            Err(_) => break,
        }
        if in_flight.len() >= WINDOW {
            let (seq, confirm) = in_flight.pop_front().unwrap();
            let Ok(result) = tokio::time::timeout(TIMEOUT, confirm).await else {
                break;
            };
            if !settle(&mut out, seq, result) {
                break;
            }
            if out.confirmed.len() == 1 {
                let _ = started.try_send(());
            }
        }
    }
    // The broker is gone: whatever was still in flight resolves (as an error) or stays
    // unconfirmed.
    for (seq, confirm) in in_flight {
        if let Ok(result) = tokio::time::timeout(Duration::from_secs(5), confirm).await {
            settle(&mut out, seq, result);
        }
    }
    out
}

/// Consumes `QUEUE` until the broker goes away: acks every message but one in twenty, which it
/// keeps unacked (so the consumer stalls once `PREFETCH` are unacked). `stage` says what it
/// is waiting for (1: a delivery, 2: an ack to be sent), for the report when it has to be
/// stopped.
pub(super) async fn consume_some(url: String, seen: Arc<Mutex<Consumed>>, stage: Arc<AtomicU8>) {
    let conn = connect(&url).await;
    let channel = within("channel.open", conn.create_channel()).await.unwrap();
    within(
        "basic.qos",
        channel.basic_qos(PREFETCH, BasicQosOptions::default()),
    )
    .await
    .unwrap();
    let mut consumer = within(
        "basic.consume",
        channel.basic_consume(
            QUEUE.into(),
            "live".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    loop {
        stage.store(1, Ordering::Relaxed);
        let Some(Ok(delivery)) = consumer.next().await else {
            return;
        };
        let id = Id::parse(&delivery.data);
        let ack = id.seq % 20 != 19;
        {
            let mut seen = seen.lock().unwrap();
            seen.delivered.insert(id);
            if ack {
                seen.acked.insert(id);
            }
        }
        stage.store(2, Ordering::Relaxed);
        if ack
            && delivery
                .acker
                .ack(BasicAckOptions::default())
                .await
                .is_err()
        {
            return;
        }
    }
}

/// Takes every message of `queue` (exactly `count`, the ready count after a restart), acks
/// them, and returns their ids and redelivered flags in delivery order.
pub(super) async fn drain(channel: &Channel, queue: &str, count: u32) -> Vec<(Id, bool)> {
    let mut out = Vec::new();
    if count == 0 {
        return out;
    }
    let mut consumer = within(
        "basic.consume",
        channel.basic_consume(
            queue.into(),
            format!("drain-{queue}").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
    .unwrap();
    while out.len() < count as usize {
        let delivery = within(
            &format!("message {} of {count} in {queue}", out.len() + 1),
            consumer.next(),
        )
        .await
        .expect("the consumer ended")
        .expect("a delivery");
        out.push((Id::parse(&delivery.data), delivery.redelivered));
        within("basic.ack", delivery.acker.ack(BasicAckOptions::default()))
            .await
            .unwrap();
    }
    within(
        "basic.cancel",
        channel.basic_cancel(format!("drain-{queue}").as_str().into(), Default::default()),
    )
    .await
    .unwrap();
    out
}

pub(super) async fn ready_count(channel: &Channel, queue: &str) -> u32 {
    within(
        "queue.declare (passive)",
        channel.queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .unwrap()
    .message_count()
}
