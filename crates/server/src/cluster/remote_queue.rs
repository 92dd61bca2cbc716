//! Classic queues through another node than their home (docs/clustering.md, "Classic queues
//! in a cluster"): `basic.get`, `queue.purge`, and the counts `queue.declare-ok` and
//! `/api/queues/{vhost}/{name}` show, for a queue homed elsewhere, are questions to the home
//! (the proxy here holds no message), as RabbitMQ's channel calls the queue's process on its
//! own node for each (rabbit_amqqueue `basic_get`, `purge`, `stat`); so are `queue.delete`'s
//! `if-empty` / `if-unused` checks (`amqp/remote_queue.rs`, `http/queues.rs`), and the
//! `/api/queues` lists ask each home once for all its queues in the list ([`Forwarder::counts_of`]).
//!
//! A question is a `ToNode::Query` sent at once on the node's connection to the home, after an
//! `Item::Flush` went through the per-peer batches (`forward.rs`): what this node forwarded
//! before the question (a publish on the same channel) has reached the home when it answers.
//! A message taken by a `basic.get` with acknowledgement is held at the home for the asking
//! node (`Forwarder::hold_for_get`) and settled by its sequence number, as a remote
//! consumer's deliveries are; given back if that node goes down.

use super::forward::{self, Forwarder, Item, Then};
use pigeon_broker::record::MessageRecordRef;
use pigeon_broker::{Queue, QueuedMessage};
use pigeon_cluster::ForwardError;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a question waits for the home's answer.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// A question about a queue homed on the receiver.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Query {
    /// `basic.get`.
    Get {
        vhost: String,
        queue: String,
        no_ack: bool,
    },
    /// `queue.purge`.
    Purge { vhost: String, queue: String },
    /// Its counts.
    Counts { vhost: String, queue: String },
    /// The counts of several queues homed on the receiver (`/api/queues`' lists), by vhost
    /// and name, in order. (Appended last: the older variants keep their wire tags.)
    CountsOf { queues: Vec<(String, String)> },
}

/// A message taken by a `basic.get` at the home.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Got {
    pub seq: u64,
    pub redelivered: bool,
    pub delivery_count: u32,
    /// Messages left in the queue.
    pub left: u32,
    #[serde(with = "serde_bytes")]
    pub record: Vec<u8>,
}

/// A queue's counts at its home.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct Counts {
    pub ready: u32,
    pub unacked: u32,
    pub consumers: u32,
    pub bytes: u64,
}

/// The home's answers.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Answer {
    /// To `Get`: the message, or none (get-empty).
    Got(Option<Got>),
    /// To `Purge`: how many messages it dropped.
    Purged(u32),
    /// To `Counts`.
    Counts(Counts),
    /// The queue is not (or no longer) homed on the receiver.
    NotHere,
    /// To `CountsOf`: each queue's counts, `None` for one not homed on the receiver.
    CountsOf(Vec<Option<Counts>>),
}

/// Why a question got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AskError {
    /// The home is down or cannot be reached (RabbitMQ's `{absent, Q, nodedown}`).
    #[error("home node '{0}' is down or inaccessible")]
    Down(String),
    /// The home does not have the queue (deleted meanwhile).
    #[error("the queue is not on its home node '{0}'")]
    NotHere(String),
}

impl Forwarder {
    /// Asks `queue`'s home (`node`) `query`, after what this node forwarded to it before.
    pub(crate) async fn ask(&self, node: &str, query: Query) -> Result<Answer, AskError> {
        let down = || AskError::Down(node.to_string());
        if !self.is_up(node) {
            return Err(down());
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.push(node, Item::Flush, Then::Flushed(tx));
        if !rx.await.unwrap_or(false) {
            return Err(down());
        }
        self.ask_now(node, query, ASK_TIMEOUT).await
    }

    /// Asks `node` `query` at once, without waiting for what this node forwarded to it before
    /// (a listing's counts need no order with publishes), within `timeout`.
    pub(crate) async fn ask_now(
        &self,
        node: &str,
        query: Query,
        timeout: Duration,
    ) -> Result<Answer, AskError> {
        let down = || AskError::Down(node.to_string());
        if !self.is_up(node) {
            return Err(down());
        }
        let cluster = self.cluster().cloned().ok_or_else(down)?;
        let body = postcard::to_stdvec(&forward::ToNode::Query(query)).map_err(|_| down())?;
        let bytes = match cluster.forward(node, body, timeout).await {
            Ok(b) => b,
            Err(ForwardError::Refused { reason, .. }) => {
                tracing::debug!(%node, %reason, "cluster: a question to a queue's home was refused");
                return Err(down());
            }
            Err(e) => {
                tracing::debug!(%node, "cluster: a question to a queue's home got no answer: {e}");
                return Err(down());
            }
        };
        match postcard::from_bytes::<forward::FromNode>(&bytes) {
            Ok(forward::FromNode::Answer(Answer::NotHere)) => Err(AskError::NotHere(node.into())),
            Ok(forward::FromNode::Answer(a)) => Ok(a),
            _ => Err(down()),
        }
    }

    /// [`Forwarder::ask`] about `proxy`'s counts at its home.
    pub(crate) async fn counts(&self, proxy: &Queue) -> Option<Counts> {
        let home = proxy.remote()?.node().to_string();
        let query = Query::Counts {
            vhost: proxy.vhost_name().to_string(),
            queue: proxy.name().to_string(),
        };
        match self.ask(&home, query).await {
            Ok(Answer::Counts(c)) => Some(c),
            _ => None,
        }
    }

    /// The counts of `proxies` (queues homed elsewhere) at their homes: one question per home,
    /// all homes at once, each given `timeout`. A queue whose home did not answer (down, slow,
    /// or no longer its home) is absent from the result.
    pub(crate) async fn counts_of(
        &self,
        proxies: &[Arc<Queue>],
        timeout: Duration,
    ) -> HashMap<(String, String), Counts> {
        let mut by_home: HashMap<String, Vec<(String, String)>> = HashMap::new();
        for q in proxies {
            if let Some(home) = q.remote() {
                by_home
                    .entry(home.node().to_string())
                    .or_default()
                    .push((q.vhost_name().to_string(), q.name().to_string()));
            }
        }
        let asks = by_home.into_iter().map(|(home, queues)| async move {
            let query = Query::CountsOf {
                queues: queues.clone(),
            };
            let answer = tokio::time::timeout(timeout, self.ask_now(&home, query, timeout)).await;
            match answer {
                Ok(Ok(Answer::CountsOf(counts))) if counts.len() == queues.len() => queues
                    .into_iter()
                    .zip(counts)
                    .filter_map(|(key, c)| Some((key, c?)))
                    .collect(),
                other => {
                    tracing::debug!(%home, "cluster: no counts from a home for a queue list: {other:?}");
                    Vec::new()
                }
            }
        });
        futures_util::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// A queue homed here, by vhost and name.
    fn homed_here(&self, vhost: &str, queue: &str) -> Option<Arc<Queue>> {
        self.broker
            .vhost(vhost)
            .and_then(|v| v.queue(queue).ok())
            .filter(|q| q.remote().is_none())
    }

    /// Answers a peer's question about a queue homed here.
    pub(super) fn answer(&self, from: &str, query: Query) -> Answer {
        let (vhost, queue) = match &query {
            Query::Get { vhost, queue, .. }
            | Query::Purge { vhost, queue }
            | Query::Counts { vhost, queue } => (vhost, queue),
            Query::CountsOf { queues } => {
                return Answer::CountsOf(
                    queues
                        .iter()
                        .map(|(v, q)| self.homed_here(v, q).map(|q| counts(&q)))
                        .collect(),
                )
            }
        };
        let Some(q) = self.homed_here(vhost, queue) else {
            return Answer::NotHere;
        };
        match query {
            Query::Get { no_ack, .. } => {
                let Some((m, left)) = q.get(no_ack) else {
                    return Answer::Got(None);
                };
                let record = MessageRecordRef::in_queue(&m.message, q.name(), 0)
                    .encode()
                    .to_vec();
                let got = Got {
                    seq: m.seq,
                    redelivered: m.redelivered,
                    delivery_count: m.delivery_count,
                    left,
                    record,
                };
                if !no_ack {
                    self.hold_for_get(from, &q, m);
                }
                Answer::Got(Some(got))
            }
            Query::Purge { .. } => Answer::Purged(q.purge()),
            Query::Counts { .. } => Answer::Counts(counts(&q)),
            Query::CountsOf { .. } => Answer::NotHere,
        }
    }
}

/// A queue's counts, as its home answers them.
fn counts(q: &Queue) -> Counts {
    Counts {
        ready: q.message_count(),
        unacked: q.unacked_count(),
        consumers: q.consumer_count(),
        bytes: q.queued_bytes() as u64,
    }
}

/// A message a `basic.get` took at the home, as this node's channel delivers it.
pub(crate) fn got_message(got: Got) -> Option<(QueuedMessage, u32)> {
    let message = forward::decode(got.record)?;
    Some((
        QueuedMessage {
            message,
            seq: got.seq,
            redelivered: got.redelivered,
            expires_at: None,
            delivery_count: got.delivery_count,
            persisted: false,
        },
        got.left,
    ))
}

/// The forwarder of `queue`'s node when `queue` is homed elsewhere.
pub(crate) fn remote(
    cluster: Option<&pigeon_cluster::Cluster>,
    queue: &Arc<Queue>,
) -> Option<(Arc<Forwarder>, String)> {
    let home = queue.remote()?.node().to_string();
    Some((Forwarder::of(cluster?)?, home))
}
