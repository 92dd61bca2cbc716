//! MQTT topic filters and subscriptions: `+` and `#`, `$` topics kept from leading wildcards,
//! dots in topic levels, unsubscribe, 5.0 subscription identifiers and no-local, shared
//! subscriptions (`$share/group/filter`), and the broker's own `$SYS/broker/...` topics.

use pigeon_server::ServerConfig;
use pigeon_tests::mqtt_support::{filter5, Mqtt4, MqttBroker};
use pigeon_tests::{unique, TIMEOUT};
use rumqttc::v5::mqttbytes::v5::SubscribeProperties;
use rumqttc::v5::mqttbytes::QoS as Q5;
use rumqttc::QoS as Q4;
use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

/// Publishes each of `topics` (payload = topic) and then `marker`; returns the topics the
/// subscriber received before the marker.
async fn received_before_marker(
    publisher: &mut Mqtt4,
    subscriber: &mut Mqtt4,
    topics: &[String],
    marker: &str,
) -> Vec<String> {
    for t in topics {
        publisher
            .publish(t, Q4::AtLeastOnce, false, t.as_bytes())
            .await;
    }
    publisher
        .publish(marker, Q4::AtLeastOnce, false, b"marker")
        .await;
    let mut got = Vec::new();
    loop {
        let p = subscriber.next_publish().await;
        if p.topic == marker {
            return got;
        }
        got.push(p.topic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plus_matches_exactly_one_level() {
    let broker = MqttBroker::start().await;
    let root = unique("plus");
    let mut sub = broker.connect4(&unique("sub")).await;
    sub.subscribe(&format!("{root}/+/c"), Q4::AtLeastOnce).await;
    let marker = format!("{root}/marker/c");
    let mut publisher = broker.connect4(&unique("pub")).await;
    let topics: Vec<String> = ["b/c", "x/c", "/c", "b/x/c", "c", "b/c/d", "b/cc"]
        .iter()
        .map(|t| format!("{root}/{t}"))
        .collect();
    let got = received_before_marker(&mut publisher, &mut sub, &topics, &marker).await;
    assert_eq!(got, topics[..3].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hash_matches_the_parent_level_and_everything_below() {
    let broker = MqttBroker::start().await;
    let root = unique("hash");
    let mut sub = broker.connect4(&unique("sub")).await;
    sub.subscribe(&format!("{root}/sport/#"), Q4::AtLeastOnce)
        .await;
    let marker = format!("{root}/sport/marker");
    let mut publisher = broker.connect4(&unique("pub")).await;
    let topics: Vec<String> = [
        "sport",
        "sport/tennis",
        "sport/tennis/p1",
        "sport/",
        "sports",
        "x/sport",
    ]
    .iter()
    .map(|t| format!("{root}/{t}"))
    .collect();
    let got = received_before_marker(&mut publisher, &mut sub, &topics, &marker).await;
    assert_eq!(got, topics[..4].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dots_in_topic_levels_survive_and_do_not_split_levels() {
    let broker = MqttBroker::start().await;
    let root = unique("dots").replace('-', "");
    let mut sub = broker.connect4(&unique("sub")).await;
    sub.subscribe(&format!("{root}/v1.2/+"), Q4::AtLeastOnce)
        .await;
    let marker = format!("{root}/v1.2/marker");
    let mut publisher = broker.connect4(&unique("pub")).await;
    let topics: Vec<String> = ["v1.2/a.b", "v1/2/a", "v1.2/a/b"]
        .iter()
        .map(|t| format!("{root}/{t}"))
        .collect();
    let got = received_before_marker(&mut publisher, &mut sub, &topics, &marker).await;
    assert_eq!(got, topics[..1].to_vec());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_starting_with_dollar_are_not_matched_by_leading_wildcards() {
    let config = ServerConfig {
        mqtt_sys_interval: 1,
        ..ServerConfig::for_tests()
    };
    let broker = MqttBroker::start_with(config).await;
    let mut all = broker.connect4(&unique("all")).await;
    all.subscribe("#", Q4::AtMostOnce).await;
    all.subscribe("+/broker/uptime", Q4::AtMostOnce).await;
    // Wait for a live $SYS update, published after those subscriptions existed.
    let mut sys = broker.connect4(&unique("sys")).await;
    sys.subscribe("$SYS/broker/uptime", Q4::AtMostOnce).await;
    while sys.next_publish().await.retain {}
    let mut publisher = broker.connect4(&unique("pub")).await;
    publisher
        .publish("$app/x", Q4::AtLeastOnce, false, b"dollar")
        .await;
    publisher
        .publish("marker", Q4::AtLeastOnce, false, b"marker")
        .await;
    let p = all.next_publish().await;
    assert_eq!(
        p.topic, "marker",
        "`#` and `+/...` must not match `$` topics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sys_topics_report_uptime_version_and_clients() {
    let config = ServerConfig {
        mqtt_sys_interval: 1,
        ..ServerConfig::for_tests()
    };
    let broker = MqttBroker::start_with(config).await;
    let mut sub = broker.connect4(&unique("sys")).await;
    sub.subscribe("$SYS/broker/#", Q4::AtMostOnce).await;
    let wanted = [
        "$SYS/broker/uptime",
        "$SYS/broker/version",
        "$SYS/broker/clients/connected",
    ];
    let mut seen: HashMap<String, String> = HashMap::new();
    let deadline = Instant::now() + TIMEOUT;
    // An update computed just before this client connected may still reach it: read until one
    // counts it.
    let counted = |seen: &HashMap<String, String>| {
        seen.get("$SYS/broker/clients/connected")
            .and_then(|c| c.parse::<u64>().ok())
            .is_some_and(|c| c >= 1)
    };
    while !wanted.iter().all(|t| seen.contains_key(*t)) || !counted(&seen) {
        assert!(Instant::now() < deadline, "saw only {seen:?}");
        // Live updates only: the retained ones may predate this client's connection.
        let p = sub.next_publish().await;
        if !p.retain {
            seen.insert(p.topic, String::from_utf8_lossy(&p.payload).into_owned());
        }
    }
    assert!(seen["$SYS/broker/uptime"].ends_with("seconds"), "{seen:?}");
    assert!(seen["$SYS/broker/version"].contains("pigeon"), "{seen:?}");
    let connected: u64 = seen["$SYS/broker/clients/connected"].parse().unwrap();
    assert!(connected >= 1, "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsubscribe_stops_delivery() {
    let broker = MqttBroker::start().await;
    let topic = unique("unsub/t");
    let marker = unique("unsub/marker");
    let mut publisher = broker.connect4(&unique("pub")).await;

    let mut s4 = broker.connect4(&unique("s4")).await;
    s4.subscribe(&topic, Q4::AtLeastOnce).await;
    s4.subscribe(&marker, Q4::AtLeastOnce).await;
    let mut s5 = broker.connect5(&unique("s5")).await;
    s5.subscribe(&topic, Q5::AtLeastOnce).await;
    s5.subscribe(&marker, Q5::AtLeastOnce).await;
    publisher
        .publish(&topic, Q4::AtLeastOnce, false, b"before")
        .await;
    assert_eq!(s4.next_text().await, "before");
    assert_eq!(s5.next_text().await, "before");

    s4.unsubscribe(&topic).await;
    s5.unsubscribe(&topic).await;
    publisher
        .publish(&topic, Q4::AtLeastOnce, false, b"after")
        .await;
    publisher
        .publish(&marker, Q4::AtLeastOnce, false, b"marker")
        .await;
    assert_eq!(s4.next_text().await, "marker");
    assert_eq!(s5.next_text().await, "marker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscription_identifiers_come_back_with_matching_messages() {
    let broker = MqttBroker::start().await;
    let root = unique("subid");
    let mut sub = broker.connect5(&unique("sub")).await;
    let with_id = |id| {
        Some(SubscribeProperties {
            id: Some(id),
            user_properties: vec![],
        })
    };
    sub.subscribe_with(filter5(&format!("{root}/+"), Q5::AtLeastOnce), with_id(7))
        .await;
    sub.subscribe_with(filter5(&format!("{root}/b"), Q5::AtLeastOnce), with_id(9))
        .await;
    let mut publisher = broker.connect5(&unique("pub")).await;
    for (leaf, expected) in [("a", vec![7]), ("b", vec![7, 9])] {
        publisher
            .publish(
                &format!("{root}/{leaf}"),
                Q5::AtLeastOnce,
                false,
                leaf.as_bytes(),
            )
            .await;
        // One copy with every identifier, or one copy per subscription: both are allowed.
        let mut ids = BTreeSet::new();
        while ids.len() < expected.len() {
            let p = sub.next_publish().await;
            assert_eq!(&p.payload[..], leaf.as_bytes());
            ids.extend(p.properties.unwrap().subscription_identifiers);
        }
        assert_eq!(ids.into_iter().collect::<Vec<_>>(), expected, "{leaf}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_local_subscription_does_not_get_the_clients_own_messages() {
    let broker = MqttBroker::start().await;
    let topic = unique("nolocal/t");
    let mut me = broker.connect5(&unique("me")).await;
    let mut f = filter5(&topic, Q5::AtLeastOnce);
    f.nolocal = true;
    me.subscribe_with(f, None).await;
    me.publish(&topic, Q5::AtLeastOnce, false, b"mine").await;
    let mut other = broker.connect5(&unique("other")).await;
    other
        .publish(&topic, Q5::AtLeastOnce, false, b"theirs")
        .await;
    assert_eq!(me.next_text().await, "theirs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_subscription_spreads_messages_among_the_group() {
    let broker = MqttBroker::start().await;
    let topic = unique("shared/t");
    let group = format!("$share/g/{topic}");
    let mut a = broker.connect4(&unique("a")).await;
    a.subscribe(&group, Q4::AtLeastOnce).await;
    let mut b = broker.connect5(&unique("b")).await;
    b.subscribe(&group, Q5::AtLeastOnce).await;
    let mut publisher = broker.connect4(&unique("pub")).await;
    const N: usize = 40;
    for n in 0..N {
        publisher
            .publish(&topic, Q4::AtLeastOnce, false, n.to_string().as_bytes())
            .await;
    }
    // End markers follow; each member reads up to the first it gets.
    for _ in 0..10 {
        publisher
            .publish(&topic, Q4::AtLeastOnce, false, b"end")
            .await;
    }
    let mut got_a = Vec::new();
    loop {
        match a.next_text().await.as_str() {
            "end" => break,
            n => got_a.push(n.parse::<usize>().unwrap()),
        }
    }
    let mut got_b = Vec::new();
    loop {
        match b.next_text().await.as_str() {
            "end" => break,
            n => got_b.push(n.parse::<usize>().unwrap()),
        }
    }
    assert!(
        !got_a.is_empty() && !got_b.is_empty(),
        "a: {got_a:?}, b: {got_b:?}"
    );
    let mut all: Vec<usize> = got_a.iter().chain(&got_b).copied().collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..N).collect::<Vec<_>>(),
        "each message exactly once in the group"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_keeps_receiving_after_one_member_unsubscribes() {
    let broker = MqttBroker::start().await;
    let topic = unique("shared/t");
    let group = format!("$share/g/{topic}");
    let mut a = broker.connect4(&unique("a")).await;
    a.subscribe(&group, Q4::AtLeastOnce).await;
    let mut b = broker.connect4(&unique("b")).await;
    b.subscribe(&group, Q4::AtLeastOnce).await;
    a.unsubscribe(&group).await;
    let mut publisher = broker.connect4(&unique("pub")).await;
    for n in 0..5 {
        publisher
            .publish(&topic, Q4::AtLeastOnce, false, n.to_string().as_bytes())
            .await;
    }
    for n in 0..5 {
        assert_eq!(
            b.next_text().await,
            n.to_string(),
            "the remaining member gets them all"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistent_member_keeps_its_shared_subscription_across_a_reconnect() {
    let broker = MqttBroker::start().await;
    let topic = unique("shared/t");
    let group = format!("$share/g/{topic}");
    let mut o = broker.v4(&unique("member"));
    o.set_clean_session(false);
    let mut member = Mqtt4::connect(o.clone()).await;
    member.subscribe(&group, Q4::AtLeastOnce).await;
    member.disconnect().await;
    let mut member = Mqtt4::connect(o).await;
    assert!(member.session_present);
    let mut publisher = broker.connect4(&unique("pub")).await;
    publisher
        .publish(&topic, Q4::AtLeastOnce, false, b"after")
        .await;
    assert_eq!(member.next_text().await, "after");
}
