//! Topic permissions (`rabbitmqctl set_topic_permissions`): on a topic exchange, publishing
//! needs the write pattern to match the routing key and binding (queue.bind, exchange.bind,
//! MQTT SUBSCRIBE) the read pattern to match the binding key; `{username}`, `{vhost}` and, for
//! MQTT, `{client_id}` are expanded. Other exchange types are never checked.

use lapin::options::{ExchangeBindOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::ExchangeKind;
use pigeon_broker::access::VHostInfo;
use pigeon_broker::permission::Permission;
use pigeon_server::ServerConfig;
use pigeon_tests::access::{
    access, add_user, assert_refused, broker_with, confirmed_publish, connect_user, topic_perm,
    PASSWORD, USER,
};
use pigeon_tests::lapin_support as lp;
use pigeon_tests::mqtt_support::{filter5, Mqtt4, Mqtt5, MqttBroker};
use pigeon_tests::{unique, within};
use rumqttc::v5::mqttbytes::v5::SubscribeReasonCode as Sub5;
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::{QoS as Q4, SubscribeReasonCode as Sub4};

fn topic_refused(what: &str, key: &str, exchange: &str, vhost: &str) -> String {
    format!("{what} access to topic '{key}' in exchange '{exchange}' in vhost '{vhost}' refused for user '{USER}'")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_publish_to_a_topic_exchange_needs_topic_write_on_the_routing_key() {
    let Some(broker) = broker_with(Permission::all()).await else {
        return;
    };
    access(&broker).set_topic_permission(USER, "/", topic_perm("amq.topic", "^allowed\\.", ".*"));
    let conn = connect_user(&broker).await;
    let ch = lp::confirm_channel(&conn).await;
    confirmed_publish(&ch, "amq.topic", "allowed.a")
        .await
        .unwrap();
    confirmed_publish(&ch, "amq.topic", "allowed.b")
        .await
        .unwrap();
    assert_refused(
        confirmed_publish(&ch, "amq.topic", "other.a").await,
        &topic_refused("write", "other.a", "amq.topic", "/"),
    );
    // A direct exchange named in a topic permission is not checked (only topic exchanges are).
    access(&broker).set_topic_permission(USER, "/", topic_perm("amq.direct", "^nothing$", ""));
    let ch = lp::confirm_channel(&conn).await;
    confirmed_publish(&ch, "amq.direct", "anything")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_queue_bind_to_a_topic_exchange_needs_topic_read_on_the_binding_key() {
    let Some(broker) = broker_with(Permission::all()).await else {
        return;
    };
    access(&broker).set_topic_permission(USER, "/", topic_perm("amq.topic", ".*", "^mine\\."));
    let conn = connect_user(&broker).await;
    let ch = lp::open_channel(&conn).await;
    let q = lp::exclusive_queue(&ch).await;
    let bind = |key: &'static str| {
        let (conn, q) = (&conn, q.clone());
        async move {
            let ch = lp::open_channel(conn).await;
            let f = ch.queue_bind(
                q.as_str().into(),
                "amq.topic".into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            );
            within("queue.bind-ok", f).await
        }
    };
    bind("mine.#").await.unwrap();
    assert_refused(
        bind("#").await,
        &topic_refused("read", "#", "amq.topic", "/"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_queue_bind_shortcut_checks_topic_read_on_the_queue_name_it_binds_with() {
    let Some(broker) = broker_with(Permission::all()).await else {
        return;
    };
    access(&broker).set_topic_permission(USER, "/", topic_perm("amq.topic", ".*", "^mine\\."));
    let conn = connect_user(&broker).await;
    // queue.bind with no queue name and no routing key binds the channel's last declared
    // queue with the queue's own name (rabbit_channel `expand_routing_key_shortcut`): that
    // name is the binding key the topic permission is checked against.
    let bind_last = |name: String| {
        let conn = &conn;
        async move {
            let ch = lp::open_channel(conn).await;
            lp::declare(&ch, &name, QueueDeclareOptions::exclusive()).await;
            let f = ch.queue_bind(
                "".into(),
                "amq.topic".into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            );
            within("queue.bind-ok", f).await
        }
    };
    bind_last(format!("mine.{}", unique("q"))).await.unwrap();
    let other = unique("other");
    assert_refused(
        bind_last(other.clone()).await,
        &topic_refused("read", &other, "amq.topic", "/"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amqp_exchange_bind_from_a_topic_exchange_needs_topic_read_on_the_binding_key() {
    let Some(broker) = broker_with(Permission::all()).await else {
        return;
    };
    access(&broker).set_topic_permission(USER, "/", topic_perm("amq.topic", ".*", "^mine\\."));
    let conn = connect_user(&broker).await;
    let ch = lp::open_channel(&conn).await;
    let dest = lp::temp_exchange(&ch, ExchangeKind::Fanout).await;
    let bind = |key: &'static str| {
        let (conn, dest) = (&conn, dest.clone());
        async move {
            let ch = lp::open_channel(conn).await;
            let f = ch.exchange_bind(
                dest.as_str().into(),
                "amq.topic".into(),
                key.into(),
                ExchangeBindOptions::default(),
                FieldTable::default(),
            );
            within("exchange.bind-ok", f).await
        }
    };
    bind("mine.*").await.unwrap();
    assert_refused(
        bind("theirs.*").await,
        &topic_refused("read", "theirs.*", "amq.topic", "/"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn username_variable_is_the_connected_user() {
    let Some(broker) = broker_with(Permission::all()).await else {
        return;
    };
    access(&broker).set_topic_permission(
        USER,
        "/",
        topic_perm("amq.topic", "^users\\.{username}\\.", ".*"),
    );
    let conn = connect_user(&broker).await;
    let ch = lp::confirm_channel(&conn).await;
    confirmed_publish(&ch, "amq.topic", "users.alice.status")
        .await
        .unwrap();
    assert_refused(
        confirmed_publish(&ch, "amq.topic", "users.bob.status").await,
        &topic_refused("write", "users.bob.status", "amq.topic", "/"),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhost_variable_is_the_connections_vhost() {
    let Some(broker) = broker_with(Permission::all()).await else {
        return;
    };
    let core = broker.server().unwrap().broker();
    core.add_vhost("tenant-1", VHostInfo::default()).unwrap();
    let acl = core.access();
    acl.set_permission(USER, "tenant-1", Permission::all());
    acl.set_topic_permission(
        USER,
        "tenant-1",
        topic_perm("amq.topic", "^{vhost}\\.", ".*"),
    );
    let url = format!("amqp://{USER}:{PASSWORD}@{}/tenant-1", broker.addr());
    let conn = lp::connect_url(&url).await.unwrap();
    let ch = lp::confirm_channel(&conn).await;
    confirmed_publish(&ch, "amq.topic", "tenant-1.orders")
        .await
        .unwrap();
    assert_refused(
        confirmed_publish(&ch, "amq.topic", "tenant-2.orders").await,
        &topic_refused("write", "tenant-2.orders", "amq.topic", "tenant-1"),
    );
    // Over AMQP there is no client id: a pattern using it matches nothing.
    acl.set_topic_permission(
        USER,
        "tenant-1",
        topic_perm("amq.topic", "^{client_id}", ".*"),
    );
    let ch = lp::confirm_channel(&conn).await;
    assert_refused(
        confirmed_publish(&ch, "amq.topic", "anything").await,
        &topic_refused("write", "anything", "amq.topic", "tenant-1"),
    );
}

/// A broker for the MQTT cases: [`USER`] may do everything, its topic permission on
/// `amq.topic` is `write` / `read`; refusals keep the connection.
async fn mqtt_broker(write: &str, read: &str) -> MqttBroker {
    let config = ServerConfig {
        mqtt_disconnect_on_unauthorized: false,
        ..ServerConfig::for_tests()
    };
    let broker = MqttBroker::start_with(config).await;
    let acl = broker.broker().access();
    add_user(acl);
    acl.set_permission(USER, "/", Permission::all());
    acl.set_topic_permission(USER, "/", topic_perm("amq.topic", write, read));
    broker
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_client_id_variable_in_topic_permissions() {
    let broker = mqtt_broker("^devices\\.{client_id}\\.", "^devices\\.{client_id}\\.").await;
    // Guest watches everything the devices publish.
    let mut watcher = broker.connect5(&unique("watcher")).await;
    watcher.subscribe("devices/#", Q5::AtMostOnce).await;

    let mut o = broker.v4("dev1");
    o.set_credentials(USER, PASSWORD);
    let mut dev1 = Mqtt4::connect(o).await;
    assert_eq!(
        dev1.subscribe("devices/dev1/cmd", Q4::AtLeastOnce).await,
        vec![Sub4::Success(Q4::AtLeastOnce)]
    );
    assert_eq!(
        dev1.subscribe("devices/dev2/cmd", Q4::AtLeastOnce).await,
        vec![Sub4::Failure]
    );
    dev1.publish("devices/dev2/state", Q4::AtLeastOnce, false, b"spoofed")
        .await;
    dev1.publish("devices/dev1/state", Q4::AtLeastOnce, false, b"mine")
        .await;
    assert_eq!(watcher.next_text().await, "mine");

    let mut o = broker.v5("dev2");
    o.set_credentials(USER, PASSWORD);
    let mut dev2 = Mqtt5::connect(o).await;
    assert_eq!(
        dev2.subscribe_with(filter5("devices/dev1/#", Q5::AtLeastOnce), None)
            .await,
        vec![Sub5::NotAuthorized]
    );
    dev2.subscribe("devices/dev2/#", Q5::AtLeastOnce).await;
    dev2.publish("devices/dev2/state", Q5::AtLeastOnce, false, b"two")
        .await;
    assert_eq!(watcher.next_text().await, "two");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_subscribe_is_checked_against_the_filter_as_a_binding_key() {
    // `sensors/+` binds `sensors.*` (RabbitMQ's mapping): the read pattern sees that key.
    let broker = mqtt_broker(".*", "^sensors\\.\\*$").await;
    let mut o = broker.v5(&unique("s"));
    o.set_credentials(USER, PASSWORD);
    let mut c = Mqtt5::connect(o).await;
    c.subscribe("sensors/+", Q5::AtMostOnce).await;
    assert_eq!(
        c.subscribe_with(filter5("sensors/#", Q5::AtMostOnce), None)
            .await,
        vec![Sub5::NotAuthorized]
    );
}
