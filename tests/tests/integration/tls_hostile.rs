//! Hostile input tunnelled through TLS: the malformed AMQP frames of `errors.rs` and
//! `connection.rs` and the malformed MQTT packets of `mqtt_connect.rs`, sent inside a
//! completed TLS session to the AMQPS and MQTTS listeners. Each gets the protocol's own answer
//! (`connection.close` with a hard-error code, a CONNACK or DISCONNECT reason code, or the
//! socket closed) exactly as over plain TCP, and TLS clients connected before and after the
//! abuse go on working on the same broker. (Bytes that are not TLS at all, sent to a TLS port,
//! are `listeners.rs`'s; the same cases over WebSocket are `mqtt_websocket.rs`'s.)

use amqprs::channel::{BasicGetArguments, BasicPublishArguments, Channel, QueueDeclareArguments};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::tls::TlsAdaptor;
use amqprs::BasicProperties;
use mqtt_wire::{Packet, ProtocolVersion, QoS, ReasonCode};
use pigeon_server::ServerConfig;
use pigeon_tests::mqtt_support::{connect_packet, publish_packet, Mqtt4, Raw};
use pigeon_tests::raw::{
    self, frame_type, method, Args, Ending, Frame, RawClient, Tune, PROTOCOL_HEADER,
};
use pigeon_tests::reply::{FRAME_ERROR, SYNTAX_ERROR};
use pigeon_tests::tls_support::{self, config_with, Pki};
use pigeon_tests::{unique, within, TestBroker};
use std::net::SocketAddr;
use std::sync::Arc;

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// A broker with AMQPS and MQTTS on 127.0.0.1 (verify_none), MQTT packets capped at 1 KiB for
/// the oversized-packet case. `None` against an external broker.
struct TlsBroker {
    pki: Pki,
    broker: TestBroker,
}

impl TlsBroker {
    async fn start() -> Option<TlsBroker> {
        let pki = Pki::new("hostile CA");
        let config = ServerConfig {
            mqtt_max_packet_size: 1024,
            ..config_with(pki.server_files(1))
        };
        let broker = TestBroker::start_with(config).await?;
        Some(TlsBroker { pki, broker })
    }

    fn amqps(&self) -> SocketAddr {
        self.broker
            .server()
            .and_then(|s| s.amqps_addr())
            .expect("the AMQPS listener")
    }

    fn mqtts(&self) -> SocketAddr {
        self.broker
            .server()
            .and_then(|s| s.mqtts_addr())
            .expect("the MQTTS listener")
    }

    /// A raw AMQP client inside a completed TLS session; nothing sent yet.
    async fn raw_amqp(&self) -> RawClient {
        let tls = tls_support::handshake(self.amqps(), self.pki.client_config(None))
            .await
            .expect("TLS handshake with the AMQPS listener");
        RawClient::over(tls)
    }

    /// A raw AMQP client over TLS past the handshake, with channel 1 open.
    async fn raw_amqp_with_channel(&self, how: &raw::Handshake) -> RawClient {
        let mut client = self.raw_amqp().await;
        client.handshake(how).await;
        client.open_channel(1).await;
        client
    }

    /// Sends `bytes` over TLS on channel 1 of a fresh connection; returns the reply code of
    /// the server's `connection.close`, after checking that the socket then closes.
    async fn hard_error_for(&self, bytes: &[u8]) -> u16 {
        let mut client = self
            .raw_amqp_with_channel(&self.broker.raw_handshake())
            .await;
        client.send_bytes(bytes).await;
        let close = client.expect_connection_close().await;
        client.expect_eof().await;
        close.code
    }

    /// A raw MQTT client inside a completed TLS session; nothing sent yet.
    async fn raw_mqtt(&self, version: ProtocolVersion) -> Raw {
        let tls = tls_support::handshake(self.mqtts(), self.pki.client_config(None))
            .await
            .expect("TLS handshake with the MQTTS listener");
        Raw::over(tls, version)
    }

    /// A raw MQTT client over TLS that has sent `connect` and read its CONNACK (accepted).
    async fn raw_mqtt_connected(&self, version: ProtocolVersion, client_id: &str) -> Raw {
        let mut raw = self.raw_mqtt(version).await;
        raw.send(connect_packet(version, client_id)).await;
        match raw.recv().await {
            Packet::ConnAck(ack) => assert!(!ack.code.is_error(), "{ack:?}"),
            other => panic!("expected CONNACK, got {other:?}"),
        }
        raw
    }

    /// amqprs over TLS as the test user, with a channel.
    async fn amqprs(&self) -> (Connection, Channel) {
        let connector = tokio_rustls::TlsConnector::from(Arc::new(self.pki.client_config(None)));
        let args = OpenConnectionArguments::new(
            "127.0.0.1",
            self.amqps().port(),
            self.broker.user(),
            self.broker.password(),
        )
        .tls_adaptor(TlsAdaptor::new(connector, "localhost".into()))
        .finish();
        let conn = within("amqprs to connect over TLS", Connection::open(&args))
            .await
            .expect("amqprs over TLS");
        let channel = within("channel.open", conn.open_channel(None))
            .await
            .expect("a channel");
        (conn, channel)
    }

    /// rumqttc (3.1.1) over TLS, anonymous from loopback.
    async fn rumqttc(&self, client_id: &str) -> Mqtt4 {
        let mut options = rumqttc::MqttOptions::new(client_id, "127.0.0.1", self.mqtts().port());
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(Arc::new(self.pki.client_config(None))),
        ));
        Mqtt4::connect(options).await
    }
}

/// Publishes to a new exclusive queue and gets the message back on `channel`: the connection
/// (and the broker) still work.
async fn amqp_round_trip(channel: &Channel) {
    let (queue, _, _) = within(
        "queue.declare",
        channel.queue_declare(QueueDeclareArguments::exclusive_server_named()),
    )
    .await
    .expect("queue.declare")
    .expect("queue.declare-ok");
    within(
        "basic.publish",
        channel.basic_publish(
            BasicProperties::default(),
            b"still here".to_vec(),
            BasicPublishArguments::new("", &queue),
        ),
    )
    .await
    .expect("basic.publish");
    // basic.get until the message is there (the publish has no confirm).
    let got = within("basic.get-ok with the message", async {
        loop {
            if let Some((_, _, body)) = channel
                .basic_get(BasicGetArguments::new(&queue).no_ack(true).finish())
                .await
                .expect("basic.get")
            {
                return body;
            }
        }
    })
    .await;
    assert_eq!(got, b"still here");
}

/// A frame of `kind` on `channel` with `payload`, encoded.
fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    Frame {
        kind,
        channel,
        payload: payload.to_vec(),
    }
    .encode()
}

/// Deterministic noise (xorshift64*) whose first octet is never a valid frame type, as in
/// `errors.rs`.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect();
    out[0] = 0x40 | (out[0] & 0x3F);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_amqp_frames_over_tls_are_hard_errors_and_other_tls_clients_carry_on() {
    let Some(b) = TlsBroker::start().await else {
        return;
    };
    // A TLS client connected before the abuse, and used after it.
    let (bystander, bystander_channel) = b.amqprs().await;

    // A frame whose last octet is not 0xCE.
    let mut bad_end = Frame::method(1, method::CHANNEL_OPEN, Args::new().shortstr("")).encode();
    *bad_end.last_mut().unwrap() = 0x00;
    assert_eq!(b.hard_error_for(&bad_end).await, FRAME_ERROR);
    // An unknown frame type.
    assert_eq!(b.hard_error_for(&frame(7, 1, b"abcd")).await, FRAME_ERROR);
    // A frame header announcing almost 4 GiB: refused at once, not buffered.
    let huge = [frame_type::METHOD, 0, 1, 0xFF, 0xFF, 0xFF, 0xF0];
    assert_eq!(b.hard_error_for(&huge).await, FRAME_ERROR);
    // queue.declare whose queue name claims 5 bytes and has 2.
    let truncated = Frame::method(
        1,
        method::QUEUE_DECLARE,
        Args::new().short(0).raw(b"\x05ab"),
    );
    let code = b.hard_error_for(&truncated.encode()).await;
    assert!(matches!(code, FRAME_ERROR | SYNTAX_ERROR), "{code}");
    // A body frame larger than the negotiated frame_max (4096).
    let mut small_frames = b.broker.raw_handshake();
    small_frames.tune_ok = |proposed| Tune {
        frame_max: 4096,
        ..proposed
    };
    let mut client = b.raw_amqp_with_channel(&small_frames).await;
    client.publish(1, "anywhere", &[7u8; 5000], 5008).await;
    let close = client.expect_connection_close().await;
    assert_eq!(close.code, FRAME_ERROR, "{close:?}");
    client.expect_eof().await;

    amqp_round_trip(&bystander_channel).await;
    let (fresh, fresh_channel) = b.amqprs().await;
    amqp_round_trip(&fresh_channel).await;
    fresh.close().await.unwrap();
    bystander.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_methods_and_garbage_over_tls_end_the_connection_and_others_carry_on() {
    let Some(b) = TlsBroker::start().await else {
        return;
    };
    let (bystander, bystander_channel) = b.amqprs().await;
    let how = b.broker.raw_handshake();

    // Unknown classes and methods: RabbitMQ drops the socket; a hard-error close is also fine.
    for id in [(99, 99), (50, 99), (60, 255)] {
        let mut client = b.raw_amqp_with_channel(&how).await;
        client.send(&Frame::method(1, id, Args::new())).await;
        if let Ending::Closed(close) = client.ending().await {
            assert!(close.code >= 500, "{id:?}: {close:?}");
        }
    }
    // Noise after the handshake: a close or a hang-up, never a server waiting for a frame
    // the noise announced but never sent.
    for seed in 1..=4u64 {
        let mut client = b.raw_amqp_with_channel(&how).await;
        client.send_bytes_lenient(&garbage(seed, 4096)).await;
        if let Ending::Closed(close) = client.ending().await {
            assert!(close.code >= 500, "seed {seed}: {close:?}");
        }
    }
    // Noise instead of connection.start-ok.
    let mut client = b.raw_amqp().await;
    client.start().await;
    client.send_bytes_lenient(&garbage(42, 1024)).await;
    if let Ending::Closed(close) = client.ending().await {
        assert!(close.code >= 500, "{close:?}");
    }
    // A protocol header the server does not speak is answered with 0-9-1's, then the close
    // (AMQP 0-9-1 section 4.2.2), inside TLS as over TCP.
    for header in [b"AMQP\x00\x00\x0a\x00", b"HTTP/1.1"] {
        let mut client = b.raw_amqp().await;
        client.send_bytes(header).await;
        assert_eq!(client.read_raw(8).await, PROTOCOL_HEADER, "{header:?}");
        client.expect_eof().await;
    }

    amqp_round_trip(&bystander_channel).await;
    let (fresh, fresh_channel) = b.amqprs().await;
    amqp_round_trip(&fresh_channel).await;
    fresh.close().await.unwrap();
    bystander.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mqtt_packets_over_tls_are_disconnected_and_other_tls_clients_carry_on() {
    let Some(b) = TlsBroker::start().await else {
        return;
    };
    // A TLS subscriber connected before the abuse, that must still get messages after it.
    let topic = unique("hostile/t");
    let mut bystander = b.rumqttc(&unique("bystander")).await;
    bystander.subscribe(&topic, rumqttc::QoS::AtLeastOnce).await;

    // HTTP instead of CONNECT, then a packet other than CONNECT first [MQTT-3.1.0-1].
    let mut raw = b.raw_mqtt(V4).await;
    raw.send_bytes(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(raw.until_closed().await.is_empty());
    let mut raw = b.raw_mqtt(V4).await;
    raw.send(publish_packet("a/b", QoS::AtMostOnce, None, b"x"))
        .await;
    assert!(raw.until_closed().await.is_empty());
    // CONNECT with the reserved flag set [MQTT-3.1.2-3], and one whose client id runs past
    // the end of the packet.
    for bytes in [
        &b"\x10\x0e\x00\x04MQTT\x04\x03\x00\x3c\x00\x02id"[..],
        &b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x09id"[..],
    ] {
        let mut raw = b.raw_mqtt(V4).await;
        raw.send_bytes(bytes).await;
        assert!(raw.until_closed().await.is_empty(), "{bytes:?}");
    }
    // An unknown protocol level gets CONNACK 0x01 before the close [MQTT-3.1.2-2].
    let mut raw = b.raw_mqtt(V4).await;
    raw.send_bytes(b"\x10\x0e\x00\x04MQTT\x07\x02\x00\x3c\x00\x02id")
        .await;
    let sent = raw.until_closed().await;
    assert!(
        matches!(&sent[..], [Packet::ConnAck(a)] if a.code == ReasonCode::UnsupportedProtocolVersion),
        "got {sent:?}"
    );
    // A packet over the maximum size: 3.1.1 is dropped, 5.0 gets DISCONNECT 0x95 first.
    let big = vec![b'x'; 4096];
    let mut raw4 = b.raw_mqtt_connected(V4, &unique("big4")).await;
    raw4.send(publish_packet("big/t", QoS::AtMostOnce, None, &big))
        .await;
    assert!(raw4.until_closed().await.is_empty());
    let mut raw5 = b.raw_mqtt_connected(V5, &unique("big5")).await;
    raw5.send(publish_packet("big/t", QoS::AtMostOnce, None, &big))
        .await;
    let sent = raw5.until_closed().await;
    assert!(
        matches!(&sent[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::PacketTooLarge),
        "got {sent:?}"
    );
    // A second CONNECT on a 5.0 connection is a protocol error.
    let mut raw = b.raw_mqtt_connected(V5, &unique("again")).await;
    raw.send(connect_packet(V5, &unique("again"))).await;
    let sent = raw.until_closed().await;
    assert!(
        matches!(&sent[..], [Packet::Disconnect(d)] if d.reason.is_error()),
        "got {sent:?}"
    );

    let mut fresh = b.rumqttc(&unique("fresh")).await;
    fresh
        .publish(&topic, rumqttc::QoS::AtLeastOnce, false, b"still here")
        .await;
    assert_eq!(bystander.next_text().await, "still here");
    fresh.disconnect().await;
    bystander.disconnect().await;
}
