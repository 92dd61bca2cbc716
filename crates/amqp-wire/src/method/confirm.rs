//! The confirm class (85): RabbitMQ's publisher confirms.
//!
//! After confirm.select the server acks (basic.ack) or nacks (basic.nack) every publish on the
//! channel, numbering them from 1 in publish order; the delivery tag names the publish.

amqp_method! {
    /// Puts the channel in confirm mode.
    ConfirmSelect(85, 10, "confirm.select")
    {
        /// Do not send confirm.select-ok.
        no_wait: bool [bit],
    }
}

amqp_method! {
    /// The channel is in confirm mode.
    ConfirmSelectOk(85, 11, "confirm.select-ok")
    {
    }
}
