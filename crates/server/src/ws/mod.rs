//! MQTT over WebSocket (MQTT 3.1.1 and 5.0, section 6; RFC 6455).
//!
//! A WebSocket connection is an HTTP/1.1 request upgraded to a message channel. MQTT rides on
//! it as a byte stream cut into binary messages at arbitrary places: a packet may span several
//! messages and a message may carry several packets [MQTT-6.0.0-2]. So the MQTT connection
//! code does not see WebSocket at all: [`accept`] answers the upgrade request (or refuses it
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

pub use handshake::{accept, Refusal, WsSettings};
pub use stream::WsStream;

#[cfg(test)]
mod tests;
