//! `pigeon pub` and `pigeon sub` over AMQP 0-9-1, with lapin.
//!
//! Publishing always uses publisher confirms, so that the command fails when the broker does
//! not take a message (nack, mandatory message returned, channel closed for want of permission)
//! rather than exiting 0 over a message that never arrived. Consuming acknowledges each message
//! after printing it, with a prefetch of at most `-C`, so that messages past the count stay in
//! the queue.

use super::args::{ConnArgs, PubArgs, SubArgs};
use super::output::{self, Received};
use super::topic_to_routing_key;
use anyhow::Context;
use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::tcp::{OwnedIdentity, OwnedTLSConfig};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::Confirmation;
use lapin::{BasicProperties, Connection, ConnectionProperties, DefaultConnectionBuilder};
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tracing::info;

/// Connects as the URL says, over TLS when `tls`, naming the connection.
async fn connect(conn: &ConnArgs, tls: bool, default_name: &str) -> anyhow::Result<Connection> {
    let name = conn.id.clone().unwrap_or_else(|| default_name.to_owned());
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let mut builder = DefaultConnectionBuilder::new()
        .context("cannot start lapin")?
        .with_uri_str(conn.url.clone())
        .with_properties(properties);
    let t = &conn.tls;
    if tls {
        if t.insecure || t.server_name.is_some() {
            anyhow::bail!(
                "--insecure and --server-name are for MQTT only: AMQP over TLS verifies the \
                 broker's certificate against --cafile"
            );
        }
        let cert_chain = match &t.cacert {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            ),
            None => None,
        };
        let identity = match (&t.cert, &t.key) {
            (Some(cert), Some(key)) => Some(OwnedIdentity::PKCS8 {
                pem: std::fs::read(cert)
                    .with_context(|| format!("cannot read {}", cert.display()))?,
                key: std::fs::read(key)
                    .with_context(|| format!("cannot read {}", key.display()))?,
            }),
            _ => None,
        };
        builder = builder.with_tls_config(OwnedTLSConfig {
            identity,
            cert_chain,
        });
    } else if t.cacert.is_some() || t.cert.is_some() || t.insecure {
        anyhow::bail!("TLS options given for a plain connection: use an amqps:// URL");
    }
    builder
        .connect()
        .await
        .with_context(|| format!("cannot connect to {}", redact(&conn.url)))
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// The content properties the flags ask for.
fn properties(args: &PubArgs) -> BasicProperties {
    let mut p = BasicProperties::default().with_delivery_mode(if args.persistent { 2 } else { 1 });
    if let Some(t) = &args.content_type {
        p = p.with_content_type(t.as_str().into());
    }
    if let Some(c) = &args.correlation_id {
        p = p.with_correlation_id(c.as_str().into());
    }
    if let Some(r) = &args.reply_to {
        p = p.with_reply_to(r.as_str().into());
    }
    if let Some(ms) = args.expiration {
        p = p.with_expiration(ms.to_string().into());
    }
    if !args.headers.is_empty() {
        let mut table = FieldTable::default();
        for (k, v) in &args.headers {
            table.insert(
                ShortString::from(k.as_str()),
                AMQPValue::LongString(LongString::from(v.as_str())),
            );
        }
        p = p.with_headers(table);
    }
    p
}

/// Publishes every body, waiting for each confirm.
pub async fn publish(
    args: &PubArgs,
    tls: bool,
    mut bodies: mpsc::Receiver<Vec<u8>>,
) -> anyhow::Result<()> {
    let exchange = args.conn.exchange.clone().unwrap_or_default();
    let key = match (&args.routing_key, &args.topic) {
        (Some(k), _) => k.clone(),
        (None, Some(t)) => topic_to_routing_key(t),
        (None, None) => String::new(),
    };
    let conn = connect(&args.conn, tls, "pigeon pub").await?;
    let channel = conn.create_channel().await.context("channel.open")?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("confirm.select")?;
    let props = properties(args);
    let options = BasicPublishOptions {
        mandatory: args.mandatory,
        ..BasicPublishOptions::default()
    };
    let target = || format!("exchange {exchange:?} with routing key {key:?}");
    let mut sent = 0u64;
    while let Some(body) = bodies.recv().await {
        let confirm = channel
            .basic_publish(
                exchange.as_str().into(),
                key.as_str().into(),
                options,
                &body,
                props.clone(),
            )
            .await
            .with_context(|| format!("cannot publish to {}", target()))?
            .await
            .with_context(|| format!("publishing to {}", target()))?;
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => {}
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                anyhow::bail!(
                    "the broker returned the message published to {}: {} {}",
                    target(),
                    returned.reply_code,
                    returned.reply_text
                )
            }
            Confirmation::Nack(None) => {
                anyhow::bail!(
                    "the broker refused (nacked) the message published to {}",
                    target()
                )
            }
        }
        sent += 1;
    }
    info!("published {sent} messages to {}", target());
    let _ = conn.close(200, "OK".into()).await;
    Ok(())
}

/// Consumes the queue (declaring and binding one if none is named) and prints each message.
pub async fn subscribe(args: &SubArgs, tls: bool) -> anyhow::Result<()> {
    if args.queue.is_none() && args.binding_keys.is_empty() {
        anyhow::bail!("give a queue to consume (-Q QUEUE) or binding keys for a new one (-b KEY)");
    }
    let conn = connect(&args.conn, tls, "pigeon sub").await?;
    let channel = conn.create_channel().await.context("channel.open")?;
    // Unacked messages beyond the count would be requeued anyway; asking for no more than it
    // keeps them where other consumers can have them meanwhile.
    let prefetch = args.count.map_or(100, |c| c.clamp(1, 100)) as u16;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await
        .context("basic.qos")?;
    let queue = match &args.queue {
        Some(q) => q.clone(),
        None => {
            let declared = channel
                .queue_declare(
                    "".into(),
                    QueueDeclareOptions {
                        exclusive: true,
                        auto_delete: true,
                        ..QueueDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .context("cannot declare a queue")?;
            declared.name().to_string()
        }
    };
    let exchange = args.conn.exchange.as_deref().unwrap_or("amq.topic");
    for key in &args.binding_keys {
        channel
            .queue_bind(
                queue.as_str().into(),
                exchange.into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("cannot bind {queue} to {exchange} with key {key:?}"))?;
    }
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            "pigeon-sub".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .with_context(|| format!("cannot consume from queue {queue}"))?;
    info!("consuming from queue {queue}");
    let mut received = 0u64;
    while args.count.is_none_or(|c| received < c) {
        let Some(delivery) = consumer.next().await else {
            anyhow::bail!("the broker cancelled the consumer of queue {queue}");
        };
        let delivery = delivery.with_context(|| format!("consuming from queue {queue}"))?;
        let mut fields = Map::new();
        fields.insert("exchange".into(), Value::from(delivery.exchange.as_str()));
        fields.insert(
            "routing_key".into(),
            Value::from(delivery.routing_key.as_str()),
        );
        fields.insert("redelivered".into(), Value::from(delivery.redelivered));
        fields.insert("properties".into(), properties_json(&delivery.properties));
        output::print(
            args.format,
            args.verbose,
            Received {
                topic: delivery.routing_key.as_str(),
                body: &delivery.data,
                fields,
            },
        )
        .context("cannot write to standard output")?;
        delivery
            .ack(BasicAckOptions::default())
            .await
            .context("basic.ack")?;
        received += 1;
    }
    let _ = conn.close(200, "OK".into()).await;
    Ok(())
}

/// The properties that are set, under RabbitMQ's management API names.
fn properties_json(p: &BasicProperties) -> Value {
    let mut m = Map::new();
    let mut text = |name: &str, v: Option<&ShortString>| {
        if let Some(v) = v {
            m.insert(name.into(), Value::from(v.as_str()));
        }
    };
    text("content_type", p.content_type().as_ref());
    text("content_encoding", p.content_encoding().as_ref());
    text("correlation_id", p.correlation_id().as_ref());
    text("reply_to", p.reply_to().as_ref());
    text("expiration", p.expiration().as_ref());
    text("message_id", p.message_id().as_ref());
    text("type", p.kind().as_ref());
    text("user_id", p.user_id().as_ref());
    text("app_id", p.app_id().as_ref());
    if let Some(mode) = p.delivery_mode() {
        m.insert("delivery_mode".into(), Value::from(*mode));
    }
    if let Some(priority) = p.priority() {
        m.insert("priority".into(), Value::from(*priority));
    }
    if let Some(ts) = p.timestamp() {
        m.insert("timestamp".into(), Value::from(*ts));
    }
    if let Some(headers) = p.headers() {
        let h: Map<String, Value> = headers
            .inner()
            .iter()
            .map(|(k, v)| (k.to_string(), amqp_value_json(v)))
            .collect();
        m.insert("headers".into(), Value::Object(h));
    }
    Value::Object(m)
}

/// A header value as JSON: strings and numbers as themselves, the rest as lapin shows them.
fn amqp_value_json(v: &AMQPValue) -> Value {
    match v {
        AMQPValue::LongString(s) => Value::from(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Value::from(s.as_str()),
        AMQPValue::Boolean(b) => Value::from(*b),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::ShortInt(n) => Value::from(*n),
        AMQPValue::Double(n) => Value::from(*n),
        other => Value::from(format!("{other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_not_printed() {
        assert_eq!(
            redact("amqp://guest:secret@h:5672/%2f"),
            "amqp://guest:***@h:5672/%2f"
        );
        assert_eq!(redact("amqp://h"), "amqp://h");
    }
}
