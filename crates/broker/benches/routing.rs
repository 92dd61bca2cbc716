//! Micro-benchmarks of routing: a topic exchange (the word trie) with 10 / 10,000 / 100,000
//! bindings with wildcards, a direct exchange, a fan-out of one key to 100 queues, and the cost
//! of binding and unbinding next to 10,000 existing bindings (what an MQTT SUBSCRIBE /
//! UNSUBSCRIBE pays on `amq.topic`).
//!
//! Run with `cargo bench -p pigeon-broker --bench routing`; results and their reading are in
//! docs/performance.md.

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pigeon_broker::{
    Binding, Destination, Exchange, ExchangeKind, Message, OpaqueProperties, Properties, Queue,
    QueueOptions, Table, VHost,
};
use std::hint::black_box;
use std::sync::Arc;

static CODEC: OpaqueProperties = OpaqueProperties;

struct Setup {
    vhost: Arc<VHost>,
    exchange: Arc<Exchange>,
    queues: Vec<Arc<Queue>>,
}

/// A vhost with `queues` queues and an exchange of `kind` (not registered in the vhost: routing
/// takes it by reference).
fn setup(kind: ExchangeKind, queues: usize) -> Setup {
    let vhost = VHost::new("/");
    let queues = (0..queues)
        .map(
            |i| match vhost.declare_queue(&format!("q{i}"), false, QueueOptions::default(), 1) {
                Ok(d) => d.queue,
                Err(e) => panic!("declare q{i}: {e}"),
            },
        )
        .collect();
    let exchange = Arc::new(Exchange::new(
        "bench",
        kind,
        false,
        false,
        false,
        Table::new(),
    ));
    Setup {
        vhost,
        exchange,
        queues,
    }
}

fn binding(queue: &Arc<Queue>, key: String) -> Binding {
    Binding {
        destination: Destination::Queue(Arc::clone(queue)),
        routing_key: key,
        arguments: Table::new(),
    }
}

/// Binding pattern number `i`: mostly exact device topics, with single-word and multi-word
/// wildcards mixed in, as MQTT subscriptions on `amq.topic` look.
fn topic_pattern(i: usize) -> String {
    match i % 10 {
        0..=5 => format!("dev.{i}.temp"),
        6 => format!("dev.{i}.*"),
        7 => format!("dev.*.{i}"),
        8 => format!("site.{}.#", i % 100),
        _ => format!("*.{i}.alarm"),
    }
}

/// A topic exchange with `n` bindings spread over at most 1,000 queues, plus two catch-alls
/// (`dev.#`, `*.*.temp`) so that a device key matches three bindings.
fn topic_setup(n: usize) -> Setup {
    let s = setup(ExchangeKind::Topic, n.clamp(1, 1000));
    for i in 0..n {
        let q = &s.queues[i % s.queues.len()];
        s.exchange.bind(binding(q, topic_pattern(i)));
    }
    s.exchange.bind(binding(&s.queues[0], "dev.#".into()));
    s.exchange.bind(binding(&s.queues[0], "*.*.temp".into()));
    s
}

fn message(x: &Exchange, key: &str) -> Message {
    Message::new(
        &*x.name,
        key,
        Properties::new(Bytes::new(), &CODEC),
        Bytes::from_static(b"0123456789abcdef"),
        0,
    )
}

fn topic_route(c: &mut Criterion) {
    let mut group = c.benchmark_group("broker/topic_route");
    group.throughput(Throughput::Elements(1));
    for n in [10usize, 10_000, 100_000] {
        // Built on first use, so that a filtered run does not pay for the big setups.
        let mut state = None;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            let (s, m) = state.get_or_insert_with(|| {
                let s = topic_setup(n);
                let m = message(&s.exchange, "dev.0.temp");
                (s, m)
            });
            assert!(!s.vhost.route(&s.exchange, m).is_empty());
            b.iter(|| black_box(s.vhost.route(&s.exchange, m)).len())
        });
    }
    group.finish();
}

fn topic_fanout(c: &mut Criterion) {
    let mut state = None;
    c.bench_function("broker/topic_route_fanout/100_queues_200_bindings", |b| {
        let (s, m) = state.get_or_insert_with(|| {
            let s = setup(ExchangeKind::Topic, 100);
            for q in &s.queues {
                s.exchange.bind(binding(q, "news.#".into()));
                s.exchange.bind(binding(q, "news.*".into()));
            }
            let m = message(&s.exchange, "news.sport");
            (s, m)
        });
        assert_eq!(s.vhost.route(&s.exchange, m).len(), 100);
        b.iter(|| black_box(s.vhost.route(&s.exchange, m)).len())
    });
}

fn direct_setup(n: usize) -> Setup {
    let s = setup(ExchangeKind::Direct, n.clamp(1, 1000));
    for i in 0..n {
        let q = &s.queues[i % s.queues.len()];
        s.exchange.bind(binding(q, format!("key-{i}")));
    }
    s
}

fn direct_route(c: &mut Criterion) {
    let mut group = c.benchmark_group("broker/direct_route");
    group.throughput(Throughput::Elements(1));
    for n in [10usize, 10_000] {
        let mut state = None;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            let (s, m) = state.get_or_insert_with(|| {
                let s = direct_setup(n);
                let m = message(&s.exchange, "key-7");
                (s, m)
            });
            assert_eq!(s.vhost.route(&s.exchange, m).len(), 1);
            b.iter(|| black_box(s.vhost.route(&s.exchange, m)).len())
        });
    }
    // The default exchange: a queue looked up by name (what `pigeon bench` publishes to).
    group.bench_function("default_exchange_1000_queues", |b| {
        let s = setup(ExchangeKind::Direct, 1000);
        let default = match s.vhost.exchange("") {
            Ok(x) => x,
            Err(e) => panic!("default exchange: {e}"),
        };
        let m = message(&default, "q7");
        assert_eq!(s.vhost.route(&default, &m).len(), 1);
        b.iter(|| black_box(s.vhost.route(&default, &m)).len())
    });
    group.finish();
}

fn bind_unbind(c: &mut Criterion) {
    let mut group = c.benchmark_group("broker/bind_unbind_next_to_10000");
    for kind in [ExchangeKind::Topic, ExchangeKind::Direct] {
        let mut state = None;
        group.bench_function(kind.as_str(), |b| {
            let (s, extra) = state.get_or_insert_with(|| {
                let s = match kind {
                    ExchangeKind::Topic => topic_setup(10_000),
                    _ => direct_setup(10_000),
                };
                let extra = binding(&s.queues[3], "sensors.*.humidity".into());
                (s, extra)
            });
            b.iter(|| {
                s.exchange.bind(extra.clone());
                assert!(s.exchange.unbind(extra));
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    topic_route,
    topic_fanout,
    direct_route,
    bind_unbind
);
criterion_main!(benches);
