//! Single active consumer (PROTOCOL.adoc, "ConsumerUpdate"; RabbitMQ's
//! `rabbit_stream_sac_coordinator`): subscriptions with `single-active-consumer: true` and
//! the same `name` on the same stream form a group, of which one consumer at a time receives
//! chunks.
//!
//! The first to join is active. Activation is a `ConsumerUpdate` request (active) to the
//! consumer's connection, whose answer names the offset specification to start from; the
//! subscription then reads from there. When the active consumer leaves (unsubscribes, its
//! connection closes, its stream is deleted), the longest-waiting one is activated the same
//! way. The others get nothing until then.
//!
//! The groups are shared by every connection of the server ([`Groups`], in the server
//! state); each member holds its connection's [`Waker`], so that a connection learns that one
//! of its subscriptions was promoted by another connection's departure.

use super::connection::{Conn, Waker};
use parking_lot::Mutex;
use pigeon_broker::stream_sac::{GroupInfo, Notification, SacConsumer, SacCoordinator};
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use stream_wire::{ConsumerUpdate, ConsumerUpdateResponse, Properties};

pub(super) use pigeon_broker::stream_sac::GroupKey;

#[derive(Default)]
struct Inner {
    coordinator: SacCoordinator,
    /// Each connection with consumers in a group: how to wake it.
    wakers: HashMap<u64, Weak<Waker>>,
    /// What each connection must still be told (it reads them when woken).
    pending: HashMap<u64, Vec<Notification>>,
}

impl Inner {
    /// Queues `notes` for their connections and wakes them.
    fn post(&mut self, notes: Vec<Notification>) {
        for n in notes {
            let conn = n.consumer.connection;
            self.pending.entry(conn).or_default().push(n);
            if let Some(w) = self.wakers.get(&conn).and_then(Weak::upgrade) {
                w.0.notify_one();
            }
        }
    }
}

/// Every single-active-consumer group of the server: the broker's coordinator
/// ([`SacCoordinator`], RabbitMQ's `rabbit_stream_sac_coordinator`) and the notifications it
/// gave for each connection.
#[derive(Default)]
pub(crate) struct Groups(Mutex<Inner>);

impl Groups {
    fn join(&self, key: GroupKey, partition: Option<u32>, conn: u64, sub: u8, waker: &Arc<Waker>) {
        let mut inner = self.0.lock();
        inner.wakers.insert(conn, Arc::downgrade(waker));
        let consumer = SacConsumer {
            connection: conn,
            subscription: sub,
        };
        let (_, notes) = inner.coordinator.register(key, partition, consumer);
        inner.post(notes);
    }

    /// Whether the consumer is its group's active one (the management API's `active`).
    pub(super) fn is_active(&self, key: &GroupKey, conn: u64, subscription: u8) -> bool {
        let consumer = SacConsumer {
            connection: conn,
            subscription,
        };
        self.0.lock().coordinator.is_active(key, consumer)
    }

    /// The groups of `vhost`, by stream then name (`list_stream_consumer_groups`).
    pub(crate) fn list(&self, vhost: &str) -> Vec<GroupInfo> {
        self.0.lock().coordinator.groups(vhost)
    }

    /// One group's consumers in registration order (`list_stream_group_consumers`).
    pub(crate) fn group(&self, key: &GroupKey) -> Option<GroupInfo> {
        self.0.lock().coordinator.group(key)
    }

    /// Removes a member; `stepping_down`: it was told to step down and had not answered yet,
    /// so the group's next active one is picked now.
    fn leave(&self, key: &GroupKey, conn: u64, sub: u8, stepping_down: bool) {
        let mut inner = self.0.lock();
        let consumer = SacConsumer {
            connection: conn,
            subscription: sub,
        };
        let mut notes = inner.coordinator.unregister(key, consumer);
        if stepping_down {
            notes.extend(inner.coordinator.activate(key));
        }
        inner.post(notes);
    }

    /// The connection ended: its consumers leave their groups; `stepping_down`: the groups
    /// where one of them had not answered its step-down yet (the next one is picked now).
    fn closed(&self, conn: u64, stepping_down: &[GroupKey]) {
        let mut inner = self.0.lock();
        inner.wakers.remove(&conn);
        inner.pending.remove(&conn);
        let mut notes = inner.coordinator.connection_closed(conn);
        for key in stepping_down {
            notes.extend(inner.coordinator.activate(key));
        }
        inner.post(notes);
    }

    /// A member that stepped down answered: the group's next active one is picked.
    fn stepped_down(&self, key: &GroupKey) {
        let mut inner = self.0.lock();
        let notes = inner.coordinator.activate(key);
        inner.post(notes);
    }

    fn take(&self, conn: u64) -> Vec<Notification> {
        self.0.lock().pending.remove(&conn).unwrap_or_default()
    }
}

/// A subscription's place in its group.
pub(super) struct Sac {
    pub(super) key: GroupKey,
    pub(super) state: SacState,
}

/// Where a subscription of a group stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SacState {
    /// Not the active consumer: nothing is delivered.
    Waiting,
    /// Activated: `ConsumerUpdate` sent with this correlation id, its answer awaited.
    Activating(u32),
    /// The active consumer: delivering.
    Active,
    /// Told to step down (`ConsumerUpdate` inactive, this correlation id); not delivering.
    SteppingDown(u32),
}

/// The group a subscription's properties ask for: `Ok(None)` for an ordinary subscription,
/// `Err(())` for single active consumer without a `name` (PRECONDITION_FAILED, as RabbitMQ).
pub(super) fn requested(
    properties: &Properties,
    vhost: &str,
    stream: &str,
) -> Result<Option<GroupKey>, ()> {
    if properties
        .get("single-active-consumer")
        .is_none_or(|v| v.as_str() != "true")
    {
        return Ok(None);
    }
    match properties.get("name") {
        Some(name) if !name.is_empty() => Ok(Some(GroupKey::new(vhost, stream, name.as_str()))),
        _ => Err(()),
    }
}

impl Conn {
    /// Joins the group `key` with subscription `id` (`partition`: the stream's index in its
    /// super stream, named by the `super-stream` property); its state.
    pub(super) fn join_group(&self, key: GroupKey, partition: Option<u32>, id: u8) -> Sac {
        self.state
            .stream_groups
            .join(key.clone(), partition, self.id, id, &self.waker);
        Sac {
            key,
            state: SacState::Waiting,
        }
    }

    /// Leaves the group of a subscription that goes away.
    pub(super) fn leave_group(&self, sac: &Sac, id: u8) {
        let stepping_down = matches!(sac.state, SacState::SteppingDown(_));
        self.state
            .stream_groups
            .leave(&sac.key, self.id, id, stepping_down);
    }

    /// Tells the client what its groups decided: `ConsumerUpdate` (active) to a subscription
    /// that becomes active, `ConsumerUpdate` (inactive) to one that must step down (the
    /// group's next one is activated once it answered, so that it may store its offset
    /// first: rabbit_stream_sac_coordinator).
    pub(super) fn activate_promoted(&mut self) {
        let groups = Arc::clone(&self.state);
        let mut updates = Vec::new();
        let mut stepped_down = Vec::new();
        for note in groups.stream_groups.take(self.id) {
            let id = note.consumer.subscription;
            let Some(sac) = self.subscriptions.get_mut(&id).and_then(|s| s.sac.as_mut()) else {
                continue;
            };
            if sac.key != note.group {
                continue;
            }
            match (note.active, sac.state) {
                (true, SacState::Waiting) => {
                    self.next_correlation = self.next_correlation.wrapping_add(1);
                    sac.state = SacState::Activating(self.next_correlation);
                    updates.push(ConsumerUpdate {
                        correlation_id: self.next_correlation,
                        subscription_id: id,
                        active: true,
                    });
                }
                (false, SacState::Activating(_) | SacState::Active) => {
                    self.next_correlation = self.next_correlation.wrapping_add(1);
                    sac.state = if note.stepping_down {
                        SacState::SteppingDown(self.next_correlation)
                    } else {
                        SacState::Waiting
                    };
                    updates.push(ConsumerUpdate {
                        correlation_id: self.next_correlation,
                        subscription_id: id,
                        active: false,
                    });
                }
                // Never told it was active: nothing to wait for.
                (false, SacState::Waiting) if note.stepping_down => {
                    stepped_down.push(sac.key.clone());
                }
                _ => {}
            }
        }
        for u in updates {
            self.send(u);
        }
        for key in stepped_down {
            groups.stream_groups.stepped_down(&key);
        }
    }

    /// The client's answer to a `ConsumerUpdate`: where an activated subscription starts
    /// reading, or that one stepping down is done.
    pub(super) fn activated(&mut self, r: &ConsumerUpdateResponse) {
        let found = self.subscriptions.iter_mut().find(|(_, s)| {
            s.sac.as_ref().is_some_and(|sac| {
                sac.state == SacState::Activating(r.correlation_id)
                    || sac.state == SacState::SteppingDown(r.correlation_id)
            })
        });
        let Some((_, sub)) = found else {
            return;
        };
        if let Some(sac) = sub.sac.as_mut() {
            if sac.state == SacState::SteppingDown(r.correlation_id) {
                sac.state = SacState::Waiting;
                let key = sac.key.clone();
                self.state.stream_groups.stepped_down(&key);
                // The next active one may be one of this connection's.
                self.activate_promoted();
                return;
            }
        }
        if let Some(spec) = r.offset {
            if let Err(e) = sub.restart_at(spec) {
                tracing::error!(conn = self.id, stream = %sub.stream, error = %e, "cannot read the stream");
            }
        }
        if let Some(sac) = sub.sac.as_mut() {
            sac.state = SacState::Active;
        }
        self.deliver_all();
    }

    /// Leaves every group (the connection ends).
    pub(super) fn leave_all_groups(&mut self) {
        let stepping_down: Vec<GroupKey> = self
            .subscriptions
            .values()
            .filter_map(|s| s.sac.as_ref())
            .filter(|sac| matches!(sac.state, SacState::SteppingDown(_)))
            .map(|sac| sac.key.clone())
            .collect();
        self.state.stream_groups.closed(self.id, &stepping_down);
    }
}
