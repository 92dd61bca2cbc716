//! Loopback users, the initial administrator, no default user, sources that keep failing: part of
//! the `users_vhosts` tests (helpers in `mod.rs`).

use super::*;

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
