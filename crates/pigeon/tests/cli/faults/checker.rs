//! What the clients saw, and the properties it must have (docs/clustering.md, "Guarantees"):
//!
//! - every confirmed message was delivered at least once (no lost confirmed write);
//! - nothing was delivered that was never published (no phantom or corrupted message);
//! - a message delivered more than once was redelivered: every delivery after its first
//!   carries `redelivered` (duplicates only as redeliveries: the publisher never resends
//!   under the same id, so a duplicate can only come from the queue);
//!
//! and of the metadata: every node ends with identical definitions, and a change tried on a
//! minority failed (the client was told) and is nowhere after healing.
//!
//! A published message that was neither confirmed nor refused (the connection died first) may
//! or may not be delivered: that is Jepsen's "indeterminate" outcome (its total-queue
//! checker's "recovered" when delivered), counted, not checked. So is a nacked one: a nack
//! sent because the write did not commit within `write_timeout_ms` is not a definite failure.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// One queue's history, shared by its clients.
#[derive(Default)]
pub struct History {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Every id handed to `basic.publish` (recorded before the publish).
    published: BTreeSet<u64>,
    confirmed: BTreeSet<u64>,
    nacked: BTreeSet<u64>,
    /// Each delivery: (id, redelivered), in the order the consumers saw them.
    deliveries: Vec<(u64, bool)>,
    /// Bodies that are not an id.
    garbage: Vec<String>,
}

/// What a check found, for the test's output (printed through `Debug`).
#[derive(Debug)]
#[allow(dead_code)] // read through Debug only
pub struct Summary {
    pub published: usize,
    pub confirmed: usize,
    pub nacked: usize,
    pub delivered: usize,
    pub deliveries: usize,
    pub redelivered: usize,
    /// Published, neither confirmed nor nacked, yet delivered: indeterminate, allowed.
    pub indeterminate_delivered: usize,
    /// Nacked, yet delivered: a quorum queue's nack after `write_timeout_ms` is not a
    /// definite failure (the entry may still commit), so this is allowed and counted.
    pub nacked_delivered: usize,
}

impl History {
    pub fn new() -> Arc<History> {
        Arc::new(History::default())
    }

    pub fn published(&self, id: u64) {
        self.inner.lock().unwrap().published.insert(id);
    }

    pub fn confirmed(&self, id: u64) {
        self.inner.lock().unwrap().confirmed.insert(id);
    }

    pub fn nacked(&self, id: u64) {
        self.inner.lock().unwrap().nacked.insert(id);
    }

    pub fn delivered(&self, body: &[u8], redelivered: bool) {
        let mut inner = self.inner.lock().unwrap();
        match std::str::from_utf8(body).ok().and_then(|s| s.parse().ok()) {
            Some(id) => inner.deliveries.push((id, redelivered)),
            None => inner
                .garbage
                .push(String::from_utf8_lossy(body).into_owned()),
        }
    }

    pub fn confirmed_count(&self) -> usize {
        self.inner.lock().unwrap().confirmed.len()
    }

    /// Confirmed ids not delivered yet.
    pub fn missing(&self) -> usize {
        let inner = self.inner.lock().unwrap();
        let delivered: BTreeSet<u64> = inner.deliveries.iter().map(|d| d.0).collect();
        inner.confirmed.difference(&delivered).count()
    }

    /// Checks the properties; the error lists every violation.
    pub fn check(&self, what: &str) -> Result<Summary, String> {
        let inner = self.inner.lock().unwrap();
        let mut problems = Vec::new();
        let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
        let mut not_flagged = Vec::new();
        for &(id, redelivered) in &inner.deliveries {
            let count = seen.entry(id).or_default();
            *count += 1;
            if *count > 1 && !redelivered {
                not_flagged.push(id);
            }
        }
        let delivered: BTreeSet<u64> = seen.keys().copied().collect();
        let lost: Vec<u64> = inner.confirmed.difference(&delivered).copied().collect();
        if !lost.is_empty() {
            problems.push(format!(
                "{} confirmed messages never delivered (lost): {:?}",
                lost.len(),
                head(&lost)
            ));
        }
        let phantom: Vec<u64> = delivered.difference(&inner.published).copied().collect();
        if !phantom.is_empty() || !inner.garbage.is_empty() {
            problems.push(format!(
                "delivered but never published: {:?} {:?}",
                head(&phantom),
                inner.garbage.iter().take(5).collect::<Vec<_>>()
            ));
        }
        if !not_flagged.is_empty() {
            problems.push(format!(
                "{} deliveries of an already delivered message without the redelivered flag: {:?}",
                not_flagged.len(),
                head(&not_flagged)
            ));
        }
        let nacked_and_confirmed: Vec<u64> = inner
            .nacked
            .intersection(&inner.confirmed)
            .copied()
            .collect();
        if !nacked_and_confirmed.is_empty() {
            problems.push(format!(
                "both confirmed and nacked: {:?}",
                head(&nacked_and_confirmed)
            ));
        }
        let summary = Summary {
            published: inner.published.len(),
            confirmed: inner.confirmed.len(),
            nacked: inner.nacked.len(),
            delivered: delivered.len(),
            deliveries: inner.deliveries.len(),
            redelivered: inner.deliveries.iter().filter(|d| d.1).count(),
            indeterminate_delivered: delivered
                .iter()
                .filter(|id| !inner.confirmed.contains(id) && !inner.nacked.contains(id))
                .count(),
            nacked_delivered: delivered
                .iter()
                .filter(|id| inner.nacked.contains(id))
                .count(),
        };
        eprintln!("{what}: {summary:?}");
        if problems.is_empty() {
            Ok(summary)
        } else {
            Err(format!("{what}: {}\n{summary:?}", problems.join("\n")))
        }
    }
}

fn head(ids: &[u64]) -> &[u64] {
    &ids[..ids.len().min(20)]
}

/// A node's `GET /api/definitions` in a form that two nodes can be compared by: the
/// replicated parts only, each list sorted. The default user's password hash is left out:
/// each node creates it at its own start, with its own salt (docs/clustering.md, "What stays
/// local"); every other user's hash is compared.
pub fn normalize_definitions(d: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for key in [
        "vhosts",
        "users",
        "permissions",
        "topic_permissions",
        "parameters",
        "global_parameters",
        "policies",
        "exchanges",
        "queues",
        "bindings",
    ] {
        let mut items: Vec<Value> = d[key]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|mut v| {
                if key == "users" && v["name"] == "guest" {
                    if let Some(o) = v.as_object_mut() {
                        o.remove("password_hash");
                        o.remove("hashing_algorithm");
                    }
                }
                v
            })
            .collect();
        items.sort_by_key(|v| v.to_string());
        out.insert(key.to_string(), Value::Array(items));
    }
    Value::Object(out)
}

/// Whether the normalized definitions name a queue, or a vhost.
pub fn has_queue(defs: &Value, name: &str) -> bool {
    defs["queues"]
        .as_array()
        .is_some_and(|l| l.iter().any(|q| q["name"] == name))
}

pub fn has_vhost(defs: &Value, name: &str) -> bool {
    defs["vhosts"]
        .as_array()
        .is_some_and(|l| l.iter().any(|v| v["name"] == name))
}
