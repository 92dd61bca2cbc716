//! Users and vhosts created at runtime, logins and permissions, what survives a restart, imported
//! hashes: part of the `users_vhosts` tests (helpers in `mod.rs`).

use super::*;

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
