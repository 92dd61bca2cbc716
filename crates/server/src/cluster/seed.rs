//! What a node used to set up by itself at start, written once for the cluster instead: the
//! default vhost and user (RabbitMQ seeds them once, on the first node of a new cluster:
//! `rabbit_vhosts:add_default_vhost`... run by the node that formed the cluster, not by the
//! ones that join it), and the configuration file's `users` and `policies`.
//!
//! Every node proposes, once the cluster has formed (a write waits for a leader), one
//! [`MetaCommand::Bootstrap`] with the default vhost, user and permissions: the first one
//! committed is applied on every node (each entity only where it is absent), the later ones
//! change nothing (`apply.rs`), so a default user deleted cluster-wide stays deleted when a
//! node restarts or joins. Then the configuration's users (created, or updated when their
//! password or tags differ, with `.*` on `/` where they have no permission) and policies
//! (set where absent or different), as one [`MetaCommand::Batch`], only what differs from the
//! node's applied state: a single node does the same at every start.

use super::{commands, WriteError};
use crate::ServerState;
use pigeon_broker::access::{User, VHostInfo};
use pigeon_broker::PolicyKind;
use pigeon_cluster::MetaCommand;
use std::sync::Arc;
use std::time::Duration;

/// How long a node waits before proposing again when no majority committed (the cluster is
/// forming, or this node is cut off).
const RETRY: Duration = Duration::from_secs(1);

/// The first start's set-up as one command.
fn bootstrap(state: &ServerState) -> MetaCommand {
    let config = &state.config;
    let mut commands = vec![MetaCommand::AddVhost {
        name: config.default_vhost.clone(),
        metadata: commands::vhost_json(&VHostInfo {
            description: "Default virtual host".into(),
            tags: Vec::new(),
            default_queue_type: None,
        }),
    }];
    if !config.default_user.is_empty() {
        let user = User::with_password(
            &config.default_user,
            &config.default_pass,
            config.default_user_tags.clone(),
        );
        let p = &config.default_permissions;
        commands.push(MetaCommand::PutUser {
            name: user.name.clone(),
            password_hash: commands::password_text(user.password.as_ref()),
            tags: user.tags.clone(),
        });
        commands.push(MetaCommand::SetPermissions {
            user: user.name,
            vhost: config.default_vhost.clone(),
            configure: p.configure.clone(),
            write: p.write.clone(),
            read: p.read.clone(),
        });
    }
    MetaCommand::Bootstrap { commands }
}

/// The configuration's users and policies that this node's applied state lacks or has
/// otherwise.
fn configured(state: &ServerState) -> Vec<MetaCommand> {
    let broker = &state.broker;
    let access = broker.access();
    let mut out = Vec::new();
    for u in &state.config.users {
        let same = access.user(&u.name).is_some_and(|e| {
            e.tags == u.tags
                && e.password
                    .as_ref()
                    .is_some_and(|h| h.verify(u.password.as_bytes()))
        });
        if !same {
            let user = User::with_password(&u.name, &u.password, u.tags.clone());
            out.push(MetaCommand::PutUser {
                name: user.name,
                password_hash: commands::password_text(user.password.as_ref()),
                tags: user.tags,
            });
        }
        if broker.vhost("/").is_some() && access.permission(&u.name, "/").is_none() {
            out.push(MetaCommand::SetPermissions {
                user: u.name.clone(),
                vhost: "/".into(),
                configure: ".*".into(),
                write: ".*".into(),
                read: ".*".into(),
            });
        }
    }
    for p in &state.config.policies {
        let Ok(policy) = crate::policy::convert(p) else {
            continue; // refused at start (`policy::check`)
        };
        let Some(vhost) = broker.vhost(&p.vhost) else {
            tracing::warn!(policy = %p.name, vhost = %p.vhost, "configured policy not set: no such vhost");
            continue;
        };
        let wanted = commands::policy_json(&policy);
        let same = vhost
            .policies_of(PolicyKind::Policy)
            .iter()
            .any(|e| e.name == policy.name && commands::policy_json(e) == wanted);
        if !same {
            out.push(MetaCommand::SetPolicy {
                vhost: p.vhost.clone(),
                name: policy.name.clone(),
                policy: wanted,
                operator: false,
            });
        }
    }
    out
}

/// Proposes the set-up and the configured users and policies, each waiting for its commit.
pub(crate) async fn once(state: &ServerState) -> Result<(), WriteError> {
    let Some(cluster) = &state.cluster else {
        return Ok(());
    };
    super::write(cluster, bootstrap(state)).await?;
    let commands = configured(state);
    if !commands.is_empty() {
        super::write(cluster, MetaCommand::Batch { commands }).await?;
    }
    Ok(())
}

/// [`once`], until a majority commits it or the node shuts down (in the background).
pub(crate) fn spawn(state: &Arc<ServerState>) {
    let state = Arc::clone(state);
    tokio::spawn(async move {
        let mut shutdown = state.shutdown.clone();
        loop {
            match once(&state).await {
                Ok(()) => {
                    tracing::info!(
                        "cluster: default user, vhost and configured users and policies set up"
                    );
                    return;
                }
                Err(WriteError::Unavailable(_)) => {}
                Err(WriteError::Refused { code, text }) => {
                    tracing::warn!(code, %text, "cluster: configured users or policies refused");
                    return;
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}
