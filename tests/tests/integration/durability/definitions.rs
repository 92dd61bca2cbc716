//! Definitions: part of the `durability` tests (helpers in `mod.rs`).

use super::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_definitions_survive_a_restart_and_transient_or_exclusive_ones_do_not() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (x, x2, tx) = (unique("dx"), unique("dx2"), unique("tx"));
    let (q, nq, eq) = (unique("dq"), unique("nq"), unique("eq"));
    let q_args = table(&[("x-max-length", AMQPValue::LongInt(100))]);
    {
        let (conn, ch) = lp::connect_channel(&broker).await;
        lp::declare_exchange(
            &ch,
            &x,
            ExchangeKind::Topic,
            durable_exchange(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        lp::declare_exchange(
            &ch,
            &x2,
            ExchangeKind::Fanout,
            durable_exchange(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        lp::declare_exchange(
            &ch,
            &tx,
            ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        declare_with(&ch, &q, durable(), q_args.clone()).await;
        declare_with(
            &ch,
            &nq,
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
        let exclusive_durable = QueueDeclareOptions {
            durable: true,
            exclusive: true,
            ..Default::default()
        };
        declare_with(&ch, &eq, exclusive_durable, FieldTable::default()).await;
        // Durable: x -> q, x2 -> x (exchange to exchange). Not durable: x -> nq (transient
        // queue), tx -> q (transient exchange).
        lp::bind(&ch, &q, &x, "orders.*", FieldTable::default()).await;
        within(
            "exchange.bind-ok",
            ch.exchange_bind(
                x.as_str().into(),
                x2.as_str().into(),
                "orders.eu".into(),
                ExchangeBindOptions::default(),
                FieldTable::default(),
            ),
        )
        .await
        .unwrap();
        lp::bind(&ch, &nq, &x, "orders.*", FieldTable::default()).await;
        lp::bind(&ch, &q, &tx, "", FieldTable::default()).await;
        // The exclusive queue would be deleted with this connection anyway; the restart must
        // not bring it back either way, so the connection stays open until the shutdown.
        let broker = data.restart(broker).await;
        drop(conn);
        let (conn, ch) = lp::connect_channel(&broker).await;
        assert!(lp::exchange_exists(&conn, &x).await, "durable exchange");
        assert!(lp::exchange_exists(&conn, &x2).await, "durable exchange");
        assert!(lp::queue_exists(&conn, &q).await, "durable queue");
        assert!(!lp::exchange_exists(&conn, &tx).await, "transient exchange");
        assert!(!lp::queue_exists(&conn, &nq).await, "transient queue");
        assert!(!lp::queue_exists(&conn, &eq).await, "exclusive queue");

        // The declarations came back as they were: same type, same arguments.
        declare_with(&ch, &q, durable(), q_args).await;
        let other_ch = lp::open_channel(&conn).await;
        let changed = table(&[("x-max-length", AMQPValue::LongInt(5))]);
        assert_code(
            within(
                "queue.declare",
                other_ch.queue_declare(q.as_str().into(), durable(), changed),
            )
            .await,
            PRECONDITION_FAILED,
        );
        let other_ch = lp::open_channel(&conn).await;
        assert_code(
            lp::declare_exchange(
                &other_ch,
                &x,
                ExchangeKind::Direct,
                durable_exchange(),
                FieldTable::default(),
            )
            .await,
            PRECONDITION_FAILED,
        );

        // The durable bindings route; the others are gone with their transient end.
        let confirm = lp::confirm_channel(&conn).await;
        assert!(lp::routed(&confirm, &x, "orders.us", b"direct").await);
        assert!(lp::routed(&confirm, &x2, "orders.eu", b"via x2").await);
        assert!(!lp::routed(&confirm, &x, "invoices.us", b"unbound").await);
        assert_eq!(lp::message_count(&ch, &q).await, 2);
        lp::delete_exchange(&ch, &x2).await;
        lp::delete_exchange(&ch, &x).await;
        lp::delete_queue(&ch, &q).await;
        let broker = data.restart(broker).await;
        let conn = lp::connect(&broker).await;
        assert!(!lp::exchange_exists(&conn, &x).await, "deleted for good");
        assert!(!lp::exchange_exists(&conn, &x2).await, "deleted for good");
        assert!(!lp::queue_exists(&conn, &q).await, "deleted for good");
        broker.stop().await;
    }
}

/// An exchange and a queue may share a name (they live in different namespaces): deleting one
/// must not forget the durable bindings of the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_queue_keeps_the_bindings_of_an_exchange_of_the_same_name_and_vice_versa() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let name = unique("same");
    let other = unique("other");
    let (_conn, ch) = lp::connect_channel(&broker).await;
    lp::declare_exchange(
        &ch,
        &name,
        ExchangeKind::Fanout,
        durable_exchange(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare_with(&ch, &name, durable(), FieldTable::default()).await;
    declare_with(&ch, &other, durable(), FieldTable::default()).await;
    // exchange `name` -> queue `other`; amq.direct -> queue `name`.
    lp::bind(&ch, &other, &name, "", FieldTable::default()).await;
    lp::bind(&ch, &name, "amq.direct", &name, FieldTable::default()).await;

    lp::delete_queue(&ch, &name).await;
    let broker = data.restart(broker).await;
    let (conn, ch) = lp::connect_channel(&broker).await;
    let confirm = lp::confirm_channel(&conn).await;
    assert!(
        lp::routed(&confirm, &name, "", b"to other").await,
        "the binding from exchange {name} survived the deletion of queue {name}"
    );

    declare_with(&ch, &name, durable(), FieldTable::default()).await;
    lp::bind(&ch, &name, "amq.direct", &name, FieldTable::default()).await;
    lp::delete_exchange(&ch, &name).await;
    let broker = data.restart(broker).await;
    let (conn, ch) = lp::connect_channel(&broker).await;
    let confirm = lp::confirm_channel(&conn).await;
    assert!(
        lp::routed(&confirm, "amq.direct", &name, b"to name").await,
        "the binding to queue {name} survived the deletion of exchange {name}"
    );
    assert_eq!(drain(&ch, &name).await, ["to name"]);
    broker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unbound_bindings_stay_unbound_after_a_restart() {
    let data = data_dir();
    let Some(broker) = data.start().await else {
        return;
    };
    let (_conn, ch) = lp::connect_channel(&broker).await;
    let (direct, headers) = (unique("dx"), unique("hx"));
    lp::declare_exchange(
        &ch,
        &direct,
        ExchangeKind::Direct,
        durable_exchange(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    lp::declare_exchange(
        &ch,
        &headers,
        ExchangeKind::Headers,
        durable_exchange(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q = durable_queue(&ch, FieldTable::default()).await;
    let any = |color: &str| {
        table(&[
            ("x-match", AMQPValue::LongString("any".into())),
            ("color", AMQPValue::LongString(color.into())),
        ])
    };
    lp::bind(&ch, &q, &direct, "kept", FieldTable::default()).await;
    lp::bind(&ch, &q, &direct, "dropped", FieldTable::default()).await;
    lp::bind(&ch, &q, &headers, "", any("red")).await;
    lp::bind(&ch, &q, &headers, "", any("blue")).await;
    for (exchange, key, args) in [
        (&direct, "dropped", FieldTable::default()),
        (&headers, "", any("blue")),
    ] {
        within(
            "queue.unbind-ok",
            ch.queue_unbind(
                q.as_str().into(),
                exchange.as_str().into(),
                key.into(),
                args,
            ),
        )
        .await
        .unwrap();
    }
    let broker = data.restart(broker).await;
    let conn = lp::connect(&broker).await;
    let confirm = lp::confirm_channel(&conn).await;
    let colored = |color: &str| {
        BasicProperties::default()
            .with_headers(table(&[("color", AMQPValue::LongString(color.into()))]))
    };
    assert!(lp::routed(&confirm, &direct, "kept", b"k").await);
    assert!(!lp::routed(&confirm, &direct, "dropped", b"d").await);
    assert!(lp::routed_with(&confirm, &headers, "", b"red", colored("red")).await);
    assert!(!lp::routed_with(&confirm, &headers, "", b"blue", colored("blue")).await);
    broker.stop().await;
}
