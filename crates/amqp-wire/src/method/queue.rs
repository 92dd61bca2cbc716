//! The queue class (50): declaring, binding, purging and deleting queues.
//!
//! AMQP 0-9-1 section 1.7.2. Every request starts with the reserved access ticket (a short,
//! written as 0).

use crate::table::FieldTable;
use crate::types::ShortString;

amqp_method! {
    /// Creates a queue, or with `passive` checks that it exists. An empty name asks the server
    /// to generate one.
    QueueDeclare(50, 10, "queue.declare")
    reserved_before(short)
    {
        /// Queue name; empty for a server-generated name.
        queue: ShortString [shortstr],
        /// Only check that the queue exists (404 if not); create nothing.
        passive: bool [bit],
        /// Survive a broker restart.
        durable: bool [bit],
        /// Owned by this connection and deleted when it closes.
        exclusive: bool [bit],
        /// Delete when the last consumer goes away.
        auto_delete: bool [bit],
        /// Do not send queue.declare-ok.
        no_wait: bool [bit],
        /// Optional arguments: `x-message-ttl`, `x-dead-letter-exchange`, `x-max-length`, ...
        arguments: FieldTable [table],
    }
}

amqp_method! {
    /// The queue exists; gives its (possibly generated) name and counts.
    QueueDeclareOk(50, 11, "queue.declare-ok")
    {
        /// Queue name.
        queue: ShortString [shortstr],
        /// Messages ready for delivery.
        message_count: u32 [long],
        /// Active consumers.
        consumer_count: u32 [long],
    }
}

amqp_method! {
    /// Binds a queue to an exchange.
    QueueBind(50, 20, "queue.bind")
    reserved_before(short)
    {
        /// Queue name; empty means the channel's last declared queue.
        queue: ShortString [shortstr],
        /// Exchange name.
        exchange: ShortString [shortstr],
        /// Binding key.
        routing_key: ShortString [shortstr],
        /// Do not send queue.bind-ok.
        no_wait: bool [bit],
        /// Binding arguments (headers exchanges match on these).
        arguments: FieldTable [table],
    }
}

amqp_method! {
    /// The binding exists.
    QueueBindOk(50, 21, "queue.bind-ok")
    {
    }
}

amqp_method! {
    /// Removes all ready messages from a queue.
    QueuePurge(50, 30, "queue.purge")
    reserved_before(short)
    {
        /// Queue name.
        queue: ShortString [shortstr],
        /// Do not send queue.purge-ok.
        no_wait: bool [bit],
    }
}

amqp_method! {
    /// The queue is purged.
    QueuePurgeOk(50, 31, "queue.purge-ok")
    {
        /// Messages removed.
        message_count: u32 [long],
    }
}

amqp_method! {
    /// Deletes a queue; its messages are dead-lettered or dropped.
    QueueDelete(50, 40, "queue.delete")
    reserved_before(short)
    {
        /// Queue name.
        queue: ShortString [shortstr],
        /// Only delete if it has no consumers (406 otherwise).
        if_unused: bool [bit],
        /// Only delete if it has no messages (406 otherwise).
        if_empty: bool [bit],
        /// Do not send queue.delete-ok.
        no_wait: bool [bit],
    }
}

amqp_method! {
    /// The queue is deleted.
    QueueDeleteOk(50, 41, "queue.delete-ok")
    {
        /// Messages deleted with it.
        message_count: u32 [long],
    }
}

amqp_method! {
    /// Removes a binding between a queue and an exchange. Always synchronous: no no-wait.
    QueueUnbind(50, 50, "queue.unbind")
    reserved_before(short)
    {
        /// Queue name.
        queue: ShortString [shortstr],
        /// Exchange name.
        exchange: ShortString [shortstr],
        /// Binding key.
        routing_key: ShortString [shortstr],
        /// Binding arguments, to tell apart bindings with the same key.
        arguments: FieldTable [table],
    }
}

amqp_method! {
    /// The binding is removed.
    QueueUnbindOk(50, 51, "queue.unbind-ok")
    {
    }
}
