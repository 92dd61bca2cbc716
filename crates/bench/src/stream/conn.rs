//! One connection of the bench's stream client: the socket, the handshake (PeerProperties,
//! SaslHandshake, PLAIN SaslAuthenticate, Tune, Open: PROTOCOL.adoc, "Connection"), requests
//! matched to their responses by correlation id, heartbeats answered, and Close.

use crate::net::{BrokerUrl, Wire};
use crate::tls::TlsClient;
use anyhow::Context;
use bytes::Bytes;
use stream_wire::{
    decode, Close, Command, Heartbeat, Open, PeerProperties, Properties, ResponseCode,
    SaslAuthenticate, SaslHandshake, Str, TuneResponse, INITIAL_FRAME_MAX,
};

/// The largest frame we accept (the server's proposal may lower it): the size of RabbitMQ's
/// default, so a chunk of a stream written by another client fits.
pub const FRAME_MAX: u32 = 8 * 1024 * 1024;

/// The URL schemes of the stream protocol and their default ports.
pub const STREAM_SCHEMES: &[(&str, u16)] = &[
    ("rabbitmq-stream", stream_wire::DEFAULT_PORT),
    ("rabbitmq-stream+tls", stream_wire::DEFAULT_TLS_PORT),
];

/// Whether a stream URL's scheme means TLS.
pub fn is_tls(url: &BrokerUrl) -> bool {
    url.scheme == "rabbitmq-stream+tls"
}

/// An open connection.
#[derive(Debug)]
pub struct Conn {
    pub(super) wire: Wire,
    /// The frame limit both sides agreed on (0: none).
    pub(super) frame_max: u32,
    next_correlation: u32,
}

impl Conn {
    /// Connects (over TLS with `tls`), logs in with PLAIN and opens the URL's vhost.
    pub async fn open(
        url: &BrokerUrl,
        name: &str,
        read_chunk: usize,
        tls: Option<&TlsClient>,
    ) -> anyhow::Result<Conn> {
        let wire = Wire::connect(&url.host, url.port, None, read_chunk, tls).await?;
        let mut conn = Conn {
            wire,
            frame_max: INITIAL_FRAME_MAX,
            next_correlation: 1,
        };
        conn.handshake(url, name).await?;
        Ok(conn)
    }

    async fn handshake(&mut self, url: &BrokerUrl, name: &str) -> anyhow::Result<()> {
        let mut properties = Properties::new();
        properties.push("product", "pigeon-bench");
        properties.push("connection_name", Str::new(name)?);
        let correlation_id = self.correlation();
        let answer = self
            .rpc(PeerProperties {
                correlation_id,
                properties,
            })
            .await
            .context("peer properties")?;
        expect_ok(&answer, "PeerProperties")?;
        let correlation_id = self.correlation();
        let answer = self
            .rpc(SaslHandshake { correlation_id })
            .await
            .context("SASL handshake")?;
        let Command::SaslHandshakeResponse(mechanisms) = answer else {
            anyhow::bail!("expected the SASL mechanisms, got {answer:?}");
        };
        if !mechanisms.mechanisms.iter().any(|m| m.as_str() == "PLAIN") {
            anyhow::bail!("the broker does not offer PLAIN login");
        }
        let user = url.user.as_deref().unwrap_or("guest");
        let password = url.password.as_deref().unwrap_or("guest");
        let correlation_id = self.correlation();
        self.send(SaslAuthenticate {
            correlation_id,
            mechanism: Str::from_static("PLAIN"),
            data: Some(Bytes::from(format!("\0{user}\0{password}"))),
        });
        // The server sends Tune right after a successful SaslAuthenticate response.
        let answer = self.next_command().await.context("logging in")?;
        expect_ok(&answer, "SaslAuthenticate")?;
        let tune = loop {
            match self.next_command().await.context("waiting for Tune")? {
                Command::Tune(tune) => break tune,
                Command::Heartbeat(_) => {}
                other => anyhow::bail!("expected Tune, got {other:?}"),
            }
        };
        let frame_max = match tune.frame_max {
            0 => FRAME_MAX,
            n => n.min(FRAME_MAX),
        };
        // The server's heartbeat is kept: we answer each one it sends (`decode`).
        self.send(TuneResponse {
            frame_max,
            heartbeat: tune.heartbeat,
        });
        self.frame_max = frame_max;
        let vhost = match url.path.as_deref() {
            None | Some("") => "/",
            Some(v) => v,
        };
        let correlation_id = self.correlation();
        let answer = self
            .rpc(Open {
                correlation_id,
                virtual_host: Str::new(vhost)?,
            })
            .await
            .with_context(|| format!("opening vhost {vhost}"))?;
        expect_ok(&answer, "Open")
    }

    /// A connection over `wire` as if the handshake had settled `frame_max`.
    #[cfg(test)]
    pub(super) fn for_tests(wire: Wire, frame_max: u32) -> Conn {
        Conn {
            wire,
            frame_max,
            next_correlation: 1,
        }
    }

    /// A fresh correlation id.
    pub(super) fn correlation(&mut self) -> u32 {
        let id = self.next_correlation;
        self.next_correlation = self.next_correlation.wrapping_add(1).max(1);
        id
    }

    /// Encodes `command` into the write buffer (written with the next send or receive).
    pub(super) fn send(&mut self, command: impl Into<Command>) {
        command.into().encode(&mut self.wire.out);
    }

    /// Decodes the next complete command in the read buffer, answering heartbeats and failing
    /// on the server's Close.
    pub(super) fn decode(&mut self) -> anyhow::Result<Option<Command>> {
        loop {
            let Some(command) = decode(&mut self.wire.rbuf, 0)? else {
                return Ok(None);
            };
            match command {
                Command::Heartbeat(_) => self.send(Heartbeat),
                Command::Close(close) => {
                    self.send(Command::Response(stream_wire::Response::new(
                        stream_wire::key::CLOSE,
                        close.correlation_id,
                        ResponseCode::Ok,
                    )));
                    anyhow::bail!(
                        "the broker closed the connection: {:?} {}",
                        close.code,
                        close.reason.as_str()
                    );
                }
                command => return Ok(Some(command)),
            }
        }
    }

    /// The next command, reading as needed.
    pub(super) async fn next_command(&mut self) -> anyhow::Result<Command> {
        loop {
            if let Some(command) = self.decode()? {
                return Ok(command);
            }
            self.wire.receive().await?;
        }
    }

    /// Sends a request and waits for the response with its correlation id; what arrives in
    /// between (a delivery, a confirm) is dropped, so this is for setup and cleanup only.
    pub(super) async fn rpc(&mut self, request: impl Into<Command>) -> anyhow::Result<Command> {
        let request = request.into();
        let wanted = correlation_of(&request);
        let key = request.key();
        self.send(request);
        loop {
            let answer = self.next_command().await?;
            if answer.key() == key | stream_wire::RESPONSE_FLAG && correlation_of(&answer) == wanted
            {
                return Ok(answer);
            }
        }
    }

    /// Closes politely: Close, then its response.
    pub async fn close(mut self) -> anyhow::Result<()> {
        let correlation_id = self.correlation();
        self.rpc(Close {
            correlation_id,
            code: ResponseCode::Ok,
            reason: Str::from_static("pigeon-bench done"),
        })
        .await
        .map(|_| ())
    }
}

/// The correlation id of a request or response that has one.
fn correlation_of(command: &Command) -> Option<u32> {
    Some(match command {
        Command::Response(r) => r.correlation_id,
        Command::PeerProperties(c) => c.correlation_id,
        Command::PeerPropertiesResponse(c) => c.correlation_id,
        Command::SaslHandshake(c) => c.correlation_id,
        Command::SaslHandshakeResponse(c) => c.correlation_id,
        Command::SaslAuthenticate(c) => c.correlation_id,
        Command::SaslAuthenticateResponse(c) => c.correlation_id,
        Command::Open(c) => c.correlation_id,
        Command::OpenResponse(c) => c.correlation_id,
        Command::Close(c) => c.correlation_id,
        Command::DeclarePublisher(c) => c.correlation_id,
        Command::DeletePublisher(c) => c.correlation_id,
        Command::Subscribe(c) => c.correlation_id,
        Command::Unsubscribe(c) => c.correlation_id,
        Command::Create(c) => c.correlation_id,
        Command::Delete(c) => c.correlation_id,
        Command::Metadata(c) => c.correlation_id,
        Command::MetadataResponse(c) => c.correlation_id,
        Command::StreamStats(c) => c.correlation_id,
        Command::StreamStatsResponse(c) => c.correlation_id,
        _ => return None,
    })
}

/// The response code of a response, if it carries one.
pub(super) fn code_of(command: &Command) -> Option<ResponseCode> {
    Some(match command {
        Command::Response(r) => r.code,
        Command::PeerPropertiesResponse(r) => r.code,
        Command::SaslHandshakeResponse(r) => r.code,
        Command::SaslAuthenticateResponse(r) => r.code,
        Command::OpenResponse(r) => r.code,
        Command::MetadataResponse(_) => ResponseCode::Ok,
        Command::StreamStatsResponse(r) => r.code,
        _ => return None,
    })
}

/// Fails unless `answer` is a response with code Ok.
pub(super) fn expect_ok(answer: &Command, what: &str) -> anyhow::Result<()> {
    match code_of(answer) {
        Some(ResponseCode::Ok) => Ok(()),
        Some(code) => anyhow::bail!("{what} refused: {code:?}"),
        None => anyhow::bail!("{what}: unexpected answer {answer:?}"),
    }
}
