//! Snapshots of the replicated metadata: the commands that recreate it.
//!
//! A snapshot is the list of [`MetaCommand`]s that declares every replicated entity (vhosts,
//! users, permissions, topic permissions, limits, policies, parameters, durable exchanges and
//! queues, bindings between durable ends), JSON-encoded. Restoring one deletes the replicated
//! entities it does not name, then applies its commands (each is a declaration, idempotent).

use super::commands;
use pigeon_broker::access::{UserLimits, VHostLimits};
use pigeon_broker::policy::PolicyKind;
use pigeon_broker::{Broker, Destination};
use pigeon_cluster::meta::{Binding, LimitScope};
use pigeon_cluster::MetaCommand;
use std::collections::HashSet;

/// Whether an exchange is replicated: durable and declared (not the default exchange or the
/// `amq.*` ones every vhost is born with).
fn replicated_exchange(name: &str, durable: bool) -> bool {
    durable && !name.is_empty() && !name.starts_with("amq.")
}

/// Whether a queue belongs to its node's MQTT sessions rather than to the replicated
/// metadata: a session's own queue (`mqtt-session-<client id>`, durable for a persistent
/// session) is declared by the node of its connection, not through the log (`mqtt/`), so a
/// snapshot must neither carry it to the other nodes nor, restored there, delete theirs.
/// A replicated one (a quorum queue, `mqtt_durable_queue_type = quorum`) is replicated.
fn local_mqtt_queue(q: &pigeon_broker::Queue) -> bool {
    q.name().starts_with("mqtt-session-") && !q.is_quorum()
}

/// The commands that recreate the broker's replicated metadata.
pub(crate) fn commands(broker: &Broker) -> Vec<MetaCommand> {
    let access = broker.access();
    let mut out = Vec::new();
    let vhosts = broker.vhosts();
    for v in &vhosts {
        out.push(MetaCommand::AddVhost {
            name: v.name().to_string(),
            metadata: commands::vhost_json(&v.info()),
        });
        let limits = access.vhost_limits(v.name());
        if limits != VHostLimits::default() {
            out.push(MetaCommand::SetLimits {
                scope: LimitScope::Vhost(v.name().to_string()),
                limits: commands::vhost_limits_json(&limits),
            });
        }
    }
    for u in access.users() {
        out.push(MetaCommand::PutUser {
            name: u.name.clone(),
            password_hash: commands::password_text(u.password.as_ref()),
            tags: u.tags.clone(),
        });
        let limits = access.user_limits(&u.name);
        if limits != UserLimits::default() {
            out.push(MetaCommand::SetLimits {
                scope: LimitScope::User(u.name.clone()),
                limits: commands::user_limits_json(&limits),
            });
        }
    }
    for (user, vhost, p) in access.all_permissions() {
        out.push(MetaCommand::SetPermissions {
            user,
            vhost,
            configure: p.configure,
            write: p.write,
            read: p.read,
        });
    }
    for (user, vhost, p) in access.all_topic_permissions() {
        out.push(MetaCommand::SetTopicPermissions {
            user,
            vhost,
            exchange: p.exchange,
            write: p.write,
            read: p.read,
        });
    }
    for p in broker.parameters().list() {
        out.push(MetaCommand::SetParameter {
            vhost: Some(p.vhost),
            component: p.component,
            name: p.name,
            value: pigeon_cluster::meta::Json(p.value),
        });
    }
    for (name, value) in broker.parameters().globals() {
        out.push(MetaCommand::SetParameter {
            vhost: None,
            component: String::new(),
            name,
            value: pigeon_cluster::meta::Json(value),
        });
    }
    for v in &vhosts {
        let vhost = v.name().to_string();
        for (kind, operator) in [(PolicyKind::Policy, false), (PolicyKind::Operator, true)] {
            for p in v.policies_of(kind) {
                out.push(MetaCommand::SetPolicy {
                    vhost: vhost.clone(),
                    name: p.name.clone(),
                    policy: commands::policy_json(&p),
                    operator,
                });
            }
        }
        let exchanges = v.exchange_list();
        for x in exchanges
            .iter()
            .filter(|x| replicated_exchange(&x.name, x.durable))
        {
            out.push(MetaCommand::DeclareExchange {
                vhost: vhost.clone(),
                name: x.name.to_string(),
                kind: x.kind.as_str().to_string(),
                auto_delete: x.auto_delete,
                internal: x.internal,
                arguments: commands::to_json(&x.arguments),
            });
        }
        for q in v.queue_list() {
            let o = q.options();
            if o.durable && o.exclusive_owner.is_none() && !local_mqtt_queue(&q) {
                out.push(MetaCommand::DeclareQueue {
                    vhost: vhost.clone(),
                    name: q.name().to_string(),
                    kind: String::new(),
                    auto_delete: o.auto_delete,
                    arguments: commands::to_json(&o.arguments),
                    node: String::new(),
                });
            }
        }
        for x in exchanges.iter().filter(|x| x.durable && !x.name.is_empty()) {
            for b in x.bindings() {
                if !pigeon_broker::durable::binding_is_durable(x, &b.destination) {
                    continue;
                }
                let (to_exchange, destination) = match &b.destination {
                    // An MQTT session's binding is its node's (see `local_mqtt_queue`).
                    Destination::Queue(q) if local_mqtt_queue(q) => continue,
                    Destination::Queue(q) => (false, q.name().to_string()),
                    Destination::Exchange(d) => (true, d.name.to_string()),
                };
                out.push(MetaCommand::Bind {
                    binding: Binding {
                        vhost: vhost.clone(),
                        source: x.name.to_string(),
                        destination,
                        to_exchange,
                        routing_key: b.routing_key.clone(),
                        arguments: commands::to_json(&b.arguments),
                    },
                });
            }
        }
    }
    out
}

/// The command that removes what `c` declares (`None` for what has no removal of its own).
/// Deterministic, so that it also names what `c` declares.
fn undo(c: &MetaCommand) -> Option<MetaCommand> {
    Some(match c {
        MetaCommand::AddVhost { name, .. } => MetaCommand::DeleteVhost { name: name.clone() },
        MetaCommand::PutUser { name, .. } => MetaCommand::DeleteUser { name: name.clone() },
        MetaCommand::SetPermissions { user, vhost, .. } => MetaCommand::ClearPermissions {
            user: user.clone(),
            vhost: vhost.clone(),
        },
        MetaCommand::SetTopicPermissions {
            user,
            vhost,
            exchange,
            ..
        } => MetaCommand::ClearTopicPermissions {
            user: user.clone(),
            vhost: vhost.clone(),
            exchange: Some(exchange.clone()),
        },
        MetaCommand::SetLimits { scope, .. } => MetaCommand::SetLimits {
            scope: scope.clone(),
            limits: match scope {
                LimitScope::Vhost(_) => commands::vhost_limits_json(&VHostLimits::default()),
                LimitScope::User(_) => commands::user_limits_json(&UserLimits::default()),
            },
        },
        MetaCommand::SetPolicy {
            vhost,
            name,
            operator,
            ..
        } => MetaCommand::ClearPolicy {
            vhost: vhost.clone(),
            name: name.clone(),
            operator: *operator,
        },
        MetaCommand::SetParameter {
            vhost,
            component,
            name,
            ..
        } => MetaCommand::ClearParameter {
            vhost: vhost.clone(),
            component: component.clone(),
            name: name.clone(),
        },
        MetaCommand::DeclareExchange { vhost, name, .. } => MetaCommand::DeleteExchange {
            vhost: vhost.clone(),
            name: name.clone(),
        },
        MetaCommand::DeclareQueue { vhost, name, .. } => MetaCommand::DeleteQueue {
            vhost: vhost.clone(),
            name: name.clone(),
        },
        MetaCommand::Bind { binding } => MetaCommand::Unbind {
            binding: binding.clone(),
        },
        _ => return None,
    })
}

/// A command as a set key (commands are not `Hash`).
fn key(c: &MetaCommand) -> String {
    serde_json::to_string(c).unwrap_or_default()
}

/// What turns the broker's replicated metadata into `wanted`'s: the removal of every
/// replicated entity it does not name (vhosts, users, permissions, topic permissions, limits,
/// policies, parameters, exchanges, queues, bindings), then `wanted` itself.
pub(crate) fn restore_plan(broker: &Broker, wanted: Vec<MetaCommand>) -> Vec<MetaCommand> {
    let keep: HashSet<String> = wanted.iter().filter_map(undo).map(|u| key(&u)).collect();
    let mut plan: Vec<MetaCommand> = commands(broker)
        .iter()
        .filter_map(undo)
        .filter(|u| !keep.contains(&key(u)))
        .collect();
    plan.extend(wanted);
    plan
}

pub(crate) fn encode(all: &[MetaCommand]) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(all)
}

pub(crate) fn decode(bytes: &[u8]) -> Result<Vec<MetaCommand>, serde_json::Error> {
    serde_json::from_slice(bytes)
}
