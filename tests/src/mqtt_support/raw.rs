//! [`Raw`]: an MQTT client on the project's `mqtt-wire`, for what the protocol allows but a
//! library client hides (DUP flags, packet ids, resends, malformed input), and packet builders.

use super::*;

/// A client that writes and reads `mqtt-wire` packets on a socket (plain TCP, or TLS with
/// [`Raw::over`]).
pub struct Raw {
    stream: Box<dyn ByteStream>,
    buf: BytesMut,
    /// The protocol version packets are encoded and decoded with.
    pub version: ProtocolVersion,
}

impl Raw {
    /// Opens a socket without sending anything.
    pub async fn open(addr: SocketAddr, version: ProtocolVersion) -> Raw {
        let stream = within("TCP connect", TcpStream::connect(addr))
            .await
            .expect("connect to the MQTT listener");
        Raw::over(stream, version)
    }

    /// A client over an established stream (a TLS stream after its handshake, say); nothing is
    /// sent yet.
    pub fn over(stream: impl ByteStream + 'static, version: ProtocolVersion) -> Raw {
        Raw {
            stream: Box::new(stream),
            buf: BytesMut::new(),
            version,
        }
    }

    /// Opens a socket, sends `connect` and reads the CONNACK.
    pub async fn connect(addr: SocketAddr, connect: Connect) -> (Raw, ConnAck) {
        let mut raw = Raw::open(addr, connect.protocol).await;
        raw.send(connect).await;
        match raw.recv().await {
            Packet::ConnAck(ack) => (raw, ack),
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Encodes and sends one packet.
    pub async fn send(&mut self, packet: impl Into<Packet>) {
        let mut out = BytesMut::new();
        encode(&packet.into(), self.version, &mut out).expect("encode the packet");
        self.send_bytes(&out).await;
    }

    /// Sends bytes as they are.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        // The broker may already have closed: a failed write shows up as EOF on the next read.
        let _ = self.stream.write_all(bytes).await;
    }

    /// The next packet, or `None` when the broker closed the connection.
    pub async fn next(&mut self) -> Option<Packet> {
        self.next_within(crate::TIMEOUT).await
    }

    /// [`Raw::next`] for an answer that may take longer than [`crate::TIMEOUT`]: one that
    /// comes only after a long drain, such as the PINGRESP queued behind a flood that the
    /// memory alarm paused (the more messages fit under the watermark, the longer the drain).
    pub async fn next_within(&mut self, limit: std::time::Duration) -> Option<Packet> {
        let read = async {
            loop {
                let max = mqtt_wire::MAX_PACKET_SIZE;
                match decode(&mut self.buf, Some(self.version), max) {
                    Ok(Some(p)) => return Some(p),
                    Ok(None) => {}
                    Err(e) => panic!("the broker sent an undecodable packet: {e}"),
                }
                match self.stream.read_buf(&mut self.buf).await {
                    Ok(0) | Err(_) => return None,
                    Ok(_) => {}
                }
            }
        };
        match tokio::time::timeout(limit, read).await {
            Ok(packet) => packet,
            Err(_) => {
                panic!("timed out after {limit:?} waiting for a packet or EOF from the broker")
            }
        }
    }

    /// The next packet, failing the test at EOF.
    pub async fn recv(&mut self) -> Packet {
        self.next()
            .await
            .expect("the broker closed the connection instead of answering")
    }

    /// The next PUBLISH, skipping nothing: anything else fails the test.
    pub async fn recv_publish(&mut self) -> Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Reads until the broker closes the connection; returns what it sent before.
    pub async fn until_closed(&mut self) -> Vec<Packet> {
        let mut seen = Vec::new();
        while let Some(p) = self.next().await {
            seen.push(p);
        }
        seen
    }
}

/// A CONNECT for `version` with a clean session and keep-alive 60.
pub fn connect_packet(version: ProtocolVersion, client_id: &str) -> Connect {
    Connect::new(version, client_id, 60)
}

/// A PUBLISH of `payload` to `topic`; `packet_id` is needed for QoS 1 and 2.
pub fn publish_packet(topic: &str, qos: QoS, packet_id: Option<u16>, payload: &[u8]) -> Publish {
    let mut p = Publish::new(
        TopicName::new(topic).expect("a valid topic name"),
        Bytes::copy_from_slice(payload),
    );
    p.qos = qos;
    p.packet_id = packet_id;
    p
}

/// A SUBSCRIBE to one filter.
pub fn subscribe_packet(packet_id: u16, filter: &str, qos: QoS) -> Subscribe {
    Subscribe {
        packet_id,
        properties: Default::default(),
        filters: vec![(
            TopicFilter::new(filter).expect("a valid topic filter"),
            SubscriptionOptions::new(qos),
        )],
    }
}
