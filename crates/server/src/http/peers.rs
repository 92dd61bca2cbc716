//! The management API across the cluster (issue 13, item 6): what this node asks the other
//! nodes, and what it answers them.
//!
//! RabbitMQ's management API shows the whole cluster from any node: `/api/nodes` has every
//! node's statistics, `/api/overview` counts every node's connections and messages, and
//! `/api/connections` lists every node's connections (the management agents on each node feed
//! one cluster-wide view). Here a node asks its peers at request time, over the cluster link
//! (`pigeon_cluster::Cluster::ops_others`, a `Request::Ops` whose bytes are an [`Ask`] in
//! JSON): each peer answers from its own state with the same code that answers locally. The
//! questions go to every peer at once, each bounded by [`PEER_TIMEOUT`]; a peer that does not
//! answer in time is left out of the result (logged at debug), so a listing is never held up
//! by a dead node for longer than that.
//!
//! The caller's name and tags travel with the question, and the peer filters what it answers
//! with them exactly as for a local caller (users and permissions are replicated, so both
//! nodes agree on what the user may see). The statistics ranges (`msg_rates_age`...) are this
//! node's only: peers answer with current values and rates, no sample lists.

use super::stats::StatsQuery;
use super::{ApiError, ApiResult, Caller, Http, Shared};
use axum::http::StatusCode;
use pigeon_cluster::{MemberStatus, OpsHandler};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long a question to one peer may take (they are asked in parallel).
pub(super) const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a peer may take to drain or revive (closing its connections and handing the
/// metadata group's leadership over take an election timeout or two).
const MAINTENANCE_TIMEOUT: Duration = Duration::from_secs(60);

/// The caller, as it crosses the link.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct WireCaller {
    name: String,
    tags: Vec<String>,
}

impl From<&Caller> for WireCaller {
    fn from(c: &Caller) -> WireCaller {
        WireCaller {
            name: c.name.clone(),
            tags: c.tags.clone(),
        }
    }
}

impl WireCaller {
    fn caller(self) -> Caller {
        Caller {
            name: self.name,
            tags: self.tags,
        }
    }
}

/// A question to a peer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(super) enum Ask {
    /// Its `/api/nodes` entry.
    Node,
    /// Its share of `/api/overview` (`overview::share`).
    Overview { caller: WireCaller },
    /// Its connections the caller may see.
    Connections { caller: WireCaller },
    /// Its channels the caller may see.
    Channels { caller: WireCaller },
    /// Its consumers the caller may see.
    Consumers { caller: WireCaller },
    /// One of its connections (404 if it has none of that name).
    Connection { caller: WireCaller, name: String },
    /// Close one of its connections (404 if it has none of that name).
    CloseConnection {
        caller: WireCaller,
        name: String,
        reason: String,
    },
    /// Put itself in maintenance mode (`drain: true`) or out of it.
    Maintenance { drain: bool },
    // Quorum queue membership (quorummembers): `cluster/quorum/membership.rs` sends it.
    /// A question about its quorum queues (membership change, leadership move).
    Quorum {
        ask: crate::cluster::quorum::membership::QuorumAsk,
    },
}

impl Ask {
    /// The caller's question about its connections, channels...
    pub(super) fn overview(caller: &Caller) -> Ask {
        Ask::Overview {
            caller: caller.into(),
        }
    }
}

/// A peer's answer: the JSON the local endpoint would give, or its error.
#[derive(Debug, Serialize, Deserialize)]
enum Answer {
    Ok(Value),
    Err { status: u16, reason: String },
}

/// What answers the peers on this node. Weak: the cluster (in the server's state) holds it,
/// and it must not keep the API's state alive after shutdown.
struct Answering(Weak<Http>);

impl OpsHandler for Answering {
    fn handle(&self, request: Vec<u8>) -> pigeon_cluster::net::BoxFuture<Result<Vec<u8>, String>> {
        let http = self.0.upgrade();
        Box::pin(async move {
            let http = http.ok_or("the management API has stopped")?;
            let ask: Ask = serde_json::from_slice(&request)
                .map_err(|e| format!("undecodable operations request: {e}"))?;
            let answer = match answer(http, ask).await {
                Ok(v) => Answer::Ok(v),
                Err(e) => Answer::Err {
                    status: e.status.as_u16(),
                    reason: e.reason,
                },
            };
            serde_json::to_vec(&answer).map_err(|e| e.to_string())
        })
    }
}

/// Makes this node answer its peers' questions (when clustered).
pub(super) fn register(http: &Shared) {
    if let Some(cluster) = &http.state.cluster {
        cluster.set_ops_handler(Arc::new(Answering(Arc::downgrade(http))));
    }
}

/// A peer's question, answered from this node's state as the local endpoints answer.
async fn answer(http: Shared, ask: Ask) -> ApiResult<Value> {
    let ctx = StatsQuery::default().ctx(&http.stats)?;
    match ask {
        Ask::Node => Ok(super::overview::node_json(&http, &ctx)),
        Ask::Overview { caller } => Ok(super::overview::share(&http, &caller.caller(), &ctx)),
        Ask::Connections { caller } => Ok(Value::Array(super::connections::local_connections(
            &http,
            &caller.caller(),
            &ctx,
        ))),
        Ask::Channels { caller } => Ok(Value::Array(super::connections::local_channels(
            &http,
            &caller.caller(),
            &ctx,
        ))),
        Ask::Consumers { caller } => Ok(super::connections::local_consumers(
            &http,
            &caller.caller(),
            None,
        )),
        Ask::Connection { caller, name } => {
            super::connections::local_connection(&http, &caller.caller(), &name, &ctx)
        }
        Ask::CloseConnection {
            caller,
            name,
            reason,
        } => {
            super::connections::close_local(&http, &caller.caller(), &name, &reason).await?;
            Ok(Value::Null)
        }
        Ask::Maintenance { drain } => {
            let state = Arc::clone(&http.state);
            if drain {
                Ok(crate::cluster::maintenance::drain(&state).await.json())
            } else {
                Ok(crate::cluster::maintenance::revive(&state).await.json())
            }
        }
        Ask::Quorum { ask } => {
            let Some(cluster) = http.state.cluster.as_ref() else {
                return Err(ApiError::not_found());
            };
            crate::cluster::quorum::membership::answer(cluster, ask)
                .await
                .map_err(|e| ApiError {
                    // The status as is (409: not the leader): the asker tells them apart.
                    status: StatusCode::from_u16(e.status())
                        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    error: "quorum",
                    reason: e.reason(),
                })
        }
    }
}

/// A peer's error as this node's API answers it.
fn api_error(status: u16, reason: String) -> ApiError {
    match status {
        404 => ApiError::not_found(),
        401 => ApiError::not_authorised(reason),
        400 => ApiError::bad_request(reason),
        503 => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "service_unavailable",
            reason,
        },
        _ => ApiError::internal(reason),
    }
}

/// One member's answer: `None` when it did not answer (down, slow, or not clustered).
pub(super) type Reply = Option<ApiResult<Value>>;

fn decode(member: &str, answer: Result<Vec<u8>, pigeon_cluster::ClusterError>) -> Reply {
    let bytes = match answer {
        Ok(bytes) => bytes,
        Err(e) => {
            tracing::debug!(node = %member, error = %e, "cluster: a peer did not answer the management API's question");
            return None;
        }
    };
    match serde_json::from_slice::<Answer>(&bytes) {
        Ok(Answer::Ok(v)) => Some(Ok(v)),
        Ok(Answer::Err { status, reason }) => Some(Err(api_error(status, reason))),
        Err(e) => {
            tracing::debug!(node = %member, error = %e, "cluster: undecodable answer from a peer");
            None
        }
    }
}

/// Asks every other member of the cluster at once; their replies, in member order. Empty on
/// a single node.
pub(super) async fn ask_others(http: &Http, ask: &Ask) -> Vec<(MemberStatus, Reply)> {
    ask_others_within(http, ask, PEER_TIMEOUT).await
}

async fn ask_others_within(
    http: &Http,
    ask: &Ask,
    timeout: Duration,
) -> Vec<(MemberStatus, Reply)> {
    let Some(cluster) = &http.state.cluster else {
        return Vec::new();
    };
    let Ok(body) = serde_json::to_vec(ask) else {
        return Vec::new();
    };
    cluster
        .ops_others(&body, timeout)
        .await
        .into_iter()
        .map(|(m, answer)| {
            let reply = decode(&m.name, answer);
            (m, reply)
        })
        .collect()
}

/// The values the other members answered with (those that did not, or answered an error,
/// are left out).
pub(super) async fn answered(http: &Http, ask: &Ask) -> Vec<Value> {
    ask_others(http, ask)
        .await
        .into_iter()
        .filter_map(|(_, reply)| reply.and_then(Result::ok))
        .collect()
}

/// Asks the member called `node`; `None` if there is none, or it did not answer.
pub(super) async fn ask_node(http: &Http, node: &str, ask: &Ask) -> Option<(MemberStatus, Reply)> {
    let cluster = http.state.cluster.as_ref()?;
    let member = cluster
        .status()
        .members
        .into_iter()
        .find(|m| m.name == node)?;
    let body = serde_json::to_vec(ask).ok()?;
    let timeout = match ask {
        Ask::Maintenance { .. } => MAINTENANCE_TIMEOUT,
        _ => PEER_TIMEOUT,
    };
    let answer = cluster.ops_call(&member.addr, body, timeout).await;
    let reply = decode(&member.name, answer);
    Some((member, reply))
}

/// Adds `other`'s numbers into `into`, key by key, objects recursively (the cluster's totals
/// and rates from each node's); other values (sample lists, texts) stay `into`'s.
pub(super) fn add_into(into: &mut Value, other: &Value) {
    match (into, other) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                match a.get_mut(k) {
                    Some(mine) => add_into(mine, v),
                    None => {
                        a.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (a @ Value::Number(_), Value::Number(b)) => {
            let sum = match (a.as_u64(), b.as_u64()) {
                (Some(x), Some(y)) => Value::from(x.saturating_add(y)),
                _ => {
                    let x = a.as_f64().unwrap_or(0.0);
                    let y = b.as_f64().unwrap_or(0.0);
                    serde_json::Number::from_f64(x + y).map_or(Value::Null, Value::Number)
                }
            };
            *a = sum;
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn totals_add_up_key_by_key() {
        let mut a = json!({"connections": 2, "rate": {"rate": 1.5}, "samples": [1], "name": "a"});
        let b =
            json!({"connections": 3, "rate": {"rate": 0.5}, "samples": [2], "name": "b", "new": 1});
        add_into(&mut a, &b);
        assert_eq!(
            a,
            json!({"connections": 5, "rate": {"rate": 2.0}, "samples": [1], "name": "a", "new": 1})
        );
    }

    #[test]
    fn an_ask_reads_back() {
        let ask = Ask::CloseConnection {
            caller: WireCaller {
                name: "guest".into(),
                tags: vec!["administrator".into()],
            },
            name: "c".into(),
            reason: "r".into(),
        };
        let bytes = serde_json::to_vec(&ask).unwrap();
        let back: Ask = serde_json::from_slice(&bytes).unwrap();
        assert!(matches!(back, Ask::CloseConnection { name, .. } if name == "c"));
    }
}
