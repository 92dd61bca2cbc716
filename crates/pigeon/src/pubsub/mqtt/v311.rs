//! MQTT 3.1.1 through rumqttc's v4 client.

use super::Endpoint;
use crate::pubsub::args::{PubArgs, SubArgs};
use crate::pubsub::output::{self, Received};
use anyhow::Context;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS, SubscribeReasonCode,
};
use serde_json::{Map, Value};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::info;

/// Requests rumqttc may queue; we never leave more than half of them unanswered.
const REQUESTS: usize = 1024;

fn connect(endpoint: &Endpoint, clean: bool) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(&endpoint.client_id, &endpoint.host, endpoint.port);
    options.set_keep_alive(Duration::from_secs(60));
    options.set_clean_session(clean);
    options.set_transport(endpoint.transport.clone());
    if let Some((user, password)) = &endpoint.credentials {
        options.set_credentials(user, password);
    }
    AsyncClient::new(options, REQUESTS)
}

fn qos(n: u8) -> anyhow::Result<QoS> {
    rumqttc::qos(n).map_err(|e| anyhow::anyhow!("-q {n}: {e:?}"))
}

pub(super) async fn publish(
    args: &PubArgs,
    endpoint: Endpoint,
    topic: &str,
    mut bodies: mpsc::Receiver<Vec<u8>>,
) -> anyhow::Result<()> {
    let qos = qos(args.conn.qos)?;
    let (client, events) = connect(&endpoint, true);
    let mut events = drive(events);
    let (mut published, mut done, mut open) = (0u64, 0u64, true);
    while open || done < published {
        tokio::select! {
            body = bodies.recv(), if open && published - done < (REQUESTS / 2) as u64 => match body {
                Some(body) => {
                    client.publish(topic, qos, args.retain, body).await.context("publish")?;
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
                    (Event::Outgoing(Outgoing::Publish(_)), QoS::AtMostOnce)
                    | (Event::Incoming(Packet::PubAck(_)), QoS::AtLeastOnce)
                    | (Event::Incoming(Packet::PubComp(_)), QoS::ExactlyOnce) => done += 1,
                    (Event::Incoming(Packet::Disconnect), _) => {
                        anyhow::bail!("the broker disconnected before every message was published")
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
fn drive(mut events: EventLoop) -> mpsc::Receiver<Result<Event, rumqttc::ConnectionError>> {
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
    let (client, mut events) = connect(&endpoint, true);
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
                if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                    anyhow::bail!("the broker refused the subscription to {:?}", args.topic);
                }
                info!("subscribed to {:?}", args.topic);
            }
            Event::Incoming(Packet::Publish(p)) => {
                let mut fields = Map::new();
                fields.insert("topic".into(), Value::from(p.topic.as_str()));
                fields.insert("qos".into(), Value::from(p.qos as u8));
                fields.insert("retain".into(), Value::from(p.retain));
                output::print(
                    args.format,
                    args.verbose,
                    Received {
                        topic: &p.topic,
                        body: &p.payload,
                        fields,
                    },
                )
                .context("cannot write to standard output")?;
                received += 1;
            }
            Event::Incoming(Packet::Disconnect) => anyhow::bail!("the broker disconnected"),
            _ => {}
        }
    }
    disconnect(client, events).await;
    Ok(())
}
