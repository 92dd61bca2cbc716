//! The AMQP 0-9-1 wire format: frames, methods, content headers and field tables, as RabbitMQ
//! speaks them. No I/O and no broker types: bytes in, values out, and back.
//!
//! # Layout
//!
//! - `frame.rs`: the frame envelope (type, channel, size, payload, frame-end): [`decode_frame`]
//!   for the connection's read loop, the `encode_*` functions for its write buffer. The size is
//!   checked against `frame-max` before any payload is buffered.
//! - `method/`: one file per class (`connection.rs`, `channel.rs`, `access.rs`, `exchange.rs`,
//!   `queue.rs`, `basic.rs`, `tx.rs`, `confirm.rs`) declaring a struct per method with the
//!   `amqp_method!` macro (`method/macros.rs`), which derives the decoder and encoder from the
//!   argument list; `method/args.rs` does argument encoding and bit packing; `method/mod.rs` ties
//!   them into the [`Method`] enum.
//! - `properties.rs`: [`BasicProperties`], the 14 content properties of the basic class.
//! - `table.rs`: [`FieldTable`] and [`FieldValue`] with RabbitMQ's type tags.
//! - `types.rs`: [`ShortString`] and the bounds-checked reader every decoder uses.
//! - `reply_code.rs`: [`ReplyCode`], the spec's reply codes and their soft/hard class.
//! - `error.rs`: [`WireError`], and [`WireError::reply_code`], the code to close with.
//!
//! # Guarantees
//!
//! - Decoding never panics, whatever the input (property tests and a fuzz target check this),
//!   and never recurses deeper than [`MAX_TABLE_DEPTH`].
//! - Decoding is zero-copy: strings, long strings and bodies are slices of the frame's bytes.
//!   Decoding a `basic.publish`, `basic.ack`, content header or body frame does not allocate;
//!   only field tables allocate (their entry `Vec`).
//! - Encoding computes the size first and reserves once.
//!
//! # Example
//!
//! ```
//! use amqp_wire::{decode_frame, encode_method_frame, BasicPublish, Frame, Method};
//! use bytes::BytesMut;
//!
//! let publish = BasicPublish { routing_key: "jobs".into(), ..Default::default() };
//! let mut buf = BytesMut::new();
//! encode_method_frame(1, &publish.clone().into(), &mut buf);
//! let frame = decode_frame(&mut buf, 131_072).unwrap().unwrap();
//! assert_eq!(frame, Frame::Method { channel: 1, method: Method::BasicPublish(publish) });
//! ```

#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod error;
mod frame;
mod method;
mod properties;
mod reply_code;
mod table;
mod types;

pub use error::WireError;
pub use frame::{
    decode_frame, encode_body_frames, encode_header_frame, encode_heartbeat, encode_method_frame,
    Frame, FRAME_BODY, FRAME_END, FRAME_HEADER, FRAME_HEADER_SIZE, FRAME_HEARTBEAT, FRAME_METHOD,
    FRAME_MIN_SIZE, FRAME_OVERHEAD, PROTOCOL_HEADER,
};
pub use method::*;
pub use properties::BasicProperties;
pub use reply_code::ReplyCode;
pub use table::{FieldTable, FieldValue, MAX_TABLE_DEPTH};
pub use types::ShortString;
