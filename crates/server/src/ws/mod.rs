//! MQTT over WebSocket (MQTT 3.1.1 and 5.0, section 6; RFC 6455).
//!
//! A WebSocket connection is an HTTP/1.1 request upgraded to a message channel. MQTT rides on
//! it as a byte stream cut into binary messages at arbitrary places: a packet may span several
//! messages and a message may carry several packets [MQTT-6.0.0-2]. So the MQTT connection
//! code does not see WebSocket at all: [`upgrade`] answers the upgrade request (or refuses it
//! with an HTTP error) and returns a [`WsStream`], an `AsyncRead + AsyncWrite` byte stream over
//! the WebSocket messages, which the MQTT connection reads and writes as it would a TCP socket.
//!
//! - `handshake.rs`: reads the HTTP request (bounded in size; the caller bounds it in time),
//!   checks the path and the subprotocol, and answers `101 Switching Protocols` or a 4xx.
//!   Tungstenite validates the upgrade headers and computes `Sec-WebSocket-Accept`.
//! - `stream.rs`: [`WsStream`], the adapter. Tungstenite does the framing (masking,
//!   fragmentation, ping/pong, the closing handshake, the size limits).
//!
//! Public (not only to the crate) so that the fuzz target can drive the adapter in memory.

mod handshake;
mod stream;

pub use handshake::{upgrade, Refusal, WsSettings, MAX_REQUEST_HEAD};
pub use stream::{WsStream, MAX_OUT_FRAME};

use crate::transport::{PeerInfo, Transport};
use crate::ServerState;
use std::sync::Arc;

impl WsSettings {
    /// The settings of the server's WebSocket listeners.
    pub(crate) fn of(config: &crate::ServerConfig) -> WsSettings {
        WsSettings {
            path: config.mqtt_ws_path.clone(),
            max_packet_size: config.mqtt_max_packet_size as usize,
            origins: config.mqtt_ws_origins.clone(),
        }
    }
}

/// Upgrades an accepted stream (TCP, or TLS on the secure listener) to a WebSocket carrying
/// MQTT, bounded by the handshake timeout; `None` when refused (the client got its HTTP
/// answer; one log line, and no connection or session was ever made for it).
pub(crate) async fn accept(
    stream: Transport,
    peer: &PeerInfo,
    state: &Arc<ServerState>,
) -> Option<Transport> {
    let settings = WsSettings::of(&state.config);
    match tokio::time::timeout(state.config.handshake_timeout, upgrade(stream, &settings)).await {
        Ok(Ok(ws)) => Some(Transport::Other(Box::new(ws))),
        Ok(Err(refusal)) => {
            tracing::info!(peer = %peer.addr, error = %refusal, "WebSocket upgrade refused");
            None
        }
        Err(_) => {
            tracing::info!(
                peer = %peer.addr,
                timeout_s = state.config.handshake_timeout.as_secs(),
                "WebSocket upgrade timed out"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests;
