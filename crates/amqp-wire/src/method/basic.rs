//! The basic class (60): publishing, consuming, fetching and acknowledging messages.
//!
//! AMQP 0-9-1 section 1.8.2. publish, return, deliver and get-ok carry content: a content header
//! frame and body frames follow them. `basic.nack` is a RabbitMQ extension. Requests from the
//! client start with the reserved access ticket (a short, written as 0).

use crate::table::FieldTable;
use crate::types::ShortString;

amqp_method! {
    /// Sets the prefetch window: how much may be delivered without being acknowledged.
    BasicQos(60, 10, "basic.qos")
    {
        /// Prefetch window in bytes; 0 = no limit (RabbitMQ rejects anything else).
        prefetch_size: u32 [long],
        /// Prefetch window in messages; 0 = no limit.
        prefetch_count: u16 [short],
        /// RabbitMQ: true applies the limit to the channel as a whole, false to each new
        /// consumer on it.
        global: bool [bit],
    }
}

amqp_method! {
    /// The prefetch window is set.
    BasicQosOk(60, 11, "basic.qos-ok")
    {
    }
}

amqp_method! {
    /// Starts a consumer on a queue.
    BasicConsume(60, 20, "basic.consume")
    reserved_before(short)
    {
        /// Queue name.
        queue: ShortString [shortstr],
        /// Consumer tag; empty asks the server to generate one.
        consumer_tag: ShortString [shortstr],
        /// Do not deliver messages published on this connection (RabbitMQ ignores it).
        no_local: bool [bit],
        /// Messages count as acknowledged when delivered.
        no_ack: bool [bit],
        /// Be the queue's only consumer.
        exclusive: bool [bit],
        /// Do not send basic.consume-ok.
        no_wait: bool [bit],
        /// Consumer arguments, e.g. `x-priority`.
        arguments: FieldTable [table],
    }
}

amqp_method! {
    /// The consumer is started.
    BasicConsumeOk(60, 21, "basic.consume-ok")
    {
        /// The consumer tag (generated if the client sent none).
        consumer_tag: ShortString [shortstr],
    }
}

amqp_method! {
    /// Cancels a consumer. RabbitMQ also sends it to the client when the queue goes away
    /// (capability `consumer_cancel_notify`).
    BasicCancel(60, 30, "basic.cancel")
    {
        /// The consumer tag.
        consumer_tag: ShortString [shortstr],
        /// Do not send basic.cancel-ok.
        no_wait: bool [bit],
    }
}

amqp_method! {
    /// The consumer is cancelled.
    BasicCancelOk(60, 31, "basic.cancel-ok")
    {
        /// The consumer tag.
        consumer_tag: ShortString [shortstr],
    }
}

amqp_method! {
    /// Publishes a message to an exchange. Content follows.
    BasicPublish(60, 40, "basic.publish", content)
    reserved_before(short)
    {
        /// Exchange name; empty for the default exchange.
        exchange: ShortString [shortstr],
        /// Routing key.
        routing_key: ShortString [shortstr],
        /// Return the message (basic.return, 312 NO_ROUTE) if no queue gets it.
        mandatory: bool [bit],
        /// Return the message if no consumer can take it now (RabbitMQ rejects this flag).
        immediate: bool [bit],
    }
}

amqp_method! {
    /// Returns an unroutable mandatory message to its publisher. Content follows.
    BasicReturn(60, 50, "basic.return", content)
    {
        /// Why, e.g. 312 NO_ROUTE.
        reply_code: u16 [short],
        /// Human-readable reason.
        reply_text: ShortString [shortstr],
        /// The exchange it was published to.
        exchange: ShortString [shortstr],
        /// The routing key it was published with.
        routing_key: ShortString [shortstr],
    }
}

amqp_method! {
    /// Delivers a message to a consumer. Content follows.
    BasicDeliver(60, 60, "basic.deliver", content)
    {
        /// The consumer it is for.
        consumer_tag: ShortString [shortstr],
        /// Channel-scoped number to acknowledge it by.
        delivery_tag: u64 [longlong],
        /// It was delivered before and not acknowledged.
        redelivered: bool [bit],
        /// The exchange it was published to.
        exchange: ShortString [shortstr],
        /// The routing key it was published with.
        routing_key: ShortString [shortstr],
    }
}

amqp_method! {
    /// Fetches one message from a queue (polling).
    BasicGet(60, 70, "basic.get")
    reserved_before(short)
    {
        /// Queue name.
        queue: ShortString [shortstr],
        /// The message counts as acknowledged when fetched.
        no_ack: bool [bit],
    }
}

amqp_method! {
    /// Answers basic.get with a message. Content follows.
    BasicGetOk(60, 71, "basic.get-ok", content)
    {
        /// Channel-scoped number to acknowledge it by.
        delivery_tag: u64 [longlong],
        /// It was delivered before and not acknowledged.
        redelivered: bool [bit],
        /// The exchange it was published to.
        exchange: ShortString [shortstr],
        /// The routing key it was published with.
        routing_key: ShortString [shortstr],
        /// Messages still ready in the queue.
        message_count: u32 [long],
    }
}

amqp_method! {
    /// Answers basic.get: the queue is empty. Reserved: cluster-id (shortstr).
    BasicGetEmpty(60, 72, "basic.get-empty")
    {
    }
    reserved_after(shortstr)
}

amqp_method! {
    /// Acknowledges a delivery; from the server in confirm mode, confirms a publish.
    BasicAck(60, 80, "basic.ack")
    {
        /// The delivery (or publish) tag.
        delivery_tag: u64 [longlong],
        /// Also everything up to and including this tag; with tag 0, everything outstanding.
        multiple: bool [bit],
    }
}

amqp_method! {
    /// Rejects one delivery.
    BasicReject(60, 90, "basic.reject")
    {
        /// The delivery tag.
        delivery_tag: u64 [longlong],
        /// Requeue the message instead of dead-lettering or dropping it.
        requeue: bool [bit, default = true],
    }
}

amqp_method! {
    /// Redelivers all unacknowledged messages, without a reply (deprecated by the spec).
    BasicRecoverAsync(60, 100, "basic.recover-async")
    {
        /// Requeue them (RabbitMQ only supports true).
        requeue: bool [bit],
    }
}

amqp_method! {
    /// Redelivers all unacknowledged messages on the channel.
    BasicRecover(60, 110, "basic.recover")
    {
        /// Requeue them rather than redeliver to the same consumer.
        requeue: bool [bit],
    }
}

amqp_method! {
    /// basic.recover is done.
    BasicRecoverOk(60, 111, "basic.recover-ok")
    {
    }
}

amqp_method! {
    /// RabbitMQ extension: rejects one or several deliveries; from the server in confirm mode,
    /// says a publish was not accepted.
    BasicNack(60, 120, "basic.nack")
    {
        /// The delivery (or publish) tag.
        delivery_tag: u64 [longlong],
        /// Also everything up to and including this tag; with tag 0, everything outstanding.
        multiple: bool [bit],
        /// Requeue the messages instead of dead-lettering or dropping them.
        requeue: bool [bit, default = true],
    }
}
