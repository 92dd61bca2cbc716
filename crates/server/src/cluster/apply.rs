//! The broker as the metadata group's state machine: [`BrokerApplier`] applies each committed
//! [`MetaCommand`] through the broker's usual code (the same calls a single node makes), on every
//! node, in log order.
//!
//! The broker's own writes to the store during a batch are collected
//! ([`Store::meta_capture`]) and committed in one redb transaction together with the batch's
//! [`AppliedMarker`], so that after a crash the store and the marker agree: a batch is applied
//! whole or not at all, and what follows the marker is applied again from the Raft log.

use super::commands::{self, from_json, BadCommand};
use pigeon_broker::access::{AccessError, User, VHostInfo};
use pigeon_broker::permission::{Permission, TopicPermission};
use pigeon_broker::policy::PolicyKind;
use pigeon_broker::{Broker, BrokerError, Destination, ExchangeDeclare, QueueOptions};
use pigeon_cluster::meta::{Binding, LimitScope};
use pigeon_cluster::{AppliedMarker, ApplyError, MetaCommand, MetaResponse, MetadataApply};
use pigeon_store::{OwnedMetaOp, Store};
use std::sync::Arc;

/// The redb table and key of the applied marker.
const TABLE: &str = "cluster";
const MARKER: &[u8] = b"applied";

/// The connection id of changes applied from the log: no connection owns them.
const NO_CONNECTION: pigeon_broker::ConnectionId = 0;

/// Applies the metadata group's commands to the broker and its store.
pub(crate) struct BrokerApplier {
    pub broker: Arc<Broker>,
    pub store: Arc<Store>,
    /// Proposes this node's automatic deletions (set once the node started); given to every
    /// vhost, those created by the log included.
    pub auto_delete: super::auto_delete::Hooks,
    /// Classic queues' homes (`forward.rs`, `homes.rs`).
    pub forwarder: Arc<super::forward::Forwarder>,
    /// This node's quorum queues: a quorum queue's declare places its members.
    pub quorum: Arc<super::quorum::QuorumRegistry>,
}

/// Why a command was refused: its protocol reply code and text (the same on every node).
fn refused(code: u16, text: impl std::fmt::Display) -> MetaResponse {
    MetaResponse::Refused {
        code,
        text: text.to_string(),
    }
}

fn broker_refused(e: &BrokerError) -> MetaResponse {
    refused(crate::amqp::convert::reply_code(e).code(), e)
}

fn access_refused(e: &AccessError) -> MetaResponse {
    let code = match e {
        AccessError::NoSuchUser(_) | AccessError::NoSuchVHost(_) => 404,
        _ => 400,
    };
    refused(code, e)
}

fn bad(e: BadCommand) -> MetaResponse {
    refused(400, e)
}

impl BrokerApplier {
    /// Applies one command; its answer.
    fn apply_one(&self, command: &MetaCommand) -> MetaResponse {
        let broker = &self.broker;
        let access = broker.access();
        let done = |r: Result<(), AccessError>| match r {
            Ok(()) => MetaResponse::Done,
            Err(e) => access_refused(&e),
        };
        match command {
            MetaCommand::AddVhost { name, metadata } => {
                let info: VHostInfo = match commands::vhost_info(metadata) {
                    Ok(i) => i,
                    Err(e) => return bad(e),
                };
                done(broker.add_vhost(name, info).map(|_| ()))
            }
            MetaCommand::DeleteVhost { name } => done(broker.delete_vhost(name).map(|_| ())),
            MetaCommand::PutUser {
                name,
                password_hash,
                tags,
            } => {
                let password = match commands::password(password_hash) {
                    Ok(p) => p,
                    Err(e) => return bad(e),
                };
                done(access.put_user(User {
                    name: name.clone(),
                    password,
                    tags: tags.clone(),
                }))
            }
            MetaCommand::DeleteUser { name } => done(broker.delete_user(name).map(|_| ())),
            MetaCommand::SetPermissions {
                user,
                vhost,
                configure,
                write,
                read,
            } => done(broker.set_permissions(
                user,
                vhost,
                Permission {
                    configure: configure.clone(),
                    write: write.clone(),
                    read: read.clone(),
                },
            )),
            MetaCommand::ClearPermissions { user, vhost } => {
                done(access.try_clear_permission(user, vhost).map(|_| ()))
            }
            MetaCommand::SetTopicPermissions {
                user,
                vhost,
                exchange,
                write,
                read,
            } => done(broker.check_user_and_vhost(user, vhost).and_then(|()| {
                access.try_set_topic_permission(
                    user,
                    vhost,
                    TopicPermission {
                        exchange: exchange.clone(),
                        write: write.clone(),
                        read: read.clone(),
                    },
                )
            })),
            MetaCommand::ClearTopicPermissions {
                user,
                vhost,
                exchange,
            } => done(access.try_clear_topic_permissions(user, vhost, exchange.as_deref())),
            MetaCommand::SetLimits { scope, limits } => match scope {
                LimitScope::Vhost(v) => match commands::vhost_limits(limits) {
                    Ok(l) => done(access.try_set_vhost_limits(v, l)),
                    Err(e) => bad(e),
                },
                LimitScope::User(u) => match commands::user_limits(limits) {
                    Ok(l) => done(access.try_set_user_limits(u, l)),
                    Err(e) => bad(e),
                },
            },
            MetaCommand::SetPolicy {
                vhost,
                name,
                policy,
                operator,
            } => {
                let Some(v) = broker.vhost(vhost) else {
                    return refused(404, format!("no vhost '{vhost}'"));
                };
                let policy = match commands::policy(name, policy) {
                    Ok(p) => p,
                    Err(e) => return bad(e),
                };
                match v.put_policy(kind(*operator), policy) {
                    Ok(_) => MetaResponse::Done,
                    Err(e) => refused(400, e),
                }
            }
            MetaCommand::ClearPolicy {
                vhost,
                name,
                operator,
            } => match broker
                .vhost(vhost)
                .map(|v| v.remove_policy(kind(*operator), name))
            {
                Some(Ok(_)) | None => MetaResponse::Done,
                Some(Err(e)) => refused(400, e),
            },
            MetaCommand::SetParameter {
                vhost,
                component,
                name,
                value,
            } => {
                let r = match vhost {
                    Some(v) => broker.parameters().set(pigeon_broker::Parameter {
                        vhost: v.clone(),
                        component: component.clone(),
                        name: name.clone(),
                        value: value.0.clone(),
                    }),
                    None => broker.parameters().set_global(name, &value.0),
                };
                match r {
                    Ok(_) => MetaResponse::Done,
                    Err(e) => refused(500, e),
                }
            }
            MetaCommand::ClearParameter {
                vhost,
                component,
                name,
            } => {
                let r = match vhost {
                    Some(v) => broker.parameters().clear(v, component, name),
                    None => broker.parameters().clear_global(name),
                };
                match r {
                    Ok(_) => MetaResponse::Done,
                    Err(e) => refused(500, e),
                }
            }
            MetaCommand::DeclareExchange {
                vhost,
                name,
                kind,
                auto_delete,
                internal,
                arguments,
            } => self.in_vhost(vhost, |v| {
                v.declare_exchange(&ExchangeDeclare {
                    name,
                    kind,
                    passive: false,
                    durable: true,
                    auto_delete: *auto_delete,
                    internal: *internal,
                    arguments: from_json(arguments),
                })
            }),
            MetaCommand::DeleteExchange { vhost, name } => {
                self.in_vhost(vhost, |v| v.delete_exchange(name, false))
            }
            MetaCommand::DeclareQueue {
                vhost,
                name,
                auto_delete,
                arguments,
                node,
                ..
            } => {
                let done = self.in_vhost(vhost, |v| {
                    let options = QueueOptions {
                        durable: true,
                        exclusive_owner: None,
                        auto_delete: *auto_delete,
                        arguments: from_json(arguments),
                    };
                    v.declare_queue(name, false, options, NO_CONNECTION)?;
                    // A classic queue's home node: the others forward to it (`forward.rs`).
                    self.forwarder.declared(v, name, node);
                    Ok(())
                });
                if matches!(done, MetaResponse::Done) {
                    // A quorum queue: its members (the `node` field) start (`cluster/quorum`).
                    self.quorum.placed(vhost, name, node);
                }
                done
            }
            MetaCommand::DeleteQueue { vhost, name } => {
                let done = self.in_vhost(vhost, |v| {
                    v.delete_queue(name, false, false, NO_CONNECTION)?;
                    self.forwarder.deleted(vhost, name);
                    Ok(())
                });
                self.quorum.removed(vhost, name);
                done
            }
            // An automatic deletion elsewhere: made here only where the entity is unused
            // here too (its non-durable bindings and its consumers are this node's own).
            MetaCommand::AutoDeleteQueue { vhost, name } => {
                self.in_vhost(vhost, |v| match v.queue(name) {
                    Ok(q) if q.consumer_count() == 0 => {
                        v.delete_queue(name, true, false, NO_CONNECTION).map(|_| ())
                    }
                    _ => Ok(()),
                })
            }
            MetaCommand::AutoDeleteExchange { vhost, name } => {
                self.in_vhost(vhost, |v| match v.exchange(name) {
                    Ok(x) if x.binding_count() == 0 => v.delete_exchange(name, true),
                    _ => Ok(()),
                })
            }
            MetaCommand::Bind { binding } => self.binding(binding, true),
            MetaCommand::Unbind { binding } => self.binding(binding, false),
            // Written once per cluster, and in batches (metafinish).
            MetaCommand::Bootstrap { commands } => self.bootstrap(commands),
            MetaCommand::Batch { commands } => commands
                .iter()
                .map(|c| self.apply_one(c))
                .find(|r| !matches!(r, MetaResponse::Done))
                .unwrap_or_default(),
            // Quorum queue membership (quorummembers, quorum/membership.rs).
            MetaCommand::SetQueueMembers {
                vhost,
                name,
                members,
            } => {
                self.quorum.members_set(vhost, name, members);
                MetaResponse::Done
            }
            // MQTT persistent sessions' subscriptions (cluster/mqtt_sessions.rs).
            MetaCommand::MqttSubscribe { .. }
            | MetaCommand::MqttUnsubscribe { .. }
            | MetaCommand::MqttDropSession { .. } => self.forwarder.mqtt_apply(command),
            _ => MetaResponse::Done,
        }
    }

    /// The cluster's first-start set-up ([`MetaCommand::Bootstrap`]): applied only if no
    /// set-up was applied before (the broker's bootstrapped mark, which the log and snapshots
    /// carry), each command only where its entity is absent; then marked.
    fn bootstrap(&self, commands: &[MetaCommand]) -> MetaResponse {
        let access = self.broker.access();
        if access.is_bootstrapped() {
            return MetaResponse::Done;
        }
        for c in commands {
            let present = match c {
                MetaCommand::AddVhost { name, .. } => self.broker.vhost(name).is_some(),
                MetaCommand::PutUser { name, .. } => access.user(name).is_some(),
                MetaCommand::SetPermissions { user, vhost, .. } => {
                    access.permission(user, vhost).is_some()
                }
                _ => false,
            };
            if !present {
                if let MetaResponse::Refused { code, text } = self.apply_one(c) {
                    tracing::warn!(code, %text, "cluster: part of the first start's set-up was refused");
                }
            }
        }
        match access.mark_bootstrapped() {
            Ok(()) => MetaResponse::Done,
            Err(e) => access_refused(&e),
        }
    }

    fn in_vhost(
        &self,
        vhost: &str,
        f: impl FnOnce(&pigeon_broker::VHost) -> Result<(), BrokerError>,
    ) -> MetaResponse {
        let Some(v) = self.broker.vhost(vhost) else {
            return broker_refused(&BrokerError::NotFound(format!("no vhost '{vhost}'")));
        };
        match f(&v) {
            Ok(()) => MetaResponse::Done,
            Err(e) => broker_refused(&e),
        }
    }

    fn binding(&self, b: &Binding, bind: bool) -> MetaResponse {
        self.in_vhost(&b.vhost, |v| {
            let dest = if b.to_exchange {
                Destination::Exchange(v.exchange(&b.destination)?)
            } else {
                Destination::Queue(v.queue(&b.destination)?)
            };
            let args = from_json(&b.arguments);
            if bind {
                v.bind(&b.source, dest, &b.routing_key, args)
            } else {
                v.unbind(&b.source, dest, &b.routing_key, args)
            }
        })
    }
}

fn kind(operator: bool) -> PolicyKind {
    if operator {
        PolicyKind::Operator
    } else {
        PolicyKind::Policy
    }
}

fn store_err(e: impl std::fmt::Display) -> ApplyError {
    ApplyError(format!("the metadata store failed: {e}"))
}

impl MetadataApply for BrokerApplier {
    fn applied(&self) -> Option<AppliedMarker> {
        match self.store.meta_get(TABLE, MARKER) {
            Ok(bytes) => bytes.map(AppliedMarker::from_bytes),
            Err(e) => {
                tracing::error!(error = %e, "cluster: cannot read the applied marker");
                None
            }
        }
    }

    fn apply(
        &mut self,
        commands: &[(u64, MetaCommand)],
        marker: &AppliedMarker,
    ) -> Result<Vec<MetaResponse>, ApplyError> {
        let (responses, mut ops) = self.store.meta_capture(|| {
            super::auto_delete::applying(|| {
                commands
                    .iter()
                    .map(|(_, c)| self.apply_one(c))
                    .collect::<Vec<_>>()
            })
        });
        self.auto_delete.install(&self.broker);
        ops.push(OwnedMetaOp::Put {
            table: TABLE.into(),
            key: MARKER.to_vec(),
            value: marker.as_bytes().to_vec(),
        });
        self.store.meta_commit(&ops).map_err(store_err)?;
        Ok(responses)
    }

    fn snapshot(&self) -> Result<Vec<u8>, ApplyError> {
        let mut all = super::snapshot::commands(&self.broker);
        // Each queue's home node, so that a node restored from the snapshot knows it.
        for c in &mut all {
            if let MetaCommand::DeclareQueue {
                vhost, name, node, ..
            } = c
            {
                let home = self
                    .broker
                    .vhost(vhost)
                    .and_then(|v| v.queue(name).ok())
                    .and_then(|q| super::homes::home_of(&q).map(str::to_string));
                *node = home.unwrap_or_else(|| self.forwarder.me().to_string());
                // A quorum queue's `node` is its members (quorummembers).
                if let Some(m) = self.quorum.member(vhost, name) {
                    *node = m.listed().join(",");
                }
            }
        }
        // The first start's set-up happened: a node restored from this snapshot must not
        // make it again (`bootstrap`).
        if self.broker.access().is_bootstrapped() {
            all.push(MetaCommand::Bootstrap {
                commands: Vec::new(),
            });
        }
        // MQTT persistent sessions' subscriptions (cluster/mqtt_sessions.rs).
        all.extend(self.forwarder.mqtt_snapshot());
        postcard_encode(&all)
    }

    fn restore(&mut self, snapshot: &[u8], marker: &AppliedMarker) -> Result<(), ApplyError> {
        let wanted = postcard_decode(snapshot)?;
        let (_, mut ops) = self.store.meta_capture(|| {
            // MQTT sessions the snapshot does not name go (those it names are applied again).
            self.forwarder.mqtt_restore_begin();
            super::auto_delete::applying(|| {
                for c in super::snapshot::restore_plan(&self.broker, wanted) {
                    self.apply_one(&c);
                }
            })
        });
        self.auto_delete.install(&self.broker);
        ops.push(OwnedMetaOp::Put {
            table: TABLE.into(),
            key: MARKER.to_vec(),
            value: marker.as_bytes().to_vec(),
        });
        self.store.meta_commit(&ops).map_err(store_err)
    }
}

fn postcard_encode(all: &[MetaCommand]) -> Result<Vec<u8>, ApplyError> {
    super::snapshot::encode(all).map_err(|e| ApplyError(format!("cannot encode a snapshot: {e}")))
}

fn postcard_decode(bytes: &[u8]) -> Result<Vec<MetaCommand>, ApplyError> {
    super::snapshot::decode(bytes).map_err(|e| ApplyError(format!("cannot decode a snapshot: {e}")))
}
