//! Helpers of the RabbitMQ Stream protocol tests (tests/stream_protocol*.rs): a broker with a
//! data directory and its stream listener, environments of the `rabbitmq-stream-client`
//! crate, and a raw client for the frames no client library sends.
#![allow(dead_code, clippy::unwrap_used)]

use bytes::BytesMut;
use futures::StreamExt;
use pigeon_tests::{within, DataDir, TestBroker};
use rabbitmq_stream_client::types::{Message, OffsetSpecification};
use rabbitmq_stream_client::{Consumer, Environment};
use std::net::SocketAddr;
use stream_wire::{
    decode, Command, Create, DeclarePublisher, Open, PeerProperties, SaslAuthenticate,
    SaslHandshake, TuneResponse,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A data directory (streams need one) and a broker on it; `None` in reference mode.
pub async fn broker() -> Option<(DataDir, TestBroker)> {
    let data = DataDir::with(|c| c.fsync = true);
    let broker = data.start().await?;
    Some((data, broker))
}

/// An environment logged in as `user`/`password`.
pub async fn env_as(
    broker: &TestBroker,
    user: &str,
    password: &str,
) -> rabbitmq_stream_client::RabbitMQStreamResult<Environment> {
    let addr = broker.stream_addr().expect("the stream listener is on");
    within(
        "the stream handshake",
        Environment::builder()
            .host(&addr.ip().to_string())
            .port(addr.port())
            .username(user)
            .password(password)
            .build(),
    )
    .await
}

/// An environment logged in as the broker's user.
pub async fn env(broker: &TestBroker) -> Environment {
    env_as(broker, broker.user(), broker.password())
        .await
        .unwrap()
}

/// A new stream created through the stream protocol.
pub async fn new_stream(env: &Environment) -> String {
    let name = pigeon_tests::unique("sp");
    within("Create", env.stream_creator().create(&name))
        .await
        .unwrap();
    name
}

/// Publishes `bodies` one by one, each waiting for its confirm.
pub async fn publish(env: &Environment, stream: &str, bodies: &[&str]) {
    let producer = within("DeclarePublisher", env.producer().build(stream))
        .await
        .unwrap();
    for b in bodies {
        let status = within(
            "a PublishConfirm",
            producer.send_with_confirm(Message::builder().body(b.as_bytes().to_vec()).build()),
        )
        .await
        .unwrap();
        assert!(status.confirmed(), "{b} not confirmed");
    }
    within("the producer's close", producer.close())
        .await
        .unwrap();
}

/// A consumer of `stream` from `offset`.
pub async fn consumer(env: &Environment, stream: &str, offset: OffsetSpecification) -> Consumer {
    within("Subscribe", env.consumer().offset(offset).build(stream))
        .await
        .unwrap()
}

/// The next `n` deliveries: (offset, body).
pub async fn take(consumer: &mut Consumer, n: usize) -> Vec<(u64, String)> {
    let mut got = Vec::new();
    while got.len() < n {
        let d = within("a delivery", consumer.next())
            .await
            .expect("the consumer is open")
            .unwrap();
        let body = d
            .message()
            .data()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .unwrap_or_default();
        got.push((d.offset(), body));
    }
    got
}

/// A raw stream-protocol client for hostile input (over TCP, or TLS).
pub struct Raw {
    pub socket: Box<dyn pigeon_tests::ByteStream>,
    /// Our end of the TCP connection.
    pub local: SocketAddr,
    buf: BytesMut,
}

impl Raw {
    pub async fn connect(addr: SocketAddr) -> Raw {
        let socket = within("connect", TcpStream::connect(addr)).await.unwrap();
        let local = socket.local_addr().unwrap();
        Raw::over(Box::new(socket), local)
    }

    /// A raw client over an established stream (a TLS one).
    pub fn over(socket: Box<dyn pigeon_tests::ByteStream>, local: SocketAddr) -> Raw {
        Raw {
            socket,
            local,
            buf: BytesMut::new(),
        }
    }

    /// Creates stream `name` (correlation id 1) and checks the answer is OK.
    pub async fn create(&mut self, name: &str) {
        self.send(Create {
            correlation_id: 1,
            stream: name.into(),
            arguments: Default::default(),
        })
        .await;
        assert!(matches!(self.recv().await, Some(Command::Response(r)) if r.code.is_ok()));
    }

    /// Declares publisher 1 on `name` with `reference` (correlation id 2), answered OK.
    pub async fn declare_publisher(&mut self, name: &str, reference: &str) {
        self.send(DeclarePublisher {
            correlation_id: 2,
            publisher_id: 1,
            reference: reference.into(),
            stream: name.into(),
        })
        .await;
        assert!(matches!(self.recv().await, Some(Command::Response(r)) if r.code.is_ok()));
    }

    pub async fn send(&mut self, command: impl Into<Command>) {
        let bytes = command.into().to_bytes();
        self.socket.write_all(&bytes).await.unwrap();
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        // The broker may have closed already: a failed write is not the test's failure.
        let _ = self.socket.write_all(bytes).await;
    }

    /// The next command, or `None` once the broker closed the socket.
    pub async fn recv(&mut self) -> Option<Command> {
        loop {
            if let Some(c) = decode(&mut self.buf, 0).unwrap() {
                return Some(c);
            }
            let n = within("a frame or the close", self.socket.read_buf(&mut self.buf))
                .await
                .unwrap_or(0);
            if n == 0 {
                return None;
            }
        }
    }

    /// Reads until the broker closes the socket; what it sent meanwhile.
    pub async fn until_closed(&mut self) -> Vec<Command> {
        let mut got = Vec::new();
        while let Some(c) = self.recv().await {
            got.push(c);
        }
        got
    }

    /// The whole handshake as guest up to a successful `Open` of `/`.
    pub async fn open(addr: SocketAddr) -> Raw {
        let mut raw = Raw::connect(addr).await;
        raw.handshake("PLAIN", Some(bytes::Bytes::from_static(b"\0guest\0guest")))
            .await;
        raw
    }

    /// The handshake with `mechanism` up to a successful `Open` of `/`; the mechanisms the
    /// broker offered.
    pub async fn handshake(&mut self, mechanism: &str, data: Option<bytes::Bytes>) -> Vec<String> {
        let raw = self;
        raw.send(PeerProperties {
            correlation_id: 1,
            properties: Default::default(),
        })
        .await;
        assert!(matches!(
            raw.recv().await,
            Some(Command::PeerPropertiesResponse(_))
        ));
        raw.send(SaslHandshake { correlation_id: 2 }).await;
        let mechanisms = match raw.recv().await {
            Some(Command::SaslHandshakeResponse(r)) => {
                r.mechanisms.iter().map(|m| m.to_string()).collect()
            }
            other => panic!("expected SaslHandshake's response, got {other:?}"),
        };
        raw.send(SaslAuthenticate {
            correlation_id: 3,
            mechanism: mechanism.into(),
            data,
        })
        .await;
        match raw.recv().await {
            Some(Command::SaslAuthenticateResponse(r)) => assert!(r.code.is_ok()),
            other => panic!("expected SaslAuthenticate's response, got {other:?}"),
        }
        let Some(Command::Tune(t)) = raw.recv().await else {
            panic!("expected Tune");
        };
        raw.send(TuneResponse {
            frame_max: t.frame_max,
            heartbeat: 0,
        })
        .await;
        raw.send(Open {
            correlation_id: 4,
            virtual_host: "/".into(),
        })
        .await;
        match raw.recv().await {
            Some(Command::OpenResponse(r)) => assert!(r.code.is_ok()),
            other => panic!("expected Open's response, got {other:?}"),
        }
        mechanisms
    }
}
