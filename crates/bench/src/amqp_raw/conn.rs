//! One connection of the bench's own AMQP client: the socket, the handshake (PLAIN login,
//! heartbeats off), and the methods every role needs (rpc, channels, close).

use super::{expect, CHANNEL_MAX, FRAME_MAX};
use crate::net::{BrokerUrl, Wire, AMQP_SCHEMES};
use crate::tls::TlsClient;
use amqp_wire::{
    decode_frame, encode_method_frame, ChannelCloseOk, ChannelOpen, ConnectionClose,
    ConnectionCloseOk, ConnectionOpen, ConnectionStartOk, ConnectionTuneOk, FieldTable, FieldValue,
    Frame, Method, ShortString, PROTOCOL_HEADER,
};
use anyhow::Context;
use bytes::Bytes;
use std::net::IpAddr;

/// An open connection: the socket, its buffers and what tuning settled.
#[derive(Debug)]
pub struct Conn {
    pub(super) wire: Wire,
    pub(super) frame_max: u32,
    pub(super) channel_max: u16,
}

impl Conn {
    /// Connects (over TLS with `tls`) and logs in (PLAIN), with heartbeats off; `source` picks
    /// the local address.
    pub async fn open(
        url: &str,
        name: &str,
        source: Option<IpAddr>,
        read_chunk: usize,
        tls: Option<&TlsClient>,
    ) -> anyhow::Result<Conn> {
        let url = BrokerUrl::parse(url, AMQP_SCHEMES)?;
        let wire = Wire::connect(&url.host, url.port, source, read_chunk, tls).await?;
        let mut conn = Conn {
            wire,
            frame_max: amqp_wire::FRAME_MIN_SIZE,
            channel_max: CHANNEL_MAX,
        };
        conn.handshake(&url, name).await?;
        Ok(conn)
    }

    async fn handshake(&mut self, url: &BrokerUrl, name: &str) -> anyhow::Result<()> {
        self.wire.out.extend_from_slice(&PROTOCOL_HEADER);
        let start = match self
            .next_method(0)
            .await
            .context("waiting for connection.start")?
        {
            Method::ConnectionStart(start) => start,
            other => anyhow::bail!("expected connection.start, got {}", other.name()),
        };
        let mechanisms = String::from_utf8_lossy(&start.mechanisms).into_owned();
        if !mechanisms.split_whitespace().any(|m| m == "PLAIN") {
            anyhow::bail!("the broker does not offer PLAIN login (it offers {mechanisms})");
        }
        let user = url.user.as_deref().unwrap_or("guest");
        let password = url.password.as_deref().unwrap_or("guest");
        let start_ok = ConnectionStartOk {
            client_properties: client_properties(name),
            response: Bytes::from(format!("\0{user}\0{password}")),
            ..ConnectionStartOk::default()
        };
        self.send_method(0, start_ok);
        let tune = match self.next_method(0).await.context("logging in")? {
            Method::ConnectionTune(tune) => tune,
            Method::ConnectionSecure(_) => {
                anyhow::bail!("the broker asked for a SASL challenge, which PLAIN has none of")
            }
            other => anyhow::bail!("expected connection.tune, got {}", other.name()),
        };
        self.channel_max = match tune.channel_max {
            0 => CHANNEL_MAX,
            n => n.min(CHANNEL_MAX),
        };
        let frame_max = match tune.frame_max {
            0 => FRAME_MAX,
            n => n.min(FRAME_MAX),
        };
        self.send_method(
            0,
            ConnectionTuneOk {
                channel_max: self.channel_max,
                frame_max,
                heartbeat: 0,
            },
        );
        self.frame_max = frame_max;
        let vhost = match url.path.as_deref() {
            None | Some("") => "/",
            Some(v) => v,
        };
        self.send_method(
            0,
            ConnectionOpen {
                virtual_host: ShortString::new(vhost).context("vhost name too long")?,
            },
        );
        match self
            .next_method(0)
            .await
            .with_context(|| format!("opening vhost {vhost}"))?
        {
            Method::ConnectionOpenOk(_) => Ok(()),
            other => anyhow::bail!("expected connection.open-ok, got {}", other.name()),
        }
    }

    /// Buffers a method frame.
    pub(super) fn send_method(&mut self, channel: u16, method: impl Into<Method>) {
        encode_method_frame(channel, &method.into(), &mut self.wire.out);
    }

    /// The next frame, reading (and writing what is buffered) as needed.
    pub(super) async fn next_frame(&mut self) -> anyhow::Result<Frame> {
        loop {
            if let Some(frame) = self.decode()? {
                return Ok(frame);
            }
            self.wire.receive().await?;
        }
    }

    /// Decodes one frame from what has been read, if a whole one is there.
    pub(super) fn decode(&mut self) -> anyhow::Result<Option<Frame>> {
        if self.wire.rbuf.starts_with(b"AMQP") {
            // A broker that does not speak 0-9-1 answers with the header of what it speaks.
            let got = self.wire.rbuf.get(..8).unwrap_or_default();
            anyhow::bail!("the broker refused AMQP 0-9-1 and offered protocol header {got:?}");
        }
        Ok(decode_frame(&mut self.wire.rbuf, self.frame_max)?)
    }

    /// The next method on `channel`, answering and reporting a connection.close or a
    /// channel.close, and skipping what does not concern the caller (heartbeats, blocked
    /// notices, other channels).
    async fn next_method(&mut self, channel: u16) -> anyhow::Result<Method> {
        loop {
            let frame = self.next_frame().await?;
            if let Some(method) = self.screen(frame)? {
                if method.0 == channel {
                    return Ok(method.1);
                }
            }
        }
    }

    /// Deals with the frames every role treats alike: a connection.close or channel.close from
    /// the broker becomes an error (after the -ok it asks for), heartbeats and blocked notices
    /// are dropped. Returns the other methods with their channel; content frames are dropped.
    pub(super) fn screen(&mut self, frame: Frame) -> anyhow::Result<Option<(u16, Method)>> {
        match frame {
            Frame::Method {
                channel,
                method: Method::ConnectionClose(close),
            } => {
                self.send_method(channel, ConnectionCloseOk {});
                anyhow::bail!(
                    "the broker closed the connection: {} {}",
                    close.reply_code,
                    close.reply_text
                );
            }
            Frame::Method {
                channel,
                method: Method::ChannelClose(close),
            } => {
                self.send_method(channel, ChannelCloseOk {});
                anyhow::bail!(
                    "the broker closed channel {channel}: {} {}",
                    close.reply_code,
                    close.reply_text
                );
            }
            Frame::Method {
                method: Method::ConnectionBlocked(_) | Method::ConnectionUnblocked(_),
                ..
            } => Ok(None),
            Frame::Method { channel, method } => Ok(Some((channel, method))),
            Frame::Header { .. } | Frame::Body { .. } | Frame::Heartbeat { .. } => Ok(None),
        }
    }

    /// Sends `method` on `channel` and waits for its answer there.
    pub(super) async fn rpc(
        &mut self,
        channel: u16,
        method: impl Into<Method>,
    ) -> anyhow::Result<Method> {
        let method = method.into();
        let name = method.name();
        self.send_method(channel, method);
        self.next_method(channel)
            .await
            .with_context(|| format!("waiting for the answer to {name}"))
    }

    /// Opens `channel`.
    pub(super) async fn open_channel(&mut self, channel: u16) -> anyhow::Result<()> {
        expect(
            self.rpc(channel, ChannelOpen {}).await?,
            "channel.open-ok",
            |m| matches!(m, Method::ChannelOpenOk(_)),
        )
    }

    /// Closes the connection: connection.close, then waits for close-ok (or the socket's end).
    pub async fn close(mut self) -> anyhow::Result<()> {
        self.send_method(
            0,
            ConnectionClose {
                reply_code: 200,
                reply_text: ShortString::from_static("OK"),
                class_id: 0,
                method_id: 0,
            },
        );
        loop {
            let frame = match self.next_frame().await {
                Ok(frame) => frame,
                // The broker may drop the socket right after close-ok, or instead of it.
                Err(_) => return Ok(()),
            };
            if let Frame::Method { method, .. } = frame {
                match method {
                    Method::ConnectionCloseOk(_) => return Ok(()),
                    Method::ConnectionClose(_) => {
                        self.send_method(0, ConnectionCloseOk {});
                        let _ = self.wire.send().await;
                        return Ok(());
                    }
                    _ => {}
                }
            }
        }
    }

    /// Waits for the broker to close the connection (for idle connections): returns why.
    pub async fn hold(&mut self) -> anyhow::Error {
        loop {
            match self.next_frame().await {
                Ok(frame) => {
                    if let Err(e) = self.screen(frame) {
                        let _ = self.wire.send().await;
                        return e;
                    }
                }
                Err(e) => return e,
            }
        }
    }

    /// Opens channel 1 (for idle connections).
    pub async fn open_first_channel(&mut self) -> anyhow::Result<()> {
        self.open_channel(1).await
    }
}

/// What the bench tells the broker about itself; `capabilities` announces the extensions it
/// handles.
fn client_properties(name: &str) -> FieldTable {
    let text = |s: &str| FieldValue::LongString(Bytes::copy_from_slice(s.as_bytes()));
    let mut capabilities = FieldTable::new();
    for cap in [
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
    ] {
        capabilities.insert(cap, FieldValue::Bool(true));
    }
    let mut props = FieldTable::new();
    props.insert("product", text("pigeon-bench"));
    props.insert("version", text(env!("CARGO_PKG_VERSION")));
    props.insert("platform", text("Rust"));
    props.insert("connection_name", text(name));
    props.insert("capabilities", FieldValue::Table(capabilities));
    props
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_properties_name_the_connection() {
        let props = client_properties("pigeon-bench producer 0");
        let name = props.get("connection_name").and_then(FieldValue::as_str);
        assert_eq!(name, Some("pigeon-bench producer 0"));
        let caps = props.get("capabilities").and_then(FieldValue::as_table);
        assert!(caps.is_some_and(|c| c.get("publisher_confirms").is_some()));
    }
}
