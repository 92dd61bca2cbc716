//! MQTT 5.0 through rumqttc's v5 client: the AMQP-like properties (content type, correlation
//! data, response topic, user properties) travel as MQTT 5 publish properties, and error reason
//! codes in PUBACK, PUBREC and SUBACK fail the command.

use super::Endpoint;
use crate::pubsub::args::{PubArgs, SubArgs};
use crate::pubsub::output::{self, Received};
use anyhow::Context;
use bytes::Bytes;
use rumqttc::v5::mqttbytes::v5::{
    Packet, PubAckReason, PubRecReason, PublishProperties, SubscribeReasonCode,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::{AsyncClient, Event, EventLoop, MqttOptions};
use rumqttc::Outgoing;
use serde_json::{Map, Value};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::info;

/// Requests rumqttc may queue; we never leave more than half of them unanswered.
const REQUESTS: usize = 1024;

fn connect(endpoint: &Endpoint) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(&endpoint.client_id, &endpoint.host, endpoint.port);
    options.set_keep_alive(Duration::from_secs(60));
    options.set_clean_start(true);
    options.set_transport(endpoint.transport.clone());
    if let Some((user, password)) = &endpoint.credentials {
        options.set_credentials(user, password);
    }
    AsyncClient::new(options, REQUESTS)
}

fn qos(n: u8) -> anyhow::Result<QoS> {
    rumqttc::v5::mqttbytes::qos(n).ok_or_else(|| anyhow::anyhow!("-q {n}: not 0, 1 or 2"))
}

fn properties(args: &PubArgs) -> PublishProperties {
    PublishProperties {
        content_type: args.content_type.clone(),
        correlation_data: args.correlation_id.clone().map(Bytes::from),
        response_topic: args.reply_to.clone(),
        user_properties: args.headers.clone(),
        message_expiry_interval: args.expiration.map(|ms| ms.div_ceil(1000) as u32),
        ..PublishProperties::default()
    }
}

pub(super) async fn publish(
    args: &PubArgs,
    endpoint: Endpoint,
    topic: &str,
    mut bodies: mpsc::Receiver<Vec<u8>>,
) -> anyhow::Result<()> {
    let qos = qos(args.conn.qos)?;
    let props = properties(args);
    let (client, events) = connect(&endpoint);
    let mut events = drive(events);
    let (mut published, mut done, mut open) = (0u64, 0u64, true);
    while open || done < published {
        tokio::select! {
            body = bodies.recv(), if open && published - done < (REQUESTS / 2) as u64 => match body {
                Some(body) => {
                    client
                        .publish_with_properties(topic, qos, args.retain, body, props.clone())
                        .await
                        .context("publish")?;
                    published += 1;
                }
                None => open = false,
            },
            event = events.recv() => {
                let Some(event) = event else {
                    anyhow::bail!("the connection to {} ended", endpoint.shown);
                };
                let event = event.with_context(|| format!("MQTT connection to {}", endpoint.shown))?;
                match (event, qos) {
                    (Event::Incoming(Packet::PubAck(ack)), _)
                        if !matches!(ack.reason, PubAckReason::Success | PubAckReason::NoMatchingSubscribers) =>
                    {
                        anyhow::bail!("the broker refused the message published to {topic}: {:?}", ack.reason)
                    }
                    (Event::Incoming(Packet::PubRec(rec)), _)
                        if !matches!(rec.reason, PubRecReason::Success | PubRecReason::NoMatchingSubscribers) =>
                    {
                        anyhow::bail!("the broker refused the message published to {topic}: {:?}", rec.reason)
                    }
                    (Event::Outgoing(Outgoing::Publish(_)), QoS::AtMostOnce)
                    | (Event::Incoming(Packet::PubAck(_)), QoS::AtLeastOnce)
                    | (Event::Incoming(Packet::PubComp(_)), QoS::ExactlyOnce) => done += 1,
                    (Event::Incoming(Packet::Disconnect(d)), _) => {
                        anyhow::bail!("the broker disconnected: {:?}", d.reason_code)
                    }
                    _ => {}
                }
            }
        }
    }
    info!("published {published} messages to {topic}");
    if client.disconnect().await.is_ok() {
        let written = async {
            while let Some(Ok(event)) = events.recv().await {
                if matches!(event, Event::Outgoing(Outgoing::Disconnect)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(Duration::from_secs(5), written).await;
    }
    Ok(())
}

/// Polls the event loop in a task of its own and hands its events over a channel: the
/// publisher waits on its input and on the broker at once, and a `poll` future dropped by a
/// `select!` midway through connecting would connect again (the broker then sees the same
/// client identifier twice and drops the first session).
fn drive(mut events: EventLoop) -> mpsc::Receiver<Result<Event, rumqttc::v5::ConnectionError>> {
    let (tx, rx) = mpsc::channel(REQUESTS);
    tokio::spawn(async move {
        loop {
            let event = events.poll().await;
            let failed = event.is_err();
            if tx.send(event).await.is_err() || failed {
                break;
            }
        }
    });
    rx
}

/// Sends DISCONNECT and drives the connection until it is written (or the socket is gone).
async fn disconnect(client: AsyncClient, mut events: EventLoop) {
    if client.disconnect().await.is_err() {
        return;
    }
    let drain = async {
        while let Ok(event) = events.poll().await {
            if matches!(event, Event::Outgoing(Outgoing::Disconnect)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), drain).await;
}

pub(super) async fn subscribe(args: &SubArgs, endpoint: Endpoint) -> anyhow::Result<()> {
    let qos = qos(args.conn.qos)?;
    let (client, mut events) = connect(&endpoint);
    for filter in &args.topic {
        client.subscribe(filter, qos).await.context("subscribe")?;
    }
    let mut received = 0u64;
    while args.count.is_none_or(|c| received < c) {
        let event = events
            .poll()
            .await
            .with_context(|| format!("MQTT connection to {}", endpoint.shown))?;
        match event {
            Event::Incoming(Packet::SubAck(ack)) => {
                if let Some(refused) = ack
                    .return_codes
                    .iter()
                    .find(|c| !matches!(c, SubscribeReasonCode::Success(_)))
                {
                    anyhow::bail!(
                        "the broker refused the subscription to {:?}: {refused:?}",
                        args.topic
                    );
                }
                info!("subscribed to {:?}", args.topic);
            }
            Event::Incoming(Packet::Publish(p)) => {
                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                let mut fields = Map::new();
                fields.insert("topic".into(), Value::from(topic.as_str()));
                fields.insert("qos".into(), Value::from(p.qos as u8));
                fields.insert("retain".into(), Value::from(p.retain));
                if let Some(props) = &p.properties {
                    fields.insert("properties".into(), properties_json(props));
                }
                output::print(
                    args.format,
                    args.verbose,
                    Received {
                        topic: &topic,
                        body: &p.payload,
                        fields,
                    },
                )
                .context("cannot write to standard output")?;
                received += 1;
            }
            Event::Incoming(Packet::Disconnect(d)) => {
                anyhow::bail!("the broker disconnected: {:?}", d.reason_code)
            }
            _ => {}
        }
    }
    disconnect(client, events).await;
    Ok(())
}

fn properties_json(p: &PublishProperties) -> Value {
    let mut m = Map::new();
    if let Some(t) = &p.content_type {
        m.insert("content_type".into(), Value::from(t.as_str()));
    }
    if let Some(c) = &p.correlation_data {
        m.insert(
            "correlation_data".into(),
            Value::from(String::from_utf8_lossy(c).into_owned()),
        );
    }
    if let Some(r) = &p.response_topic {
        m.insert("response_topic".into(), Value::from(r.as_str()));
    }
    if !p.user_properties.is_empty() {
        let users: Map<String, Value> = p
            .user_properties
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        m.insert("user_properties".into(), Value::Object(users));
    }
    Value::Object(m)
}
