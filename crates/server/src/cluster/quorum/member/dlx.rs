//! The dead-letter worker of a quorum queue with `x-dead-letter-strategy: at-least-once`
//! (helper dlxalo; RabbitMQ's deps/rabbit/src/rabbit_fifo_dlx_worker.erl, behaviour read, no
//! code taken).
//!
//! The group's state machine keeps such a queue's dead letters in a waiting list
//! (`pigeon_cluster::quorum` `dlx.rs`). The worker of the member that leads routes them from
//! its own replica through the queue's dead-letter exchange on the publish path with confirms
//! (`VHost::dead_letter_confirmed`: quorum targets confirm once committed, classic ones homed
//! elsewhere once their home has them, local ones once fsynced if stored) and, once every
//! target confirmed one, proposes `QueueOp::DeadLetterSettle`, which removes it from the
//! queue. What it has in flight is only in its memory: a member that loses the leadership
//! forgets it, and the next leader's worker sends again everything still waiting, so a dead
//! letter may reach a target twice, never zero times.
//!
//! As RabbitMQ's worker: a dead letter that no queue takes (the exchange is missing or routes
//! it nowhere, a target refused it or did not confirm) stays and is tried again (every second
//! here; `dead_letter_worker_publisher_confirm_timeout` there), with a warning; one whose
//! every target is a queue it died in before (a cycle) is dropped, as `rabbit_dead_letter`
//! drops it, and settled.

use super::*;
use pigeon_broker::{DeadLetterRoute, Published, QueueSettings, VHost};
use pigeon_cluster::quorum::DeadLetterStrategy;
use std::collections::HashSet;
use std::time::Duration;

/// The most dead letters in flight at once (RabbitMQ's worker takes 32 at a time:
/// `dead_letter_worker_consumer_prefetch`).
const IN_FLIGHT: usize = 256;
/// How often a worker looks again without being told (new leader, retries).
const RETRY: Duration = Duration::from_secs(1);
/// How long targets have to confirm one dead letter before it is sent again.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(60);

/// One member's dead-letter worker: started the first time the member sees at-least-once
/// dead-lettering, acting only while the member leads.
#[derive(Default)]
pub(in crate::cluster::quorum) struct Worker {
    started: AtomicBool,
    wake: Arc<tokio::sync::Notify>,
    /// Waiting-list ids routed and not yet confirmed and settled.
    in_flight: Arc<Mutex<HashSet<u64>>>,
    /// A warning about dead letters that cannot leave was logged (until one leaves).
    warned: AtomicBool,
}

/// The strategy the queue's settings ask for: `at-least-once` needs a dead-letter exchange
/// (without one nothing is dead-lettered). With an overflow other than `reject-publish` the
/// state machine falls back to at-most-once, as rabbit_quorum_queue's `dead_letter_handler`
/// does, which it logs likewise.
pub(super) fn strategy(queue: &Queue, s: &QueueSettings) -> DeadLetterStrategy {
    if !s.dead_letter_at_least_once || s.dead_letter_exchange.is_none() {
        return DeadLetterStrategy::AtMostOnce;
    }
    if s.overflow != pigeon_broker::Overflow::RejectPublish {
        tracing::warn!(
            queue = %queue.name(),
            "Falling back to dead-letter-strategy at-most-once for quorum queue '{}' because \
             the configured dead-letter-strategy at-least-once is incompatible with the \
             effective overflow strategy drop-head",
            queue.name()
        );
    }
    DeadLetterStrategy::AtLeastOnce
}

impl QuorumMember {
    /// This node's member started: settings that differ from its replica's (a policy applied
    /// while the member was starting, which `settings_changed` could not propose yet, or a
    /// snapshot older than the strategy) are proposed now, and the worker starts if there is
    /// anything for it.
    pub(super) fn dlx_started(&self) {
        let (Some(qq), Some(queue)) = (self.local(), self.queue.upgrade()) else {
            return;
        };
        self.update_config(&queue);
        let waiting = qq.machine().read(|m| m.dead_letters_counts().0);
        if queue.settings().dead_letter_at_least_once || waiting > 0 {
            self.dlx_wake();
        }
    }

    /// Proposes the settings' strategy if the replica's differs (a policy changed).
    pub(in crate::cluster::quorum) fn dlx_strategy_changed(&self, wanted: DeadLetterStrategy) {
        let Some(qq) = self.local() else {
            return;
        };
        if qq.machine().read(|m| m.dead_letter_strategy()) != wanted {
            tracing::info!(queue = %self.name, vhost = %self.vhost, strategy = ?wanted, "quorum queue: dead-letter strategy changed");
            // The worker starts with the first dead letter (`DeadLettersWaiting`).
            self.push(QueueOp::DeadLetterStrategy(wanted), None);
        }
    }

    /// Dead letters are waiting (an applied entry said so): the worker looks, started first
    /// if need be.
    pub(super) fn dlx_wake(&self) {
        if !self.dlx.started.load(Ordering::Acquire) {
            // Called from the member's tasks: a runtime is there.
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                return;
            };
            if !self.dlx.started.swap(true, Ordering::AcqRel) {
                runtime.spawn(work(self.this.clone(), Arc::clone(&self.dlx.wake)));
            }
        }
        self.dlx.wake.notify_one();
    }

    /// One round: while this member leads, routes the waiting dead letters not in flight.
    fn dlx_round(&self) {
        let Some(qq) = self.local() else {
            return;
        };
        if !qq.is_leader() {
            // A member that leads again later sends everything again.
            self.dlx.in_flight.lock().clear();
            return;
        }
        let waiting = {
            let in_flight = self.dlx.in_flight.lock();
            let room = IN_FLIGHT.saturating_sub(in_flight.len());
            if room == 0 {
                return;
            }
            qq.machine()
                .read(|m| m.dead_letters_waiting(room, &in_flight))
        };
        if waiting.is_empty() {
            return;
        }
        let (Some(queue), Some(vhost)) = (
            self.queue.upgrade(),
            self.broker.upgrade().and_then(|b| b.vhost(&self.vhost)),
        ) else {
            return;
        };
        let settings = queue.settings();
        let Some(exchange) = settings.dead_letter_exchange.as_deref() else {
            // The policy lost its exchange: the strategy goes back to at-most-once
            // (`dlx_strategy_changed`), which hands these over.
            return;
        };
        let routing_key = settings.dead_letter_routing_key.as_deref();
        let mut settle_now = Vec::new();
        for (id, reason, d) in waiting {
            let Some(message) = message::decode(&self.name, d.message) else {
                tracing::warn!(queue = %self.name, "quorum queue: undecodable dead letter dropped");
                settle_now.push(id);
                continue;
            };
            let m = QueuedMessage {
                message,
                seq: d.seq,
                redelivered: d.delivery_count > 0,
                expires_at: None,
                delivery_count: d.delivery_count,
                persisted: false,
            };
            match vhost.dead_letter_confirmed(&queue, exchange, routing_key, &m, why(reason)) {
                DeadLetterRoute::Published(published) => {
                    self.dlx.in_flight.lock().insert(id);
                    let epoch = vhost.store().map_or(0, |s| s.current_epoch());
                    let vhost = Arc::clone(&vhost);
                    let member = self.this.clone();
                    tokio::spawn(async move {
                        let ok = tokio::time::timeout(
                            CONFIRM_TIMEOUT,
                            confirmed(published, &vhost, epoch),
                        )
                        .await
                        .unwrap_or(false);
                        if let Some(member) = member.upgrade() {
                            if ok {
                                member.dlx_settle(vec![id]);
                            } else {
                                member.dlx.in_flight.lock().remove(&id);
                            }
                        }
                    });
                }
                DeadLetterRoute::Cycle => {
                    tracing::debug!(queue = %self.name, "quorum queue: a dead letter would go round a cycle: dropped");
                    settle_now.push(id);
                }
                DeadLetterRoute::NoExchange | DeadLetterRoute::NoQueue => {
                    if !self.dlx.warned.swap(true, Ordering::AcqRel) {
                        tracing::warn!(queue = %self.name, vhost = %self.vhost, exchange, "quorum queue: cannot forward dead letters (at-least-once): the dead-letter exchange is missing or routes them to no queue; they stay in the queue and are tried again");
                    }
                }
            }
        }
        if !settle_now.is_empty() {
            self.dlx.in_flight.lock().extend(settle_now.iter().copied());
            self.dlx_settle(settle_now);
        }
    }

    /// Proposes the settlement of dead letters confirmed by their targets; once the entry is
    /// committed (or not), they are no longer in flight (a settlement that did not commit
    /// leaves them waiting: they are sent again).
    fn dlx_settle(&self, ids: Vec<u64>) {
        self.dlx.warned.store(false, Ordering::Release);
        let in_flight = Arc::clone(&self.dlx.in_flight);
        let done_ids = ids.clone();
        self.push(
            QueueOp::DeadLetterSettle(ids),
            Some(Box::new(move |_| {
                let mut in_flight = in_flight.lock();
                for id in &done_ids {
                    in_flight.remove(id);
                }
            })),
        );
    }
}

/// The worker's loop: a round when told, and every [`RETRY`] (a new leader finds what its
/// predecessor left; what could not leave is tried again). Ends with the member.
async fn work(member: Weak<QuorumMember>, wake: Arc<tokio::sync::Notify>) {
    loop {
        {
            let Some(m) = member.upgrade() else {
                return;
            };
            if m.ops.lock().is_none() {
                return; // stopped (deleted or shut down)
            }
            m.dlx_round();
        }
        tokio::select! {
            _ = wake.notified() => {}
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Whether every target confirmed a dead letter: quorum queues committed it, classic queues
/// homed elsewhere have it, local ones that stored it synced their log (`epoch`).
async fn confirmed(published: Published, vhost: &VHost, epoch: u64) -> bool {
    if published.rejected {
        return false;
    }
    if let Some(replicated) = &published.replicated {
        let (tx, rx) = tokio::sync::oneshot::channel();
        replicated.on_done(Box::new(move || {
            let _ = tx.send(());
        }));
        if rx.await.is_err() || replicated.outcome() != Some(true) {
            return false;
        }
    }
    if let Some(remote) = &published.remote {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = Mutex::new(Some(tx));
        remote.on_done(Arc::new(move || {
            if let Some(tx) = tx.lock().take() {
                let _ = tx.send(());
            }
        }));
        if rx.await.is_err() || !remote.ok() {
            return false;
        }
    }
    if published.stored {
        if let Some(store) = vhost.store() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            store.on_synced(
                epoch,
                Box::new(move |r| {
                    let _ = tx.send(r.is_ok());
                }),
            );
            return rx.await.unwrap_or(false);
        }
    }
    true
}

fn why(reason: DeadLetterReason) -> DeathReason {
    match reason {
        DeadLetterReason::Rejected => DeathReason::Rejected,
        DeadLetterReason::Expired => DeathReason::Expired,
        DeadLetterReason::MaxLen => DeathReason::MaxLen,
        DeadLetterReason::DeliveryLimit => DeathReason::DeliveryLimit,
    }
}
