//! Users and vhosts managed at runtime: who may log in (users created at runtime, imported
//! RabbitMQ hashes, wrong passwords, `loopback_users`, the default user or none), who may open
//! which vhost, what survives a restart, and what deleting a vhost or a user does to its
//! connections and its data. Every login goes through a real client (lapin, amqprs, rumqttc,
//! or the raw MQTT client where rumqttc cannot read the broker's DISCONNECT).

use bytes::Bytes;
use futures_lite::StreamExt;
use mqtt_wire::{Packet, ProtocolVersion, QoS, ReasonCode};
use pigeon_server::{ServerConfig, ServerHandle, UserLimits, VHostInfo, VHostLimits};
use pigeon_tests::amqprs_support as ars;
use pigeon_tests::lapin_support as lp;
use pigeon_tests::mqtt_support::{connect_packet, subscribe_packet, Mqtt4, Mqtt5, Raw};
use pigeon_tests::reply::{ACCESS_REFUSED, NOT_ALLOWED};
use pigeon_tests::{unique, within, DataDir, TestBroker};
use rumqttc::v5::mqttbytes::v5::ConnectReturnCode as V5Code;
use rumqttc::ConnectReturnCode as V4Code;
use std::net::{IpAddr, SocketAddr};

/// 320: the broker closed the connection (AMQP 0-9-1 `connection-forced`).
const CONNECTION_FORCED: u16 = 320;

/// A URL for `user` on `vhost` (`/` is written `%2f`).
fn url(broker: &TestBroker, user: &str, password: &str, vhost: &str) -> String {
    let vhost = if vhost == "/" { "%2f" } else { vhost };
    format!("amqp://{user}:{password}@{}/{vhost}", broker.addr())
}

/// The reply code and text of a refused lapin connection.
fn refusal<T>(result: lapin::Result<T>) -> (u16, String) {
    match result {
        Ok(_) => panic!("expected the broker to refuse the connection"),
        Err(e) => match e.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => {
                (amqp.get_id(), amqp.get_message().as_str().to_string())
            }
            other => panic!("expected connection.close from the broker, got {other:?}"),
        },
    }
}

fn server(broker: &TestBroker) -> &ServerHandle {
    broker.server().expect("an in-process broker")
}

fn mqtt_addr(broker: &TestBroker) -> SocketAddr {
    server(broker).mqtt_addr().expect("MQTT is enabled")
}

fn v4(broker: &TestBroker, user: &str, password: &str) -> rumqttc::MqttOptions {
    let mut o = rumqttc::MqttOptions::new(unique("c4"), "127.0.0.1", mqtt_addr(broker).port());
    o.set_credentials(user, password);
    o
}

fn v5(broker: &TestBroker, user: &str, password: &str) -> rumqttc::v5::MqttOptions {
    let mut o = rumqttc::v5::MqttOptions::new(unique("c5"), "127.0.0.1", mqtt_addr(broker).port());
    o.set_credentials(user, password);
    o
}

fn refused4(result: Result<Mqtt4, rumqttc::ConnectionError>) -> V4Code {
    match result {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => code,
        Err(other) => panic!("expected a CONNACK refusal, got {other:?}"),
        Ok(_) => panic!("expected a CONNACK refusal, the broker accepted"),
    }
}

fn refused5(result: Result<Mqtt5, rumqttc::v5::ConnectionError>) -> V5Code {
    match result {
        Err(rumqttc::v5::ConnectionError::ConnectionRefused(code)) => code,
        Err(other) => panic!("expected a CONNACK refusal, got {other:?}"),
        Ok(_) => panic!("expected a CONNACK refusal, the broker accepted"),
    }
}

/// A raw MQTT 5.0 client logged in as `user_name` (which may be `vhost:user`).
async fn raw5(broker: &TestBroker, user_name: &str, password: &str) -> Raw {
    raw5_with(broker, user_name, password, |_| {}).await
}

/// The same, with the CONNECT adjusted by `adjust`.
async fn raw5_with(
    broker: &TestBroker,
    user_name: &str,
    password: &str,
    adjust: impl FnOnce(&mut mqtt_wire::Connect),
) -> Raw {
    let mut connect = connect_packet(ProtocolVersion::V5, &unique("raw5"));
    adjust(&mut connect);
    connect.username = Some(user_name.to_string());
    connect.password = Some(Bytes::copy_from_slice(password.as_bytes()));
    let (raw, ack) = Raw::connect(mqtt_addr(broker), connect).await;
    assert_eq!(ack.code, ReasonCode::Success);
    raw
}

/// Proves a lapin connection works: a channel opens and a queue is declared.
async fn usable(conn: &lapin::Connection) {
    let channel = lp::open_channel(conn).await;
    lp::exclusive_queue(&channel).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_created_at_runtime_logs_in_over_amqp_and_mqtt() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let s = server(&broker);
    s.add_user("ann", Some("s3cret"), &["monitoring"]).unwrap();
    s.set_permissions("ann", "/", ".*", ".*", ".*").unwrap();

    let conn = lp::connect_url(&url(&broker, "ann", "s3cret", "/"))
        .await
        .unwrap();
    usable(&conn).await;
    let args = amqprs::connection::OpenConnectionArguments::new(
        "127.0.0.1",
        broker.addr().port(),
        "ann",
        "s3cret",
    );
    let (amqprs_conn, _) = ars::connect_with(&args).await;
    ars::open_channel(&amqprs_conn).await;
    Mqtt4::connect(v4(&broker, "ann", "s3cret")).await;
    Mqtt5::connect(v5(&broker, "ann", "s3cret")).await;

    // A changed password replaces the old one.
    s.change_password("ann", Some("n3w")).unwrap();
    let (code, _) = refusal(lp::connect_url(&url(&broker, "ann", "s3cret", "/")).await);
    assert_eq!(code, ACCESS_REFUSED);
    let conn = lp::connect_url(&url(&broker, "ann", "n3w", "/"))
        .await
        .unwrap();
    usable(&conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_or_an_unknown_user_is_refused_the_same_way() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let s = server(&broker);
    s.add_user("ann", Some("s3cret"), &[]).unwrap();
    s.set_permissions("ann", "/", ".*", ".*", ".*").unwrap();
    s.add_user("certonly", None, &[]).unwrap();
    s.set_permissions("certonly", "/", ".*", ".*", ".*")
        .unwrap();

    let wrong = refusal(lp::connect_url(&url(&broker, "ann", "guess", "/")).await);
    let unknown = refusal(lp::connect_url(&url(&broker, "nobody", "guess", "/")).await);
    let passwordless = refusal(lp::connect_url(&url(&broker, "certonly", "", "/")).await);
    assert_eq!(wrong.0, ACCESS_REFUSED);
    assert_eq!(wrong, unknown, "the client cannot tell an unknown user");
    assert_eq!(wrong, passwordless);

    for (user, password) in [("ann", "guess"), ("nobody", "guess"), ("certonly", "")] {
        assert_eq!(
            refused4(Mqtt4::try_connect(v4(&broker, user, password)).await),
            V4Code::BadUserNamePassword
        );
        assert_eq!(
            refused5(Mqtt5::try_connect(v5(&broker, user, password)).await),
            V5Code::BadUserNamePassword
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vhost_needs_to_exist_and_the_user_needs_permissions_there() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let s = server(&broker);
    s.add_vhost("sales", VHostInfo::default()).unwrap();
    s.add_user("ann", Some("pw"), &[]).unwrap();
    s.set_permissions("ann", "sales", "", "", "").unwrap();

    // Any permission record opens the vhost, even one granting nothing (as RabbitMQ).
    let conn = lp::connect_url(&url(&broker, "ann", "pw", "sales"))
        .await
        .unwrap();
    lp::open_channel(&conn).await;
    // RabbitMQ's one answer for "no such vhost" and "no permissions there": 530.
    assert_eq!(
        refusal(lp::connect_url(&url(&broker, "ann", "pw", "/")).await),
        (
            NOT_ALLOWED,
            "NOT_ALLOWED - access to vhost '/' refused for user 'ann'".into()
        )
    );
    assert_eq!(
        refusal(lp::connect_url(&url(&broker, "ann", "pw", "nowhere")).await),
        (
            NOT_ALLOWED,
            "NOT_ALLOWED - access to vhost 'nowhere' refused for user 'ann'".into()
        )
    );
    // MQTT: `vhost:user`; no permissions is 3.1.1 0x05 / 5.0 0x87.
    Mqtt4::connect(v4(&broker, "sales:ann", "pw")).await;
    assert_eq!(
        refused4(Mqtt4::try_connect(v4(&broker, "ann", "pw")).await),
        V4Code::NotAuthorized
    );
    assert_eq!(
        refused5(Mqtt5::try_connect(v5(&broker, "ann", "pw")).await),
        V5Code::NotAuthorized
    );
    // Clearing the permission closes the door for new connections.
    assert!(s.clear_permissions("ann", "sales").unwrap());
    let (code, _) = refusal(lp::connect_url(&url(&broker, "ann", "pw", "sales")).await);
    assert_eq!(code, NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_vhosts_and_their_queues_survive_a_restart() {
    let data = DataDir::with(|c| c.fsync = false);
    let Some(broker) = data.start().await else {
        return;
    };
    let s = server(&broker);
    s.add_vhost(
        "prod",
        VHostInfo {
            description: "production".into(),
            tags: vec!["eu".into()],
            default_queue_type: None,
        },
    )
    .unwrap();
    s.add_user("ann", Some("pw"), &["policymaker"]).unwrap();
    s.set_permissions("ann", "prod", ".*", ".*", ".*").unwrap();
    s.set_topic_permissions("ann", "prod", "amq.topic", "^a", ".*")
        .unwrap();
    let limits = VHostLimits {
        max_connections: Some(100),
        max_queues: Some(10),
    };
    s.set_vhost_limits("prod", limits).unwrap();
    s.set_user_limits(
        "ann",
        UserLimits {
            max_connections: Some(5),
            max_channels: None,
        },
    )
    .unwrap();
    {
        let conn = lp::connect_url(&url(&broker, "ann", "pw", "prod"))
            .await
            .unwrap();
        let channel = lp::confirm_channel(&conn).await;
        lp::declare(&channel, "orders", lp::durable()).await;
        let persistent = lapin::BasicProperties::default().with_delivery_mode(2);
        lp::publish_with(&channel, "", "orders", b"kept", persistent).await;
    }
    let broker = data.restart(broker).await;
    let s = server(&broker);
    assert!(s.vhosts().contains(&"prod".to_string()));
    let ann = s.users().into_iter().find(|u| u.name == "ann").unwrap();
    assert_eq!(ann.tags, ["policymaker"]);
    let access = s.broker().access();
    let topics = access.topic_permissions("ann", "prod");
    assert_eq!(
        (
            topics.len(),
            topics[0].exchange.as_str(),
            topics[0].write.as_str()
        ),
        (1, "amq.topic", "^a")
    );
    assert_eq!(access.vhost_limits("prod"), limits);
    assert_eq!(access.user_limits("ann").max_connections, Some(5));
    assert_eq!(
        s.broker().vhost_info("prod").unwrap().description,
        "production"
    );
    let conn = lp::connect_url(&url(&broker, "ann", "pw", "prod"))
        .await
        .unwrap();
    let channel = lp::open_channel(&conn).await;
    let got = lp::get(&channel, "orders")
        .await
        .expect("the message survived");
    assert_eq!(lp::body(&got.delivery), "kept");
    // The queue lives in `prod` only.
    let guest = lp::connect(&broker).await;
    assert!(!lp::queue_exists(&guest, "orders").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_imported_with_a_rabbitmq_hash_logs_in_with_its_old_password() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let s = server(&broker);
    // RabbitMQ's passwords guide: "test12" with salt 908DC60A, rabbit_password_hashing_sha256.
    s.import_user(
        "legacy",
        "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR",
        "rabbit_password_hashing_sha256",
        &["administrator"],
    )
    .unwrap();
    // A pre-3.6 user: "simon" with salt CAD5089B, rabbit_password_hashing_md5.
    s.import_user(
        "older",
        "ytUIm8s3AnKsXQjptplKFytfVxI=",
        "rabbit_password_hashing_md5",
        &[],
    )
    .unwrap();
    for user in ["legacy", "older"] {
        s.set_permissions(user, "/", ".*", ".*", ".*").unwrap();
    }
    let conn = lp::connect_url(&url(&broker, "legacy", "test12", "/"))
        .await
        .unwrap();
    usable(&conn).await;
    let conn = lp::connect_url(&url(&broker, "older", "simon", "/"))
        .await
        .unwrap();
    usable(&conn).await;
    Mqtt5::connect(v5(&broker, "legacy", "test12")).await;
    let (code, _) = refusal(lp::connect_url(&url(&broker, "legacy", "test13", "/")).await);
    assert_eq!(code, ACCESS_REFUSED);
    assert!(s
        .import_user("bad", "not-base64!", "rabbit_password_hashing_sha256", &[])
        .is_err());
}

/// The ids of the queue logs in a data directory (`queues/<dir>/id`).
fn queue_logs(data: &DataDir) -> Vec<String> {
    let Ok(dirs) = std::fs::read_dir(data.path().join("queues")) else {
        return Vec::new();
    };
    dirs.filter_map(|d| std::fs::read_to_string(d.ok()?.path().join("id")).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_vhost_closes_its_connections_and_removes_its_queues_on_disk() {
    let data = DataDir::with(|c| c.fsync = false);
    let Some(broker) = data.start().await else {
        return;
    };
    let s = server(&broker);
    s.add_vhost("doomed", VHostInfo::default()).unwrap();
    s.set_permissions("guest", "doomed", ".*", ".*", ".*")
        .unwrap();
    let doomed_url = url(&broker, "guest", "guest", "doomed");
    let conn = lp::connect_url(&doomed_url).await.unwrap();
    let channel = lp::confirm_channel(&conn).await;
    lp::declare(&channel, "work", lp::durable()).await;
    let persistent = lapin::BasicProperties::default().with_delivery_mode(2);
    lp::publish_with(&channel, "", "work", b"gone soon", persistent).await;
    let mut lapin_events = Box::pin(conn.events_listener());
    let args = amqprs::connection::OpenConnectionArguments::new(
        "127.0.0.1",
        broker.addr().port(),
        "guest",
        "guest",
    )
    .virtual_host("doomed")
    .finish();
    let (_amqprs_conn, mut closes) = ars::connect_with(&args).await;
    // A persistent MQTT session with a subscription: its queue is durable, its record kept.
    let mut mqtt = raw5_with(&broker, "doomed:guest", "guest", |c| {
        c.properties.session_expiry_interval = Some(3600);
    })
    .await;
    mqtt.send(subscribe_packet(1, "t/#", QoS::AtLeastOnce))
        .await;
    assert!(matches!(mqtt.recv().await, Packet::SubAck(_)));
    let elsewhere = lp::connect(&broker).await;
    let before = queue_logs(&data);
    assert!(before.iter().any(|id| id == "doomed\0work"));
    assert!(
        before
            .iter()
            .any(|id| id.starts_with("doomed\0mqtt-session-")),
        "{before:?}"
    );

    assert!(s.delete_vhost("doomed").unwrap());

    let close = within("connection.close", closes.recv()).await.unwrap();
    assert_eq!(
        (close.code, close.text.as_str()),
        (
            CONNECTION_FORCED,
            "CONNECTION_FORCED - vhost 'doomed' is deleted"
        )
    );
    let lapin_error = within("lapin's connection error", async {
        loop {
            match lapin_events.next().await {
                Some(lapin::Event::Error(e)) => return e,
                Some(_) => continue,
                None => panic!("lapin's events ended without an error"),
            }
        }
    })
    .await;
    assert_eq!(lp::reply_code(&lapin_error), Some(CONNECTION_FORCED));
    let sent = mqtt.until_closed().await;
    assert!(
        matches!(&sent[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::AdministrativeAction),
        "got {sent:?}"
    );
    // Other vhosts are untouched; the deleted one cannot be opened.
    usable(&elsewhere).await;
    let (code, _) = refusal(lp::connect_url(&doomed_url).await);
    assert_eq!(code, NOT_ALLOWED);
    assert!(!s.vhosts().contains(&"doomed".to_string()));
    assert!(!queue_logs(&data)
        .iter()
        .any(|id| id.starts_with("doomed\0")));

    // After a restart: still gone, and so is its queue.
    let broker = data.restart(broker).await;
    let s = server(&broker);
    assert!(!s.vhosts().contains(&"doomed".to_string()));
    assert!(queue_logs(&data).is_empty(), "{:?}", queue_logs(&data));
    // Recreated, it is empty.
    s.add_vhost("doomed", VHostInfo::default()).unwrap();
    s.set_permissions("guest", "doomed", ".*", ".*", ".*")
        .unwrap();
    let conn = lp::connect_url(&url(&broker, "guest", "guest", "doomed"))
        .await
        .unwrap();
    assert!(!lp::queue_exists(&conn, "work").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_closes_its_connections() {
    let Some(broker) = TestBroker::start_with(ServerConfig::for_tests()).await else {
        return;
    };
    let s = server(&broker);
    s.add_user("temp", Some("pw"), &[]).unwrap();
    s.set_permissions("temp", "/", ".*", ".*", ".*").unwrap();
    let args = amqprs::connection::OpenConnectionArguments::new(
        "127.0.0.1",
        broker.addr().port(),
        "temp",
        "pw",
    );
    let (_conn, mut closes) = ars::connect_with(&args).await;
    let mut mqtt = raw5(&broker, "temp", "pw").await;
    let guest = lp::connect(&broker).await;
    assert!(s.delete_user("temp").unwrap());
    let close = within("connection.close", closes.recv()).await.unwrap();
    assert_eq!(
        (close.code, close.text.as_str()),
        (
            CONNECTION_FORCED,
            "CONNECTION_FORCED - user 'temp' is deleted"
        )
    );
    let sent = mqtt.until_closed().await;
    assert!(
        matches!(&sent[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::AdministrativeAction),
        "got {sent:?}"
    );
    usable(&guest).await;
    let (code, _) = refusal(lp::connect_url(&url(&broker, "temp", "pw", "/")).await);
    assert_eq!(code, ACCESS_REFUSED);
}

/// A non-loopback address of this machine, if it has one (the tests cannot choose the source
/// address of a connection otherwise).
fn non_loopback_address() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    // No packet is sent: connecting a UDP socket only picks the route's source address.
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_users_may_only_connect_from_loopback() {
    let config = ServerConfig {
        amqp_listen: SocketAddr::from(([0, 0, 0, 0], 0)).into(),
        loopback_users: vec!["guest".into(), "local".into()],
        ..ServerConfig::for_tests()
    };
    let Some(broker) = TestBroker::start_with(config).await else {
        return;
    };
    let s = server(&broker);
    for user in ["local", "remote"] {
        s.add_user(user, Some("pw"), &[]).unwrap();
        s.set_permissions(user, "/", ".*", ".*", ".*").unwrap();
    }
    let port = broker.addr().port();
    let at = |ip: IpAddr, user: &str, password: &str| {
        format!("amqp://{user}:{password}@{}/%2f", SocketAddr::new(ip, port))
    };
    let loopback = IpAddr::from([127, 0, 0, 1]);
    for (user, password) in [("guest", "guest"), ("local", "pw"), ("remote", "pw")] {
        let conn = lp::connect_url(&at(loopback, user, password))
            .await
            .unwrap();
        usable(&conn).await;
    }
    let Some(outside) = non_loopback_address() else {
        println!("no non-loopback address on this machine: only the loopback half was checked");
        return;
    };
    for user in ["guest", "local"] {
        let password = if user == "guest" { "guest" } else { "pw" };
        let (code, _) = refusal(lp::connect_url(&at(outside, user, password)).await);
        assert_eq!(code, ACCESS_REFUSED, "{user} from {outside}");
    }
    let conn = lp::connect_url(&at(outside, "remote", "pw")).await.unwrap();
    usable(&conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_initial_administrator_is_created_instead_of_guest() {
    let data = DataDir::with(|c| {
        c.default_user = "admin".into();
        c.default_pass = "adm1n".into();
        c.default_vhost = "main".into();
        c.default_user_tags = vec!["administrator".into(), "ops".into()];
    });
    let Some(broker) = data.start().await else {
        return;
    };
    let s = server(&broker);
    let users = s.users();
    assert_eq!(users.len(), 1);
    assert_eq!(
        (users[0].name.as_str(), &users[0].tags[..]),
        (
            "admin",
            &["administrator".to_string(), "ops".to_string()][..]
        )
    );
    assert_eq!(s.vhosts(), ["main"]);
    let conn = lp::connect_url(&url(&broker, "admin", "adm1n", "main"))
        .await
        .unwrap();
    usable(&conn).await;
    let (code, _) = refusal(lp::connect_url(&url(&broker, "guest", "guest", "main")).await);
    assert_eq!(code, ACCESS_REFUSED);

    // The bootstrap happens once: a deleted default user does not come back.
    s.add_user("other", Some("pw"), &["administrator"]).unwrap();
    assert!(s.delete_user("admin").unwrap());
    let broker = data.restart(broker).await;
    let s = server(&broker);
    assert_eq!(
        s.users()
            .iter()
            .map(|u| u.name.as_str())
            .collect::<Vec<_>>(),
        ["other"]
    );
    let (code, _) = refusal(lp::connect_url(&url(&broker, "admin", "adm1n", "main")).await);
    assert_eq!(code, ACCESS_REFUSED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_default_user_nobody_logs_in_until_one_is_created() {
    let config = ServerConfig {
        default_user: String::new(),
        ..ServerConfig::for_tests()
    };
    let Some(broker) = TestBroker::start_with(config).await else {
        return;
    };
    let s = server(&broker);
    assert!(s.users().is_empty());
    assert_eq!(
        s.vhosts(),
        ["/"],
        "the default vhost is created all the same"
    );
    let (code, _) = refusal(lp::connect_url(&url(&broker, "guest", "guest", "/")).await);
    assert_eq!(code, ACCESS_REFUSED);
    // Anonymous MQTT clients are guest, who does not exist.
    let anonymous =
        rumqttc::MqttOptions::new(unique("anon"), "127.0.0.1", mqtt_addr(&broker).port());
    assert_eq!(
        refused4(Mqtt4::try_connect(anonymous).await),
        V4Code::BadUserNamePassword
    );
    s.add_user("first", Some("pw"), &["administrator"]).unwrap();
    s.set_permissions("first", "/", ".*", ".*", ".*").unwrap();
    let conn = lp::connect_url(&url(&broker, "first", "pw", "/"))
        .await
        .unwrap();
    usable(&conn).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_keeps_failing_is_refused_even_with_the_right_password() {
    let config = ServerConfig {
        login_failure_burst: 2,
        // Practically no refill during the test: the outcome does not depend on timing.
        login_failure_rate: 0.0001,
        ..ServerConfig::for_tests()
    };
    let Some(broker) = TestBroker::start_with(config).await else {
        return;
    };
    for _ in 0..2 {
        let (code, _) = refusal(lp::connect_url(&url(&broker, "guest", "nope", "/")).await);
        assert_eq!(code, ACCESS_REFUSED);
    }
    // The same answer as a wrong password, over both protocols.
    let (code, _) = refusal(lp::connect_url(&url(&broker, "guest", "guest", "/")).await);
    assert_eq!(code, ACCESS_REFUSED);
    assert_eq!(
        refused4(Mqtt4::try_connect(v4(&broker, "guest", "guest")).await),
        V4Code::BadUserNamePassword
    );
}
