//! The RabbitMQ Stream protocol (port 5552) as RabbitMQ speaks it: frames, every command of
//! `deps/rabbitmq_stream/docs/PROTOCOL.adoc`, response codes, offset specifications, and the
//! osiris chunk format that `Deliver` carries. No I/O and no broker types: bytes in, values
//! out, and back.
//!
//! # Layout
//!
//! - `frame.rs`: the frame envelope (size prefix, key with the response bit, version):
//!   [`decode_frame`] for a connection's read loop, with the size limit checked before anything
//!   is buffered; [`decode`] to get a [`Command`] in one step.
//! - `command/`: one struct per command, grouped by area (`connection.rs`, `publish.rs`,
//!   `consume.rs`, `streams.rs`); `command/mod.rs` ties them into [`Command`], dispatching on
//!   key and version.
//! - `chunk.rs`: the osiris chunk header ([`ChunkHeader`]), the delivered [`Chunk`] and its
//!   data entries ([`Entry`]: a simple entry or a sub-batch, passed through untouched), shared
//!   with the stream store.
//! - `offset.rs`: [`OffsetSpec`] (first, last, next, offset, timestamp).
//! - `types.rs`: [`Str`] (the protocol's int16-length string), [`Properties`] (string maps) and
//!   the bounds-checked reader every decoder uses.
//! - `response_code.rs`: [`ResponseCode`] with RabbitMQ's numbers.
//! - `error.rs`: [`WireError`], and the code and reason RabbitMQ closes with for each.
//!
//! # Guarantees
//!
//! - Decoding never panics, whatever the input (property tests and a fuzz target check this).
//! - A frame over the limit given to [`decode_frame`] is refused from its 4-byte size prefix;
//!   while waiting for a frame at most 128 KiB is reserved ahead, so memory follows the bytes
//!   actually received.
//! - Arrays are allocated only after their count is checked against the bytes present, so a
//!   decoded command never takes more memory than a small multiple of its frame.
//! - Strings, message bodies and chunk data are zero-copy slices of the frame. A `Publish` is
//!   checked at decode time without allocating and walked lazily with [`Publish::messages`].
//!
//! # Example
//!
//! ```
//! use stream_wire::{decode, Command, Open, INITIAL_FRAME_MAX};
//! use bytes::BytesMut;
//!
//! let open = Open { correlation_id: 7, virtual_host: "/".into() };
//! let mut buf = BytesMut::new();
//! Command::from(open.clone()).encode(&mut buf);
//! let command = decode(&mut buf, INITIAL_FRAME_MAX).unwrap().unwrap();
//! assert_eq!(command, Command::Open(open));
//! ```

#![warn(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod chunk;
mod command;
mod error;
mod frame;
mod offset;
mod response_code;
mod types;

pub use chunk::{
    compression, crc32, Chunk, ChunkHeader, ChunkType, Entries, Entry, SubBatch, CHUNK_HEADER_SIZE,
    CHUNK_MAGIC_VERSION,
};
pub use command::*;
pub use error::WireError;
pub use frame::{
    decode, decode_frame, encode_frame, RawFrame, DEFAULT_FRAME_MAX, DEFAULT_HEARTBEAT,
    DEFAULT_PORT, DEFAULT_TLS_PORT, INITIAL_FRAME_MAX, RESPONSE_FLAG, SIZE_PREFIX,
};
pub use offset::{
    OffsetSpec, OFFSET_TYPE_FIRST, OFFSET_TYPE_LAST, OFFSET_TYPE_NEXT, OFFSET_TYPE_NONE,
    OFFSET_TYPE_OFFSET, OFFSET_TYPE_TIMESTAMP,
};
pub use response_code::ResponseCode;
pub use types::{Properties, Str};
