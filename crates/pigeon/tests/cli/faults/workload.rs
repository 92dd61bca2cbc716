//! The clients of a fault test: publishers with confirms and consumers with manual acks on
//! one queue, each going round the nodes: a client whose connection fails, whose publish is
//! nacked twice in a row or not confirmed in time, or whose consumer gets nothing for a while
//! (a node in a minority serves nothing new) connects to the next node, as an application with
//! a list of node addresses does. Every body is a unique id; the history records it.

use super::checker::History;
use super::{bounded, Cluster};
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How long a client waits to connect, for a confirm, or for an ack to be written.
const CLIENT_WAIT: Duration = Duration::from_secs(8);
/// A consumer that gets nothing for this long tries the next node.
const IDLE: Duration = Duration::from_secs(4);

/// Running clients of one queue.
pub struct Workload {
    urls: Arc<Vec<String>>,
    queue: String,
    pub history: Arc<History>,
    next_id: Arc<AtomicU64>,
    stop_publishing: watch::Sender<bool>,
    stop_consuming: watch::Sender<bool>,
    publishers: Vec<JoinHandle<()>>,
    consumers: Vec<JoinHandle<()>>,
    pace: Duration,
}

impl Workload {
    /// Ids start at `first` (so that several workloads' ids never collide).
    pub fn new(urls: Vec<String>, queue: &str, first: u64, pace: Duration) -> Workload {
        Workload {
            urls: Arc::new(urls),
            queue: queue.to_string(),
            history: History::new(),
            next_id: Arc::new(AtomicU64::new(first)),
            stop_publishing: watch::channel(false).0,
            stop_consuming: watch::channel(false).0,
            publishers: Vec::new(),
            consumers: Vec::new(),
            pace,
        }
    }

    /// A publisher starting at node `start`.
    pub fn publisher(&mut self, start: usize) {
        let task = tokio::spawn(publish(
            self.urls.clone(),
            self.queue.clone(),
            self.history.clone(),
            self.next_id.clone(),
            self.stop_publishing.subscribe(),
            start,
            self.pace,
        ));
        self.publishers.push(task);
    }

    /// A consumer starting at node `start`.
    pub fn consumer(&mut self, start: usize) {
        let task = tokio::spawn(consume(
            self.urls.clone(),
            self.queue.clone(),
            self.history.clone(),
            self.stop_consuming.subscribe(),
            start,
        ));
        self.consumers.push(task);
    }

    /// Waits until `more` messages beyond those confirmed now are confirmed: the cluster
    /// makes progress.
    pub async fn progress(&self, more: usize, what: &str, cluster: &Cluster) {
        let target = self.history.confirmed_count() + more;
        let reached = tokio::time::timeout(Duration::from_secs(90), async {
            while self.history.confirmed_count() < target {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        if reached.is_err() {
            panic!(
                "{}: no {more} more confirms within 90 s ({what}); {} confirmed\n{}",
                self.queue,
                self.history.confirmed_count(),
                cluster.logs()
            );
        }
    }

    /// Stops the publishers (each finishes the publish it waits for).
    pub async fn stop_publishing(&mut self) {
        let _ = self.stop_publishing.send(true);
        for task in self.publishers.drain(..) {
            bounded("the publishers to stop", 30, task).await.unwrap();
        }
    }

    /// Waits until every confirmed message was delivered (at most `secs`), then stops the
    /// consumers.
    pub async fn drain(&mut self, secs: u64) {
        let done = tokio::time::timeout(Duration::from_secs(secs), async {
            while self.history.missing() > 0 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await;
        let _ = self.stop_consuming.send(true);
        for task in self.consumers.drain(..) {
            bounded("the consumers to stop", 30, task).await.unwrap();
        }
        if done.is_err() {
            eprintln!(
                "{}: {} confirmed messages still not delivered after {secs} s",
                self.queue,
                self.history.missing()
            );
        }
    }
}

async fn connect(url: &str) -> Option<Connection> {
    tokio::time::timeout(
        CLIENT_WAIT,
        Connection::connect(url, ConnectionProperties::default()),
    )
    .await
    .ok()?
    .ok()
}

async fn close(conn: Connection) {
    let _ = tokio::time::timeout(Duration::from_secs(1), conn.close(200, "bye".into())).await;
}

async fn publish(
    urls: Arc<Vec<String>>,
    queue: String,
    history: Arc<History>,
    next_id: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
    start: usize,
    pace: Duration,
) {
    let mut node = start;
    while !*stop.borrow() {
        let url = &urls[node % urls.len()];
        node += 1;
        let Some(conn) = connect(url).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let channel = match conn.create_channel().await {
            Ok(ch)
                if ch
                    .confirm_select(ConfirmSelectOptions::default())
                    .await
                    .is_ok() =>
            {
                ch
            }
            _ => {
                close(conn).await;
                continue;
            }
        };
        let mut nacks = 0;
        while !*stop.borrow() {
            let id = next_id.fetch_add(1, Ordering::Relaxed);
            history.published(id);
            let body = id.to_string();
            let outcome = tokio::time::timeout(CLIENT_WAIT, async {
                channel
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        body.as_bytes(),
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?
                    .await
            })
            .await;
            match outcome {
                Ok(Ok(Confirmation::Ack(_))) => {
                    history.confirmed(id);
                    nacks = 0;
                }
                Ok(Ok(Confirmation::Nack(_))) => {
                    history.nacked(id);
                    nacks += 1;
                    if nacks >= 2 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                // An error or no answer in time: indeterminate; try the next node.
                _ => break,
            }
            tokio::time::sleep(pace).await;
        }
        close(conn).await;
    }
}

async fn consume(
    urls: Arc<Vec<String>>,
    queue: String,
    history: Arc<History>,
    mut stop: watch::Receiver<bool>,
    start: usize,
) {
    let mut node = start;
    while !*stop.borrow() {
        let url = &urls[node % urls.len()];
        node += 1;
        let Some(conn) = connect(url).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let consumer = tokio::time::timeout(CLIENT_WAIT, async {
            let ch = conn.create_channel().await?;
            ch.basic_qos(20, BasicQosOptions::default()).await?;
            ch.basic_consume(
                queue.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
        })
        .await;
        let Ok(Ok(mut consumer)) = consumer else {
            close(conn).await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        loop {
            let next = tokio::select! {
                _ = stop.changed() => break,
                next = tokio::time::timeout(IDLE, consumer.next()) => next,
            };
            let Ok(Some(Ok(delivery))) = next else {
                break;
            };
            history.delivered(&delivery.data, delivery.redelivered);
            let acked =
                tokio::time::timeout(CLIENT_WAIT, delivery.acker.ack(BasicAckOptions::default()))
                    .await;
            if !matches!(acked, Ok(Ok(_))) {
                break;
            }
        }
        close(conn).await;
    }
}
