//! The exchange class (40): declaring, deleting and binding exchanges.
//!
//! AMQP 0-9-1 section 1.6.2. Every request starts with the reserved access ticket (a short,
//! written as 0). `auto-delete` and `internal` are reserved in the 0-9-1 spec but RabbitMQ gives
//! them meaning and every client sends them, so they are fields. `bind` and `unbind`
//! (exchange-to-exchange bindings) are RabbitMQ extensions; note unbind-ok is method 51, not 41.

use crate::table::FieldTable;
use crate::types::ShortString;

amqp_method! {
    /// Creates an exchange, or with `passive` checks that it exists.
    ExchangeDeclare(40, 10, "exchange.declare")
    reserved_before(short)
    {
        /// Exchange name.
        exchange: ShortString [shortstr],
        /// Exchange type: `direct`, `fanout`, `topic`, `headers` (the spec's `type`).
        kind: ShortString [shortstr, default = ShortString::from_static("direct")],
        /// Only check that the exchange exists (404 if not); create nothing.
        passive: bool [bit],
        /// Survive a broker restart.
        durable: bool [bit],
        /// Delete when the last binding from it is removed.
        auto_delete: bool [bit],
        /// Clients may not publish to it directly; only other exchanges route to it.
        internal: bool [bit],
        /// Do not send exchange.declare-ok.
        no_wait: bool [bit],
        /// Optional arguments, e.g. `alternate-exchange`.
        arguments: FieldTable [table],
    }
}

amqp_method! {
    /// The exchange exists.
    ExchangeDeclareOk(40, 11, "exchange.declare-ok")
    {
    }
}

amqp_method! {
    /// Deletes an exchange and its bindings.
    ExchangeDelete(40, 20, "exchange.delete")
    reserved_before(short)
    {
        /// Exchange name.
        exchange: ShortString [shortstr],
        /// Only delete if it has no bindings (406 otherwise).
        if_unused: bool [bit],
        /// Do not send exchange.delete-ok.
        no_wait: bool [bit],
    }
}

amqp_method! {
    /// The exchange is deleted.
    ExchangeDeleteOk(40, 21, "exchange.delete-ok")
    {
    }
}

amqp_method! {
    /// RabbitMQ extension: binds exchange `destination` to exchange `source`.
    ExchangeBind(40, 30, "exchange.bind")
    reserved_before(short)
    {
        /// The exchange messages are routed to.
        destination: ShortString [shortstr],
        /// The exchange messages are routed from.
        source: ShortString [shortstr],
        /// Binding key.
        routing_key: ShortString [shortstr],
        /// Do not send exchange.bind-ok.
        no_wait: bool [bit],
        /// Binding arguments (headers exchanges match on these).
        arguments: FieldTable [table],
    }
}

amqp_method! {
    /// The binding exists.
    ExchangeBindOk(40, 31, "exchange.bind-ok")
    {
    }
}

amqp_method! {
    /// RabbitMQ extension: removes an exchange-to-exchange binding.
    ExchangeUnbind(40, 40, "exchange.unbind")
    reserved_before(short)
    {
        /// The exchange messages were routed to.
        destination: ShortString [shortstr],
        /// The exchange messages were routed from.
        source: ShortString [shortstr],
        /// Binding key.
        routing_key: ShortString [shortstr],
        /// Do not send exchange.unbind-ok.
        no_wait: bool [bit],
        /// Binding arguments, to tell apart bindings with the same key.
        arguments: FieldTable [table],
    }
}

amqp_method! {
    /// The binding is removed. RabbitMQ numbers this method 51.
    ExchangeUnbindOk(40, 51, "exchange.unbind-ok")
    {
    }
}
