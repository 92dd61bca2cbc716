//! The connection class (10): handshake, tuning, vhost selection, shutdown, flow control.
//!
//! AMQP 0-9-1 section 1.4.2. The handshake is start / start-ok / (secure / secure-ok)* / tune /
//! tune-ok / open / open-ok, always on channel 0. `blocked`, `unblocked` and `update-secret` are
//! RabbitMQ extensions.

use bytes::Bytes;

use crate::table::FieldTable;
use crate::types::ShortString;

amqp_method! {
    /// The server's greeting: protocol version, its properties, and the SASL mechanisms and
    /// locales it offers.
    ConnectionStart(10, 10, "connection.start")
    {
        /// Protocol major version (0).
        version_major: u8 [octet, default = 0],
        /// Protocol minor version (9).
        version_minor: u8 [octet, default = 9],
        /// Server properties: product, version, platform, and the `capabilities` table clients
        /// inspect for extensions (publisher_confirms, consumer_cancel_notify, ...).
        server_properties: FieldTable [table],
        /// Space-separated SASL mechanisms, e.g. `PLAIN AMQPLAIN`.
        mechanisms: Bytes [longstr, default = Bytes::from_static(b"PLAIN")],
        /// Space-separated message locales.
        locales: Bytes [longstr, default = Bytes::from_static(b"en_US")],
    }
}

amqp_method! {
    /// The client's answer to start: its properties, the chosen mechanism and the initial SASL
    /// response (for PLAIN: `\0user\0password`).
    ConnectionStartOk(10, 11, "connection.start-ok")
    {
        /// Client properties, including its `capabilities` table.
        client_properties: FieldTable [table],
        /// The chosen SASL mechanism.
        mechanism: ShortString [shortstr, default = ShortString::from_static("PLAIN")],
        /// The SASL response; opaque binary.
        response: Bytes [longstr],
        /// The chosen locale.
        locale: ShortString [shortstr, default = ShortString::from_static("en_US")],
    }
}

amqp_method! {
    /// A SASL challenge from the server.
    ConnectionSecure(10, 20, "connection.secure")
    {
        /// The challenge; opaque binary.
        challenge: Bytes [longstr],
    }
}

amqp_method! {
    /// The client's response to a SASL challenge.
    ConnectionSecureOk(10, 21, "connection.secure-ok")
    {
        /// The response; opaque binary.
        response: Bytes [longstr],
    }
}

amqp_method! {
    /// The server proposes limits; 0 means "no limit" for each.
    ConnectionTune(10, 30, "connection.tune")
    {
        /// Highest channel number the server allows.
        channel_max: u16 [short],
        /// Largest frame, header and frame-end included, the server accepts.
        frame_max: u32 [long],
        /// Heartbeat interval in seconds the server wants.
        heartbeat: u16 [short],
    }
}

amqp_method! {
    /// The client accepts limits, each at most what the server proposed.
    ConnectionTuneOk(10, 31, "connection.tune-ok")
    {
        /// Highest channel number the client will use.
        channel_max: u16 [short],
        /// Largest frame either side may send from now on.
        frame_max: u32 [long],
        /// Agreed heartbeat interval in seconds; 0 disables heartbeats.
        heartbeat: u16 [short],
    }
}

amqp_method! {
    /// The client selects a virtual host. Reserved: capabilities (shortstr) and insist (bit).
    ConnectionOpen(10, 40, "connection.open")
    {
        /// The virtual host name.
        virtual_host: ShortString [shortstr, default = ShortString::from_static("/")],
    }
    reserved_after(shortstr, bit)
}

amqp_method! {
    /// The server accepts the virtual host. Reserved: known-hosts (shortstr).
    ConnectionOpenOk(10, 41, "connection.open-ok")
    {
    }
    reserved_after(shortstr)
}

amqp_method! {
    /// Either side closes the connection, with the reason and, for an error, the method that
    /// caused it.
    ConnectionClose(10, 50, "connection.close")
    {
        /// A reply code (see [`crate::ReplyCode`]).
        reply_code: u16 [short],
        /// Human-readable reason, by convention starting with the reply code's name.
        reply_text: ShortString [shortstr],
        /// Class id of the failing method, or 0.
        class_id: u16 [short],
        /// Method id of the failing method, or 0.
        method_id: u16 [short],
    }
}

amqp_method! {
    /// Confirms a connection.close; the sender may then close the socket.
    ConnectionCloseOk(10, 51, "connection.close-ok")
    {
    }
}

amqp_method! {
    /// RabbitMQ extension: the server stopped reading from publishers (memory or disk alarm).
    ConnectionBlocked(10, 60, "connection.blocked")
    {
        /// Why, e.g. `low on memory`.
        reason: ShortString [shortstr],
    }
}

amqp_method! {
    /// RabbitMQ extension: publishing may resume.
    ConnectionUnblocked(10, 61, "connection.unblocked")
    {
    }
}

amqp_method! {
    /// RabbitMQ extension: the client refreshes its credentials (e.g. an expiring OAuth token).
    ConnectionUpdateSecret(10, 70, "connection.update-secret")
    {
        /// The new secret; opaque binary.
        new_secret: Bytes [longstr],
        /// Why it is being updated.
        reason: ShortString [shortstr],
    }
}

amqp_method! {
    /// RabbitMQ extension: the new secret was accepted.
    ConnectionUpdateSecretOk(10, 71, "connection.update-secret-ok")
    {
    }
}
