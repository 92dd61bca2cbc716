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
use std::collections::HashMap;
use std::sync::{Arc, Weak};
use stream_wire::{ConsumerUpdate, ConsumerUpdateResponse, Properties};

/// A group: vhost, stream, consumer name.
pub(super) type GroupKey = (String, String, String);

struct Member {
    conn: u64,
    subscription: u8,
    waker: Weak<Waker>,
    active: bool,
}

/// Every single-active-consumer group of the server, members in the order they joined.
#[derive(Default)]
pub(crate) struct Groups(Mutex<HashMap<GroupKey, Vec<Member>>>);

impl Groups {
    /// Adds a member; true if it is the active one (the group was empty).
    fn join(&self, key: GroupKey, conn: u64, subscription: u8, waker: &Arc<Waker>) -> bool {
        let mut groups = self.0.lock();
        let members = groups.entry(key).or_default();
        let active = !members.iter().any(|m| m.active);
        members.push(Member {
            conn,
            subscription,
            waker: Arc::downgrade(waker),
            active,
        });
        active
    }

    /// Removes a member; if it was the active one, the next is activated and its connection
    /// woken.
    fn leave(&self, key: &GroupKey, conn: u64, subscription: u8) {
        let mut groups = self.0.lock();
        let Some(members) = groups.get_mut(key) else {
            return;
        };
        let Some(i) = members
            .iter()
            .position(|m| m.conn == conn && m.subscription == subscription)
        else {
            return;
        };
        let left = members.remove(i);
        if left.active {
            if let Some(next) = members.first_mut() {
                next.active = true;
                if let Some(w) = next.waker.upgrade() {
                    w.0.notify_one();
                }
            }
        }
        if members.is_empty() {
            groups.remove(key);
        }
    }

    pub(super) fn is_active(&self, key: &GroupKey, conn: u64, subscription: u8) -> bool {
        self.0.lock().get(key).is_some_and(|members| {
            members
                .iter()
                .any(|m| m.conn == conn && m.subscription == subscription && m.active)
        })
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
        Some(name) if !name.is_empty() => Ok(Some((
            vhost.to_string(),
            stream.to_string(),
            name.to_string(),
        ))),
        _ => Err(()),
    }
}

impl Conn {
    /// Joins the group `key` with subscription `id`; its state.
    pub(super) fn join_group(&self, key: GroupKey, id: u8) -> Sac {
        self.state
            .stream_groups
            .join(key.clone(), self.id, id, &self.waker);
        Sac {
            key,
            state: SacState::Waiting,
        }
    }

    /// Leaves the group of a subscription that goes away.
    pub(super) fn leave_group(&self, sac: &Sac, id: u8) {
        self.state.stream_groups.leave(&sac.key, self.id, id);
    }

    /// Sends `ConsumerUpdate` (active) to every waiting subscription its group activated.
    pub(super) fn activate_promoted(&mut self) {
        let groups = Arc::clone(&self.state);
        let mut updates = Vec::new();
        for (&id, sub) in self.subscriptions.iter_mut() {
            let Some(sac) = sub.sac.as_mut() else {
                continue;
            };
            if sac.state == SacState::Waiting
                && groups.stream_groups.is_active(&sac.key, self.id, id)
            {
                self.next_correlation = self.next_correlation.wrapping_add(1);
                sac.state = SacState::Activating(self.next_correlation);
                updates.push(ConsumerUpdate {
                    correlation_id: self.next_correlation,
                    subscription_id: id,
                    active: true,
                });
            }
        }
        for u in updates {
            self.send(u);
        }
    }

    /// The client's answer to an activation: where the subscription starts reading.
    pub(super) fn activated(&mut self, r: &ConsumerUpdateResponse) {
        let found = self.subscriptions.iter_mut().find(|(_, s)| {
            s.sac
                .as_ref()
                .is_some_and(|sac| sac.state == SacState::Activating(r.correlation_id))
        });
        let Some((_, sub)) = found else {
            return;
        };
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
        for (&id, sub) in &self.subscriptions {
            if let Some(sac) = &sub.sac {
                self.leave_group(sac, id);
            }
        }
    }
}
