//! A publishing connection's state (`Publishing`, made at its first PUBLISH) and its
//! acknowledgements waiting: for the store's sync, for the quorum queues' commit
//! (`cluster/quorum`) and for the home nodes of classic queues on other nodes
//! (`cluster/forward.rs`), sent in order.

use super::connection::{send_packet, Conn};
use mqtt_wire::{Packet, ProtocolVersion, ReasonCode, TopicName};
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

/// An acknowledgement waiting: the store epoch it needs synced, the packet, and the quorum
/// queues' commit it needs (quorum queues in the broker, `cluster/quorum`).
pub(super) type PendingAck = (
    u64,
    Packet,
    Option<Arc<pigeon_broker::queue::quorum::ReplicaConfirm>>,
);

/// The state of a connection that publishes (see [`Conn::publishing`]).
#[derive(Default)]
pub(super) struct Publishing {
    /// Topic aliases the client set on this connection.
    pub aliases: HashMap<u16, TopicName>,
    /// Publisher flow control (`crate::flow`): queues this publisher fills faster than they
    /// drain, and the queues this read batch's publishes reached.
    pub flow: crate::flow::PublishFlow,
    pub gathered: crate::flow::Gathered,
    /// What this read batch published, as the memory alarm estimates it, not yet charged
    /// (`crate::memory::charge`).
    pub charged: u64,
    /// PUBACK / PUBREC / PUBCOMP waiting for the store to sync what they acknowledge (epoch;
    /// 0: for the acknowledgements ahead of them only), and for the quorum queues the message
    /// reached to commit it.
    pub pending_acks: VecDeque<PendingAck>,
    /// Highest epoch a wake-up (of this task, through `out`) was asked for.
    pub wake_epoch: u64,
    /// PUBACK / PUBREC (by packet id) of publishes that reached queues homed on other nodes
    /// of the cluster (cluster/forward.rs): sent once those nodes have the message.
    pub remote: HashMap<u16, Arc<pigeon_broker::RemoteConfirm>>,
    /// The last topic the client was allowed to publish to, with the permissions' generation.
    pub allowed: Option<(u64, TopicName)>,
}

impl Conn {
    /// Sends the PUBACK / PUBREC whose messages are on disk, in order.
    pub(super) fn flush_acks(&mut self) {
        let Some(p) = self.publishing.as_mut() else {
            return;
        };
        if p.pending_acks.is_empty() {
            return;
        }
        let synced = self
            .server
            .store
            .as_ref()
            .map_or(u64::MAX, |s| s.synced_epoch());
        while let Some((epoch, _, replicated)) = p.pending_acks.front() {
            let mut refused = false;
            if let Some(r) = replicated {
                match r.outcome() {
                    Some(ok) => refused = !ok,
                    None => {
                        // Woken (this task runs `flush_acks` again) once the groups answer.
                        let out = Arc::clone(&self.reg.entry.out);
                        r.on_done(Box::new(move || out.wake()));
                        return;
                    }
                }
            }
            if *epoch > synced {
                let epoch = *epoch;
                if let (Some(store), true) = (&self.server.store, epoch > p.wake_epoch) {
                    p.wake_epoch = epoch;
                    let out = Arc::clone(&self.reg.entry.out);
                    store.on_synced(epoch, Box::new(move |_| out.wake()));
                }
                return;
            }
            if let Some(id) = remote_ack_id(p.pending_acks.front().map(|(_, a, _)| a)) {
                if let Some(remote) = p.remote.get(&id) {
                    if !remote.done() {
                        let out = Arc::clone(&self.reg.entry.out);
                        remote.on_done(Arc::new(move || out.wake()));
                        return;
                    }
                }
            }
            if let Some((_, mut ack, _)) = p.pending_acks.pop_front() {
                // A home node that refused it or was down (cluster/forward.rs): the message
                // is lost for that queue.
                let remote_failed = remote_ack_id(Some(&ack))
                    .and_then(|id| p.remote.remove(&id))
                    .is_some_and(|remote| !remote.ok());
                if refused || remote_failed {
                    // Not committed by a quorum queue (full with reject-publish, or no
                    // majority) or not taken by a home node: MQTT 5 says so; 3.1.1 has no
                    // negative PUBACK, so none is sent and the client publishes it again (as
                    // RabbitMQ's MQTT plugin does for a rejected publish).
                    let reason = if refused {
                        ReasonCode::QuotaExceeded
                    } else {
                        ReasonCode::UnspecifiedError
                    };
                    match (&mut ack, self.version) {
                        (Packet::PubAck(a), ProtocolVersion::V5) => a.reason = reason,
                        (Packet::PubRec(r), ProtocolVersion::V5) => r.reason = reason,
                        _ => continue,
                    }
                }
                send_packet(&self.reg.entry.out, &ack, self.version);
            }
        }
    }

    /// The publishing state, created at the first need.
    pub(super) fn publishing(&mut self) -> &mut Publishing {
        self.publishing.get_or_insert_with(Default::default)
    }

    /// How many acknowledgements wait for the store (none before the client published).
    pub(super) fn acks_waiting(&self) -> usize {
        self.publishing.as_ref().map_or(0, |p| p.pending_acks.len())
    }
}

/// The packet id of a PUBACK / PUBREC that may wait for a cluster's home nodes.
fn remote_ack_id(ack: Option<&Packet>) -> Option<u16> {
    match ack? {
        Packet::PubAck(a) => Some(a.packet_id),
        Packet::PubRec(r) => Some(r.packet_id),
        _ => None,
    }
}
