//! The access class (30): access tickets from AMQP 0-8, removed in 0-9-1.
//!
//! RabbitMQ still answers access.request (with ticket 1) so that old clients can connect; the
//! ticket is then ignored everywhere (it is the `reserved-1` argument of later methods).

use crate::types::ShortString;

amqp_method! {
    /// Asks for an access ticket for a realm (obsolete).
    AccessRequest(30, 10, "access.request")
    {
        /// The realm, e.g. `/data`.
        realm: ShortString [shortstr, default = ShortString::from_static("/data")],
        /// Exclusive access.
        exclusive: bool [bit],
        /// Passive access.
        passive: bool [bit, default = true],
        /// Active access.
        active: bool [bit, default = true],
        /// Write access.
        write: bool [bit, default = true],
        /// Read access.
        read: bool [bit, default = true],
    }
}

amqp_method! {
    /// Grants an access ticket (obsolete). RabbitMQ always grants ticket 1, the default here.
    AccessRequestOk(30, 11, "access.request-ok")
    {
        /// The ticket.
        ticket: u16 [short, default = 1],
    }
}
