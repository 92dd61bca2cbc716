//! Tests of `super_streams.rs`: the layout RabbitMQ makes, its refusals, routing, deletion and
//! recovery after a restart.

use super::*;
use crate::message::OpaqueProperties;
use crate::Broker;
use pigeon_store::{Store, StoreOptions, SyncMode};

static CODEC: OpaqueProperties = OpaqueProperties;

/// A directory removed when dropped (the broker crate has no tempfile).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!(
            "pigeon-superstream-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Opens (or reopens: a restart) a broker on `dir` and returns its vhost `/`.
fn open(dir: &TempDir) -> (Arc<Broker>, Arc<VHost>) {
    let options = StoreOptions {
        sync: SyncMode::Never,
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open(&dir.0, options).unwrap());
    let (broker, _) = Broker::open(store, &CODEC, Default::default()).unwrap();
    let vhost = match broker.vhost("/") {
        Some(v) => v,
        None => broker.add_vhost("/", Default::default()).unwrap(),
    };
    (broker, vhost)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn create_n(vhost: &VHost, name: &str, n: usize) -> Result<(), SuperStreamError> {
    let (partitions, keys) = super_stream_layout(name, Some(n), &[]);
    vhost.create_super_stream(name, partitions, keys, Table::new())
}

#[test]
fn partitions_make_a_direct_exchange_streams_and_ordered_bindings() {
    let dir = TempDir::new("layout");
    let (_broker, vhost) = open(&dir);
    create_n(&vhost, "invoices", 3).unwrap();

    let x = vhost.exchange("invoices").unwrap();
    assert_eq!(x.kind, ExchangeKind::Direct);
    assert!(x.durable && !x.auto_delete && !x.internal);
    assert_eq!(x.arguments.get(SUPER_STREAM_ARG), Some(&Value::Bool(true)));
    for i in 0..3 {
        let q = vhost.queue(&format!("invoices-{i}")).unwrap();
        assert!(q.is_stream());
        assert!(q.options().durable);
        assert_eq!(
            q.options().arguments.get_str("x-queue-leader-locator"),
            Some("balanced")
        );
        let b: Vec<Binding> = x
            .bindings()
            .into_iter()
            .filter(|b| matches!(&b.destination, Destination::Queue(d) if d.name() == q.name()))
            .collect();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].routing_key, i.to_string());
        assert_eq!(
            b[0].arguments.get(PARTITION_ORDER_ARG),
            Some(&Value::Int(i as i64))
        );
    }
    assert_eq!(
        vhost.super_stream_partitions("invoices").unwrap(),
        strings(&["invoices-0", "invoices-1", "invoices-2"])
    );
}

#[test]
fn binding_keys_name_the_partitions() {
    let dir = TempDir::new("keys");
    let (_broker, vhost) = open(&dir);
    let keys = split_binding_keys(" amer, emea ,,apac");
    assert_eq!(keys, strings(&["amer", "emea", "apac"]));
    let (partitions, keys) = super_stream_layout("regions", None, &keys);
    assert_eq!(
        partitions,
        strings(&["regions-amer", "regions-emea", "regions-apac"])
    );
    vhost
        .create_super_stream("regions", partitions.clone(), keys, Table::new())
        .unwrap();
    assert_eq!(
        vhost.super_stream_partitions("regions").unwrap(),
        partitions
    );
    assert_eq!(
        vhost.super_stream_route("regions", "emea").unwrap(),
        strings(&["regions-emea"])
    );
    assert!(vhost
        .super_stream_route("regions", "nowhere")
        .unwrap()
        .is_empty());
}

#[test]
fn route_matches_keys_as_a_direct_exchange() {
    let dir = TempDir::new("route");
    let (_broker, vhost) = open(&dir);
    create_n(&vhost, "s", 2).unwrap();
    assert_eq!(
        vhost.super_stream_route("s", "1").unwrap(),
        strings(&["s-1"])
    );
    assert_eq!(
        vhost.super_stream_route("s", "0").unwrap(),
        strings(&["s-0"])
    );
    assert!(vhost.super_stream_route("s", "2").unwrap().is_empty());
    // A classic queue bound with the same key is not a partition.
    let classic = vhost
        .declare_queue("classic", false, QueueOptions::default(), 1)
        .unwrap()
        .queue;
    vhost
        .bind("s", Destination::Queue(classic), "1", Table::new())
        .unwrap();
    assert_eq!(
        vhost.super_stream_route("s", "1").unwrap(),
        strings(&["s-1"])
    );
    assert_eq!(
        vhost.super_stream_partitions("s").unwrap(),
        strings(&["s-0", "s-1"])
    );
    assert!(matches!(
        vhost.super_stream_route("missing", "1"),
        Err(SuperStreamError::NotFound(_))
    ));
}

#[test]
fn partitions_follow_the_order_argument_not_the_binding_order() {
    let dir = TempDir::new("order");
    let (_broker, vhost) = open(&dir);
    // A super stream made by hand, bound last partition first, one order given as a string
    // and one binding without order (it goes last).
    vhost
        .declare_exchange(&crate::vhost::ExchangeDeclare {
            name: "h",
            kind: "direct",
            passive: false,
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: Table::new(),
        })
        .unwrap();
    let stream_args = stream_queue_arguments(&Table::new()).unwrap();
    let options = QueueOptions {
        durable: true,
        arguments: stream_args,
        ..QueueOptions::default()
    };
    for (q, order) in [
        ("h-c", None),
        ("h-b", Some(Value::Str(Bytes::from_static(b"1")))),
        ("h-a", Some(Value::Int(0))),
    ] {
        let q = vhost
            .declare_queue(q, false, options.clone(), 1)
            .unwrap()
            .queue;
        let arguments = Table(
            order
                .into_iter()
                .map(|o| (PARTITION_ORDER_ARG.to_string(), o))
                .collect(),
        );
        vhost
            .bind("h", Destination::Queue(q), "k", arguments)
            .unwrap();
    }
    assert_eq!(
        vhost.super_stream_partitions("h").unwrap(),
        strings(&["h-a", "h-b", "h-c"])
    );
}

#[test]
fn refusals_come_in_rabbitmq_order_and_create_nothing() {
    let dir = TempDir::new("refusals");
    let (_broker, vhost) = open(&dir);
    let err = vhost
        .create_super_stream("s", strings(&["s-0", "s-1"]), strings(&["0"]), Table::new())
        .unwrap_err();
    assert_eq!(
        err,
        SuperStreamError::ValidationFailed(
            "There must be the same number of partitions and binding keys".into()
        )
    );
    let err = vhost
        .create_super_stream(
            "s",
            strings(&["s-0", "s-0"]),
            strings(&["0", "1"]),
            Table::new(),
        )
        .unwrap_err();
    assert!(matches!(err, SuperStreamError::ValidationFailed(m) if m.starts_with("Duplicate")));
    let err = vhost
        .create_super_stream("s", strings(&["amq.s"]), strings(&["0"]), Table::new())
        .unwrap_err();
    assert!(matches!(err, SuperStreamError::ValidationFailed(_)));
    let err = vhost
        .create_super_stream("amq.s", strings(&["s-0"]), strings(&["0"]), Table::new())
        .unwrap_err();
    assert_eq!(
        err,
        SuperStreamError::ValidationFailed("amq.s is not a correct name for a super stream".into())
    );
    let err = create_n(&vhost, "big", MAX_SUPER_STREAM_PARTITIONS + 1).unwrap_err();
    assert_eq!(
        err,
        SuperStreamError::ValidationFailed("The partition number must not exceed 1000".into())
    );

    // An existing exchange, then an existing queue.
    create_n(&vhost, "taken", 1).unwrap();
    assert_eq!(
        create_n(&vhost, "taken", 1).unwrap_err(),
        SuperStreamError::AlreadyExists("there is already an exchange named taken".into())
    );
    vhost
        .declare_queue("other-1", false, QueueOptions::default(), 1)
        .unwrap();
    assert_eq!(
        create_n(&vhost, "other", 2).unwrap_err(),
        SuperStreamError::AlreadyExists("there is already a queue named other-1".into())
    );
    assert!(vhost.exchange("other").is_err());
    assert!(vhost.queue("other-0").is_err());
}

#[test]
fn bad_stream_arguments_leave_nothing_behind() {
    let dir = TempDir::new("badargs");
    let (_broker, vhost) = open(&dir);
    let queues = vhost.queue_count();
    for (key, value) in [
        ("initial-cluster-size", "0"),
        ("queue-leader-locator", "nowhere"),
        ("stream-filter-size-bytes", "300"),
        ("max-length-bytes", "lots"),
    ] {
        let arguments = Table(vec![(key.into(), str_value(value))]);
        let (p, k) = super_stream_layout("bad", Some(2), &[]);
        let err = vhost
            .create_super_stream("bad", p, k, arguments)
            .unwrap_err();
        assert!(
            matches!(err, SuperStreamError::Internal(_)),
            "{key}: {err:?}"
        );
    }
    // An x-max-age the stream refuses at declaration: the first partition is made, then
    // undone with the exchange.
    let arguments = Table(vec![("max-age".into(), str_value("forever"))]);
    let (p, k) = super_stream_layout("bad", Some(2), &[]);
    let err = vhost
        .create_super_stream("bad", p, k, arguments)
        .unwrap_err();
    assert!(matches!(err, SuperStreamError::Internal(_)), "{err:?}");
    assert!(vhost.exchange("bad").is_err());
    assert_eq!(vhost.queue_count(), queues);
}

#[test]
fn stream_arguments_are_converted_from_the_protocol_keys() {
    let arguments = Table(vec![
        ("max-length-bytes".into(), str_value("1000000")),
        ("max-age".into(), str_value("3600s")),
        ("stream-max-segment-size-bytes".into(), Value::Int(500_000)),
        ("queue-leader-locator".into(), str_value("client-local")),
        ("unknown".into(), str_value("ignored")),
    ]);
    let t = stream_queue_arguments(&arguments).unwrap();
    assert_eq!(t.get_str("x-queue-type"), Some("stream"));
    assert_eq!(t.get("x-max-length-bytes"), Some(&Value::Int(1_000_000)));
    assert_eq!(t.get_str("x-max-age"), Some("3600s"));
    assert_eq!(
        t.get("x-stream-max-segment-size-bytes"),
        Some(&Value::Int(500_000))
    );
    assert_eq!(t.get_str("x-queue-leader-locator"), Some("client-local"));
    assert!(t.get("unknown").is_none() && t.get("x-unknown").is_none());
}

#[test]
fn arguments_reach_every_partition() {
    let dir = TempDir::new("args");
    let (_broker, vhost) = open(&dir);
    let arguments = Table(vec![
        ("max-length-bytes".into(), str_value("20000000")),
        ("max-age".into(), str_value("1h")),
    ]);
    let (p, k) = super_stream_layout("r", Some(2), &[]);
    vhost.create_super_stream("r", p, k, arguments).unwrap();
    for q in ["r-0", "r-1"] {
        let a = vhost.queue(q).unwrap().options().arguments.clone();
        assert_eq!(a.get("x-max-length-bytes"), Some(&Value::Int(20_000_000)));
        assert_eq!(a.get_str("x-max-age"), Some("1h"));
    }
}

#[test]
fn queue_limit_is_checked_for_all_partitions() {
    let dir = TempDir::new("limit");
    let (_broker, vhost) = open(&dir);
    assert!(vhost.check_super_stream_queue_limit("s", 3, None).is_ok());
    assert!(vhost
        .check_super_stream_queue_limit("s", 3, Some(3))
        .is_ok());
    let err = vhost
        .check_super_stream_queue_limit("s", 4, Some(3))
        .unwrap_err();
    assert!(matches!(err, SuperStreamError::ValidationFailed(m) if m.contains("queue limit 3")));
}

#[test]
fn delete_removes_the_exchange_and_the_partitions() {
    let dir = TempDir::new("delete");
    let (_broker, vhost) = open(&dir);
    create_n(&vhost, "d", 3).unwrap();
    let classic = vhost
        .declare_queue("keep", false, QueueOptions::default(), 1)
        .unwrap()
        .queue;
    vhost
        .bind("d", Destination::Queue(classic), "0", Table::new())
        .unwrap();
    vhost.delete_super_stream("d").unwrap();
    assert!(vhost.exchange("d").is_err());
    for i in 0..3 {
        assert!(vhost.queue(&format!("d-{i}")).is_err());
    }
    // Only streams are partitions: a classic queue bound to it stays.
    assert!(vhost.queue("keep").is_ok());
    assert!(matches!(
        vhost.delete_super_stream("d"),
        Err(SuperStreamError::NotFound(_))
    ));
    // The names are free again.
    create_n(&vhost, "d", 1).unwrap();
}

#[test]
fn a_super_stream_survives_a_restart() {
    let dir = TempDir::new("restart");
    {
        let (_broker, vhost) = open(&dir);
        create_n(&vhost, "kept", 2).unwrap();
    }
    {
        let (_broker, vhost) = open(&dir);
        let x = vhost.exchange("kept").unwrap();
        assert_eq!(x.arguments.get(SUPER_STREAM_ARG), Some(&Value::Bool(true)));
        assert_eq!(
            vhost.super_stream_partitions("kept").unwrap(),
            strings(&["kept-0", "kept-1"])
        );
        assert_eq!(
            vhost.super_stream_route("kept", "1").unwrap(),
            strings(&["kept-1"])
        );
        vhost.delete_super_stream("kept").unwrap();
    }
    // (Every Arc of the first run is gone: an exchange held here would keep its bound
    // streams, and through them the store, open.)
    let (_broker, vhost) = open(&dir);
    assert!(vhost.exchange("kept").is_err());
    assert!(vhost.queue("kept-0").is_err());
}
