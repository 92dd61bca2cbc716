//! A broker message as a quorum queue's group keeps it, and back: the exchange, the routing
//! key and the encoded properties in the entry's header (length-prefixed, the queue log's
//! encoding), the body apart, since `x-max-length-bytes` counts body bytes only.

use bytes::{Bytes, BytesMut};
use pigeon_broker::record::{get_bytes, put_bytes};
use pigeon_broker::{Message, Properties};
use pigeon_cluster::quorum;

/// The group's form of `message`, taken from the queue `queue`.
pub(super) fn encode(queue: &str, message: &Message) -> quorum::Message {
    let mut header = BytesMut::new();
    put_bytes(&mut header, message.exchange().as_bytes());
    put_bytes(&mut header, message.routing_key_in(queue).as_bytes());
    put_bytes(&mut header, message.properties_raw());
    quorum::Message {
        header: header.to_vec(),
        body: message.body().to_vec(),
    }
}

/// The broker's message from the group's form; `None` if the header is malformed.
pub(super) fn decode(queue: &str, message: quorum::Message) -> Option<Message> {
    let mut header = Bytes::from(message.header);
    let exchange = get_bytes(&mut header)?;
    let routing_key = get_bytes(&mut header)?;
    let properties = get_bytes(&mut header)?;
    let properties = Properties::new(properties, &crate::amqp::AMQP_CODEC);
    let body = Bytes::from(message.body);
    Some(
        if exchange.is_empty() && *routing_key == *queue.as_bytes() {
            Message::to_named_queue(properties, body, 0)
        } else {
            let key = String::from_utf8_lossy(&routing_key);
            Message::new(exchange, &key, properties, body, 0)
        },
    )
}
