//! AMQP 0-9-1 methods: one struct per method, one enum over all of them.
//!
//! A method frame's payload is the class id, the method id and the arguments (AMQP 0-9-1 section
//! 4.2.4). Each class has its own file declaring its methods with [`amqp_method!`]; this file
//! ties them into [`Method`] and dispatches decoding on the two ids. The set of methods is
//! RabbitMQ's 0-9-1 (`amqp-rabbitmq-0.9.1.json`): the standard classes plus `access` (kept for
//! old clients), `exchange.bind`/`unbind`, `basic.nack`, `confirm` and `connection.blocked`,
//! `unblocked` and `update-secret`.

#[macro_use]
mod macros;
mod args;

mod access;
mod basic;
mod channel;
mod confirm;
mod connection;
mod exchange;
mod queue;
mod tx;

pub use access::*;
pub use basic::*;
pub use channel::*;
pub use confirm::*;
pub use connection::*;
pub use exchange::*;
pub use queue::*;
pub use tx::*;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::WireError;
use args::{ArgCounter, ArgSink, ArgWriter};

macro_rules! method_enum {
    ($($variant:ident),* $(,)?) => {
        /// Any AMQP 0-9-1 method. Each variant wraps the struct of the same name, which holds
        /// the method's arguments.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Method {
            $(
                #[doc = concat!("See [`", stringify!($variant), "`].")]
                $variant($variant),
            )*
        }

        impl Method {
            /// Decodes the arguments of the method `class_id`/`method_id` from `args` (the
            /// method frame payload after the two ids). Strings and long strings are zero-copy
            /// slices of `args`; only field tables allocate.
            pub fn decode(class_id: u16, method_id: u16, args: Bytes) -> Result<Method, WireError> {
                match (class_id, method_id) {
                    $(
                        ($variant::CLASS_ID, $variant::METHOD_ID) => {
                            $variant::decode_args(args).map(Method::$variant)
                        }
                    )*
                    _ => Err(WireError::UnknownMethod { class_id, method_id }),
                }
            }

            fn write_args<S: ArgSink>(&self, s: &mut S) {
                match self {
                    $( Method::$variant(m) => m.write_args(s), )*
                }
            }

            /// The class id (connection 10, channel 20, access 30, exchange 40, queue 50,
            /// basic 60, confirm 85, tx 90).
            pub fn class_id(&self) -> u16 {
                match self {
                    $( Method::$variant(_) => $variant::CLASS_ID, )*
                }
            }

            /// The method id within its class.
            pub fn method_id(&self) -> u16 {
                match self {
                    $( Method::$variant(_) => $variant::METHOD_ID, )*
                }
            }

            /// The spec's name, e.g. `"basic.publish"`: for logs and for error texts.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Method::$variant(_) => $variant::NAME, )*
                }
            }

            /// True for the methods followed by a content header and body frames:
            /// `basic.publish`, `basic.return`, `basic.deliver` and `basic.get-ok`.
            pub fn has_content(&self) -> bool {
                match self {
                    $( Method::$variant(_) => $variant::HAS_CONTENT, )*
                }
            }
        }
    };
}

method_enum! {
    ConnectionStart, ConnectionStartOk, ConnectionSecure, ConnectionSecureOk, ConnectionTune,
    ConnectionTuneOk, ConnectionOpen, ConnectionOpenOk, ConnectionClose, ConnectionCloseOk,
    ConnectionBlocked, ConnectionUnblocked, ConnectionUpdateSecret, ConnectionUpdateSecretOk,
    ChannelOpen, ChannelOpenOk, ChannelFlow, ChannelFlowOk, ChannelClose, ChannelCloseOk,
    AccessRequest, AccessRequestOk,
    ExchangeDeclare, ExchangeDeclareOk, ExchangeDelete, ExchangeDeleteOk, ExchangeBind,
    ExchangeBindOk, ExchangeUnbind, ExchangeUnbindOk,
    QueueDeclare, QueueDeclareOk, QueueBind, QueueBindOk, QueuePurge, QueuePurgeOk, QueueDelete,
    QueueDeleteOk, QueueUnbind, QueueUnbindOk,
    BasicQos, BasicQosOk, BasicConsume, BasicConsumeOk, BasicCancel, BasicCancelOk, BasicPublish,
    BasicReturn, BasicDeliver, BasicGet, BasicGetOk, BasicGetEmpty, BasicAck, BasicReject,
    BasicRecoverAsync, BasicRecover, BasicRecoverOk, BasicNack,
    TxSelect, TxSelectOk, TxCommit, TxCommitOk, TxRollback, TxRollbackOk,
    ConfirmSelect, ConfirmSelectOk,
}

impl Method {
    /// Writes the class id, the method id and the arguments: a method frame's payload, without
    /// the frame around it (see [`crate::encode_method_frame`] for that).
    pub fn encode(&self, out: &mut BytesMut) {
        out.reserve(self.encoded_len());
        self.write(out);
    }

    /// [`Method::encode`] without reserving, for callers that reserved already.
    pub(crate) fn write(&self, out: &mut BytesMut) {
        out.put_u16(self.class_id());
        out.put_u16(self.method_id());
        self.write_args(&mut ArgWriter::new(out));
    }

    /// The number of bytes [`Method::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        let mut counter = ArgCounter::default();
        self.write_args(&mut counter);
        4 + counter.len
    }
}

#[cfg(test)]
mod tests;
