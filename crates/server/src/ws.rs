//! MQTT over WebSocket: the upgrade of an accepted stream (plain or TLS) into a byte stream
//! that carries MQTT packets in binary WebSocket messages.
//!
//! Not implemented yet: the listener plumbing is in place (`mqtt_ws_listen`,
//! `mqtt_wss_listen`, off by default), and [`accept`] is where the WebSocket handshake and
//! framing adapter (an `AsyncRead + AsyncWrite` over the stream, as
//! [`Transport::Other`]) go.

use crate::transport::{PeerInfo, Transport};
use crate::ServerState;
use std::sync::Arc;

/// Upgrades `stream` to a WebSocket carrying MQTT, or refuses it (`None`, one log line).
pub async fn accept(
    stream: Transport,
    peer: &PeerInfo,
    _state: &Arc<ServerState>,
) -> Option<Transport> {
    drop(stream);
    tracing::warn!(peer = %peer.addr, "MQTT over WebSocket is not implemented yet, closing");
    None
}
