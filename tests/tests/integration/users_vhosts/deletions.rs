//! Deleting a vhost or a user closes its connections and removes its queues: part of the
//! `users_vhosts` tests (helpers in `mod.rs`).

use super::*;

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
