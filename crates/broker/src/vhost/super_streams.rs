//! Super streams (partitioned streams), laid out as RabbitMQ lays them out
//! (rabbit_stream_manager `create_super_stream`, `partitions`, `route`):
//!
//! ```text
//! exchange NAME (direct, durable, x-super-stream: true)
//!   --"0"--> stream NAME-0   (binding argument x-stream-partition-order: 0)
//!   --"1"--> stream NAME-1   (x-stream-partition-order: 1)
//!   ...
//! ```
//! The partitions and binding keys come from the caller (the stream protocol's
//! CreateSuperStream, `pigeon ctl add_super_stream`, the management API): `NAME-0 ..
//! NAME-(N-1)` with keys `"0" .. "N-1"` for N partitions, or `NAME-KEY` with key `KEY` for
//! binding keys ([`super_stream_layout`]). Nothing else marks a super stream: its partitions
//! are whatever stream queues its exchange is bound to, in the order of the bindings'
//! `x-stream-partition-order`, so a publisher over AMQP 0-9-1 reaches a partition by
//! publishing to the exchange with the partition's key, and a super stream made by hand with
//! `exchange.declare` and `queue.bind` works as well.

use super::VHost;
use crate::durable;
use crate::error::BrokerError;
use crate::exchange::{Binding, Destination, Exchange, ExchangeKind};
use crate::message::{Message, OpaqueProperties, Properties};
use crate::queue::{Queue, QueueOptions};
use crate::value::{Table, Value};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use thiserror::Error;

/// The exchange argument that marks a super stream's exchange (rabbit_stream_manager
/// `declare_super_stream_exchange`).
pub const SUPER_STREAM_ARG: &str = "x-super-stream";

/// The binding argument giving a partition's index (rabbit_stream_manager
/// `add_super_stream_binding`, rabbit_stream_utils `sort_partitions`).
pub const PARTITION_ORDER_ARG: &str = "x-stream-partition-order";

/// RabbitMQ's default `rabbitmq_stream.max_super_stream_partitions`
/// (rabbit_stream_utils `?MAX_SUPER_STREAM_PARTITIONS`).
pub const MAX_SUPER_STREAM_PARTITIONS: usize = 1000;

/// Why a super stream operation was refused. The variants are RabbitMQ's reasons, each with
/// the stream protocol response code RabbitMQ answers it with (rabbit_stream_reader).
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SuperStreamError {
    /// The request is malformed (partition and key counts differ, duplicate or reserved
    /// names, too many partitions): RabbitMQ's `{validation_failed, Msg}`, answered
    /// PRECONDITION_FAILED (0x11) by the stream protocol, 400 by the management API.
    #[error("{0}")]
    ValidationFailed(String),
    /// The exchange or a partition queue exists already: `{reference_already_exists, Msg}`,
    /// answered STREAM_ALREADY_EXISTS (0x05).
    #[error("{0}")]
    AlreadyExists(String),
    /// No exchange has this name: `stream_not_found`, answered STREAM_DOES_NOT_EXIST (0x02).
    #[error("{0}")]
    NotFound(String),
    /// A partition could not be created (bad stream arguments, no data directory, the vhost
    /// being deleted): what RabbitMQ's `create` refuses, which its reader answers
    /// INTERNAL_ERROR (0x0e). Nothing of the super stream is left behind.
    #[error("{0}")]
    Internal(String),
}

/// The partition streams and binding keys of a super stream as `rabbitmq-streams
/// add_super_stream` (and the management API, and stream clients) make them:
/// `partitions: Some(n)` gives `NAME-0 .. NAME-(n-1)` with keys `"0" .. "n-1"`
/// (rabbit_stream_utils `streams_from_partitions`, `routing_keys`); otherwise each binding key
/// `K` gives the stream `NAME-K` (`streams_from_binding_keys`).
pub fn super_stream_layout(
    name: &str,
    partitions: Option<usize>,
    binding_keys: &[String],
) -> (Vec<String>, Vec<String>) {
    match partitions {
        Some(n) => (0..n)
            .map(|i| (format!("{name}-{i}"), i.to_string()))
            .unzip(),
        None => binding_keys
            .iter()
            .map(|k| (format!("{name}-{k}"), k.clone()))
            .unzip(),
    }
}

/// Splits a comma-separated `--binding-keys` list: each key trimmed, empty ones dropped
/// (rabbit_stream_utils `binding_keys`).
pub fn split_binding_keys(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .collect()
}

/// RabbitMQ's name check for streams and super streams (rabbit_stream_utils
/// `enforce_correct_name`, from rabbit_channel): line breaks are removed, and an empty name or
/// one starting with `amq.` is refused.
pub fn correct_stream_name(name: &str) -> Option<String> {
    let stripped: String = name.chars().filter(|c| *c != '\n' && *c != '\r').collect();
    if stripped.is_empty() || stripped.starts_with("amq.") {
        return None;
    }
    Some(stripped)
}

/// The queue arguments of a stream created through the stream protocol (Create, and each
/// partition of CreateSuperStream), from the protocol's argument map (rabbit_stream_manager
/// `stream_queue_arguments` and `validate_stream_queue_arguments`): `max-length-bytes`,
/// `max-age`, `stream-max-segment-size-bytes`, `initial-cluster-size`, `queue-leader-locator`
/// and `stream-filter-size-bytes` become their `x-` queue arguments, beside `x-queue-type:
/// stream`; other keys are ignored. Values may be strings (the protocol's) or integers. An
/// unusable value is refused with the reason (RabbitMQ: `validation_failed`).
pub fn stream_queue_arguments(arguments: &Table) -> Result<Table, String> {
    let mut out = vec![(
        "x-queue-type".to_string(),
        Value::Str(Bytes::from_static(b"stream")),
    )];
    let int = |key: &str, v: &Value| -> Result<i64, String> {
        match v {
            Value::Str(_) => v.as_str().and_then(|s| s.trim().parse().ok()),
            _ => v.as_i64(),
        }
        .ok_or_else(|| format!("invalid value for '{key}': not an integer"))
    };
    let text = |key: &str, v: &Value| -> Result<String, String> {
        match v {
            Value::Str(_) => v.as_str().map(str::to_string),
            Value::Int(i) => Some(i.to_string()),
            _ => None,
        }
        .ok_or_else(|| format!("invalid value for '{key}': not a string"))
    };
    for (key, value) in arguments.iter() {
        let converted = match key {
            "max-length-bytes" | "stream-max-segment-size-bytes" => Value::Int(int(key, value)?),
            "initial-cluster-size" => {
                let n = int(key, value)?;
                if n <= 0 {
                    return Err(format!("invalid value for '{key}': {n}"));
                }
                Value::Int(n)
            }
            "stream-filter-size-bytes" => {
                let n = int(key, value)?;
                if !(16..=255).contains(&n) {
                    return Err(format!("invalid value for '{key}': {n}"));
                }
                Value::Int(n)
            }
            "max-age" => Value::Str(Bytes::from(text(key, value)?)),
            "queue-leader-locator" => {
                // rabbit_queue_location `queue_leader_locators()`: `random` and
                // `least-leaders` are the deprecated names of `balanced`, still accepted (the
                // Rust stream client sends `least-leaders` by default).
                let locator = text(key, value)?;
                if !["client-local", "balanced", "random", "least-leaders"]
                    .contains(&locator.as_str())
                {
                    return Err(format!("invalid value for '{key}': {locator}"));
                }
                Value::Str(Bytes::from(locator))
            }
            _ => continue,
        };
        out.retain(|(k, _)| k.strip_prefix("x-") != Some(key));
        out.push((format!("x-{key}"), converted));
    }
    Ok(Table(out))
}

/// The order of a binding, from its `x-stream-partition-order` (an integer, or a string
/// holding one: RabbitMQ coerces it).
fn partition_order(binding: &Binding) -> Option<i64> {
    let v = binding.arguments.get(PARTITION_ORDER_ARG)?;
    match v {
        Value::Str(_) => v.as_str().and_then(|s| s.trim().parse().ok()),
        _ => v.as_i64(),
    }
}

fn str_value(s: &str) -> Value {
    Value::Str(Bytes::copy_from_slice(s.as_bytes()))
}

impl VHost {
    /// Creates the super stream `name` (the stream protocol's CreateSuperStream,
    /// rabbit_stream_manager `create_super_stream`): a durable direct exchange `name` with
    /// `x-super-stream: true`, one stream per entry of `partitions` (queue arguments from
    /// `arguments`, the stream protocol's map, see [`stream_queue_arguments`], with
    /// `queue-leader-locator: balanced` by default as RabbitMQ sets it), and a binding from
    /// the exchange to `partitions[i]` with key `binding_keys[i]` and
    /// `x-stream-partition-order: i`.
    ///
    /// All or nothing: everything RabbitMQ checks first (same number of partitions and keys,
    /// distinct and valid names, at most [`MAX_SUPER_STREAM_PARTITIONS`], no exchange and no
    /// queue with these names) is checked before anything is created, and a partition that
    /// cannot be created undoes what was made. The vhost's `max-queues` is the caller's to
    /// check first ([`VHost::check_super_stream_queue_limit`]), as are permissions.
    pub fn create_super_stream(
        &self,
        name: &str,
        partitions: Vec<String>,
        binding_keys: Vec<String>,
        arguments: Table,
    ) -> Result<(), SuperStreamError> {
        use SuperStreamError::*;
        // rabbit_stream_manager `validate_super_stream_creation`, in its order.
        if partitions.len() != binding_keys.len() {
            return Err(ValidationFailed(
                "There must be the same number of partitions and binding keys".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        if !partitions.iter().all(|p| seen.insert(p.as_str())) {
            return Err(ValidationFailed(format!(
                "Duplicate partition names found {}",
                partitions.join(", ")
            )));
        }
        let mut names = Vec::with_capacity(partitions.len());
        for p in &partitions {
            match correct_stream_name(p) {
                Some(n) => names.push(n),
                None => {
                    return Err(ValidationFailed(format!(
                        "{p} is not a correct partition names"
                    )))
                }
            }
        }
        if partitions.len() > MAX_SUPER_STREAM_PARTITIONS {
            return Err(ValidationFailed(format!(
                "The partition number must not exceed {MAX_SUPER_STREAM_PARTITIONS}"
            )));
        }
        let Some(exchange_name) = correct_stream_name(name) else {
            return Err(ValidationFailed(format!(
                "{name} is not a correct name for a super stream"
            )));
        };
        if self.exchange(&exchange_name).is_ok() {
            return Err(AlreadyExists(format!(
                "there is already an exchange named {exchange_name}"
            )));
        }
        if let Some(q) = names.iter().find(|q| self.queue(q).is_ok()) {
            return Err(AlreadyExists(format!("there is already a queue named {q}")));
        }
        // rabbit_stream_manager `default_super_stream_arguments`, then `create`'s checks:
        // done before anything exists, so that nothing needs undoing for them.
        let mut arguments = arguments;
        if arguments.get("queue-leader-locator").is_none() {
            arguments
                .0
                .push(("queue-leader-locator".into(), str_value("balanced")));
        }
        let queue_arguments = stream_queue_arguments(&arguments)
            .map_err(|e| Internal(format!("validation_failed: {e}")))?;
        self.refuse_if_deleted()
            .map_err(|e| Internal(e.to_string()))?;

        let exchange = self.create_super_stream_exchange(&exchange_name)?;
        let mut created: Vec<Arc<Queue>> = Vec::with_capacity(names.len());
        for partition in &names {
            match self.create_partition(partition, &queue_arguments) {
                Ok(q) => created.push(q),
                Err(e) => {
                    tracing::warn!(vhost = %self.name, super_stream = %exchange_name,
                        partition = %partition, error = %e, "cannot create super stream partition");
                    for q in &created {
                        self.remove_queue(q);
                    }
                    self.drop_super_stream_exchange(&exchange);
                    return Err(e);
                }
            }
        }
        for (order, (q, key)) in created.iter().zip(&binding_keys).enumerate() {
            let binding = Binding {
                destination: Destination::Queue(Arc::clone(q)),
                routing_key: key.clone(),
                arguments: Table(vec![(
                    PARTITION_ORDER_ARG.to_string(),
                    Value::Int(i64::try_from(order).unwrap_or(i64::MAX)),
                )]),
            };
            self.record_binding(&exchange, &binding, true);
            exchange.bind(binding);
        }
        tracing::debug!(vhost = %self.name, super_stream = %exchange_name,
            partitions = created.len(), "super stream created");
        Ok(())
    }

    /// Refuses a super stream of `partitions` streams that would take the vhost over its
    /// `max-queues` `limit` (rabbit_vhost_limit `would_exceed_queue_limit`, with RabbitMQ's
    /// text). The caller, who knows the vhost's limits, calls it before
    /// [`VHost::create_super_stream`].
    pub fn check_super_stream_queue_limit(
        &self,
        name: &str,
        partitions: usize,
        limit: Option<u64>,
    ) -> Result<(), SuperStreamError> {
        let Some(limit) = limit else {
            return Ok(());
        };
        if (self.queue_count() + partitions) as u64 > limit {
            return Err(SuperStreamError::ValidationFailed(format!(
                "Cannot declare super stream {name:?} with {partitions} partition(s) because \
                 queue limit {limit} in vhost '{}' is reached",
                self.name
            )));
        }
        Ok(())
    }

    /// Deletes the super stream `name` (DeleteSuperStream, rabbit_stream_manager
    /// `delete_super_stream`): its exchange, then every stream bound to it. Only a missing
    /// exchange is an error; what cannot be deleted is logged and skipped, as RabbitMQ does.
    pub fn delete_super_stream(&self, name: &str) -> Result<(), SuperStreamError> {
        let partitions = self.super_stream_partitions(name)?;
        self.delete_super_stream_partitions(name, &partitions);
        Ok(())
    }

    /// [`VHost::delete_super_stream`] with the partitions the caller read (and checked its
    /// permissions on) before: RabbitMQ's `delete_super_stream/4`, which closes the window
    /// where a new binding would add a stream the caller may not delete.
    pub fn delete_super_stream_partitions(&self, name: &str, partitions: &[String]) {
        match correct_stream_name(name) {
            Some(n) => {
                if let Err(e) = self.delete_exchange(&n, false) {
                    tracing::warn!(vhost = %self.name, super_stream = %name, error = %e,
                        "cannot delete the super stream's exchange");
                }
            }
            None => tracing::warn!(vhost = %self.name, super_stream = %name,
                "cannot delete the super stream's exchange: reserved name"),
        }
        for p in partitions {
            match self.queue(p) {
                Ok(q) if q.is_stream() => {
                    self.remove_queue(&q);
                }
                _ => tracing::warn!(vhost = %self.name, super_stream = %name, partition = %p,
                    "super stream partition not deleted: no such stream"),
            }
        }
    }

    /// The partitions of the super stream `name` (Partitions, rabbit_stream_manager
    /// `partitions`): the stream queues its exchange is bound to, ordered by the bindings'
    /// `x-stream-partition-order` (bindings without it last, in no particular order).
    pub fn super_stream_partitions(&self, name: &str) -> Result<Vec<String>, SuperStreamError> {
        let exchange = self.super_stream_exchange(name)?;
        let mut bindings: Vec<(Option<i64>, String)> = exchange
            .bindings()
            .iter()
            .filter_map(|b| match &b.destination {
                Destination::Queue(q) if q.is_stream() => {
                    Some((partition_order(b), q.name().to_string()))
                }
                _ => None,
            })
            .collect();
        // Ordered first by their order, then the others: `None` sorts after every `Some`.
        bindings.sort_by_key(|(order, _)| (order.is_none(), *order));
        Ok(bindings.into_iter().map(|(_, q)| q).collect())
    }

    /// The streams a message published to the super stream `name` with `routing_key` reaches
    /// (Route, rabbit_stream_manager `route`): the exchange routes a message with no
    /// properties (a direct exchange: the partitions bound with that key), keeping the stream
    /// queues. Empty when nothing matches (RabbitMQ's `no_route`).
    pub fn super_stream_route(
        &self,
        name: &str,
        routing_key: &str,
    ) -> Result<Vec<String>, SuperStreamError> {
        static NO_PROPERTIES: OpaqueProperties = OpaqueProperties;
        let exchange = self.super_stream_exchange(name)?;
        let probe = Message::new(
            &*exchange.name,
            routing_key,
            Properties::new(Bytes::new(), &NO_PROPERTIES),
            Bytes::new(),
            0,
        );
        Ok(self
            .route(&exchange, &probe)
            .iter()
            .filter(|q| q.is_stream())
            .map(|q| q.name().to_string())
            .collect())
    }

    /// The exchange of the super stream `name` (any exchange of that name, as RabbitMQ's
    /// `lookup_or_die`), or RabbitMQ's `stream_not_found`.
    fn super_stream_exchange(&self, name: &str) -> Result<Arc<Exchange>, SuperStreamError> {
        if name.is_empty() {
            return Err(SuperStreamError::NotFound(format!(
                "super stream '' in vhost '{}' does not exist",
                self.name
            )));
        }
        self.exchange(name).map_err(|_| {
            SuperStreamError::NotFound(format!(
                "super stream '{name}' in vhost '{}' does not exist",
                self.name
            ))
        })
    }

    /// Declares the super stream's exchange, refusing one that appeared since the checks
    /// (under the exchange map's write lock, so two creations cannot both succeed).
    fn create_super_stream_exchange(&self, name: &str) -> Result<Arc<Exchange>, SuperStreamError> {
        let arguments = Table(vec![(SUPER_STREAM_ARG.to_string(), Value::Bool(true))]);
        let x = Arc::new(Exchange::new(
            name,
            ExchangeKind::Direct,
            true,
            false,
            false,
            arguments,
        ));
        let ae = self
            .policies
            .read()
            .for_exchange(name)
            .and_then(|p| p.get_str("alternate-exchange"))
            .map(str::to_string);
        x.set_policy_alternate(ae);
        {
            let mut exchanges = self.exchanges.write();
            if exchanges.contains_key(name) {
                return Err(SuperStreamError::AlreadyExists(format!(
                    "there is already an exchange named {name}"
                )));
            }
            exchanges.insert(Arc::clone(&x.name), Arc::clone(&x));
        }
        if let Some(store) = &self.store {
            durable::put_exchange(store, &self.name, &x);
        }
        Ok(x)
    }

    /// Takes back an exchange [`VHost::create_super_stream_exchange`] made.
    fn drop_super_stream_exchange(&self, x: &Arc<Exchange>) {
        let mut exchanges = self.exchanges.write();
        if exchanges
            .get(&*x.name)
            .is_some_and(|cur| Arc::ptr_eq(cur, x))
        {
            exchanges.remove(&*x.name);
            if let Some(store) = &self.store {
                durable::delete_exchange(store, &self.name, &x.name);
                durable::delete_bindings_of(store, &self.name, durable::Entity::Exchange, &x.name);
            }
        }
    }

    /// Creates the partition stream `name`, refusing a queue of that name that appeared since
    /// the checks (RabbitMQ's `create` answers `reference_already_exists` for it).
    fn create_partition(
        &self,
        name: &str,
        arguments: &Table,
    ) -> Result<Arc<Queue>, SuperStreamError> {
        let me = self
            .me
            .upgrade()
            .ok_or_else(|| SuperStreamError::Internal(format!("vhost '{}' is gone", self.name)))?;
        let options = QueueOptions {
            durable: true,
            exclusive_owner: None,
            auto_delete: false,
            arguments: arguments.clone(),
        };
        let settings = self
            .queue_settings(name, arguments)
            .map_err(|e: BrokerError| SuperStreamError::Internal(e.to_string()))?;
        let queues = self.queues.write();
        if queues.contains_key(name) {
            return Err(SuperStreamError::AlreadyExists(format!(
                "there is already a queue named {name}"
            )));
        }
        self.queue_totals.declared.fetch_add(1, Ordering::Relaxed);
        self.declare_stream(queues, name.to_string(), options, settings, &me)
            .map(|declared| declared.queue)
            .map_err(|e| SuperStreamError::Internal(e.to_string()))
    }
}

#[cfg(test)]
#[path = "super_streams_tests.rs"]
mod tests;
