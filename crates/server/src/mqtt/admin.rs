//! What the management API shows of MQTT sessions and retained messages, and what it does to
//! them (Pigeon's own `/api/mqtt/...` endpoints: RabbitMQ has none). Snapshots are taken
//! under each session's lock, one at a time, never holding two locks.

use super::session::Session;
use super::topic;
use crate::ServerState;
use bytes::Bytes;
use mqtt_wire::ProtocolVersion;
use pigeon_broker::VHost;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// One subscription of a session.
pub(crate) struct SubscriptionView {
    /// The filter as the client wrote it (`$share/group/...` included).
    pub filter: String,
    /// The QoS granted (0, 1, 2).
    pub qos: u8,
    /// MQTT 5 no-local.
    pub no_local: bool,
    /// MQTT 5 retain-as-published.
    pub retain_as_published: bool,
    /// MQTT 5 retain handling (0, 1, 2).
    pub retain_handling: u8,
    /// MQTT 5 subscription identifier.
    pub id: Option<u32>,
    /// The shared subscription group.
    pub group: Option<String>,
}

/// A session as the API shows it.
pub(crate) struct SessionView {
    /// Client identifier.
    pub client_id: String,
    /// Its vhost.
    pub vhost: String,
    /// The connection attached to it (its registry name), if online.
    pub connection: Option<String>,
    /// The user of that connection.
    pub user: Option<String>,
    /// The protocol level of the attached connection (3: 3.1, 4: 3.1.1, 5: 5.0).
    pub protocol_version: Option<u8>,
    /// Session expiry interval in seconds (`None`: never expires, 3.1.1 `clean_session=0`).
    pub expiry: Option<u32>,
    /// Subscriptions, in the order they were made.
    pub subscriptions: Vec<SubscriptionView>,
    /// The session's own queue.
    pub queue: Option<String>,
    /// Messages waiting in that queue.
    pub queued: u64,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub inflight: usize,
    /// Inbound QoS 2 messages received and not yet released.
    pub inbound_qos2: usize,
    /// Kept in the store (it outlives a restart).
    pub persistent: bool,
}

/// The sessions of `vhost` (all vhosts: `None`), sorted by vhost and client id.
pub(crate) fn sessions(state: &ServerState, vhost: Option<&str>) -> Vec<SessionView> {
    let connections = mqtt_connections(state);
    let mut views: Vec<SessionView> = state
        .mqtt
        .registry
        .all(vhost)
        .iter()
        .map(|s| view(s, &connections))
        .collect();
    views.sort_by(|a, b| (&a.vhost, &a.client_id).cmp(&(&b.vhost, &b.client_id)));
    views
}

/// One session.
pub(crate) fn session(state: &ServerState, vhost: &str, client_id: &str) -> Option<SessionView> {
    let s = state.mqtt.registry.get(vhost, client_id)?;
    Some(view(&s, &mqtt_connections(state)))
}

/// The MQTT connections of the registry by (vhost, client id): their name and user.
fn mqtt_connections(state: &ServerState) -> HashMap<(String, String), (String, String)> {
    state
        .registry
        .connections()
        .into_iter()
        .filter_map(|c| {
            let client_id = c.client_id?;
            Some(((c.vhost, client_id), (c.name, c.user)))
        })
        .collect()
}

fn view(s: &Session, connections: &HashMap<(String, String), (String, String)>) -> SessionView {
    let core = s.core.lock();
    let vhost = s.vhost.name().to_string();
    let client_id = s.client_id.to_string();
    let online = core.attached.as_ref().map(|a| a.version);
    let (connection, user) = match online {
        Some(_) => connections
            .get(&(vhost.clone(), client_id.clone()))
            .map(|(n, u)| (Some(n.clone()), Some(u.clone())))
            .unwrap_or_default(),
        None => (None, None),
    };
    SessionView {
        client_id,
        vhost,
        connection,
        user,
        protocol_version: online.map(|v| match v {
            ProtocolVersion::V3_1 => 3,
            ProtocolVersion::V3_1_1 => 4,
            ProtocolVersion::V5 => 5,
        }),
        expiry: (core.expiry != u32::MAX).then_some(core.expiry),
        subscriptions: core
            .subscriptions
            .iter()
            .map(|sub| SubscriptionView {
                filter: sub.key.clone(),
                qos: sub.options.qos as u8,
                no_local: sub.options.no_local,
                retain_as_published: sub.options.retain_as_published,
                retain_handling: sub.options.retain_handling as u8,
                id: sub.id,
                group: sub.group.clone(),
            })
            .collect(),
        queue: core.queue.as_ref().map(|q| q.name().to_string()),
        queued: core
            .queue
            .as_ref()
            .map_or(0, |q| u64::from(q.message_count())),
        inflight: core.inflight.len(),
        inbound_qos2: core.inbound_qos2.len(),
        persistent: core.stored,
    }
}

/// How long [`discard`] waits for a disconnected client's connection to let go of its
/// session.
const LET_GO: Duration = Duration::from_secs(10);

/// Why a session could not be discarded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DiscardError {
    /// No such session.
    #[error("no such session")]
    NotFound,
    /// Its connection did not let go in time.
    #[error("the session's connection did not close within {0:?}")]
    Busy(Duration),
}

/// Disconnects the client of a session, if it is connected (MQTT 5.0: DISCONNECT 0x98
/// Administrative action with `reason`; 3.1.x: the socket closes), and discards the session:
/// subscriptions, queue, messages in flight, stored state. A client that reconnects gets a
/// new, empty session.
pub(crate) async fn discard(
    state: &Arc<ServerState>,
    vhost: &str,
    client_id: &str,
    reason: &str,
) -> Result<(), DiscardError> {
    let registry = &state.mqtt.registry;
    let session = registry
        .get(vhost, client_id)
        .ok_or(DiscardError::NotFound)?;
    if session.core.lock().attached.is_some() {
        if let Some((name, _)) =
            mqtt_connections(state).remove(&(vhost.to_string(), client_id.to_string()))
        {
            state.close_connection(&name, reason);
        }
    }
    // The connection holds the session's lease until it has let go of it (its end, will
    // included, done); holding the lease, nothing else attaches while the session ends. A
    // client that connects meanwhile waits, then finds the session gone and starts anew
    // (`connection.rs`).
    if !registry.take_lease(&session, LET_GO).await {
        return Err(DiscardError::Busy(LET_GO));
    }
    registry.end(&session);
    registry.give_back_lease(&session);
    Ok(())
}

/// A retained message as the API shows it.
pub(crate) struct RetainedView {
    /// The MQTT topic.
    pub topic: String,
    /// The QoS it was published with.
    pub qos: u8,
    /// Its payload.
    pub payload: Bytes,
    /// Its MQTT 5 content type, if any.
    pub content_type: Option<String>,
}

fn retained_view(key: &str, m: &pigeon_broker::Message) -> RetainedView {
    let out = super::convert::outgoing(m.properties_raw(), m.age(), true);
    RetainedView {
        topic: topic::from_routing_key(key),
        qos: out.qos as u8,
        payload: m.body_bytes(),
        content_type: out.properties.content_type.clone(),
    }
}

/// The retained messages of a vhost, sorted by topic.
pub(crate) fn retained(vhost: &VHost) -> Vec<RetainedView> {
    let mut views: Vec<RetainedView> = vhost
        .retained
        .entries()
        .iter()
        .map(|(k, m)| retained_view(k, m))
        .collect();
    views.sort_by(|a, b| a.topic.cmp(&b.topic));
    views
}

/// The retained message of an MQTT topic.
pub(crate) fn retained_one(vhost: &VHost, topic_name: &str) -> Option<RetainedView> {
    let key = topic::to_routing_key(topic_name);
    vhost.retained.get(&key).map(|m| retained_view(&key, &m))
}

/// Deletes the retained message of an MQTT topic (as an empty retained PUBLISH would); false
/// if there is none. Writes to the store when the message was kept there (fsync): call it
/// off the runtime. In a cluster the deletion is versioned and sent to every node, as an
/// empty retained PUBLISH's (`cluster/mqtt_retained.rs`).
pub(crate) fn delete_retained(server: &ServerState, vhost: &VHost, topic_name: &str) -> bool {
    let key = topic::to_routing_key(topic_name);
    if vhost.retained.get(&key).is_none() {
        return false;
    }
    vhost.retained.set(&key, None);
    super::cluster::retained(server, vhost, &key);
    true
}
