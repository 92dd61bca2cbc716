//! MQTT over WebSocket (MQTT 3.1.1 and 5.0, section 6): rumqttc over `ws://` and `wss://` in
//! the same namespace as MQTT over TCP and AMQP, and a raw tungstenite client for the framing
//! no library client produces (packets split over frames, packets sharing a frame, text
//! frames, malformed packets) and for the HTTP requests that are not an MQTT upgrade.

use futures_util::{SinkExt, StreamExt};
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use mqtt_wire::{decode, encode, Packet, ProtocolVersion, QoS, ReasonCode};
use pigeon_server::ServerConfig;
use pigeon_tests::lapin_support::{self, bind, consume, exclusive_queue, next_body, open_channel};
use pigeon_tests::mqtt_support::{connect_packet, publish_packet, subscribe_packet, Mqtt4, Mqtt5};
use pigeon_tests::tls_support::{config_with, Pki};
use pigeon_tests::{unique, within, TestBroker};
use rumqttc::{QoS as Q4, TlsConfiguration, Transport};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{client_async, WebSocketStream};

const V4: ProtocolVersion = ProtocolVersion::V3_1_1;
const V5: ProtocolVersion = ProtocolVersion::V5;

/// [`ServerConfig::for_tests`] with MQTT over WebSocket on 127.0.0.1:0.
fn ws_config() -> ServerConfig {
    ServerConfig {
        mqtt_ws_listen: SocketAddr::from(([127, 0, 0, 1], 0)).into(),
        ..ServerConfig::for_tests()
    }
}

async fn ws_broker(config: ServerConfig) -> Option<TestBroker> {
    TestBroker::start_with(config).await
}

fn ws_addr(broker: &TestBroker) -> SocketAddr {
    broker
        .server()
        .and_then(|s| s.mqtt_ws_addr())
        .expect("the MQTT WebSocket listener")
}

fn mqtt_addr(broker: &TestBroker) -> SocketAddr {
    broker
        .server()
        .and_then(|s| s.mqtt_addr())
        .expect("the MQTT listener")
}

/// rumqttc 3.1.1 options for a client over `ws://` at `addr` and `path`.
fn ws4(client_id: &str, addr: SocketAddr, path: &str) -> rumqttc::MqttOptions {
    let url = format!("ws://{addr}{path}");
    let mut options = rumqttc::MqttOptions::new(client_id, url, addr.port());
    options.set_transport(Transport::Ws);
    options
}

/// rumqttc 3.1.1 options for a client over plain TCP.
fn tcp4(client_id: &str, addr: SocketAddr) -> rumqttc::MqttOptions {
    rumqttc::MqttOptions::new(client_id, addr.ip().to_string(), addr.port())
}

/// A raw WebSocket client speaking `mqtt-wire` packets in frames of our choosing.
struct WsRaw {
    ws: WebSocketStream<TcpStream>,
    buf: bytes::BytesMut,
    version: ProtocolVersion,
}

impl WsRaw {
    /// Completes the WebSocket handshake on `path`, offering `mqtt`.
    async fn open(addr: SocketAddr, path: &str, version: ProtocolVersion) -> WsRaw {
        let ws = ws_handshake(addr, path, "mqtt")
            .await
            .expect("the WebSocket upgrade");
        WsRaw::over(ws, version)
    }

    /// Speaks MQTT on a WebSocket already open.
    fn over(ws: WebSocketStream<TcpStream>, version: ProtocolVersion) -> WsRaw {
        WsRaw {
            ws,
            buf: bytes::BytesMut::new(),
            version,
        }
    }

    /// Encodes packets into one byte string.
    fn encode(&self, packets: &[Packet]) -> Vec<u8> {
        let mut out = bytes::BytesMut::new();
        for p in packets {
            encode(p, self.version, &mut out).expect("encode");
        }
        out.to_vec()
    }

    /// Sends each slice as one binary message.
    async fn send_messages(&mut self, messages: &[&[u8]]) {
        for m in messages {
            // The broker may already have closed: the reads will tell.
            let _ = self.ws.send(Message::binary(m.to_vec())).await;
        }
    }

    /// The next MQTT packet, or `None` at the end of the connection; and the close code the
    /// broker sent, if it closed.
    async fn next(&mut self) -> Result<Packet, Option<CloseCode>> {
        within("a packet or the end from the broker", async {
            loop {
                match decode(
                    &mut self.buf,
                    Some(self.version),
                    mqtt_wire::MAX_PACKET_SIZE,
                ) {
                    Ok(Some(p)) => return Ok(p),
                    Ok(None) => {}
                    Err(e) => panic!("the broker sent an undecodable packet: {e}"),
                }
                match self.ws.next().await {
                    Some(Ok(Message::Binary(b))) => self.buf.extend_from_slice(&b),
                    Some(Ok(Message::Close(frame))) => {
                        // Read on to the end of the stream (tungstenite answers the close).
                        while let Some(Ok(_)) = self.ws.next().await {}
                        return Err(frame.map(|f| f.code));
                    }
                    Some(Ok(Message::Text(t))) => panic!("the broker sent a text frame: {t}"),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => return Err(None),
                }
            }
        })
        .await
    }

    async fn recv(&mut self) -> Packet {
        match self.next().await {
            Ok(p) => p,
            Err(code) => panic!("the broker closed ({code:?}) instead of answering"),
        }
    }

    /// Reads until the broker closes; the packets it sent before, and its close code.
    async fn until_closed(&mut self) -> (Vec<Packet>, Option<CloseCode>) {
        let mut seen = Vec::new();
        loop {
            match self.next().await {
                Ok(p) => seen.push(p),
                Err(code) => return (seen, code),
            }
        }
    }
}

/// The client side of a WebSocket handshake offering `protocols`; the HTTP error on refusal.
async fn ws_handshake(
    addr: SocketAddr,
    path: &str,
    protocols: &str,
) -> Result<WebSocketStream<TcpStream>, WsError> {
    ws_handshake_from(addr, path, protocols, None).await
}

/// The same, from a web page of `origin` (the `Origin` header a browser sends).
async fn ws_handshake_from(
    addr: SocketAddr,
    path: &str,
    protocols: &str,
    origin: Option<&str>,
) -> Result<WebSocketStream<TcpStream>, WsError> {
    let tcp = within("TCP connect", TcpStream::connect(addr))
        .await
        .expect("connect to the WebSocket listener");
    let mut request = format!("ws://{addr}{path}")
        .into_client_request()
        .expect("request");
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", origin.parse().expect("header value"));
    }
    if !protocols.is_empty() {
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            protocols.parse().expect("header value"),
        );
    }
    within("the WebSocket handshake", client_async(request, tcp))
        .await
        .map(|(ws, _)| ws)
}

/// The HTTP status of a refused handshake.
fn refused_status(result: Result<WebSocketStream<TcpStream>, WsError>) -> u16 {
    match result {
        Err(WsError::Http(response)) => response.status().as_u16(),
        Err(e) => panic!("expected an HTTP refusal, got {e}"),
        Ok(_) => panic!("expected an HTTP refusal, the upgrade was accepted"),
    }
}

/// Sends `request` on a plain socket and returns the whole answer, up to the broker's close.
async fn http(addr: SocketAddr, request: &str) -> String {
    let mut tcp = within("TCP connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    tcp.write_all(request.as_bytes()).await.expect("send");
    let mut answer = String::new();
    within(
        "the broker to answer and close",
        tcp.read_to_string(&mut answer),
    )
    .await
    .expect("read the answer");
    answer
}

/// A 3.1.1 client over WebSocket connects, subscribes and gets its own message: the
/// listener serves after whatever the test threw at it.
async fn ws_still_serves(addr: SocketAddr) {
    let mut client = Mqtt4::connect(ws4(&unique("ok"), addr, "/mqtt")).await;
    let topic = format!("alive/{}", unique("t"));
    client.subscribe(&topic, Q4::AtLeastOnce).await;
    client
        .publish(&topic, Q4::AtLeastOnce, false, b"alive")
        .await;
    assert_eq!(client.next_text().await, "alive");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_tcp_and_amqp_clients_share_one_namespace() {
    let Some(broker) = ws_broker(ws_config()).await else {
        return;
    };
    let topic = format!("ws/{}", unique("t"));
    let key = topic.replace('/', ".");
    let mut over_ws = Mqtt4::connect(ws4(&unique("ws"), ws_addr(&broker), "/mqtt")).await;
    let mut over_tcp = Mqtt4::connect(tcp4(&unique("tcp"), mqtt_addr(&broker))).await;
    over_ws.subscribe(&topic, Q4::AtLeastOnce).await;
    over_tcp.subscribe(&topic, Q4::AtLeastOnce).await;
    let conn = lapin_support::connect(&broker).await;
    let channel = open_channel(&conn).await;
    let queue = exclusive_queue(&channel).await;
    bind(&channel, &queue, "amq.topic", &key, FieldTable::default()).await;
    let mut amqp = consume(
        &channel,
        &queue,
        BasicConsumeOptions {
            no_ack: true,
            ..Default::default()
        },
    )
    .await;

    // WebSocket -> TCP MQTT and AMQP (and back to itself).
    over_ws
        .publish(&topic, Q4::AtLeastOnce, false, b"from ws")
        .await;
    assert_eq!(over_tcp.next_text().await, "from ws");
    assert_eq!(next_body(&mut amqp).await, "from ws");
    assert_eq!(over_ws.next_text().await, "from ws");

    // TCP MQTT -> WebSocket.
    over_tcp
        .publish(&topic, Q4::AtLeastOnce, false, b"from tcp")
        .await;
    assert_eq!(over_ws.next_text().await, "from tcp");
    assert_eq!(over_tcp.next_text().await, "from tcp");
    assert_eq!(next_body(&mut amqp).await, "from tcp");

    // AMQP -> WebSocket.
    lapin_support::publish(&channel, "amq.topic", &key, b"from amqp").await;
    assert_eq!(over_ws.next_text().await, "from amqp");
    assert_eq!(over_tcp.next_text().await, "from amqp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_5_over_secure_websocket_reaches_a_tcp_subscriber() {
    let pki = Pki::new("wss CA");
    let config = ServerConfig {
        mqtt_wss_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0)).into()),
        ..config_with(pki.server_files(1))
    };
    let Some(broker) = TestBroker::start_with(config).await else {
        return;
    };
    let wss = broker
        .server()
        .and_then(|s| s.mqtt_wss_addr())
        .expect("the MQTT secure WebSocket listener");
    let topic = format!("wss/{}", unique("t"));
    let mut over_tcp = Mqtt4::connect(tcp4(&unique("tcp"), mqtt_addr(&broker))).await;
    over_tcp.subscribe(&topic, Q4::AtLeastOnce).await;

    // The certificate is for localhost: connect by name, as a browser would.
    let url = format!("wss://localhost:{}/mqtt", wss.port());
    let mut options = rumqttc::v5::MqttOptions::new(unique("wss"), url, wss.port());
    let tls = TlsConfiguration::Rustls(Arc::new(pki.client_config(None)));
    options.set_transport(Transport::Wss(tls));
    let mut over_wss = Mqtt5::connect(options).await;
    over_wss
        .subscribe(&topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    over_wss
        .publish(
            &topic,
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            b"from wss",
        )
        .await;
    assert_eq!(over_tcp.next_text().await, "from wss");
    assert_eq!(over_wss.next_text().await, "from wss");
    over_tcp
        .publish(&topic, Q4::AtLeastOnce, false, b"to wss")
        .await;
    assert_eq!(over_wss.next_text().await, "to wss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_path_is_configurable_and_other_paths_get_404() {
    let config = ServerConfig {
        mqtt_ws_path: "/broker/mqtt".into(),
        ..ws_config()
    };
    let Some(broker) = ws_broker(config).await else {
        return;
    };
    let addr = ws_addr(&broker);
    let client = Mqtt4::connect(ws4(&unique("path"), addr, "/broker/mqtt")).await;
    client.disconnect().await;
    assert_eq!(
        refused_status(ws_handshake(addr, "/mqtt", "mqtt").await),
        404
    );
    assert_eq!(refused_status(ws_handshake(addr, "/", "mqtt").await), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_from_other_origins_get_403_when_origins_are_listed() {
    let config = ServerConfig {
        mqtt_ws_origins: vec!["https://app.example.com".into()],
        ..ws_config()
    };
    let Some(broker) = ws_broker(config).await else {
        return;
    };
    let addr = ws_addr(&broker);
    let evil = ws_handshake_from(addr, "/mqtt", "mqtt", Some("https://evil.example")).await;
    assert_eq!(refused_status(evil), 403);
    let app = ws_handshake_from(addr, "/mqtt", "mqtt", Some("https://app.example.com")).await;
    assert!(app.is_ok());
    // rumqttc sends no Origin (it is no browser): not concerned.
    ws_still_serves(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handshake_without_an_mqtt_subprotocol_gets_400() {
    let Some(broker) = ws_broker(ws_config()).await else {
        return;
    };
    let addr = ws_addr(&broker);
    assert_eq!(
        refused_status(ws_handshake(addr, "/mqtt", "chat").await),
        400
    );
    assert_eq!(refused_status(ws_handshake(addr, "/mqtt", "").await), 400);
    // The older name, as early Paho clients offer it, is accepted (as Mosquitto does).
    let ws = ws_handshake(addr, "/mqtt", "mqttv3.1")
        .await
        .expect("mqttv3.1 is accepted");
    let mut raw = WsRaw::over(ws, V4);
    let connect = raw.encode(&[connect_packet(V4, &unique("v31")).into()]);
    raw.send_messages(&[&connect]).await;
    assert!(matches!(raw.recv().await, Packet::ConnAck(a) if a.code == ReasonCode::Success));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_requests_get_an_http_error_and_the_broker_keeps_serving() {
    let Some(broker) = ws_broker(ws_config()).await else {
        return;
    };
    let addr = ws_addr(&broker);
    let answer = http(addr, "GET /mqtt HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 426 "), "got {answer:?}");
    let answer = http(addr, "GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404 "), "got {answer:?}");
    // MQTT spoken straight at the WebSocket port is not HTTP.
    let answer = http(addr, "\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400 "),
        "got {answer:?}"
    );
    ws_still_serves(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_split_over_frames_and_sharing_frames_are_understood() {
    let Some(broker) = ws_broker(ws_config()).await else {
        return;
    };
    let mut raw = WsRaw::open(ws_addr(&broker), "/mqtt", V4).await;
    // CONNECT in three binary messages, the first one cut inside the fixed header.
    let connect = raw.encode(&[connect_packet(V4, &unique("split")).into()]);
    raw.send_messages(&[&connect[..1], &connect[1..7], &connect[7..]])
        .await;
    assert!(matches!(raw.recv().await, Packet::ConnAck(a) if a.code == ReasonCode::Success));

    // SUBSCRIBE, a PUBLISH to it and PINGREQ in one message.
    let topic = format!("split/{}", unique("t"));
    let three = raw.encode(&[
        subscribe_packet(1, &topic, QoS::AtLeastOnce).into(),
        publish_packet(&topic, QoS::AtLeastOnce, Some(2), b"shared frame").into(),
        Packet::PingReq,
    ]);
    raw.send_messages(&[&three]).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(raw.recv().await);
    }
    assert!(
        seen.iter().any(|p| matches!(p, Packet::SubAck(_))),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|p| matches!(p, Packet::PubAck(a) if a.packet_id == 2)),
        "{seen:?}"
    );
    assert!(
        seen.iter().any(|p| matches!(p, Packet::PingResp)),
        "{seen:?}"
    );
    let delivered = seen.iter().find_map(|p| match p {
        Packet::Publish(p) => Some(p.payload.clone()),
        _ => None,
    });
    assert_eq!(delivered.as_deref(), Some(&b"shared frame"[..]));

    // One PUBLISH in a fragmented message (a binary frame and two continuations), QoS 0.
    let publish = raw.encode(&[publish_packet(&topic, QoS::AtMostOnce, None, b"fragments").into()]);
    let (a, rest) = publish.split_at(3);
    let (b, c) = rest.split_at(rest.len() / 2);
    for (i, part) in [a, b, c].into_iter().enumerate() {
        let opcode = if i == 0 { Data::Binary } else { Data::Continue };
        let frame = Frame::message(part.to_vec(), OpCode::Data(opcode), i == 2);
        raw.ws
            .send(Message::Frame(frame))
            .await
            .expect("send a fragment");
    }
    match raw.recv().await {
        Packet::Publish(p) => assert_eq!(&p.payload[..], b"fragments"),
        other => panic!("expected the PUBLISH, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_frame_closes_the_connection() {
    let Some(broker) = ws_broker(ws_config()).await else {
        return;
    };
    let addr = ws_addr(&broker);
    let mut raw = WsRaw::open(addr, "/mqtt", V4).await;
    let connect = raw.encode(&[connect_packet(V4, &unique("text")).into()]);
    raw.send_messages(&[&connect]).await;
    assert!(matches!(raw.recv().await, Packet::ConnAck(_)));
    // [MQTT-6.0.0-1]: any other data frame than binary closes the connection.
    let _ = raw.ws.send(Message::text("\u{c0}\u{0}")).await;
    let (sent, code) = raw.until_closed().await;
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(code, Some(CloseCode::Unsupported));
    ws_still_serves(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mqtt_inside_frames_closes_the_connection_cleanly() {
    let Some(broker) = ws_broker(ws_config()).await else {
        return;
    };
    let addr = ws_addr(&broker);
    // The cases of mqtt_connect.rs, over WebSocket: a reserved connect flag [MQTT-3.1.2-3], a
    // client id running past the end of the packet, a PUBLISH before CONNECT [MQTT-3.1.0-1].
    let cases: [&[u8]; 3] = [
        b"\x10\x0e\x00\x04MQTT\x04\x03\x00\x3c\x00\x02id",
        b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x09id",
        b"\x30\x06\x00\x03a/bx",
    ];
    for case in cases {
        let mut raw = WsRaw::open(addr, "/mqtt", V4).await;
        raw.send_messages(&[case]).await;
        let (sent, code) = raw.until_closed().await;
        assert!(sent.is_empty(), "{sent:?}");
        assert_eq!(code, Some(CloseCode::Normal), "a close frame, then the end");
    }
    // An unknown protocol level gets CONNACK 0x01 before the close [MQTT-3.1.2-2].
    let mut raw = WsRaw::open(addr, "/mqtt", V4).await;
    raw.send_messages(&[b"\x10\x0e\x00\x04MQTT\x07\x02\x00\x3c\x00\x02id"])
        .await;
    let (sent, code) = raw.until_closed().await;
    assert!(
        matches!(&sent[..], [Packet::ConnAck(a)] if a.code == ReasonCode::UnsupportedProtocolVersion),
        "got {sent:?}"
    );
    assert_eq!(code, Some(CloseCode::Normal));
    ws_still_serves(addr).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_packets_and_messages_are_refused_without_buffering_them() {
    let config = ServerConfig {
        mqtt_max_packet_size: 1024,
        ..ws_config()
    };
    let Some(broker) = ws_broker(config).await else {
        return;
    };
    let addr = ws_addr(&broker);
    // A packet over the MQTT maximum in an acceptable message: 5.0 DISCONNECT 0x95.
    let mut raw = WsRaw::open(addr, "/mqtt", V5).await;
    let connect = raw.encode(&[connect_packet(V5, &unique("big")).into()]);
    raw.send_messages(&[&connect]).await;
    assert!(matches!(raw.recv().await, Packet::ConnAck(_)));
    let big = raw.encode(&[publish_packet("big/t", QoS::AtMostOnce, None, &[b'x'; 4096]).into()]);
    raw.send_messages(&[&big]).await;
    let (sent, _) = raw.until_closed().await;
    assert!(
        matches!(&sent[..], [Packet::Disconnect(d)] if d.reason == ReasonCode::PacketTooLarge),
        "got {sent:?}"
    );
    // A message over the WebSocket limit (the maximum packet size plus 64 KiB): refused from
    // its frame header, before its payload is read; close 1009.
    let mut raw = WsRaw::open(addr, "/mqtt", V4).await;
    let huge = vec![0u8; 1024 + 64 * 1024 + 1];
    raw.send_messages(&[&huge]).await;
    let (sent, code) = raw.until_closed().await;
    assert!(sent.is_empty(), "{sent:?}");
    assert!(matches!(code, Some(CloseCode::Size) | None), "got {code:?}");
    ws_still_serves(addr).await;
}
