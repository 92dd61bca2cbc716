//! Quorum queue members managed as rabbitmq-queues manages them (docs/clustering.md, "Quorum
//! queue members"), on real `pigeon` processes: `pigeon ctl add_member` to a fourth node, which
//! catches up and then carries the majority once old members are gone; `delete_member`;
//! `grow` and `shrink`; RabbitMQ's refusals (`node_not_running`, `last_node`); a member that
//! was down when its queue was declared, started again; `drain` moving the leaderships away.

use super::cluster::{
    declare_when_ready, start_all, until_login, until_members, write_configs, Node,
};
use super::cluster_quorum::{
    consumer, listed_row, next, publish_confirmed, queue_row, quorum_args,
};
use super::ctl_support::ctl_at;
use lapin::options::{BasicAckOptions, ConfirmSelectOptions};
use lapin::types::AMQPValue;
use pigeon_tests::within;
use std::collections::BTreeSet;
use std::time::Duration;

fn names(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_string))
        .collect()
}

/// Waits until `node` lists `queue` with exactly these members.
async fn until_members_are(node: &Node, queue: &str, members: &BTreeSet<String>) {
    within(
        &format!("{queue}'s members to be {members:?} on {}", node.api()),
        async {
            loop {
                let row = listed_row(node, queue).await.unwrap_or_default();
                if names(&row["members"]) == *members {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        },
    )
    .await;
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn node_name(i: usize) -> String {
    format!("rabbit@n{i}")
}

fn index_of(name: &str) -> usize {
    name.trim_start_matches("rabbit@n").parse().unwrap()
}

/// Waits until `node` sees a leader of `queue` other than `gone`.
async fn until_led_without(node: &Node, queue: &str, gone: &str) {
    within(&format!("{queue} led by another node than {gone}"), async {
        loop {
            let row = listed_row(node, queue).await.unwrap_or_default();
            let leader = row["leader"].as_str().unwrap_or_default().to_string();
            if !leader.is_empty() && leader != gone {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
}

/// Consumes `n` messages on `node` and acknowledges them; their bodies.
async fn consume_all(node: &Node, queue: &str, n: usize) -> BTreeSet<String> {
    let conn = until_login(node, "guest", "guest").await;
    let (ch, mut c) = consumer(&conn, queue, "members", 100).await;
    let mut got = BTreeSet::new();
    while got.len() < n {
        let d = next(
            &mut c,
            &format!("message {} of {n} on {}", got.len() + 1, node.api()),
        )
        .await;
        got.insert(String::from_utf8(d.data.clone()).unwrap());
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    drop(ch);
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_are_added_and_removed_and_the_new_one_carries_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 4);
    let mut nodes: Vec<Option<Node>> = start_all(&configs).await.into_iter().map(Some).collect();
    let node = |nodes: &Vec<Option<Node>>, i: usize| -> String { nodes[i].as_ref().unwrap().api() };
    until_members(nodes[0].as_ref().unwrap(), 4).await;

    // Three members (the default group size) of four nodes; a one-member queue.
    let a = declare_when_ready(nodes[0].as_ref().unwrap(), "qq", quorum_args(&[])).await;
    let solo_args = quorum_args(&[("x-quorum-initial-group-size", AMQPValue::LongInt(1))]);
    declare_when_ready(nodes[0].as_ref().unwrap(), "solo", solo_args).await;
    let row = queue_row(nodes[0].as_ref().unwrap(), "qq").await;
    let old = names(&row["members"]);
    assert_eq!(old.len(), 3, "{row}");
    assert!(old.contains("rabbit@n0"), "{row}");
    let outsider = (0..4).map(node_name).find(|n| !old.contains(n)).unwrap();

    // RabbitMQ's refusals: a node that is not a running member, the last member.
    let err = ctl_at(&node(&nodes, 1), &["add_member", "qq", "rabbit@nowhere"])
        .await
        .fails(65);
    assert!(err.contains("node_not_running"), "{err}");
    let err = ctl_at(&node(&nodes, 1), &["delete_member", "solo", "rabbit@n0"])
        .await
        .fails(65);
    assert!(err.contains("last_node"), "{err}");
    let err = ctl_at(&node(&nodes, 1), &["add_member", "nosuch", "rabbit@n1"])
        .await
        .fails(65);
    assert!(err.contains("not found"), "{err}");
    // Adding a member that is one is a success that changes nothing (RabbitMQ 3.13/4).
    ctl_at(&node(&nodes, 1), &["add_member", "qq", "rabbit@n0"])
        .await
        .ok();

    // grow: the outsider gets a member of `solo` (one member: `even` leaves it alone).
    let rows = ctl_at(
        &node(&nodes, 2),
        &[
            "grow",
            &outsider,
            "even",
            "--queue-pattern",
            "^solo$",
            "--formatter",
            "json",
        ],
    )
    .await
    .json();
    assert_eq!(rows, serde_json::json!([]));
    let rows = ctl_at(
        &node(&nodes, 2),
        &[
            "grow",
            &outsider,
            "all",
            "--queue-pattern",
            "^solo$",
            "--formatter",
            "json",
        ],
    )
    .await
    .json();
    assert_eq!(
        rows,
        serde_json::json!([{"vhost": "/", "name": "solo", "size": 2, "result": "ok"}])
    );
    for n in nodes.iter().flatten() {
        until_members_are(n, "solo", &set(&["rabbit@n0", &outsider])).await;
    }
    // shrink: the outsider's members go (it has none of `qq`).
    let rows = ctl_at(
        &node(&nodes, 3),
        &["shrink", &outsider, "--formatter", "json"],
    )
    .await
    .json();
    assert_eq!(
        rows,
        serde_json::json!([{"vhost": "/", "name": "solo", "size": 1, "result": "ok"}])
    );
    for n in nodes.iter().flatten() {
        until_members_are(n, "solo", &set(&["rabbit@n0"])).await;
    }

    // Five confirmed messages in `qq`, then a member on the outsider (it catches up).
    let ch = a.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for i in 0..5 {
        publish_confirmed(&ch, "qq", &format!("m{i}")).await;
    }
    ctl_at(&node(&nodes, 1), &["add_member", "qq", &outsider])
        .await
        .ok();
    let mut four = old.clone();
    four.insert(outsider.clone());
    for n in nodes.iter().flatten() {
        until_members_are(n, "qq", &four).await;
    }

    // delete_member of an old member (not n0, which the publisher uses), then the other old
    // member other than n0 is killed: n0 and the new member are the majority of three.
    let others: Vec<String> = old.iter().filter(|n| *n != "rabbit@n0").cloned().collect();
    ctl_at(&node(&nodes, 0), &["delete_member", "qq", &others[0]])
        .await
        .ok();
    let three: BTreeSet<String> = four.iter().filter(|n| **n != others[0]).cloned().collect();
    for n in nodes.iter().flatten() {
        until_members_are(n, "qq", &three).await;
    }
    // Deleting a member that is none is a success that changes nothing.
    ctl_at(&node(&nodes, 0), &["delete_member", "qq", &others[0]])
        .await
        .ok();
    drop(ch);
    drop(a);
    nodes[index_of(&others[1])].take().unwrap().kill();

    // The new member has every message: consumed on its node once a leader is known there.
    let new = nodes[index_of(&outsider)].as_ref().unwrap();
    until_led_without(new, "qq", &others[1]).await;
    let got = consume_all(new, "qq", 5).await;
    assert_eq!(
        got,
        (0..5).map(|i| format!("m{i}")).collect::<BTreeSet<_>>()
    );
    let row = queue_row(new, "qq").await;
    assert_eq!(names(&row["members"]), three, "{row}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_down_at_declaration_starts_and_drain_moves_the_leaders() {
    let dir = tempfile::tempdir().unwrap();
    let configs = write_configs(dir.path(), 3);
    let mut nodes: Vec<Option<Node>> = start_all(&configs).await.into_iter().map(Some).collect();
    until_members(nodes[0].as_ref().unwrap(), 3).await;

    // n2 is down when the queue is declared: it is chosen all the same (a member of the
    // cluster), and the group is formed by n0 and n1.
    nodes[2].take().unwrap().kill();
    let a = declare_when_ready(nodes[0].as_ref().unwrap(), "late", quorum_args(&[])).await;
    let ch = a.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    for i in 0..3 {
        publish_confirmed(&ch, "late", &format!("m{i}")).await;
    }
    drop(ch);
    drop(a);

    // n2 starts: it learns the queue and starts its member, which catches up; then it is
    // killed and started once more (its member starts from its store's member list).
    nodes[2] = Some(Node::start(&configs[2]).await);
    let all = set(&["rabbit@n0", "rabbit@n1", "rabbit@n2"]);
    until_members_are(nodes[2].as_ref().unwrap(), "late", &all).await;
    within("n2's member to have the messages", async {
        loop {
            let row = listed_row(nodes[2].as_ref().unwrap(), "late").await;
            if row.is_some_and(|r| r["messages"] == 3) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    nodes[2].take().unwrap().kill();
    nodes[2] = Some(Node::start(&configs[2]).await);

    // Quorum queues declared on n0 are led by n0; drained, n0 hands them over.
    for q in ["led1", "led2"] {
        declare_when_ready(nodes[0].as_ref().unwrap(), q, quorum_args(&[])).await;
    }
    for q in ["late", "led1", "led2"] {
        within(&format!("{q} led by some node"), async {
            while listed_row(nodes[1].as_ref().unwrap(), q)
                .await
                .unwrap_or_default()["leader"]
                .as_str()
                .is_none_or(str::is_empty)
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
    }
    let report = ctl_at(
        &nodes[1].as_ref().unwrap().api(),
        &["drain", "rabbit@n0", "--formatter", "json"],
    )
    .await
    .json();
    assert_eq!(report["being_drained"], true, "{report}");
    for q in ["late", "led1", "led2"] {
        until_led_without(nodes[1].as_ref().unwrap(), q, "rabbit@n0").await;
    }
    ctl_at(&nodes[1].as_ref().unwrap().api(), &["revive", "rabbit@n0"])
        .await
        .ok();

    // n0 is killed: n1 and the restarted n2 are the majority; n2 has every message.
    nodes[0].take().unwrap().kill();
    until_led_without(nodes[2].as_ref().unwrap(), "late", "rabbit@n0").await;
    let got = consume_all(nodes[2].as_ref().unwrap(), "late", 3).await;
    assert_eq!(
        got,
        (0..3).map(|i| format!("m{i}")).collect::<BTreeSet<_>>()
    );
}
