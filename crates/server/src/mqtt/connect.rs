//! CONNECT: authentication, the session found or created and taken over from a previous
//! connection of the same client id, the registry entry, and CONNACK.

use super::connection::{send_packet, Conn};
use crate::outbound::Outbound;
use crate::transport::PeerInfo;
use crate::ServerState;
use mqtt_wire::{ConnAck, ConnAckProperties, Connect, Packet, ProtocolVersion, ReasonCode};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How long a new connection waits for the previous one of the same client id to let go.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(5);

/// Authenticates, finds or creates the session, takes it over, and answers CONNACK.
pub(super) async fn connect(
    c: Connect,
    peer_info: &PeerInfo,
    server: &Arc<ServerState>,
    out: &Arc<Outbound>,
) -> Option<Conn> {
    let peer = peer_info.addr;
    let version = c.protocol;
    let refuse = |code: ReasonCode, why: &str| {
        tracing::info!(%peer, client_id = %c.client_id, reason = ?code, "MQTT connection refused: {why}");
        send_packet(out, &Packet::ConnAck(ConnAck::new(code)), version);
        None
    };
    let config = &server.config;
    let (authenticated, vhost) =
        match super::login::login(&c, peer, peer_info.tls.as_deref(), server) {
            Ok(found) => found,
            Err(super::login::Refused::Credentials) => {
                // Logged by `auth` (once, and not at all for a throttled source).
                let ack = Packet::ConnAck(ConnAck::new(ReasonCode::BadUserNameOrPassword));
                send_packet(out, &ack, version);
                return None;
            }
            Err(super::login::Refused::Other(code, why)) => return refuse(code, &why),
        };
    let Ok(exchange) = vhost.exchange(&config.mqtt_exchange) else {
        return refuse(ReasonCode::ServerUnavailable, "MQTT exchange missing");
    };
    let mut assigned = None;
    let client_id = if c.client_id.is_empty() {
        // [MQTT-3.1.3-7/8]: an empty id needs a clean session in 3.1.1; 5.0 assigns one.
        if version != ProtocolVersion::V5 && (!c.clean_start || version == ProtocolVersion::V3_1) {
            return refuse(ReasonCode::ClientIdentifierNotValid, "empty client id");
        }
        let id = format!("pigeon-{:016x}", server.broker.next_id());
        assigned = Some(id.clone());
        id
    } else {
        c.client_id.clone()
    };
    let (authz, slots) =
        match super::authz::admit(server, &vhost, &authenticated.name, &client_id, version) {
            Ok(admitted) => admitted,
            Err(code) => {
                // Logged by `admit`.
                send_packet(out, &Packet::ConnAck(ConnAck::new(code)), version);
                return None;
            }
        };
    // MQTT across the cluster (`mqtt/cluster.rs`): another node's connection of this client id
    // is closed (0x8E) and, unless this one starts clean, its persistent session comes here.
    let moved = super::cluster::take_over(server, vhost.name(), &client_id, c.clean_start).await;
    let registry = &server.mqtt.registry;
    let (session, existed) = loop {
        let (session, existed) =
            registry.get_or_create(&vhost, &client_id, || server.broker.next_id());
        session.waiting.fetch_add(1, Ordering::SeqCst);
        if !session.lease.is_free() {
            // Session takeover [MQTT-3.1.4-3]: the connection holding it sees `waiting` at its
            // next turn and goes; wake it for that turn. One that has not attached yet looks
            // after attaching, so it needs no wake-up.
            if let Some(a) = session.core.lock().attached.as_ref() {
                a.out().wake();
            }
        }
        // The lease is held until the connection is dropped (see `impl Drop for Conn`;
        // a `LeaseHeld` keeps it while the CONNECT awaits a change through the cluster), or given
        // back below.
        let acquired = registry.take_lease(&session, TAKEOVER_TIMEOUT).await;
        session.waiting.fetch_sub(1, Ordering::SeqCst);
        if !acquired {
            return refuse(
                ReasonCode::ServerUnavailable,
                "previous connection did not let go",
            );
        }
        // The previous connection may have ended the session while we waited.
        match registry.get(vhost.name(), &client_id) {
            Some(s) if Arc::ptr_eq(&s, &session) => break (session, existed),
            _ => {
                registry.give_back_lease(&session);
                continue;
            }
        }
    };
    if c.clean_start && existed {
        session.discard(registry.clustered());
        // MQTT across the cluster: the other nodes forget the discarded session's queue, and
        // the metadata group its subscriptions (and its quorum queue).
        super::cluster::discarded(server, &session);
    }
    if server.cluster.is_some() {
        // A persistent session's quorum queue (`mqtt_durable_queue_type = quorum`) is declared
        // through the cluster's metadata group, so that every node has it; a previous
        // session's is deleted through it first (`cluster/mqtt_failover.rs`). Refused as a
        // SUBSCRIBE's declare would be without a majority.
        let persistent = match version {
            ProtocolVersion::V5 => c.properties.session_expiry_interval.unwrap_or(0) != 0,
            _ => !c.clean_start,
        };
        let held = LeaseHeld {
            registry,
            session: &session,
        };
        let ready = crate::cluster::mqtt_failover::session_queue_at_connect(
            server,
            vhost.name(),
            &client_id,
            c.clean_start,
            persistent,
        )
        .await;
        if let Err(e) = ready {
            return refuse(ReasonCode::ServerUnavailable, &e.to_string());
        }
        std::mem::forget(held);
    }
    let session_present = (existed || moved.is_some()) && !c.clean_start;
    let expiry = match version {
        ProtocolVersion::V5 => c.properties.session_expiry_interval.unwrap_or(0),
        _ if c.clean_start => 0,
        _ => u32::MAX,
    };
    session.generation.fetch_add(1, Ordering::Relaxed);
    let reg = register(
        server,
        peer_info,
        out,
        version,
        &session.client_id,
        &authenticated.name,
    );
    reg.entry.update(|d| {
        d.vhost = crate::registry::intern(vhost.name());
        d.timeout = c.keep_alive;
    });
    let mut conn = Conn {
        server: Arc::clone(server),
        version,
        session: Arc::clone(&session),
        exchange,
        will: c.will.map(Box::new),
        keep_alive: c.keep_alive,
        needs_dispatch: false,
        connect_expiry_zero: expiry == 0,
        problem_information: c.properties.request_problem_information.unwrap_or(true),
        publisher: false,
        blocked: false,
        publishing: None,
        authz,
        _slots: slots,
        access_generation: server.broker.access().generation() as u32,
        reg: reg.into(),
        parked: None,
    };
    // [MQTT-3.1.2-21]: the server may impose its own keep-alive (5.0 Server Keep Alive).
    let max_keep_alive = config.mqtt_max_keep_alive;
    let server_keep_alive = (max_keep_alive > 0
        && (conn.keep_alive == 0 || conn.keep_alive > max_keep_alive))
        .then_some(max_keep_alive);
    if let Some(k) = server_keep_alive {
        conn.keep_alive = k;
    }
    let mut ack = ConnAck::new(ReasonCode::Success);
    ack.session_present = session_present;
    if version == ProtocolVersion::V5 {
        let receive_maximum = config.mqtt_receive_maximum;
        ack.properties = ConnAckProperties {
            server_keep_alive,
            receive_maximum: (receive_maximum < u16::MAX).then_some(receive_maximum),
            assigned_client_identifier: assigned,
            topic_alias_maximum: Some(config.mqtt_topic_alias_maximum),
            maximum_packet_size: Some(config.mqtt_max_packet_size),
            retain_available: Some(true),
            wildcard_subscription_available: Some(true),
            subscription_identifiers_available: Some(true),
            shared_subscription_available: Some(true),
            ..ConnAckProperties::default()
        };
    }
    if let Some(state) = moved {
        // A session handed over by another node (`mqtt/cluster.rs`), installed before the
        // CONNACK (its messages wait until `attach`), which waits until the other nodes route
        // to it.
        if let Some(done) = conn.install(state, expiry) {
            super::cluster::settled(done).await;
        }
    }
    send_packet(out, &Packet::ConnAck(ack), version);
    conn.attach(expiry, &c.properties);
    super::persist::save(&session);
    tracing::debug!(%peer, client_id = %client_id, ?version, session_present, "MQTT client connected");
    server.mqtt.stats.connected.fetch_add(1, Ordering::Relaxed);
    Some(conn)
}

/// The session's lease while the CONNECT awaits a change through the cluster: given back if
/// the CONNECT is refused or dropped there (forgotten once the connection holds it).
struct LeaseHeld<'a> {
    registry: &'a super::session::Registry,
    session: &'a super::session::Session,
}

impl Drop for LeaseHeld<'_> {
    fn drop(&mut self) {
        self.registry.give_back_lease(self.session);
    }
}

/// Lists a connected client in the registry.
fn register(
    server: &ServerState,
    peer: &PeerInfo,
    out: &Arc<Outbound>,
    version: ProtocolVersion,
    client_id: &Arc<str>,
    user: &str,
) -> crate::registry::Registered {
    use crate::registry::ConnState;
    let protocol = super::protocol(version);
    let reg = server
        .registry
        .register(server.broker.next_id(), protocol, peer, out);
    reg.entry.update(|d| {
        d.user = crate::registry::intern(user);
        d.client_id = Some(Arc::clone(client_id));
        d.frame_max = server.config.mqtt_max_packet_size;
        d.state = ConnState::Running;
    });
    reg
}
