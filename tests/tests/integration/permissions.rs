//! Permissions over AMQP 0-9-1, one test per row of RabbitMQ's access-control table
//! (docs/security.md, "Permissions"): each test does the operation once where the user's
//! patterns allow it and once where they do not, checks the 403 ACCESS_REFUSED with
//! RabbitMQ's text, and that the refusal closed only the channel.

use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, ExchangeBindOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, ExchangeUnbindOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, ExchangeKind};
use pigeon_broker::permission::Permission;
use pigeon_tests::access::{
    access, assert_connection_usable, assert_refused, broker_with, confirmed_publish, connect_user,
    perm, user_channel, PASSWORD, USER,
};
use pigeon_tests::lapin_support as lp;
use pigeon_tests::reply::NOT_ALLOWED;
use pigeon_tests::{within, TestBroker};
use std::future::Future;

/// A guest channel, to set up what the restricted user then uses.
async fn admin(broker: &TestBroker) -> (lapin::Connection, Channel) {
    lp::connect_channel(broker).await
}

fn refused(what: &str, kind: &str, name: &str) -> String {
    format!("{what} access to {kind} '{name}' in vhost '/' refused for user '{USER}'")
}

async fn declare_x(ch: &Channel, name: &str, args: FieldTable) -> lapin::Result<()> {
    lp::declare_exchange(ch, name, ExchangeKind::Direct, Default::default(), args).await
}

async fn declare_q(
    ch: &Channel,
    name: &str,
    options: QueueDeclareOptions,
) -> lapin::Result<lapin::Queue> {
    within(
        "queue.declare-ok",
        ch.queue_declare(name.into(), options, FieldTable::default()),
    )
    .await
}

/// One row of the table: with permissions `p`, once guest has declared the `setup`
/// (`("exchange" | "queue", name)`), the user does `op` on `allowed`, which succeeds, then on
/// `denied.2`, refused with "`denied.0` access to `denied.1` '`denied.2`'"; the refusal closes
/// only the channel.
async fn row<T: std::fmt::Debug, F: Future<Output = lapin::Result<T>>>(
    p: Permission,
    setup: &[(&str, &str)],
    op: impl Fn(Channel, &'static str) -> F,
    allowed: &'static str,
    denied: (&str, &str, &'static str),
) {
    let Some(broker) = broker_with(p).await else {
        return;
    };
    let (_a, admin) = admin(&broker).await;
    for (kind, name) in setup {
        if *kind == "exchange" {
            declare_x(&admin, name, FieldTable::default())
                .await
                .unwrap();
        } else {
            lp::declare(&admin, name, QueueDeclareOptions::default()).await;
        }
    }
    let (conn, ch) = user_channel(&broker).await;
    op(ch.clone(), allowed).await.unwrap();
    let (what, kind, name) = denied;
    assert_refused(op(ch, name).await, &refused(what, kind, name));
    assert_connection_usable(&conn).await;
}

/// The rows that need read on the queue: `readable-q` allowed, `hidden-q` refused.
async fn readable_row<T: std::fmt::Debug, F: Future<Output = lapin::Result<T>>>(
    op: impl Fn(Channel, &'static str) -> F,
) {
    let setup = [("queue", "readable-q"), ("queue", "hidden-q")];
    let denied = ("read", "queue", "hidden-q");
    row(perm("", "", "^readable-"), &setup, op, "readable-q", denied).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_open_needs_a_permission_in_the_vhost() {
    let Some(broker) = broker_with(perm(".*", ".*", ".*")).await else {
        return;
    };
    connect_user(&broker).await;
    access(&broker).clear_permission(USER, "/");
    let error = lp::connect_url(&broker.url_as(USER, PASSWORD))
        .await
        .expect_err("no permission in / refuses connection.open");
    assert_eq!(lp::reply_code(&error), Some(NOT_ALLOWED), "{error:?}");
    assert!(
        format!("{error:?}").contains("access to vhost '/' refused for user 'alice'"),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_declare_needs_configure_on_the_exchange() {
    let op = |ch: Channel, x: &'static str| async move {
        declare_x(&ch, x, FieldTable::default()).await
    };
    row(
        perm("^mine-", ".*", ".*"),
        &[],
        op,
        "mine-x",
        ("configure", "exchange", "other-x"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_exchange_declare_needs_any_permission() {
    let op = |ch: Channel, x: &'static str| async move {
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..Default::default()
        };
        lp::declare_exchange(&ch, x, ExchangeKind::Direct, passive, FieldTable::default()).await
    };
    let setup = [("exchange", "readable-x"), ("exchange", "hidden-x")];
    let denied = ("configure", "exchange", "hidden-x");
    row(perm("", "", "^readable-"), &setup, op, "readable-x", denied).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_declare_with_an_alternate_exchange_needs_write_on_it() {
    let Some(broker) = broker_with(perm(".*", "^ae-ok$", ".*")).await else {
        return;
    };
    let (_a, admin) = admin(&broker).await;
    declare_x(&admin, "ae-ok", FieldTable::default())
        .await
        .unwrap();
    declare_x(&admin, "ae-no", FieldTable::default())
        .await
        .unwrap();
    let (conn, ch) = user_channel(&broker).await;
    let ae = |name: &str| lp::table(&[("alternate-exchange", lp::text(name))]);
    declare_x(&ch, "with-ae-1", ae("ae-ok")).await.unwrap();
    assert_refused(
        declare_x(&ch, "with-ae-2", ae("ae-no")).await,
        &refused("write", "exchange", "ae-no"),
    );
    assert_connection_usable(&conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_delete_needs_configure() {
    let op = |ch: Channel, x: &'static str| async move {
        let f = ch.exchange_delete(x.into(), ExchangeDeleteOptions::default());
        within("exchange.delete-ok", f).await
    };
    let setup = [("exchange", "mine-x"), ("exchange", "theirs-x")];
    let denied = ("configure", "exchange", "theirs-x");
    row(perm("^mine-", ".*", ".*"), &setup, op, "mine-x", denied).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_declare_needs_configure_on_the_queue() {
    let op = |ch: Channel, q: &'static str| async move {
        declare_q(&ch, q, QueueDeclareOptions::default()).await
    };
    row(
        perm("^mine-", ".*", ".*"),
        &[],
        op,
        "mine-q",
        ("configure", "queue", "other-q"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_named_queue_is_checked_under_its_generated_name() {
    let Some(broker) = broker_with(perm("^amq\\.gen-", ".*", ".*")).await else {
        return;
    };
    let (conn, ch) = user_channel(&broker).await;
    let q = declare_q(&ch, "", QueueDeclareOptions::exclusive())
        .await
        .unwrap();
    assert!(q.name().as_str().starts_with("amq.gen-"));
    access(&broker).set_permission(USER, "/", perm("^mine-", ".*", ".*"));
    let result = declare_q(&ch, "", QueueDeclareOptions::exclusive()).await;
    assert_refused(result, "configure access to queue 'amq.gen-");
    assert_connection_usable(&conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_queue_declare_needs_any_permission() {
    let op = |ch: Channel, q: &'static str| async move {
        declare_q(&ch, q, QueueDeclareOptions::default().passive()).await
    };
    let setup = [("queue", "writable-q"), ("queue", "hidden-q")];
    let denied = ("configure", "queue", "hidden-q");
    row(perm("", "^writable-", ""), &setup, op, "writable-q", denied).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_declare_with_a_dead_letter_exchange_needs_write_on_it_and_read_on_the_queue() {
    let Some(broker) = broker_with(perm(".*", "^dlx-ok$", "^readable-")).await else {
        return;
    };
    let (_a, admin) = admin(&broker).await;
    declare_x(&admin, "dlx-ok", FieldTable::default())
        .await
        .unwrap();
    declare_x(&admin, "dlx-no", FieldTable::default())
        .await
        .unwrap();
    let (conn, ch) = user_channel(&broker).await;
    let dlx = |name: &str| lp::table(&[("x-dead-letter-exchange", lp::text(name))]);
    let declare = |name: &'static str, args: FieldTable| {
        let ch = ch.clone();
        async move {
            within(
                "queue.declare-ok",
                ch.queue_declare(name.into(), QueueDeclareOptions::default(), args),
            )
            .await
        }
    };
    declare("readable-1", dlx("dlx-ok")).await.unwrap();
    assert_refused(
        declare("readable-2", dlx("dlx-no")).await,
        &refused("write", "exchange", "dlx-no"),
    );
    let ch = lp::open_channel(&conn).await;
    let unreadable = within(
        "queue.declare-ok",
        ch.queue_declare(
            "unreadable-q".into(),
            QueueDeclareOptions::default(),
            dlx("dlx-ok"),
        ),
    )
    .await;
    assert_refused(unreadable, &refused("read", "queue", "unreadable-q"));
    assert_connection_usable(&conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_delete_needs_configure() {
    let op = |ch: Channel, q: &'static str| async move {
        let f = ch.queue_delete(q.into(), QueueDeleteOptions::default());
        within("queue.delete-ok", f).await
    };
    let setup = [("queue", "mine-q"), ("queue", "theirs-q")];
    let denied = ("configure", "queue", "theirs-q");
    row(perm("^mine-", ".*", ".*"), &setup, op, "mine-q", denied).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_purge_needs_read() {
    let op = |ch: Channel, q: &'static str| async move {
        let f = ch.queue_purge(q.into(), QueuePurgeOptions::default());
        within("queue.purge-ok", f).await
    };
    readable_row(op).await;
}

/// Binds `dest` (an exchange with `to_exchange`, else a queue) to the exchange `source`.
async fn bind(
    ch: &Channel,
    to_exchange: bool,
    dest: &str,
    source: &str,
    key: &str,
) -> lapin::Result<()> {
    if to_exchange {
        let f = ch.exchange_bind(
            dest.into(),
            source.into(),
            key.into(),
            ExchangeBindOptions::default(),
            FieldTable::default(),
        );
        within("exchange.bind-ok", f).await
    } else {
        let f = ch.queue_bind(
            dest.into(),
            source.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        );
        within("queue.bind-ok", f).await
    }
}

async fn unbind(
    ch: &Channel,
    to_exchange: bool,
    dest: &str,
    source: &str,
    key: &str,
) -> lapin::Result<()> {
    if to_exchange {
        let f = ch.exchange_unbind(
            dest.into(),
            source.into(),
            key.into(),
            ExchangeUnbindOptions::default(),
            FieldTable::default(),
        );
        within("exchange.unbind-ok", f).await
    } else {
        let f = ch.queue_unbind(
            dest.into(),
            source.into(),
            key.into(),
            FieldTable::default(),
        );
        within("queue.unbind-ok", f).await
    }
}

/// queue.bind, queue.unbind, exchange.bind and exchange.unbind: write on the destination (a
/// queue, or an exchange with `to_exchange`), read on the source exchange.
async fn binding_row(to_exchange: bool, unbind_it: bool) {
    let Some(broker) = broker_with(perm("", "^w-", "^r-")).await else {
        return;
    };
    let (_a, admin) = admin(&broker).await;
    for d in ["w-dest", "other-dest"] {
        if to_exchange {
            declare_x(&admin, d, FieldTable::default()).await.unwrap();
        } else {
            lp::declare(&admin, d, QueueDeclareOptions::default()).await;
        }
    }
    for s in ["r-src", "other-src"] {
        declare_x(&admin, s, FieldTable::default()).await.unwrap();
        for d in ["w-dest", "other-dest"] {
            bind(&admin, to_exchange, d, s, "k").await.unwrap();
        }
    }
    let conn = connect_user(&broker).await;
    let conn = &conn;
    let op = |d: &'static str, s: &'static str| async move {
        let ch = lp::open_channel(conn).await;
        if unbind_it {
            unbind(&ch, to_exchange, d, s, "k").await
        } else {
            bind(&ch, to_exchange, d, s, "k2").await
        }
    };
    op("w-dest", "r-src").await.unwrap();
    let dest_kind = if to_exchange { "exchange" } else { "queue" };
    assert_refused(
        op("other-dest", "r-src").await,
        &refused("write", dest_kind, "other-dest"),
    );
    assert_refused(
        op("w-dest", "other-src").await,
        &refused("read", "exchange", "other-src"),
    );
    assert_connection_usable(conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_bind_needs_write_on_the_queue_and_read_on_the_exchange() {
    binding_row(false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_unbind_needs_write_on_the_queue_and_read_on_the_exchange() {
    binding_row(false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_bind_needs_write_on_the_destination_and_read_on_the_source() {
    binding_row(true, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exchange_unbind_needs_write_on_the_destination_and_read_on_the_source() {
    binding_row(true, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_publish_needs_write_on_the_exchange_and_the_default_one_is_amq_default() {
    let Some(broker) = broker_with(perm("", "^amq\\.default$", "")).await else {
        return;
    };
    let (_a, admin) = admin(&broker).await;
    lp::declare(&admin, "target-q", QueueDeclareOptions::default()).await;
    declare_x(&admin, "closed-x", FieldTable::default())
        .await
        .unwrap();
    let conn = connect_user(&broker).await;
    let ch = lp::confirm_channel(&conn).await;
    // Repeated publishes to one exchange (the cached path), then another exchange.
    for _ in 0..3 {
        confirmed_publish(&ch, "", "target-q").await.unwrap();
    }
    assert_eq!(lp::message_count(&admin, "target-q").await, 3);
    assert_refused(
        confirmed_publish(&ch, "closed-x", "k").await,
        &refused("write", "exchange", "closed-x"),
    );
    assert_connection_usable(&conn).await;
    // The default exchange itself, refused under its checked name.
    access(&broker).set_permission(USER, "/", perm("", "^closed-x$", ""));
    let ch = lp::confirm_channel(&conn).await;
    assert_refused(
        confirmed_publish(&ch, "", "target-q").await,
        &refused("write", "exchange", "amq.default"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_consume_needs_read_on_the_queue() {
    let op = |ch: Channel, q: &'static str| async move {
        let f = ch.basic_consume(
            q.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        );
        within("basic.consume-ok", f).await
    };
    readable_row(op).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_get_needs_read_on_the_queue() {
    let op = |ch: Channel, q: &'static str| async move {
        let f = ch.basic_get(q.into(), BasicGetOptions::default());
        // The readable queue is empty.
        within("basic.get", f).await.map(|m| assert!(m.is_none()))
    };
    readable_row(op).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permission_change_applies_to_the_next_operation_of_an_open_channel() {
    let Some(broker) = broker_with(perm(".*", ".*", ".*")).await else {
        return;
    };
    let (_a, admin) = admin(&broker).await;
    lp::declare(&admin, "target-q", QueueDeclareOptions::default()).await;
    let conn = connect_user(&broker).await;
    let ch = lp::confirm_channel(&conn).await;
    confirmed_publish(&ch, "", "target-q").await.unwrap();
    // Revoked while the channel is open (and its last exchange is cached).
    access(&broker).set_permission(USER, "/", perm(".*", "^nothing$", ".*"));
    assert_refused(
        confirmed_publish(&ch, "", "target-q").await,
        &refused("write", "exchange", "amq.default"),
    );
    assert_connection_usable(&conn).await;
}
