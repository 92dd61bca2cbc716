//! What the registry hands out about one connection (`Registry::connections`).

use super::Entry;
use amqp_wire::FieldTable;
use std::sync::atomic::Ordering;
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

impl Entry {
    /// What `/api/connections` shows of this connection.
    pub(super) fn snapshot(&self) -> ConnectionInfo {
        let d = self.details.lock().clone();
        let (peer, local) = (self.peer(), self.local());
        let tls = self.tls();
        let (ssl_protocol, ssl_cipher) = match tls {
            Some(t) => (
                t.protocol.map(|p| tls_version_name(p).to_string()),
                t.cipher.map(|c| format!("{c:?}")),
            ),
            None => (None, None),
        };
        ConnectionInfo {
            id: self.id,
            name: self.name(),
            protocol: self.protocol.as_str(),
            user: d.user.to_string(),
            vhost: d.vhost.to_string(),
            peer_host: peer.ip().to_string(),
            peer_port: peer.port(),
            host: local.map(|l| l.ip().to_string()).unwrap_or_default(),
            port: local.map_or(0, |l| l.port()),
            ssl: tls.is_some(),
            ssl_protocol,
            ssl_cipher,
            peer_cert_subject: tls
                .and_then(|t| t.peer_names())
                .and_then(Result::ok)
                .map(|n| n.subject_dn),
            client_properties: self
                .extras
                .as_ref()
                .map(|x| decode_table(&x.client_properties.lock()))
                .unwrap_or_default(),
            client_id: d.client_id.as_deref().map(String::from),
            connected_at: SystemTime::UNIX_EPOCH
                + std::time::Duration::from_millis(self.connected_at),
            channels: self.channel_count() as u32,
            state: d.state.as_str(),
            timeout: d.timeout,
            frame_max: d.frame_max,
            channel_max: d.channel_max,
            recv_oct: self.recv_oct.load(Ordering::Relaxed),
            recv_cnt: self.recv_cnt.load(Ordering::Relaxed),
            send_oct: self.out.sent_oct(),
            send_cnt: self.out.sent_cnt(),
        }
    }
}

/// A table kept encoded ([`Extras::client_properties`]); empty when there is none.
fn decode_table(raw: &[u8]) -> FieldTable {
    if raw.is_empty() {
        return FieldTable::default();
    }
    FieldTable::decode(bytes::Bytes::copy_from_slice(raw)).unwrap_or_default()
}

/// RabbitMQ's `ssl_protocol` names (`tlsv1.3`).
fn tls_version_name(v: rustls::ProtocolVersion) -> &'static str {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "tlsv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "tlsv1.2",
        _ => "unknown",
    }
}
