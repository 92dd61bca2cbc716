//! Automatic deletions through the cluster: an auto-delete durable queue losing its last
//! consumer, or an auto-delete durable exchange its last binding, is deleted by the node where
//! that happens (the broker's own rule, `pigeon_broker::AutoDeleted`), which then proposes
//! [`MetaCommand::AutoDeleteQueue`] / [`MetaCommand::AutoDeleteExchange`] so that the other
//! nodes drop it too, where it is unused there as well (a node's own consumers and non-durable
//! bindings keep its copy). Exclusive queues are never proposed: they belong to their
//! connection's node.
//!
//! Deletions made while applying the log (a replicated `queue.delete` emptying an auto-delete
//! exchange, say) are the same on every node and are not proposed again: the applying thread
//! is marked ([`applying`]).

use pigeon_broker::{AutoDeleteHook, AutoDeleted, Broker, VHost};
use pigeon_cluster::{Cluster, MetaCommand};
use std::cell::Cell;
use std::sync::{Arc, OnceLock};

thread_local! {
    /// Set while this thread applies committed commands.
    static APPLYING: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` marked as applying the log: automatic deletions it causes are not proposed.
pub(super) fn applying<T>(f: impl FnOnce() -> T) -> T {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            APPLYING.with(|a| a.set(self.0));
        }
    }
    let _reset = Reset(APPLYING.with(|a| a.replace(true)));
    f()
}

/// The hook every vhost is given once the node started (shared with the applier, which gives
/// it to the vhosts the log creates).
#[derive(Clone, Default)]
pub(crate) struct Hooks(Arc<OnceLock<AutoDeleteHook>>);

impl Hooks {
    /// Makes the hook (proposing through `cluster`, on the current runtime) and gives it to
    /// every vhost.
    pub(super) fn start(&self, cluster: &Cluster, broker: &Broker) {
        let cluster = cluster.clone();
        let runtime = tokio::runtime::Handle::current();
        let propose = move |command: MetaCommand| {
            let cluster = cluster.clone();
            runtime.spawn(async move {
                if let Err(e) = super::write(&cluster, command).await {
                    // Deleted here already; the others keep it until a later change removes
                    // it (docs/clustering.md).
                    tracing::debug!(error = %e, "cluster: an automatic deletion was not replicated");
                }
            });
        };
        let _ = self.0.set(hook(propose));
        self.install(broker);
    }

    /// Gives the hook (once made) to every vhost that lacks it.
    pub(super) fn install(&self, broker: &Broker) {
        let Some(hook) = self.0.get() else {
            return;
        };
        for v in broker.vhosts() {
            if !v.has_auto_delete_hook() {
                v.set_auto_delete_hook(Arc::clone(hook));
            }
        }
    }
}

/// The hook that hands this node's automatic deletions to `propose` as commands, except
/// those made while applying the log.
pub(super) fn hook(propose: impl Fn(MetaCommand) + Send + Sync + 'static) -> AutoDeleteHook {
    Arc::new(move |v: &VHost, what: AutoDeleted<'_>| {
        if !APPLYING.with(Cell::get) {
            propose(command(v, what));
        }
    })
}

fn command(v: &VHost, what: AutoDeleted<'_>) -> MetaCommand {
    let vhost = v.name().to_string();
    match what {
        AutoDeleted::Queue(name) => MetaCommand::AutoDeleteQueue {
            vhost,
            name: name.to_string(),
        },
        AutoDeleted::Exchange(name) => MetaCommand::AutoDeleteExchange {
            vhost,
            name: name.to_string(),
        },
    }
}
