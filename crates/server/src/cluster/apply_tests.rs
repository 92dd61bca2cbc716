//! The applier's side of the management API's and automatic changes: parameters, and
//! automatic deletions, applied to a real broker over a real store (in a temporary directory).

use super::apply::BrokerApplier;
use super::auto_delete::{applying, hook, Hooks};
use pigeon_broker::{Broker, PagingLimits, QueueOptions};
use pigeon_cluster::meta::{Binding, Json};
use pigeon_cluster::{AppliedMarker, MetaCommand, MetaResponse, MetadataApply};
use pigeon_store::{Store, StoreOptions};
use std::sync::{Arc, Mutex};

pub(super) fn applier(dir: &std::path::Path) -> BrokerApplier {
    let store = Arc::new(Store::open(dir, StoreOptions::default()).unwrap());
    let (broker, _) = Broker::open(
        Arc::clone(&store),
        &crate::amqp::AMQP_CODEC,
        PagingLimits::default(),
    )
    .unwrap();
    // The forwarder keeps a runtime handle for its batches (none are sent here).
    static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> = std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    });
    let _runtime = RUNTIME.enter();
    let forwarder = super::forward::Forwarder::new(
        "rabbit@test".into(),
        Arc::clone(&broker),
        Arc::clone(&store),
    );
    let broker_for_quorum = Arc::clone(&broker);
    let mut a = BrokerApplier {
        broker,
        store,
        auto_delete: Hooks::default(),
        forwarder,
        quorum: super::quorum::QuorumRegistry::new(&broker_for_quorum),
    };
    let added = apply(
        &mut a,
        vec![MetaCommand::AddVhost {
            name: "/".into(),
            metadata: Json("{}".into()),
        }],
    );
    assert_eq!(added, vec![MetaResponse::Done]);
    a
}

pub(super) fn apply(a: &mut BrokerApplier, commands: Vec<MetaCommand>) -> Vec<MetaResponse> {
    let numbered: Vec<(u64, MetaCommand)> = commands.into_iter().map(|c| (1, c)).collect();
    a.apply(&numbered, &AppliedMarker::from_bytes(Vec::new()))
        .unwrap()
}

fn queue(name: &str, auto_delete: bool) -> MetaCommand {
    MetaCommand::DeclareQueue {
        vhost: "/".into(),
        name: name.into(),
        kind: "classic".into(),
        auto_delete,
        arguments: Json("{}".into()),
        node: "rabbit@a".into(),
    }
}

fn exchange(name: &str, auto_delete: bool) -> MetaCommand {
    MetaCommand::DeclareExchange {
        vhost: "/".into(),
        name: name.into(),
        kind: "fanout".into(),
        auto_delete,
        internal: false,
        arguments: Json("{}".into()),
    }
}

fn bind(source: &str, queue: &str) -> MetaCommand {
    MetaCommand::Bind {
        binding: Binding {
            vhost: "/".into(),
            source: source.into(),
            destination: queue.into(),
            to_exchange: false,
            routing_key: String::new(),
            arguments: Json("{}".into()),
        },
    }
}

#[test]
fn parameters_and_global_parameters_are_set_and_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = applier(dir.path());
    let set = apply(
        &mut a,
        vec![
            MetaCommand::SetParameter {
                vhost: Some("/".into()),
                component: "shovel".into(),
                name: "s".into(),
                value: Json(r#"{"src-uri":"amqp://"}"#.into()),
            },
            MetaCommand::SetParameter {
                vhost: None,
                component: String::new(),
                name: "cluster_name".into(),
                value: Json(r#""flock""#.into()),
            },
        ],
    );
    assert_eq!(set, vec![MetaResponse::Done, MetaResponse::Done]);
    let broker = Arc::clone(&a.broker);
    let p = broker.parameters();
    assert_eq!(
        p.get("/", "shovel", "s").unwrap().value,
        r#"{"src-uri":"amqp://"}"#
    );
    assert_eq!(p.global("cluster_name").as_deref(), Some(r#""flock""#));
    // Snapshots carry them.
    let snapshot = super::snapshot::commands(&a.broker);
    assert!(snapshot.iter().any(
        |c| matches!(c, MetaCommand::SetParameter { name, vhost: None, .. } if name == "cluster_name")
    ));
    apply(
        &mut a,
        vec![
            MetaCommand::ClearParameter {
                vhost: Some("/".into()),
                component: "shovel".into(),
                name: "s".into(),
            },
            MetaCommand::ClearParameter {
                vhost: None,
                component: String::new(),
                name: "cluster_name".into(),
            },
        ],
    );
    assert!(p.get("/", "shovel", "s").is_none());
    assert!(p.global("cluster_name").is_none());
}

#[test]
fn an_automatic_deletion_from_elsewhere_applies_where_the_entity_is_unused() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = applier(dir.path());
    apply(
        &mut a,
        vec![
            queue("ad.q", true),
            exchange("ad.x", true),
            bind("ad.x", "ad.q"),
        ],
    );
    let v = a.broker.vhost("/").unwrap();
    // Bound here: the exchange stays.
    let r = apply(
        &mut a,
        vec![MetaCommand::AutoDeleteExchange {
            vhost: "/".into(),
            name: "ad.x".into(),
        }],
    );
    assert_eq!(r, vec![MetaResponse::Done]);
    assert!(v.exchange("ad.x").is_ok());
    // The queue has no consumer here: it goes, and the exchange with its last binding.
    let r = apply(
        &mut a,
        vec![MetaCommand::AutoDeleteQueue {
            vhost: "/".into(),
            name: "ad.q".into(),
        }],
    );
    assert_eq!(r, vec![MetaResponse::Done]);
    assert!(v.queue("ad.q").is_err());
    assert!(v.exchange("ad.x").is_err());
    // Gone already (the proposer's own copy): nothing to do, no refusal.
    let r = apply(
        &mut a,
        vec![
            MetaCommand::AutoDeleteQueue {
                vhost: "/".into(),
                name: "ad.q".into(),
            },
            MetaCommand::AutoDeleteExchange {
                vhost: "/".into(),
                name: "ad.x".into(),
            },
        ],
    );
    assert_eq!(r, vec![MetaResponse::Done, MetaResponse::Done]);
}

#[test]
fn local_automatic_deletions_are_told_and_those_of_the_log_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = applier(dir.path());
    apply(
        &mut a,
        vec![exchange("ad.x", true), queue("durable.q", false)],
    );
    let v = a.broker.vhost("/").unwrap();
    let told: Arc<Mutex<Vec<String>>> = Arc::default();
    {
        let told = Arc::clone(&told);
        v.set_auto_delete_hook(hook(move |command| {
            told.lock().unwrap().push(match command {
                MetaCommand::AutoDeleteQueue { name, .. } => format!("queue {name}"),
                MetaCommand::AutoDeleteExchange { name, .. } => format!("exchange {name}"),
                other => format!("{other:?}"),
            });
        }));
    }
    // A replicated binding and queue.delete, applied from the log: the exchange goes with its
    // last binding on every node alike, and nobody is told.
    apply(&mut a, vec![bind("ad.x", "durable.q")]);
    apply(
        &mut a,
        vec![MetaCommand::DeleteQueue {
            vhost: "/".into(),
            name: "durable.q".into(),
        }],
    );
    assert!(v.exchange("ad.x").is_err());
    assert!(told.lock().unwrap().is_empty());
    // A local (non-durable) queue bound to it and deleted here: the exchange's deletion is told.
    apply(&mut a, vec![exchange("ad.x", true)]);
    let local = QueueOptions {
        durable: false,
        exclusive_owner: None,
        auto_delete: false,
        arguments: Default::default(),
    };
    v.declare_queue("local.q", false, local, 0).unwrap();
    let lq = v.queue("local.q").unwrap();
    v.bind(
        "ad.x",
        pigeon_broker::Destination::Queue(lq),
        "",
        Default::default(),
    )
    .unwrap();
    v.delete_queue("local.q", false, false, 0).unwrap();
    assert!(v.exchange("ad.x").is_err());
    assert_eq!(*told.lock().unwrap(), vec!["exchange ad.x".to_string()]);
    // The same deletion marked as applying is not told.
    apply(&mut a, vec![exchange("ad.x", true)]);
    let lq = {
        let local = QueueOptions {
            durable: false,
            exclusive_owner: None,
            auto_delete: false,
            arguments: Default::default(),
        };
        v.declare_queue("local.q", false, local, 0).unwrap();
        v.queue("local.q").unwrap()
    };
    v.bind(
        "ad.x",
        pigeon_broker::Destination::Queue(lq),
        "",
        Default::default(),
    )
    .unwrap();
    applying(|| v.delete_queue("local.q", false, false, 0)).unwrap();
    assert_eq!(told.lock().unwrap().len(), 1);
}

#[test]
fn restoring_a_snapshot_removes_what_it_does_not_name() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = applier(dir_a.path());
    let mut b = applier(dir_b.path());
    let both = vec![queue("kept.q", false), exchange("kept.x", false)];
    apply(&mut b, both.clone());
    apply(&mut a, both);
    // What `a` has and the snapshot (`b`'s) does not.
    apply(
        &mut a,
        vec![
            bind("kept.x", "kept.q"),
            queue("gone.q", false),
            MetaCommand::SetParameter {
                vhost: Some("/".into()),
                component: "shovel".into(),
                name: "s".into(),
                value: Json("{}".into()),
            },
            MetaCommand::SetParameter {
                vhost: None,
                component: String::new(),
                name: "g".into(),
                value: Json("1".into()),
            },
            MetaCommand::SetPolicy {
                vhost: "/".into(),
                name: "p".into(),
                policy: Json(
                    r#"{"pattern":".*","apply-to":"queues","priority":0,"definition":{"max-length":1}}"#
                        .into(),
                ),
                operator: false,
            },
        ],
    );
    let v = a.broker.vhost("/").unwrap();
    assert!(v.policy(pigeon_broker::PolicyKind::Policy, "p").is_some());
    let snapshot = b.snapshot().unwrap();
    a.restore(&snapshot, &AppliedMarker::from_bytes(Vec::new()))
        .unwrap();
    let v = a.broker.vhost("/").unwrap();
    assert!(v.queue("kept.q").is_ok());
    assert!(v.exchange("kept.x").unwrap().bindings().is_empty());
    assert!(v.queue("gone.q").is_err());
    assert!(a.broker.parameters().get("/", "shovel", "s").is_none());
    assert!(a.broker.parameters().global("g").is_none());
    assert!(v.policy(pigeon_broker::PolicyKind::Policy, "p").is_none());
}

/// MQTT across the cluster: a persistent MQTT session's queue is its node's own (declared by
/// the node of its connection, not through the log): a snapshot does not carry it, and
/// restoring another node's snapshot does not delete it or its bindings.
#[test]
fn a_snapshot_neither_carries_nor_deletes_a_nodes_mqtt_session_queues() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = applier(dir_a.path());
    let b = applier(dir_b.path());
    let durable = || QueueOptions {
        durable: true,
        ..QueueOptions::default()
    };
    for (node, client) in [(&a, "on-a"), (&b, "on-b")] {
        let v = node.broker.vhost("/").unwrap();
        let name = format!("mqtt-session-{client}");
        let q = v.declare_queue(&name, false, durable(), 0).unwrap().queue;
        v.bind(
            "amq.topic",
            pigeon_broker::Destination::Queue(q),
            "sensors.#",
            pigeon_broker::Table::new(),
        )
        .unwrap();
    }
    let snapshot = b.snapshot().unwrap();
    let text = String::from_utf8_lossy(&snapshot);
    assert!(!text.contains("mqtt-session-on-b"), "{text}");
    a.restore(&snapshot, &AppliedMarker::from_bytes(Vec::new()))
        .unwrap();
    let v = a.broker.vhost("/").unwrap();
    assert!(v.queue("mqtt-session-on-a").is_ok());
    assert!(v.queue("mqtt-session-on-b").is_err());
    let bound = v
        .exchange("amq.topic")
        .unwrap()
        .bindings()
        .iter()
        .any(|b| b.routing_key == "sensors.#");
    assert!(bound, "the session's binding is kept");
}
