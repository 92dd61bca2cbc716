//! The channel class (20): opening, flow control and closing of channels.
//!
//! AMQP 0-9-1 section 1.5.2. A channel error (a soft error) closes only the channel, with
//! channel.close.

use crate::types::ShortString;

amqp_method! {
    /// Opens a channel. Reserved: out-of-band (shortstr).
    ChannelOpen(20, 10, "channel.open")
    {
    }
    reserved_after(shortstr)
}

amqp_method! {
    /// The channel is open. Reserved: channel-id (longstr).
    ChannelOpenOk(20, 11, "channel.open-ok")
    {
    }
    reserved_after(longstr)
}

amqp_method! {
    /// Asks the peer to pause (`active = false`) or resume sending content.
    ChannelFlow(20, 20, "channel.flow")
    {
        /// True to resume, false to pause.
        active: bool [bit],
    }
}

amqp_method! {
    /// Confirms a channel.flow.
    ChannelFlowOk(20, 21, "channel.flow-ok")
    {
        /// The flow state now in effect.
        active: bool [bit],
    }
}

amqp_method! {
    /// Either side closes the channel, with the reason and, for an error, the method that caused
    /// it.
    ChannelClose(20, 40, "channel.close")
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
    /// Confirms a channel.close; the channel number may be reused.
    ChannelCloseOk(20, 41, "channel.close-ok")
    {
    }
}
