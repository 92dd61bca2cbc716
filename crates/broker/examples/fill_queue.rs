//! Fills a durable queue of a stopped broker's data directory with persistent messages, fast
//! (no network), to measure how long the next start takes to recover them.
//!
//! ```text
//! pigeon serve --data-dir DIR ...   # once, then stop it: creates vhost '/' and its user
//! cargo run --release -p pigeon-broker --example fill_queue -- DIR COUNT [BYTES] [QUEUE] [MAX_PRIORITY]
//! ```
//!
//! The messages are what an AMQP client publishing with `delivery_mode` 2 to the default
//! exchange leaves in the log: properties encoded as AMQP basic properties (flags word
//! `0x1000`, delivery mode 2), so the real server decodes them at restart. With
//! `MAX_PRIORITY`, the queue is a priority queue (`x-max-priority`) and message `i` has
//! priority `i * 7 % (MAX_PRIORITY + 1)` (flags `0x1800`, delivery mode 2, priority), so the
//! levels interleave in the log.

#![allow(clippy::unwrap_used)] // an example: a failure should stop it loudly

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use pigeon_broker::message::{Death, MessageMeta, Properties, PropertiesCodec, PropertiesView};
use pigeon_broker::queue::{PagingLimits, QueueOptions};
use pigeon_broker::{Broker, Message};
use pigeon_store::{Store, StoreOptions};

/// AMQP basic properties with only `delivery_mode` = 2.
const PERSISTENT: &[u8] = &[0x10, 0x00, 0x02];

/// AMQP basic properties with `delivery_mode` = 2 and `priority` = `p`.
fn persistent_with_priority(p: u8) -> Bytes {
    Bytes::from(vec![0x18, 0x00, 0x02, p])
}

/// Just enough of the AMQP codec for these messages: persistent, and a priority if any.
struct Persistent;

impl PropertiesCodec for Persistent {
    fn view(&self, _: &Bytes) -> PropertiesView {
        PropertiesView::default()
    }
    fn meta(&self, raw: &Bytes) -> MessageMeta {
        MessageMeta {
            persistent: true,
            priority: (raw.first() == Some(&0x18)).then(|| raw.get(3).copied().unwrap_or(0)),
            ..MessageMeta::default()
        }
    }
    fn dead_lettered(&self, raw: &Bytes, _: &Death) -> Bytes {
        raw.clone()
    }
}

static CODEC: Persistent = Persistent;

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .expect("usage: fill_queue DIR COUNT [BYTES] [QUEUE]"),
    );
    let count: u64 = args.next().expect("COUNT").parse().unwrap();
    let size: usize = args.next().map_or(1024, |s| s.parse().unwrap());
    let queue = args.next().unwrap_or_else(|| "restart-bench".to_owned());
    let max_priority: Option<u8> = args.next().map(|s| s.parse().unwrap());
    let store = Arc::new(Store::open(&dir, StoreOptions::default()).unwrap());
    let (broker, recovered) = Broker::open(Arc::clone(&store), &CODEC, PagingLimits::default())
        .expect("the data directory opens");
    println!(
        "opened with {} messages in {} ms",
        recovered.messages,
        recovered.duration.as_millis()
    );
    let vhost = broker
        .vhost("/")
        .expect("vhost '/': start and stop `pigeon serve` on the directory first");
    let arguments = pigeon_broker::value::Table(
        max_priority
            .map(|p| {
                (
                    "x-max-priority".to_owned(),
                    pigeon_broker::value::Value::Int(i64::from(p)),
                )
            })
            .into_iter()
            .collect(),
    );
    let options = QueueOptions {
        durable: true,
        arguments,
        ..QueueOptions::default()
    };
    let q = vhost
        .declare_queue(&queue, false, options, 0)
        .unwrap()
        .queue;
    let body = Bytes::from(vec![b'x'; size]);
    let levels = max_priority.map(|p| u64::from(p) + 1);
    let props: Vec<Bytes> = match levels {
        Some(n) => (0..n).map(|p| persistent_with_priority(p as u8)).collect(),
        None => vec![Bytes::from_static(PERSISTENT)],
    };
    let started = Instant::now();
    for i in 0..count {
        let message = Message::new(
            Bytes::new(),
            &queue,
            Properties::new(
                props[levels.map_or(0, |n| (i * 7 % n) as usize)].clone(),
                &CODEC,
            ),
            body.clone(),
            0,
        );
        q.enqueue(message);
        if i % 1_000_000 == 999_999 {
            store.sync().unwrap();
            println!(
                "{} messages, {:.1} s",
                i + 1,
                started.elapsed().as_secs_f64()
            );
        }
    }
    store.sync().unwrap();
    println!(
        "{count} messages of {size} B in queue '{queue}' in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(q);
    drop(vhost);
    drop(broker);
    match Arc::try_unwrap(store) {
        Ok(store) => store.close().unwrap(),
        Err(_) => println!("the store is still shared; it closes with the process"),
    }
}
