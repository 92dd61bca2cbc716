//! The bench's AMQP 0-9-1 client on lapin (`--client lapin`): one connection per producer or
//! consumer, one channel each. Kept to compare with the bench's own client (`amqp_raw.rs`) and
//! as a second opinion on a broker's behaviour.

use super::amqp_raw::AmqpConfig;
use super::client::{Client, Confirms, ConsumeOptions, Consumer, PublishOptions, Publisher};
use anyhow::Context;
use bytes::Bytes;
use futures_lite::{future, StreamExt};
use hdrhistogram::Histogram;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{
    Acker, BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    PublisherConfirm,
};
use std::collections::VecDeque;
use std::time::Instant;

/// A lapin connection.
pub struct Amqp {
    connection: Connection,
    exchange: ShortString,
}

impl Client for Amqp {
    type Config = AmqpConfig;
    type Publisher = AmqpPublisher;
    type Consumer = AmqpConsumer;

    async fn connect(config: &AmqpConfig, name: &str) -> anyhow::Result<Self> {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        let connection = Connection::connect(&config.url, properties).await?;
        Ok(Amqp {
            connection,
            exchange: config.exchange.as_str().into(),
        })
    }

    async fn declare_queue(&mut self, name: &str, durable: bool) -> anyhow::Result<()> {
        let channel = self.connection.create_channel().await?;
        let options = QueueDeclareOptions {
            durable,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(name.into(), options, FieldTable::default())
            .await?;
        channel.close(200, "OK".into()).await?;
        Ok(())
    }

    async fn declare_exchange(&mut self, name: &str, kind: &str) -> anyhow::Result<()> {
        let channel = self.connection.create_channel().await?;
        let kind = match kind {
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "direct" => ExchangeKind::Direct,
            "headers" => ExchangeKind::Headers,
            other => ExchangeKind::Custom(other.to_owned()),
        };
        channel
            .exchange_declare(
                name.into(),
                kind,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel.close(200, "OK".into()).await?;
        Ok(())
    }

    async fn delete_exchange(&mut self, name: &str) -> anyhow::Result<()> {
        let channel = self.connection.create_channel().await?;
        channel
            .exchange_delete(name.into(), ExchangeDeleteOptions::default())
            .await?;
        channel.close(200, "OK".into()).await?;
        Ok(())
    }

    async fn bind_queue(&mut self, queue: &str, exchange: &str, key: &str) -> anyhow::Result<()> {
        let channel = self.connection.create_channel().await?;
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel.close(200, "OK".into()).await?;
        Ok(())
    }

    async fn delete_queue(&mut self, name: &str) -> anyhow::Result<()> {
        let channel = self.connection.create_channel().await?;
        channel
            .queue_delete(name.into(), QueueDeleteOptions::default())
            .await?;
        channel.close(200, "OK".into()).await?;
        Ok(())
    }

    async fn publisher(
        self,
        queue: &str,
        options: PublishOptions,
    ) -> anyhow::Result<AmqpPublisher> {
        let channel = self.connection.create_channel().await?;
        if options.confirm_window.is_some() {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .context("confirm.select")?;
        }
        let properties = if options.persistent {
            BasicProperties::default().with_delivery_mode(2)
        } else {
            BasicProperties::default()
        };
        Ok(AmqpPublisher {
            connection: self.connection,
            channel,
            exchange: self.exchange,
            queue: queue.into(),
            properties,
            window: options.confirm_window.map(|w| w as usize),
            pending: VecDeque::new(),
            latency_us: super::tally::latency_histogram(),
        })
    }

    async fn consumer(self, queue: &str, options: ConsumeOptions) -> anyhow::Result<AmqpConsumer> {
        let channel = self.connection.create_channel().await?;
        if options.prefetch > 0 {
            channel
                .basic_qos(options.prefetch, BasicQosOptions::default())
                .await
                .context("basic.qos")?;
        }
        let consume = BasicConsumeOptions {
            no_ack: !options.manual_ack,
            ..BasicConsumeOptions::default()
        };
        let consumer = channel
            .basic_consume(queue.into(), "".into(), consume, FieldTable::default())
            .await
            .context("basic.consume")?;
        Ok(AmqpConsumer {
            connection: self.connection,
            channel,
            consumer,
            manual_ack: options.manual_ack,
            last: None,
        })
    }

    async fn close(self) -> anyhow::Result<()> {
        self.connection.close(200, "OK".into()).await?;
        Ok(())
    }
}

/// A channel publishing to one queue, with its unresolved confirms in publish order.
pub struct AmqpPublisher {
    connection: Connection,
    channel: Channel,
    exchange: ShortString,
    queue: ShortString,
    properties: BasicProperties,
    window: Option<usize>,
    /// Unresolved confirms and when their publish call began.
    pending: VecDeque<(Instant, PublisherConfirm)>,
    /// Confirm latencies, microseconds: publish call to the moment this publisher saw the
    /// confirm resolve (it looks when it waits for room, so never earlier than lapin had it).
    latency_us: Histogram<u64>,
}

impl AmqpPublisher {
    /// Waits for the oldest confirm, then collects any later ones that have already arrived
    /// (a broker often confirms many at once with `multiple`).
    async fn settle_oldest(&mut self) -> anyhow::Result<Confirms> {
        let mut confirms = Confirms::default();
        if let Some((sent, oldest)) = self.pending.pop_front() {
            let confirmation = oldest.await?;
            self.record(sent);
            count(&mut confirms, confirmation);
        }
        while let Some((sent, next)) = self.pending.front_mut() {
            let sent = *sent;
            match future::poll_once(next).await {
                Some(confirmation) => {
                    let confirmation = confirmation?;
                    self.record(sent);
                    count(&mut confirms, confirmation);
                }
                None => break,
            }
            self.pending.pop_front();
        }
        Ok(confirms)
    }

    /// Records the confirm latency of a message published at `sent`, confirmed now.
    fn record(&mut self, sent: Instant) {
        let us = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.latency_us.saturating_record(us);
    }
}

fn count(confirms: &mut Confirms, confirmation: Confirmation) {
    match confirmation {
        Confirmation::Nack(_) => confirms.nacked += 1,
        Confirmation::Ack(_) | Confirmation::NotRequested => confirms.acked += 1,
    }
}

impl Publisher for AmqpPublisher {
    async fn reserve(&mut self) -> anyhow::Result<Confirms> {
        let mut confirms = Confirms::default();
        while let Some(window) = self.window {
            if self.pending.len() < window {
                break;
            }
            confirms += self.settle_oldest().await?;
        }
        Ok(confirms)
    }

    async fn publish(&mut self, body: &[u8]) -> anyhow::Result<()> {
        let sent = Instant::now();
        let confirm = self
            .channel
            .basic_publish(
                self.exchange.clone(),
                self.queue.clone(),
                BasicPublishOptions::default(),
                body,
                self.properties.clone(),
            )
            .await?;
        if self.window.is_some() {
            self.pending.push_back((sent, confirm));
        }
        Ok(())
    }

    async fn write_out(&mut self) -> anyhow::Result<()> {
        // lapin writes as it goes.
        Ok(())
    }

    async fn flush(&mut self) -> anyhow::Result<Confirms> {
        let mut confirms = Confirms::default();
        while !self.pending.is_empty() {
            confirms += self.settle_oldest().await?;
        }
        Ok(confirms)
    }

    fn take_confirm_latency(&mut self) -> Option<Histogram<u64>> {
        self.window.map(|_| {
            let empty = super::tally::latency_histogram();
            std::mem::replace(&mut self.latency_us, empty)
        })
    }

    async fn close(self) -> anyhow::Result<()> {
        self.connection.close(200, "OK".into()).await?;
        Ok(())
    }
}

/// A channel consuming one queue; keeps the last delivery's acker for [`Consumer::ack`].
pub struct AmqpConsumer {
    connection: Connection,
    channel: Channel,
    consumer: lapin::Consumer,
    manual_ack: bool,
    last: Option<Acker>,
}

impl Consumer for AmqpConsumer {
    async fn next(&mut self) -> anyhow::Result<Option<Bytes>> {
        match self.consumer.next().await {
            None => Ok(None),
            Some(delivery) => {
                let delivery = delivery?;
                if self.manual_ack {
                    self.last = Some(delivery.acker);
                }
                Ok(Some(Bytes::from(delivery.data)))
            }
        }
    }

    async fn ack(&mut self, multiple: bool) -> anyhow::Result<()> {
        if let Some(acker) = self.last.take() {
            acker.ack(BasicAckOptions { multiple }).await?;
        }
        Ok(())
    }

    async fn cancel(&mut self) -> anyhow::Result<()> {
        self.channel
            .basic_cancel(self.consumer.tag(), BasicCancelOptions::default())
            .await?;
        Ok(())
    }

    async fn close(self) -> anyhow::Result<()> {
        self.connection.close(200, "OK".into()).await?;
        Ok(())
    }
}
