//! Single active consumer for the stream protocol: which consumer of a group reads, and whom
//! to tell when that changes. Pure logic, as RabbitMQ's coordinator state machine
//! (rabbit_stream_sac_coordinator_v4.erl, the one RabbitMQ 3.11 to 4.0 run): the server owns
//! one [`SacCoordinator`] behind a lock, calls it on Subscribe / Unsubscribe / a connection's
//! end / a ConsumerUpdate answer, and sends a ConsumerUpdate for each [`Notification`] it
//! gets back.
//!
//! A group is the consumers subscribed with `single-active-consumer=true` and the same name
//! (`name` property) to the same stream of a vhost. Two kinds:
//!
//! - **a plain stream** (no partition index): the first consumer registered is active; when
//!   the active one goes, the first remaining becomes active and is told.
//! - **a super stream partition** (the partition's index, from the `super-stream`
//!   property): the active consumer is the one at `index mod number of consumers`, in
//!   registration order, so that N consumers of a super stream spread its partitions. When a
//!   consumer comes or goes and that position changes, the active one is told to step down
//!   (`active: false, stepping_down: true`) and nobody is active until its connection answers
//!   the ConsumerUpdate ([`SacCoordinator::activate`]): it may first store its offset, so that
//!   the next active one resumes where it stopped.

use crate::consumer::ConnectionId;
use std::collections::{HashMap, HashSet};

/// A group: a consumer name on a stream of a vhost.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GroupKey {
    /// The vhost.
    pub vhost: String,
    /// The stream (for a super stream: the partition stream).
    pub stream: String,
    /// The consumer name (the subscription's `name` property, RabbitMQ's "reference").
    pub name: String,
}

impl GroupKey {
    /// The group of consumer `name` on `stream` in `vhost`.
    pub fn new(vhost: &str, stream: &str, name: &str) -> GroupKey {
        GroupKey {
            vhost: vhost.to_string(),
            stream: stream.to_string(),
            name: name.to_string(),
        }
    }
}

/// One consumer: its connection and its subscription id on that connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SacConsumer {
    /// The connection.
    pub connection: ConnectionId,
    /// The stream protocol's subscription id (one byte).
    pub subscription: u8,
}

/// A change a consumer must be told about with a ConsumerUpdate (RabbitMQ's `{sac, #{...}}`
/// message to the connection).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Who.
    pub consumer: SacConsumer,
    /// Its group.
    pub group: GroupKey,
    /// Whether it is active from now on.
    pub active: bool,
    /// It was active and must step down: once its client answers the ConsumerUpdate, call
    /// [`SacCoordinator::activate`] to pick the next active one.
    pub stepping_down: bool,
}

/// A group as `rabbitmq-streams list_stream_consumer_groups` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInfo {
    /// The group.
    pub key: GroupKey,
    /// The partition index, `None` for a plain stream (RabbitMQ shows -1).
    pub partition_index: Option<u32>,
    /// Its consumers in registration order, with whether each is active.
    pub consumers: Vec<(SacConsumer, bool)>,
}

#[derive(Debug, Clone)]
struct Member {
    consumer: SacConsumer,
    active: bool,
}

#[derive(Debug, Clone)]
struct Group {
    partition_index: Option<u32>,
    members: Vec<Member>,
}

impl Group {
    fn active(&self) -> Option<SacConsumer> {
        self.members.iter().find(|m| m.active).map(|m| m.consumer)
    }

    /// The consumer that should be active in a partition's group
    /// (`evaluate_active_consumer`: the index modulo the number of consumers).
    fn evaluated(&self) -> Option<SacConsumer> {
        let n = self.members.len();
        if n == 0 {
            return None;
        }
        let i = match self.partition_index {
            Some(index) => usize::try_from(index).unwrap_or(0) % n,
            None => 0,
        };
        Some(self.members[i].consumer)
    }

    fn set_active(&mut self, consumer: SacConsumer, active: bool) {
        for m in &mut self.members {
            if m.consumer == consumer {
                m.active = active;
            }
        }
    }
}

/// Every single-active-consumer group of a node.
#[derive(Debug, Default)]
pub struct SacCoordinator {
    groups: HashMap<GroupKey, Group>,
    /// The groups each connection has consumers in (to clean up when it closes).
    by_connection: HashMap<ConnectionId, HashSet<GroupKey>>,
}

impl SacCoordinator {
    /// No groups.
    pub fn new() -> SacCoordinator {
        SacCoordinator::default()
    }

    /// Registers `consumer` in `group` (a Subscribe with `single-active-consumer=true`);
    /// `partition_index` is the partition's index in its super stream (`None`: a plain
    /// stream). Returns whether it is active at once, and whom to notify (the newcomer itself
    /// when it is active; for a partition, perhaps the current active one stepping down).
    /// Registering a consumer twice does nothing.
    pub fn register(
        &mut self,
        group: GroupKey,
        partition_index: Option<u32>,
        consumer: SacConsumer,
    ) -> (bool, Vec<Notification>) {
        let g = self.groups.entry(group.clone()).or_insert_with(|| Group {
            partition_index,
            members: Vec::new(),
        });
        if let Some(m) = g.members.iter().find(|m| m.consumer == consumer) {
            return (m.active, Vec::new());
        }
        self.by_connection
            .entry(consumer.connection)
            .or_default()
            .insert(group.clone());
        let notify = |c: SacConsumer, active: bool, stepping_down: bool| Notification {
            consumer: c,
            group: group.clone(),
            active,
            stepping_down,
        };
        // do_register_consumer: the first of a group is active; in a plain stream a newcomer
        // is active only when nobody is; in a partition it is passive, and may displace the
        // active one.
        let first = g.members.is_empty();
        let active = first || (g.partition_index.is_none() && g.active().is_none());
        g.members.push(Member { consumer, active });
        let mut notes = Vec::new();
        if active {
            notes.push(notify(consumer, true, false));
        } else if g.partition_index.is_some() {
            if let Some(current) = g.active() {
                if g.evaluated() != Some(current) {
                    g.set_active(current, false);
                    notes.push(notify(current, false, true));
                }
            }
            // No active one: a former active is stepping down; its answer decides.
        }
        (active, notes)
    }

    /// Removes `consumer` from `group` (Unsubscribe); returns whom to notify.
    pub fn unregister(&mut self, group: &GroupKey, consumer: SacConsumer) -> Vec<Notification> {
        let Some(g) = self.groups.get_mut(group) else {
            return Vec::new();
        };
        let Some(pos) = g.members.iter().position(|m| m.consumer == consumer) else {
            return Vec::new();
        };
        let removed = g.members.remove(pos);
        let notes = removal(g, group, removed.active);
        self.forget_if_empty(group);
        if !self.has_consumers_of(consumer.connection, group) {
            self.unindex(consumer.connection, group);
        }
        notes
    }

    /// The consumer that stepped down answered its ConsumerUpdate
    /// (`activate_consumer`): the group's evaluated consumer becomes active and is told.
    pub fn activate(&mut self, group: &GroupKey) -> Vec<Notification> {
        let Some(g) = self.groups.get_mut(group) else {
            return Vec::new();
        };
        let Some(next) = g.evaluated() else {
            return Vec::new();
        };
        g.set_active(next, true);
        vec![Notification {
            consumer: next,
            group: group.clone(),
            active: true,
            stepping_down: false,
        }]
    }

    /// Removes every consumer of `connection` (it closed); returns whom to notify
    /// (`handle_connection_down`).
    pub fn connection_closed(&mut self, connection: ConnectionId) -> Vec<Notification> {
        let Some(keys) = self.by_connection.remove(&connection) else {
            return Vec::new();
        };
        let mut keys: Vec<GroupKey> = keys.into_iter().collect();
        keys.sort();
        let mut notes = Vec::new();
        for key in keys {
            let Some(g) = self.groups.get_mut(&key) else {
                continue;
            };
            let before = g.members.len();
            let active_removed = g
                .members
                .iter()
                .any(|m| m.consumer.connection == connection && m.active);
            g.members.retain(|m| m.consumer.connection != connection);
            if g.members.len() != before {
                notes.extend(removal(g, &key, active_removed));
            }
            self.forget_if_empty(&key);
        }
        notes
    }

    /// Whether `consumer` is the active one of `group`.
    pub fn is_active(&self, group: &GroupKey, consumer: SacConsumer) -> bool {
        self.groups
            .get(group)
            .is_some_and(|g| g.members.iter().any(|m| m.consumer == consumer && m.active))
    }

    /// The group's consumers in registration order, with whether each is active
    /// (`list_stream_group_consumers`).
    pub fn group(&self, group: &GroupKey) -> Option<GroupInfo> {
        self.groups.get(group).map(|g| info(group, g))
    }

    /// The groups of `vhost`, ordered by stream then name (`list_stream_consumer_groups`).
    pub fn groups(&self, vhost: &str) -> Vec<GroupInfo> {
        let mut all: Vec<GroupInfo> = self
            .groups
            .iter()
            .filter(|(k, _)| k.vhost == vhost)
            .map(|(k, g)| info(k, g))
            .collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    fn forget_if_empty(&mut self, group: &GroupKey) {
        if self.groups.get(group).is_some_and(|g| g.members.is_empty()) {
            self.groups.remove(group);
        }
    }

    fn has_consumers_of(&self, connection: ConnectionId, group: &GroupKey) -> bool {
        self.groups.get(group).is_some_and(|g| {
            g.members
                .iter()
                .any(|m| m.consumer.connection == connection)
        })
    }

    fn unindex(&mut self, connection: ConnectionId, group: &GroupKey) {
        if let Some(keys) = self.by_connection.get_mut(&connection) {
            keys.remove(group);
            if keys.is_empty() {
                self.by_connection.remove(&connection);
            }
        }
    }
}

fn info(key: &GroupKey, g: &Group) -> GroupInfo {
    GroupInfo {
        key: key.clone(),
        partition_index: g.partition_index,
        consumers: g.members.iter().map(|m| (m.consumer, m.active)).collect(),
    }
}

/// What a removal from `g` changes (`handle_consumer_removal`); `active_removed`: the active
/// one was among those removed.
fn removal(g: &mut Group, key: &GroupKey, active_removed: bool) -> Vec<Notification> {
    let note = |consumer: SacConsumer, active: bool, stepping_down: bool| Notification {
        consumer,
        group: key.clone(),
        active,
        stepping_down,
    };
    if g.members.is_empty() {
        return Vec::new();
    }
    if g.partition_index.is_none() {
        // A plain stream: the first remaining one takes over from a removed active one.
        if !active_removed {
            return Vec::new();
        }
        for (i, m) in g.members.iter_mut().enumerate() {
            m.active = i == 0;
        }
        return vec![note(g.members[0].consumer, true, false)];
    }
    match (g.active(), g.evaluated()) {
        // The active one stays where it is.
        (Some(current), Some(next)) if current == next => Vec::new(),
        // Someone else should read: the active one steps down first.
        (Some(current), _) => {
            g.set_active(current, false);
            vec![note(current, false, true)]
        }
        // The active one went away: the next one takes over at once.
        (None, Some(next)) if active_removed => {
            g.set_active(next, true);
            vec![note(next, true, false)]
        }
        // A former active one is stepping down: its answer decides.
        _ => Vec::new(),
    }
}

#[cfg(test)]
#[path = "stream_sac_tests.rs"]
mod tests;
