//! Helpers over amqprs. amqprs reports what the server says unprompted (channel.close,
//! basic.cancel, basic.return, publisher acks, connection.close) through callbacks; the ones here
//! forward each into a channel of [`ChannelEvent`] / [`ConnectionEvent`] that a test can wait on.

use amqprs::callbacks::{ChannelCallback, ConnectionCallback};
use amqprs::channel::{Channel, ConsumerMessage};
use amqprs::connection::{Connection, OpenConnectionArguments};
use amqprs::{Ack, BasicProperties, Cancel, Close, CloseChannel, Nack, Return};
use async_trait::async_trait;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::{within, TestBroker};

type AmqprsResult<T> = Result<T, amqprs::error::Error>;

/// Something the server told a channel on its own initiative.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelEvent {
    /// channel.close from the server.
    Closed {
        /// Reply code.
        code: u16,
        /// Reply text.
        text: String,
    },
    /// basic.cancel from the server.
    Cancelled {
        /// The cancelled consumer.
        consumer_tag: String,
    },
    /// basic.return.
    Returned {
        /// Reply code (312 NO_ROUTE for an unroutable mandatory message).
        code: u16,
        /// The routing key the message was published with.
        routing_key: String,
        /// The returned body.
        body: Vec<u8>,
    },
    /// basic.ack for a publish (confirm mode).
    Ack {
        /// Delivery tag.
        tag: u64,
        /// Whether all tags up to `tag` are confirmed.
        multiple: bool,
    },
    /// basic.nack for a publish (confirm mode).
    Nack {
        /// Delivery tag.
        tag: u64,
        /// Whether all tags up to `tag` are rejected.
        multiple: bool,
    },
}

/// A channel's server-initiated events, in arrival order.
pub struct ChannelEvents(UnboundedReceiver<ChannelEvent>);

impl ChannelEvents {
    /// The next event; fails the test after [`crate::TIMEOUT`].
    pub async fn next(&mut self) -> ChannelEvent {
        within("a channel event", self.0.recv())
            .await
            .expect("the channel's callback was dropped")
    }

    /// On a confirm-mode channel, waits until the broker has acked every publish up to
    /// delivery tag `tag` (single or `multiple` acks), failing on a nack or anything else.
    pub async fn confirmed_up_to(&mut self, tag: u64, confirmed: &mut u64) {
        while *confirmed < tag {
            match self.next().await {
                ChannelEvent::Ack {
                    tag: acked,
                    multiple: true,
                } if acked > *confirmed => {
                    *confirmed = acked;
                }
                ChannelEvent::Ack {
                    tag: acked,
                    multiple: false,
                } if acked == *confirmed + 1 => {
                    *confirmed = acked;
                }
                other => panic!("after {confirmed} confirmed, unexpected {other:?}"),
            }
        }
    }

    /// Waits for channel.close and returns its reply code.
    pub async fn closed(&mut self) -> u16 {
        match self.next().await {
            ChannelEvent::Closed { code, .. } => code,
            other => panic!("expected channel.close, got {other:?}"),
        }
    }
}

struct ForwardChannel(UnboundedSender<ChannelEvent>);

#[async_trait]
impl ChannelCallback for ForwardChannel {
    async fn close(&mut self, _: &Channel, close: CloseChannel) -> AmqprsResult<()> {
        let _ = self.0.send(ChannelEvent::Closed {
            code: close.reply_code(),
            text: close.reply_text().clone(),
        });
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, cancel: Cancel) -> AmqprsResult<()> {
        let _ = self.0.send(ChannelEvent::Cancelled {
            consumer_tag: cancel.consumer_tag().clone(),
        });
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, active: bool) -> AmqprsResult<bool> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        let _ = self.0.send(ChannelEvent::Ack {
            tag: ack.delivery_tag(),
            multiple: ack.mutiple(),
        });
    }
    async fn publish_nack(&mut self, _: &Channel, nack: Nack) {
        let _ = self.0.send(ChannelEvent::Nack {
            tag: nack.delivery_tag(),
            multiple: nack.multiple(),
        });
    }
    async fn publish_return(
        &mut self,
        _: &Channel,
        ret: Return,
        _: BasicProperties,
        content: Vec<u8>,
    ) {
        let _ = self.0.send(ChannelEvent::Returned {
            code: ret.reply_code(),
            routing_key: ret.routing_key().clone(),
            body: content,
        });
    }
}

/// connection.close from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionEvent {
    /// Reply code.
    pub code: u16,
    /// Reply text.
    pub text: String,
}

struct ForwardConnection(UnboundedSender<ConnectionEvent>);

#[async_trait]
impl ConnectionCallback for ForwardConnection {
    async fn close(&mut self, _: &Connection, close: Close) -> AmqprsResult<()> {
        let _ = self.0.send(ConnectionEvent {
            code: close.reply_code(),
            text: close.reply_text().clone(),
        });
        Ok(())
    }
    async fn blocked(&mut self, _: &Connection, _: String) {}
    async fn unblocked(&mut self, _: &Connection) {}
    async fn secret_updated(&mut self, _: &Connection) {}
}

/// The arguments amqprs needs to reach the broker as the test user.
pub fn open_args(broker: &TestBroker) -> OpenConnectionArguments {
    let addr = broker.addr();
    OpenConnectionArguments::new(
        &addr.ip().to_string(),
        addr.port(),
        broker.user(),
        broker.password(),
    )
}

/// Opens an amqprs connection, keeping the error.
pub async fn try_connect(args: &OpenConnectionArguments) -> AmqprsResult<Connection> {
    within("amqprs to connect", Connection::open(args)).await
}

/// Opens an amqprs connection whose server-sent connection.close arrives on the receiver.
pub async fn connect(broker: &TestBroker) -> (Connection, UnboundedReceiver<ConnectionEvent>) {
    connect_with(&open_args(broker)).await
}

/// The same with other arguments (another user or vhost).
pub async fn connect_with(
    args: &OpenConnectionArguments,
) -> (Connection, UnboundedReceiver<ConnectionEvent>) {
    let conn = try_connect(args)
        .await
        .expect("amqprs connects to the broker");
    let (tx, rx) = unbounded_channel();
    conn.register_callback(ForwardConnection(tx))
        .await
        .expect("register connection callback");
    (conn, rx)
}

/// Opens a channel whose server-initiated events arrive in [`ChannelEvents`].
pub async fn open_channel(conn: &Connection) -> (Channel, ChannelEvents) {
    let channel = within("channel.open-ok", conn.open_channel(None))
        .await
        .expect("channel.open");
    let (tx, rx) = unbounded_channel();
    channel
        .register_callback(ForwardChannel(tx))
        .await
        .expect("register channel callback");
    (channel, ChannelEvents(rx))
}

/// Waits for the next message of a `basic_consume_rx` consumer.
pub async fn next_message(rx: &mut UnboundedReceiver<ConsumerMessage>) -> ConsumerMessage {
    within("a delivery", rx.recv())
        .await
        .expect("the consumer ended while a delivery was expected")
}

/// A consumed message's body as text.
pub fn body(message: &ConsumerMessage) -> String {
    String::from_utf8_lossy(message.content.as_deref().unwrap_or_default()).into_owned()
}

/// A consumed message's delivery tag.
pub fn delivery_tag(message: &ConsumerMessage) -> u64 {
    message
        .deliver
        .as_ref()
        .map(|d| d.delivery_tag())
        .expect("a delivery carries basic.deliver")
}
