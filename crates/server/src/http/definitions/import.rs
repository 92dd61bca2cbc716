//! Applying a definitions document (see `definitions.rs` for the order and the rules). Runs
//! on a blocking thread: every user, vhost and permission is written to the store.
//!
//! On a clustered node an import through the API is a sequence of replicated commands
//! ([`Replicator`]), one per entity and in the document's order, proposed in batches (one log
//! entry, [`MetaCommand::Batch`], of up to [`BATCH`] commands, applied in order with each
//! one's checks): a section's batch is committed by a majority and applied here before the
//! next section is built (so that a parameter finds the vhost imported before it, a binding
//! its queue): every node ends with what was imported. Non-durable exchanges and queues and
//! bindings with a non-durable end stay on this node, as when declared over AMQP. A minority
//! stops the import at its first uncommitted batch with a 503; a refusal stops it at the
//! refused entity (the batch's later entities are not applied) with its 400 or 404.

use super::{describe, queue_options};
use crate::cluster::commands;
use crate::http::json::{arguments, opt_str, tags};
use crate::http::parameters::{set_global, OPERATOR_POLICY};
use crate::http::policies::parse_policy;
use crate::http::queues::API_CONNECTION;
use crate::http::{ApiError, ApiResult, Shared, CLUSTER_NAME};
use pigeon_broker::access::{PasswordHash, User, UserLimits, VHostInfo, VHostLimits};
use pigeon_broker::permission::{Permission, TopicPermission};
use pigeon_broker::{Destination, ExchangeDeclare, Parameter, PolicyKind};
use pigeon_cluster::meta::{Binding, Json, LimitScope};
use pigeon_cluster::MetaCommand;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

type Object = Map<String, Value>;

/// The objects of a section (`users`, `queues`...); a section that is not a list of objects
/// is a 400.
fn section<'a>(defs: &'a Object, key: &str) -> ApiResult<Vec<&'a Object>> {
    match defs.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| {
                v.as_object()
                    .ok_or_else(|| ApiError::bad_request(format!("{key} must hold objects")))
            })
            .collect(),
        Some(_) => Err(ApiError::bad_request(format!("{key} must be a list"))),
    }
}

fn required<'a>(o: &'a Object, key: &str, what: &str) -> ApiResult<&'a str> {
    opt_str(o, key)?.ok_or_else(|| ApiError::bad_request(format!("{what} without {key}")))
}

fn limit(v: &Value) -> Option<u64> {
    v.as_i64().and_then(|n| u64::try_from(n).ok())
}

/// Writes an import's changes through the cluster (when the node is clustered and the import
/// came through the API), from the import's blocking thread.
pub(super) struct Replicator<'a> {
    http: &'a Shared,
    /// The runtime to wait on; none: every change is made here only.
    runtime: Option<tokio::runtime::Handle>,
    /// Durable exchanges and queues are proposed even when this node has them (the start's
    /// import, made here first: `definitions::load_at_start`).
    force: bool,
    /// Commands not proposed yet (the batch being built).
    pending: std::cell::RefCell<Vec<MetaCommand>>,
}

/// The most commands in one log entry of an import: a few hundred KiB of entry, applied in
/// one store transaction on every node.
pub(super) const BATCH: usize = 1000;

impl<'a> Replicator<'a> {
    /// Through the cluster when `http`'s node is clustered and `runtime` is given.
    pub(super) fn new(http: &'a Shared, runtime: Option<tokio::runtime::Handle>) -> Self {
        let runtime = runtime.filter(|_| http.state.cluster.is_some());
        Replicator {
            http,
            runtime,
            force: false,
            pending: Default::default(),
        }
    }

    /// Proposes durable exchanges and queues even when this node has them (an equivalent
    /// redeclare changes nothing where they exist).
    pub(super) fn forced(mut self) -> Self {
        self.force = true;
        self
    }

    /// Whether changes go through the cluster.
    fn on(&self) -> bool {
        self.runtime.is_some()
    }

    /// Adds `command` to the batch written through the cluster (proposed once [`BATCH`]
    /// are waiting, or at the next [`Replicator::flush`]): true; false when not replicating
    /// (the caller makes the change itself).
    fn write(&self, command: MetaCommand) -> ApiResult<bool> {
        if self.runtime.is_none() {
            return Ok(false);
        }
        let full = {
            let mut pending = self.pending.borrow_mut();
            pending.push(command);
            pending.len() >= BATCH
        };
        if full {
            self.flush()?;
        }
        Ok(true)
    }

    /// Proposes the waiting commands as one entry and waits until a majority committed it
    /// and this node applied it.
    pub(super) fn flush(&self) -> ApiResult<()> {
        let Some(rt) = &self.runtime else {
            return Ok(());
        };
        let mut commands = std::mem::take(&mut *self.pending.borrow_mut());
        let command = match commands.len() {
            0 => return Ok(()),
            1 => commands.remove(0),
            _ => MetaCommand::Batch { commands },
        };
        rt.block_on(crate::http::replicate(self.http, command))
            .map(|_| ())
    }
}

/// Imports `defs`; with `only` every object goes to that vhost (a vhost's import). Returns
/// what was skipped.
pub(super) fn import(
    http: &Shared,
    defs: &Object,
    only: Option<&str>,
    cluster: &Replicator<'_>,
) -> ApiResult<Vec<String>> {
    let broker = &http.state.broker;
    let access = broker.access();
    let mut warnings = Vec::new();
    let vhost_of = |o: &Object| -> ApiResult<String> {
        match only {
            Some(v) => Ok(v.to_string()),
            None => Ok(opt_str(o, "vhost")?.unwrap_or("/").to_string()),
        }
    };
    if only.is_none() {
        for u in section(defs, "users")? {
            let name = required(u, "name", "user")?;
            let hash = opt_str(u, "password_hash")?.unwrap_or("");
            let algorithm =
                opt_str(u, "hashing_algorithm")?.unwrap_or("rabbit_password_hashing_sha256");
            let password = if hash.is_empty() {
                None
            } else {
                Some(
                    PasswordHash::from_definition(hash, algorithm)
                        .map_err(|e| ApiError::bad_request(format!("user {name}: {e}")))?,
                )
            };
            let user = User {
                name: name.to_string(),
                password,
                tags: tags(u, "tags")?.unwrap_or_default(),
            };
            let command = MetaCommand::PutUser {
                name: user.name.clone(),
                password_hash: commands::password_text(user.password.as_ref()),
                tags: user.tags.clone(),
            };
            if !cluster.write(command)? {
                access.put_user(user)?;
            }
            if let Some(Value::Object(l)) = u.get("limits") {
                let limits = UserLimits {
                    max_connections: l.get("max-connections").and_then(limit),
                    max_channels: l.get("max-channels").and_then(limit),
                };
                let command = MetaCommand::SetLimits {
                    scope: LimitScope::User(name.to_string()),
                    limits: commands::user_limits_json(&limits),
                };
                if !cluster.write(command)? {
                    access.try_set_user_limits(name, limits)?;
                }
            }
        }
        cluster.flush()?;
        for v in section(defs, "vhosts")? {
            let name = required(v, "name", "vhost")?;
            let meta = v.get("metadata").and_then(Value::as_object);
            let description = opt_str(v, "description")?
                .or(meta
                    .and_then(|m| m.get("description"))
                    .and_then(Value::as_str))
                .unwrap_or("");
            let vtags = match tags(v, "tags")? {
                Some(t) => t,
                None => meta
                    .map(|m| tags(m, "tags"))
                    .transpose()?
                    .flatten()
                    .unwrap_or_default(),
            };
            let info = VHostInfo {
                description: description.to_string(),
                tags: vtags,
                default_queue_type: crate::http::vhosts::queue_type_field(v)?,
            };
            let command = MetaCommand::AddVhost {
                name: name.to_string(),
                metadata: commands::vhost_json(&info),
            };
            if !cluster.write(command)? {
                broker.add_vhost(name, info)?;
            }
        }
        cluster.flush()?;
        for p in section(defs, "permissions")? {
            let (user, vhost) = (
                required(p, "user", "permission")?,
                required(p, "vhost", "permission")?,
            );
            let permission = Permission {
                configure: required(p, "configure", "permission")?.into(),
                write: required(p, "write", "permission")?.into(),
                read: required(p, "read", "permission")?.into(),
            };
            let command = MetaCommand::SetPermissions {
                user: user.to_string(),
                vhost: vhost.to_string(),
                configure: permission.configure.clone(),
                write: permission.write.clone(),
                read: permission.read.clone(),
            };
            if !cluster.write(command)? {
                broker.set_permissions(user, vhost, permission)?;
            }
        }
        cluster.flush()?;
        for p in section(defs, "topic_permissions")? {
            let (user, vhost) = (
                required(p, "user", "topic permission")?,
                required(p, "vhost", "topic permission")?,
            );
            broker.check_user_and_vhost(user, vhost)?;
            let permission = TopicPermission {
                exchange: required(p, "exchange", "topic permission")?.into(),
                write: required(p, "write", "topic permission")?.into(),
                read: required(p, "read", "topic permission")?.into(),
            };
            let command = MetaCommand::SetTopicPermissions {
                user: user.to_string(),
                vhost: vhost.to_string(),
                exchange: permission.exchange.clone(),
                write: permission.write.clone(),
                read: permission.read.clone(),
            };
            if !cluster.write(command)? {
                access.try_set_topic_permission(user, vhost, permission)?;
            }
        }
        cluster.flush()?;
        for g in section(defs, "global_parameters")? {
            let name = required(g, "name", "global parameter")?;
            // RabbitMQ exports an internal cluster id; it means nothing here.
            if name == "internal_cluster_id" {
                continue;
            }
            match g.get("value") {
                None | Some(Value::Null) => warnings.push(describe("global parameter", g)),
                Some(value) => {
                    let command = MetaCommand::SetParameter {
                        vhost: None,
                        component: String::new(),
                        name: name.to_string(),
                        value: Json(value.to_string()),
                    };
                    if name == CLUSTER_NAME && !value.is_string() {
                        // set_global's validation error.
                        set_global(http, name, value)?;
                    } else if !cluster.write(command)? {
                        set_global(http, name, value)?;
                    }
                }
            }
        }
    }
    cluster.flush()?;
    // Components Pigeon keeps parameters of without acting on them: one warning each.
    let mut inert_components = BTreeSet::new();
    for p in section(defs, "parameters")? {
        let vhost = vhost_of(p)?;
        let v = broker
            .vhost(&vhost)
            .filter(|v| !v.is_deleted())
            .ok_or_else(|| ApiError::bad_request(format!("no such vhost '{vhost}'")))?;
        let component = required(p, "component", "parameter")?;
        let name = required(p, "name", "parameter")?;
        let value = match p.get("value") {
            None | Some(Value::Null) => {
                return Err(ApiError::bad_request(format!(
                    "parameter {name} of component {component} without value"
                )))
            }
            // RabbitMQ's CLI export writes values as JSON documents in strings.
            Some(Value::String(text)) => {
                serde_json::from_str::<Value>(text).unwrap_or(Value::String(text.clone()))
            }
            Some(value) => value.clone(),
        };
        match (component, &value) {
            ("vhost-limits", Value::Object(l)) => {
                let limits = VHostLimits {
                    max_connections: l.get("max-connections").and_then(limit),
                    max_queues: l.get("max-queues").and_then(limit),
                };
                let command = MetaCommand::SetLimits {
                    scope: LimitScope::Vhost(vhost.clone()),
                    limits: commands::vhost_limits_json(&limits),
                };
                if !cluster.write(command)? {
                    access.try_set_vhost_limits(&vhost, limits)?;
                }
            }
            (OPERATOR_POLICY, Value::Object(o)) => {
                let policy = parse_policy(name, o)?;
                if !cluster.write(set_policy(&vhost, &policy, true))? {
                    v.put_policy(PolicyKind::Operator, policy)?;
                }
            }
            _ => {
                let command = MetaCommand::SetParameter {
                    vhost: Some(vhost.clone()),
                    component: component.to_string(),
                    name: name.to_string(),
                    value: Json(value.to_string()),
                };
                if !cluster.write(command)? {
                    broker
                        .parameters()
                        .set(Parameter {
                            vhost: vhost.clone(),
                            component: component.to_string(),
                            name: name.to_string(),
                            value: value.to_string(),
                        })
                        .map_err(|e| ApiError::internal(e.to_string()))?;
                }
                inert_components.insert(component.to_string());
            }
        }
    }
    cluster.flush()?;
    for c in inert_components {
        warnings.push(format!(
            "parameters of component {c} are kept (and exported) but have no effect: Pigeon does not implement {c}"
        ));
    }
    let vhost = |name: &str| {
        broker
            .vhost(name)
            .filter(|v| !v.is_deleted())
            .ok_or_else(|| ApiError::bad_request(format!("no such vhost '{name}'")))
    };
    let mut inert_keys = BTreeSet::new();
    for p in section(defs, "policies")? {
        let v = vhost(&vhost_of(p)?)?;
        let policy = parse_policy(required(p, "name", "policy")?, p)?;
        inert_keys.extend(policy.inert_keys().into_iter().map(str::to_string));
        if !cluster.write(set_policy(v.name(), &policy, false))? {
            v.set_policy(policy)?;
        }
    }
    cluster.flush()?;
    if !inert_keys.is_empty() {
        let keys: Vec<String> = inert_keys.into_iter().collect();
        warnings.push(format!(
            "policy keys {} are kept (and exported) but have no effect in Pigeon",
            keys.join(", ")
        ));
    }
    for x in section(defs, "exchanges")? {
        let v = vhost(&vhost_of(x)?)?;
        let name = required(x, "name", "exchange")?;
        if name.is_empty() || name.starts_with("amq.") {
            continue;
        }
        let kind = required(x, "type", "exchange")?;
        let declare = ExchangeDeclare {
            name,
            kind,
            passive: false,
            durable: crate::http::json::opt_bool(x, "durable")?.unwrap_or(true),
            auto_delete: crate::http::json::opt_bool(x, "auto_delete")?.unwrap_or(false),
            internal: crate::http::json::opt_bool(x, "internal")?.unwrap_or(false),
            arguments: arguments(x)?,
        };
        // A new durable exchange through the cluster; a redeclare is checked here, and a
        // non-durable one stays on this node (as over AMQP).
        let replicated = cluster.on()
            && declare.durable
            && (cluster.force || v.exchange(name).is_err())
            && pigeon_broker::exchange::ExchangeKind::parse(kind).is_some();
        if !(replicated
            && cluster.write(MetaCommand::DeclareExchange {
                vhost: v.name().to_string(),
                name: name.to_string(),
                kind: kind.to_string(),
                auto_delete: declare.auto_delete,
                internal: declare.internal,
                arguments: commands::to_json(&declare.arguments),
            })?)
        {
            v.declare_exchange(&declare)?;
        }
    }
    cluster.flush()?;
    for q in section(defs, "queues")? {
        let v = vhost(&vhost_of(q)?)?;
        let name = required(q, "name", "queue")?;
        let mut options = queue_options(q)?;
        // Quorum queues need a data directory (their Raft log is there): without one they
        // are imported as classic queues (their messages and bindings work the same), with a
        // warning. Streams are imported as streams.
        let kind = options
            .arguments
            .get_str("x-queue-type")
            .map(str::to_string);
        let quorum_ok = http.state.store.is_some();
        let quorum = kind.as_deref() == Some("quorum") && quorum_ok;
        if let Some(kind) =
            kind.filter(|k| k != "classic" && k != "stream" && !(k == "quorum" && quorum_ok))
        {
            warnings.push(format!("queue {name} in vhost {} imported as a classic queue (type {kind} is not supported)", v.name()));
            options.arguments.0.retain(|(k, _)| k != "x-queue-type");
        }
        let replicated =
            cluster.on() && options.durable && (cluster.force || v.queue(name).is_err());
        let node = http.state.cluster.as_ref().map(|c| c.name().to_string());
        if !(replicated
            && cluster.write(MetaCommand::DeclareQueue {
                vhost: v.name().to_string(),
                name: name.to_string(),
                kind: options
                    .arguments
                    .get_str("x-queue-type")
                    .unwrap_or("classic")
                    .to_string(),
                auto_delete: options.auto_delete,
                arguments: commands::to_json(&options.arguments),
                node: node.unwrap_or_default(),
            })?)
        {
            let new_queue = v.queue(name).is_err();
            v.declare_queue(name, false, options, API_CONNECTION)?;
            // A quorum queue on a node without [cluster]: its group of one (helper quorumone).
            if let (true, true, Some(local)) = (quorum, new_queue, &http.state.declares.local) {
                local.declared(v.name(), name);
            }
        }
    }
    cluster.flush()?;
    for b in section(defs, "bindings")? {
        let v = vhost(&vhost_of(b)?)?;
        let source = required(b, "source", "binding")?;
        if source.is_empty() {
            continue;
        }
        let dest = required(b, "destination", "binding")?;
        let destination = match opt_str(b, "destination_type")?.unwrap_or("queue") {
            "queue" => Destination::Queue(v.queue(dest)?),
            "exchange" => Destination::Exchange(v.exchange(dest)?),
            other => {
                return Err(ApiError::bad_request(format!(
                    "invalid destination_type {other:?}"
                )))
            }
        };
        let key = opt_str(b, "routing_key")?.unwrap_or("");
        let args = arguments(b)?;
        let durable = match v.exchange(source) {
            Ok(x) => pigeon_broker::durable::binding_is_durable(&x, &destination),
            Err(_) => false,
        };
        let binding = Binding {
            vhost: v.name().to_string(),
            source: source.to_string(),
            destination: dest.to_string(),
            to_exchange: matches!(destination, Destination::Exchange(_)),
            routing_key: key.to_string(),
            arguments: commands::to_json(&args),
        };
        if !(cluster.on() && durable && cluster.write(MetaCommand::Bind { binding })?) {
            v.bind(source, destination, key, args)?;
        }
    }
    cluster.flush()?;
    Ok(warnings)
}

/// A policy's replicated form.
fn set_policy(vhost: &str, policy: &pigeon_broker::Policy, operator: bool) -> MetaCommand {
    MetaCommand::SetPolicy {
        vhost: vhost.to_string(),
        name: policy.name.clone(),
        policy: commands::policy_json(policy),
        operator,
    }
}
