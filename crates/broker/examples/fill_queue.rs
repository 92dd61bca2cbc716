//! Fills a durable queue of a stopped broker's data directory with persistent messages, fast
//! (no network), to measure how long the next start takes to recover them.
//!
//! ```text
//! pigeon serve --data-dir DIR ...   # once, then stop it: creates vhost '/' and its user
//! cargo run --release -p pigeon-broker --example fill_queue -- DIR COUNT [BYTES] [QUEUE]
//! ```
//!
//! The messages are what an AMQP client publishing with `delivery_mode` 2 to the default
//! exchange leaves in the log: properties encoded as AMQP basic properties (flags word
//! `0x1000`, delivery mode 2), so the real server decodes them at restart.

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

/// Just enough of the AMQP codec for these messages: persistent, nothing else.
struct Persistent;

impl PropertiesCodec for Persistent {
    fn view(&self, _: &Bytes) -> PropertiesView {
        PropertiesView::default()
    }
    fn meta(&self, _: &Bytes) -> MessageMeta {
        MessageMeta {
            persistent: true,
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
    let options = QueueOptions {
        durable: true,
        ..QueueOptions::default()
    };
    let q = vhost
        .declare_queue(&queue, false, options, 0)
        .unwrap()
        .queue;
    let body = Bytes::from(vec![b'x'; size]);
    let props = Bytes::from_static(PERSISTENT);
    let started = Instant::now();
    for i in 0..count {
        let message = Message::new(
            Bytes::new(),
            &queue,
            Properties::new(props.clone(), &CODEC),
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
