//! The handshake and the adapter, in memory: a tungstenite client on one end of a duplex pipe,
//! [`upgrade`] and [`WsStream`] on the other.

use super::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{client_async, WebSocketStream};

fn settings() -> WsSettings {
    WsSettings {
        path: "/mqtt".into(),
        max_packet_size: 1024,
        origins: vec!["https://app.example.com".into()],
    }
}

/// A valid upgrade request with `extra` headers.
fn upgrade_request(extra: &str) -> Vec<u8> {
    format!(
        "GET /mqtt HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: mqtt\r\n{extra}\r\n"
    )
    .into_bytes()
}

/// A client offering `protocols` (comma-separated) on `path`, and the server side accepted.
async fn connect(
    path: &str,
    protocols: &str,
) -> (
    WebSocketStream<DuplexStream>,
    Result<WsStream<DuplexStream>, Refusal>,
) {
    // Larger than the largest message sent: a client blocked in `send` would hang a test.
    let (client, server) = duplex(256 * 1024);
    let mut request = format!("ws://localhost{path}")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse().unwrap());
    let accepting = tokio::spawn(async move { upgrade(server, &settings()).await });
    let (ws, response) = client_async(request, client).await.unwrap();
    assert_eq!(
        response.headers()["Sec-WebSocket-Protocol"],
        protocols.split(',').next().unwrap().trim()
    );
    (ws, accepting.await.unwrap())
}

/// Sends `request` raw and returns everything the server answered, and how it refused.
async fn raw(request: &[u8]) -> (String, Refusal) {
    let (mut client, server) = duplex(64 * 1024);
    let accepting = tokio::spawn(async move { upgrade(server, &settings()).await });
    client.write_all(request).await.unwrap();
    client.shutdown().await.unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).await.unwrap();
    let refusal = match accepting.await.unwrap() {
        Ok(_) => panic!("accepted: {answer}"),
        Err(r) => r,
    };
    (answer, refusal)
}

#[tokio::test]
async fn bytes_cross_in_both_directions_whatever_the_framing() {
    let (mut client, server) = connect("/mqtt", "mqtt").await;
    let mut server = server.unwrap();
    // One "packet" in three messages, then two in one.
    client
        .send(Message::binary(&b"\x10\x03"[..]))
        .await
        .unwrap();
    client.send(Message::binary(&b"ab"[..])).await.unwrap();
    client.send(Message::binary(&b"c"[..])).await.unwrap();
    client
        .send(Message::binary(&b"\xc0\x00\xe0\x00"[..]))
        .await
        .unwrap();
    let mut got = [0u8; 9];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"\x10\x03abc\xc0\x00\xe0\x00");

    // Two writes, one flush: one binary message.
    server.write_all(b"\x20\x02").await.unwrap();
    server.write_all(b"\x00\x00").await.unwrap();
    server.flush().await.unwrap();
    let msg = client.next().await.unwrap().unwrap();
    assert_eq!(msg, Message::binary(&b"\x20\x02\x00\x00"[..]));
}

#[tokio::test]
async fn a_large_write_goes_out_in_bounded_frames() {
    let (mut client, server) = connect("/mqtt", "mqtt").await;
    let mut server = server.unwrap();
    let data: Vec<u8> = (0..(3 * stream::MAX_OUT_FRAME + 17))
        .map(|i| i as u8)
        .collect();
    let writing = tokio::spawn(async move {
        server.write_all(&data).await.unwrap();
        server.flush().await.unwrap();
        (server, data)
    });
    let mut received = Vec::new();
    let mut frames = 0;
    while received.len() < 3 * stream::MAX_OUT_FRAME + 17 {
        match client.next().await.unwrap().unwrap() {
            Message::Binary(b) => {
                assert!(b.len() <= stream::MAX_OUT_FRAME);
                received.extend_from_slice(&b);
                frames += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    let (_server, data) = writing.await.unwrap();
    assert_eq!(received, data);
    assert_eq!(frames, 4);
}

#[tokio::test]
async fn the_older_subprotocol_name_is_answered_with_itself() {
    let (_client, server) = connect("/mqtt", "mqttv3.1").await;
    assert!(server.is_ok());
}

#[tokio::test]
async fn mqtt_is_preferred_when_both_are_offered() {
    // The client sees "mqtt" as the answer (checked in `connect`).
    let (_client, server) = connect("/mqtt", "mqtt, mqttv3.1").await;
    assert!(server.is_ok());
}

#[tokio::test]
async fn a_query_string_does_not_change_the_path() {
    let (_client, server) = connect("/mqtt?token=x", "mqtt").await;
    assert!(server.is_ok());
}

#[tokio::test]
async fn no_mqtt_subprotocol_is_refused_with_400() {
    let (answer, refusal) = raw(b"GET /mqtt HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n\
        Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
        Sec-WebSocket-Protocol: chat\r\n\r\n")
    .await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(matches!(refusal, Refusal::Subprotocol { .. }), "{refusal}");
}

#[tokio::test]
async fn a_page_from_another_origin_is_refused_with_403() {
    let (answer, refusal) = raw(&upgrade_request("Origin: https://evil.example\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 403 "), "{answer}");
    assert!(matches!(refusal, Refusal::Origin { .. }), "{refusal}");
}

#[tokio::test]
async fn a_page_from_an_allowed_origin_and_a_client_without_origin_are_accepted() {
    for extra in ["Origin: https://APP.example.com\r\n", ""] {
        let (mut client, server) = duplex(64 * 1024);
        let accepting = tokio::spawn(async move { upgrade(server, &settings()).await });
        client.write_all(&upgrade_request(extra)).await.unwrap();
        assert!(accepting.await.unwrap().is_ok(), "{extra}");
        let mut answer = [0u8; 12];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 101");
    }
}

#[tokio::test]
async fn another_path_is_refused_with_404() {
    let (answer, refusal) = raw(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    assert!(answer.contains("Connection: close\r\n"));
    assert!(matches!(refusal, Refusal::NotFound { .. }));
}

#[tokio::test]
async fn a_plain_get_is_refused_with_426() {
    let (answer, refusal) = raw(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 426 "), "{answer}");
    assert!(answer.contains("Upgrade: websocket\r\n"));
    assert!(matches!(refusal, Refusal::NotUpgrade(_)));
}

#[tokio::test]
async fn a_post_is_refused_with_405() {
    let (answer, refusal) =
        raw(b"POST /mqtt HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc").await;
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    assert!(matches!(refusal, Refusal::Method(_)));
}

#[tokio::test]
async fn garbage_is_refused_with_400() {
    let (answer, refusal) = raw(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert!(matches!(refusal, Refusal::BadRequest(_)));
}

#[tokio::test]
async fn an_endless_head_is_refused_with_431() {
    let mut request = b"GET /mqtt HTTP/1.1\r\n".to_vec();
    while request.len() <= handshake::MAX_REQUEST_HEAD {
        request.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    let (answer, refusal) = raw(&request).await;
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
    assert!(matches!(refusal, Refusal::TooLarge));
}

#[tokio::test]
async fn a_request_cut_short_is_not_answered() {
    let (answer, refusal) = raw(b"GET /mqtt HTTP/1.1\r\nHost").await;
    assert_eq!(answer, "");
    assert!(matches!(refusal, Refusal::Closed));
}

/// Reads from the server until it fails or ends; then shuts it down, and returns what the
/// client saw last (the close frame).
async fn close_reason(
    mut client: WebSocketStream<DuplexStream>,
    mut server: WsStream<DuplexStream>,
) -> (std::io::Result<usize>, Option<CloseCode>) {
    let mut buf = [0u8; 16];
    let read = server.read(&mut buf).await;
    server.shutdown().await.unwrap();
    let mut code = None;
    while let Some(Ok(msg)) = client.next().await {
        if let Message::Close(frame) = msg {
            code = frame.map(|f| f.code);
        }
    }
    (read, code)
}

#[tokio::test]
async fn a_text_frame_fails_the_read_and_closes_with_1003() {
    let (mut client, server) = connect("/mqtt", "mqtt").await;
    client.send(Message::text("hello")).await.unwrap();
    let (read, code) = close_reason(client, server.unwrap()).await;
    assert_eq!(read.unwrap_err().kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(code, Some(CloseCode::Unsupported));
}

#[tokio::test]
async fn a_message_over_the_limit_closes_with_1009() {
    let (mut client, server) = connect("/mqtt", "mqtt").await;
    let big = vec![0u8; 1024 + 64 * 1024 + 1];
    client.send(Message::binary(big)).await.unwrap();
    let (read, code) = close_reason(client, server.unwrap()).await;
    assert!(read.is_err());
    assert_eq!(code, Some(CloseCode::Size));
}

#[tokio::test]
async fn pings_are_answered_and_skipped() {
    let (mut client, server) = connect("/mqtt", "mqtt").await;
    let mut server = server.unwrap();
    client
        .send(Message::Ping(b"p".to_vec().into()))
        .await
        .unwrap();
    client
        .send(Message::binary(&b"\xc0\x00"[..]))
        .await
        .unwrap();
    let mut got = [0u8; 2];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"\xc0\x00");
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        Message::Pong(b"p".to_vec().into())
    );
}

#[tokio::test]
async fn a_close_from_the_client_is_the_end_of_the_stream() {
    let (mut client, server) = connect("/mqtt", "mqtt").await;
    let mut server = server.unwrap();
    client
        .send(Message::binary(&b"\xe0\x00"[..]))
        .await
        .unwrap();
    client.close(None).await.unwrap();
    let mut all = Vec::new();
    server.read_to_end(&mut all).await.unwrap();
    assert_eq!(all, b"\xe0\x00");
    server.shutdown().await.unwrap();
    // The client saw our answer to its close and the end.
    while let Some(Ok(_)) = client.next().await {}
}

#[tokio::test]
async fn bytes_sent_with_the_request_are_the_first_frames() {
    // A client that does not wait for the 101 (allowed by nothing, harmless): the masked
    // frame right after the head must not be lost.
    let (mut client, server) = duplex(64 * 1024);
    let accepting = tokio::spawn(async move { upgrade(server, &settings()).await });
    let mut request = upgrade_request("");
    // A binary frame, FIN, masked with a zero key, payload c0 00 (PINGREQ).
    request.extend_from_slice(&[0x82, 0x82, 0, 0, 0, 0, 0xc0, 0x00]);
    client.write_all(&request).await.unwrap();
    let mut server = accepting.await.unwrap().unwrap();
    let mut got = [0u8; 2];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"\xc0\x00");
}
