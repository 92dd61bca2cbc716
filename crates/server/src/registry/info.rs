//! What the registry hands out about one connection (`Registry::connections`).

use amqp_wire::FieldTable;
use std::time::SystemTime;

/// A snapshot of one connection, with RabbitMQ's field names (`/api/connections`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ConnectionInfo {
    /// Broker-wide id.
    pub id: u64,
    /// `"127.0.0.1:54321 -> 127.0.0.1:5672"`: what `close_connection` takes.
    pub name: String,
    /// `AMQP 0-9-1`, `MQTT 3.1.1`, `MQTT 5.0`...
    pub protocol: &'static str,
    /// Who logged in (empty during the handshake).
    pub user: String,
    /// The vhost (empty until `connection.open`).
    pub vhost: String,
    /// The client's address.
    pub peer_host: String,
    /// The client's port.
    pub peer_port: u16,
    /// Our address the client connected to.
    pub host: String,
    /// Our port.
    pub port: u16,
    /// Over TLS.
    pub ssl: bool,
    /// `tlsv1.3`, `tlsv1.2`.
    pub ssl_protocol: Option<String>,
    /// The negotiated cipher suite.
    pub ssl_cipher: Option<String>,
    /// The subject DN of the client's certificate, if it sent one.
    pub peer_cert_subject: Option<String>,
    /// AMQP `client_properties` (empty for MQTT).
    pub client_properties: FieldTable,
    /// MQTT client identifier.
    pub client_id: Option<String>,
    /// When the socket was accepted.
    pub connected_at: SystemTime,
    /// Open channels (AMQP).
    pub channels: u32,
    /// `starting`, `running`, `blocked`, `closing`.
    pub state: &'static str,
    /// Heartbeat (AMQP) or keep-alive (MQTT), seconds.
    pub timeout: u16,
    /// Negotiated frame_max (AMQP) or maximum packet size (MQTT).
    pub frame_max: u32,
    /// Negotiated channel_max (AMQP).
    pub channel_max: u16,
    /// Bytes received.
    pub recv_oct: u64,
    /// Frames or packets received.
    pub recv_cnt: u64,
    /// Bytes sent.
    pub send_oct: u64,
    /// Writes (frames or packets, several per delivery) sent.
    pub send_cnt: u64,
}
