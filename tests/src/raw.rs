//! A deliberately tiny AMQP 0-9-1 client for tests that must say things a real client never would:
//! wrong protocol headers, oversized or malformed frames, silence instead of heartbeats.
//!
//! [`frame`] knows frames (type, channel, payload, frame-end), how to write method arguments and
//! how to read the few server methods the tests look at; [`client`] holds the socket and the
//! handshake. It does not use the project's `amqp-wire` crate on purpose: the tests must not share
//! a codec's mistakes with the server they check.

pub mod client;
pub mod frame;

pub use client::{Close, Ending, Handshake, RawClient, Start, Tune};
pub use frame::{frame_type, method, Args, Frame, Reader, Value, FRAME_END, PROTOCOL_HEADER};
