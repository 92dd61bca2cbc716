//! Fuzzes MQTT over WebSocket: arbitrary bytes as a client's side of the connection, through
//! the server's upgrade handshake and `WsStream` adapter, into the MQTT decoder, in memory.
//!
//! The first input byte chooses the mode: even, the rest of the input follows a valid upgrade
//! request (so the fuzzer spends its time on the frames: masking, fragmentation, control
//! frames, lengths, text frames, close frames); odd, the rest is the whole stream, HTTP
//! request included. The server side reads packets as a connection does (the version from the
//! CONNECT) with a small maximum packet size, answers each with a few bytes (the write path:
//! frames out, flushes), and shuts down (the close frame). The client side drains whatever
//! the server writes, so nothing blocks.
//!
//! Bit 1 of the first byte sends the same stream to the real server instead
//! (`InMemoryServer::serve_mqtt_ws`: the upgrade, then a whole MQTT connection on the broker
//! core, `common/driver.rs`).
//!
//! Beyond "never panics, never hangs": the bytes the adapter yields are never more than the
//! input (a payload is never invented or duplicated), and the MQTT read buffer never holds
//! more than one maximum packet plus one read (the limits hold).

#![no_main]

#[path = "common/driver.rs"]
mod driver;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use mqtt_wire::{decode, Packet, ProtocolVersion};
use pigeon_server::ws::{upgrade, WsSettings};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MAX_PACKET: usize = 1024;
const READ_CHUNK: usize = 4096;

const REQUEST: &[u8] = b"GET /mqtt HTTP/1.1\r\nHost: fuzz\r\nConnection: Upgrade\r\n\
Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n";

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut input = Vec::with_capacity(REQUEST.len() + rest.len());
    if mode % 2 == 0 {
        input.extend_from_slice(REQUEST);
    }
    input.extend_from_slice(rest);
    if mode & 2 != 0 {
        let actions = vec![driver::Action::Write(0, input)];
        let config = pigeon_server::ServerConfig::for_tests();
        driver::run(driver::Protocol::MqttWs, config, 1, actions);
        return;
    }
    RUNTIME.with(|rt| rt.block_on(run(input)));
});

async fn run(input: Vec<u8>) {
    let (client, server) = tokio::io::duplex(16 * 1024);
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let input_len = input.len();
    let client = async move {
        let _ = client_write.write_all(&input).await;
        let _ = client_write.shutdown().await;
        // Keep the write half until the server is done: dropping it would not matter, but
        // keeping it makes the end of the server's reads come from the input alone.
        client_write
    };
    let drain = async move {
        let mut sink = vec![0u8; 8192];
        while matches!(client_read.read(&mut sink).await, Ok(n) if n > 0) {}
    };
    let server = async move {
        let settings = WsSettings {
            path: "/mqtt".into(),
            max_packet_size: MAX_PACKET,
            origins: Vec::new(),
        };
        let Ok(mut stream) = upgrade(server, &settings).await else {
            return;
        };
        let mut buf = BytesMut::new();
        let mut version: Option<ProtocolVersion> = None;
        let mut yielded = 0usize;
        loop {
            // Decode everything buffered, as the connection's read loop does.
            loop {
                match decode(&mut buf, version, MAX_PACKET) {
                    Ok(Some(packet)) => {
                        if let Packet::Connect(c) = &packet {
                            version = Some(c.protocol);
                        }
                        // The write path: a few bytes per packet, then a flush.
                        if stream.write_all(b"\xd0\x00").await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(_) => {
                        let _ = stream.shutdown().await;
                        return;
                    }
                }
            }
            assert!(
                buf.len() <= MAX_PACKET + READ_CHUNK,
                "the read buffer is bounded"
            );
            let _ = stream.flush().await;
            buf.reserve(READ_CHUNK);
            let mut chunk = [0u8; READ_CHUNK];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    yielded += n;
                    assert!(yielded <= input_len, "no payload byte is invented");
                    buf.extend_from_slice(&chunk[..n]);
                }
            }
        }
        let _ = stream.shutdown().await;
    };
    let (_client, (), ()) = tokio::join!(client, drain, server);
}
