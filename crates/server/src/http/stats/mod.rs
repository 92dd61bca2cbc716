//! Message statistics with rates, as RabbitMQ's management plugin shows them.
//!
//! The counters already exist where the messages pass: relaxed atomics on channels,
//! connections, exchanges and the broker-wide [`GlobalCounters`], and plain integers a queue
//! changes under the lock it takes anyway. Nothing here touches the per-message path. A
//! sampler task, started with the management listener, reads them every
//! `collect_statistics_interval` (RabbitMQ's default: 5 s) into small fixed rings
//! ([`ring::Ring`]), one per object; the API reads counts live and computes rates from the
//! rings when asked (`rabbit_mgmt_stats`: the rate is the last increment per second).
//!
//! Memory stays bounded: a ring is allocated once at its full size; objects that disappear
//! are dropped at the next sample. Broker-wide and per-vhost rings keep 605 s (RabbitMQ's
//! finest `global` retention tier, `{605, 5}`); per-object rings (queues, exchanges,
//! connections, channels) keep the 60 s the management UI charts by default
//! (`?msg_rates_age=60&msg_rates_incr=5`), about 1.5 KB per queue.
//!
//! Files: `ring.rs` (the rings, rates and sample lists), `values.rs` (which counters each
//! object has, in ring order), `api.rs` (each endpoint's statistics), `render.rs` (RabbitMQ's JSON: `message_stats`,
//! `<field>_details`), `node.rs` (the node's figures for `/api/nodes`).

pub(crate) mod api;
mod conns;
pub(crate) mod node;
pub(crate) mod render;
pub(crate) mod ring;
pub(crate) mod values;

use super::Http;
use conns::Connections;
use parking_lot::RwLock;
use ring::{Clock, Range, Ring};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;
use values::{CHANNEL, CHURN, CONNECTION, EXCHANGE, MSG, NODE, QUEUE, TOTALS, VHOST};

/// Seconds that broker-wide and per-vhost rings cover (RabbitMQ's first `global` tier).
const GLOBAL_AGE_MS: u64 = 605_000;
/// Seconds that per-object rings cover (the UI's default chart range).
const OBJECT_AGE_MS: u64 = 60_000;
/// The most samples any ring keeps, whatever the interval (a short test interval).
const MAX_SAMPLES: usize = 121;

/// An object the sampler follows: held weakly (its allocation cannot be reused while held,
/// so its address stays its identity), dropped when it was not seen at the last sample.
pub(crate) struct Tracked<T, const F: usize> {
    weak: Weak<T>,
    seen: u64,
    pub ring: Ring<F>,
}

/// Every ring.
pub(crate) struct Tables {
    tick: u64,
    pub overview: Ring<MSG>,
    pub queue_totals: Ring<TOTALS>,
    pub churn: Ring<CHURN>,
    pub node: Ring<NODE>,
    pub vhosts: HashMap<usize, Tracked<pigeon_broker::VHost, VHOST>>,
    pub queues: HashMap<usize, Tracked<pigeon_broker::Queue, QUEUE>>,
    pub exchanges: HashMap<usize, Tracked<pigeon_broker::Exchange, EXCHANGE>>,
    pub connections: Connections,
    pub channels: HashMap<String, ChannelRing>,
    /// The timestamp of the last sample.
    pub ts: u64,
    /// The sampler's interval and per-object ring size, for rings rendered from flat samples.
    interval_ms: u64,
    object_cap: usize,
}

/// A ring of `cap` with a sample of `v` every interval from `since` (or as far back as the
/// ring reaches) up to `ts`, excluded: the samples an object would have had before its ring
/// was allocated.
fn backfilled<const F: usize>(
    since: u64,
    ts: u64,
    interval_ms: u64,
    cap: usize,
    v: [u64; F],
) -> Ring<F> {
    let mut ring = Ring::new(cap);
    let span = interval_ms * (cap as u64).saturating_sub(1);
    let mut at = since.max(ts.saturating_sub(span));
    while at < ts {
        ring.push(at, v);
        at += interval_ms;
    }
    ring
}

/// A channel's samples. The ring is allocated at the first sample with a counter above 0,
/// with the zero samples it would have had until then: the counters only grow, and nothing is
/// rendered from the ring while they are all 0, so an idle channel (most of them, with many
/// connections) costs a map entry instead of a 1.2 KB ring (docs/performance.md, "Idle
/// connections").
pub(crate) struct ChannelRing {
    seen: u64,
    /// When it was first sampled (Unix ms, aligned to the interval).
    since: u64,
    pub ring: Option<Ring<CHANNEL>>,
}

/// The sampler's state, shared with the handlers.
pub(crate) struct Sampler {
    pub interval_ms: u64,
    global_cap: usize,
    object_cap: usize,
    tables: RwLock<Tables>,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn cap(age_ms: u64, interval_ms: u64) -> usize {
    usize::try_from(age_ms / interval_ms.max(1) + 1)
        .unwrap_or(MAX_SAMPLES)
        .clamp(2, MAX_SAMPLES)
}

/// Pushes `v` into the tracked ring of `obj`, creating it if new.
fn track<T, const F: usize>(
    map: &mut HashMap<usize, Tracked<T, F>>,
    obj: &Arc<T>,
    tick: u64,
    cap: usize,
    ts: u64,
    v: [u64; F],
) {
    let key = Arc::as_ptr(obj) as usize;
    let entry = map.entry(key).or_insert_with(|| Tracked {
        weak: Arc::downgrade(obj),
        seen: tick,
        ring: Ring::new(cap),
    });
    entry.seen = tick;
    entry.ring.push(ts, v);
}

impl Sampler {
    /// A sampler reading every `interval_ms`.
    pub fn new(interval_ms: u64) -> Sampler {
        let interval_ms = interval_ms.max(1);
        let (global_cap, object_cap) = (
            cap(GLOBAL_AGE_MS, interval_ms),
            cap(OBJECT_AGE_MS, interval_ms),
        );
        Sampler {
            interval_ms,
            global_cap,
            object_cap,
            tables: RwLock::new(Tables {
                tick: 0,
                overview: Ring::new(global_cap),
                queue_totals: Ring::new(global_cap),
                churn: Ring::new(global_cap),
                node: Ring::new(global_cap),
                vhosts: HashMap::new(),
                queues: HashMap::new(),
                exchanges: HashMap::new(),
                connections: Connections::default(),
                channels: HashMap::new(),
                ts: 0,
                interval_ms,
                object_cap,
            }),
        }
    }

    /// The rings, for reading (held only while a response is built; the sampler takes the
    /// write side once per interval, briefly).
    pub fn read(&self) -> parking_lot::RwLockReadGuard<'_, Tables> {
        self.tables.read()
    }

    /// The time now, for rendering.
    pub fn clock(&self) -> Clock {
        Clock {
            now_ms: unix_ms(),
            interval_ms: self.interval_ms,
        }
    }

    /// Reads every counter once and pushes a sample. The objects are read first, without the
    /// rings' lock; the lock is taken only to push.
    fn sample(&self, http: &Http) {
        let ts = unix_ms() / self.interval_ms * self.interval_ms;
        let state = &http.state;
        let mut vhosts = Vec::new();
        let mut queues = Vec::new();
        let mut exchanges = Vec::new();
        let mut totals = [0u64; TOTALS];
        let mut churn_queues = [0u64; 3];
        let (connections, traffic) = state.registry.traffic();
        for v in state.broker.vhosts() {
            if v.is_deleted() {
                continue;
            }
            let mut vv = [0u64; VHOST];
            for q in v.queues() {
                let qv = values::queue(&q.stats());
                values::add_queue_to_vhost(&mut vv, &qv);
                queues.push((q, qv));
            }
            for x in std::iter::once(Arc::clone(v.default_exchange())).chain(v.exchanges()) {
                let xv = values::exchange(&x);
                vv[values::PUBLISH] += xv[values::PUBLISH_IN];
                exchanges.push((x, xv));
            }
            values::add_traffic_to_vhost(&mut vv, v.name(), &traffic);
            for (t, i) in totals.iter_mut().zip(values::LENGTHS_IN_VHOST) {
                *t += vv[i];
            }
            for (c, n) in churn_queues.iter_mut().zip(values::queue_churn(&v)) {
                *c += n;
            }
            vhosts.push((v, vv));
        }
        let channels = state.registry.channels();
        let overview = values::global(&state.registry);
        let churn = values::churn(&state.registry, churn_queues);
        let node = node::sample(http);

        let mut t = self.tables.write();
        t.tick += 1;
        t.ts = ts;
        let tick = t.tick;
        t.overview.push(ts, overview);
        t.queue_totals.push(ts, totals);
        t.churn.push(ts, churn);
        t.node.push(ts, node);
        for (v, vv) in &vhosts {
            track(&mut t.vhosts, v, tick, self.global_cap, ts, *vv);
        }
        for (q, qv) in &queues {
            track(&mut t.queues, q, tick, self.object_cap, ts, *qv);
        }
        for (x, xv) in &exchanges {
            track(&mut t.exchanges, x, tick, self.object_cap, ts, *xv);
        }
        let object_cap = self.object_cap;
        let interval_ms = self.interval_ms;
        t.connections
            .sample(connections, ts, interval_ms, object_cap);
        for c in &channels {
            let v = values::channel(c);
            if !t.channels.contains_key(&c.name) {
                let e = ChannelRing {
                    seen: tick,
                    since: ts,
                    ring: None,
                };
                t.channels.insert(c.name.clone(), e);
            }
            let Some(e) = t.channels.get_mut(&c.name) else {
                continue;
            };
            e.seen = tick;
            if e.ring.is_none() && v.iter().any(|&x| x > 0) {
                e.ring = Some(backfilled(
                    e.since,
                    ts,
                    interval_ms,
                    object_cap,
                    [0; CHANNEL],
                ));
            }
            if let Some(ring) = e.ring.as_mut() {
                ring.push(ts, v);
            }
        }
        t.vhosts.retain(|_, e| e.seen == tick);
        t.queues.retain(|_, e| e.seen == tick);
        t.exchanges.retain(|_, e| e.seen == tick);
        t.channels.retain(|_, e| e.seen == tick);
    }
}

impl Tables {
    /// The ring of `obj` in `map`, if the sampler has seen this very object.
    pub fn ring_of<'a, T, const F: usize>(
        map: &'a HashMap<usize, Tracked<T, F>>,
        obj: &Arc<T>,
    ) -> Option<&'a Ring<F>> {
        map.get(&(Arc::as_ptr(obj) as usize))
            .filter(|e| e.weak.strong_count() > 0)
            .map(|e| &e.ring)
    }
}

/// Samples until shutdown. The first sample is taken at once, so that rates exist one
/// interval after start.
pub(crate) async fn run(http: Arc<Http>) {
    let mut shutdown = http.state.shutdown.clone();
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_millis(http.stats.interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let sampled = Arc::clone(&http);
                // Reading 100,000 queues takes a while: off the async workers.
                if tokio::task::spawn_blocking(move || sampled.stats.sample(&sampled))
                    .await
                    .is_err()
                {
                    tracing::warn!("statistics sample failed");
                }
            }
            () = &mut stop => return,
        }
    }
}

/// RabbitMQ's statistics query parameters (`rabbit_mgmt_util:range/1`, `disable_stats`,
/// `enable_queue_totals`): each `*_age` / `*_incr` pair, in seconds, asks for sample lists.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct StatsQuery {
    msg_rates_age: Option<String>,
    msg_rates_incr: Option<String>,
    lengths_age: Option<String>,
    lengths_incr: Option<String>,
    data_rates_age: Option<String>,
    data_rates_incr: Option<String>,
    disable_stats: Option<String>,
    enable_queue_totals: Option<String>,
}

/// What rendering needs: the clock and the ranges asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub clock: Clock,
    pub msg: Option<Range>,
    pub lengths: Option<Range>,
    pub data: Option<Range>,
}

fn range(age: &Option<String>, incr: &Option<String>) -> Result<Option<Range>, String> {
    let (Some(age), Some(incr)) = (age, incr) else {
        return Ok(None);
    };
    match (age.parse::<u64>(), incr.parse::<u64>()) {
        (Ok(a), Ok(i)) if i > 0 => Ok(Some(Range {
            age_ms: a.saturating_mul(1000),
            incr_ms: i.saturating_mul(1000),
        })),
        // RabbitMQ: `invalid_range_parameters`, 400.
        _ => Err(format!("invalid range parameters: age {age}, incr {incr}")),
    }
}

impl StatsQuery {
    /// The rendering context, or 400 for ranges that are not whole numbers.
    pub fn ctx(&self, sampler: &Sampler) -> super::ApiResult<Ctx> {
        let bad = super::ApiError::bad_request;
        Ok(Ctx {
            clock: sampler.clock(),
            msg: range(&self.msg_rates_age, &self.msg_rates_incr).map_err(bad)?,
            lengths: range(&self.lengths_age, &self.lengths_incr).map_err(bad)?,
            data: range(&self.data_rates_age, &self.data_rates_incr).map_err(bad)?,
        })
    }

    /// `disable_stats=true`: no statistics at all (RabbitMQ's fast listing).
    pub fn disable_stats(&self) -> bool {
        self.disable_stats.as_deref() == Some("true")
    }

    /// `enable_queue_totals=true`: with `disable_stats`, keep the message counts.
    pub fn enable_queue_totals(&self) -> bool {
        self.enable_queue_totals.as_deref() == Some("true")
    }
}
