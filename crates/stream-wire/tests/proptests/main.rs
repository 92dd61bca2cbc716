//! Property tests for the stream protocol codec: everything encoded decodes to itself, and no
//! input makes a decoder panic. The fuzz target (`fuzz/fuzz_targets/stream_frame.rs`) explores
//! further.

#![allow(clippy::unwrap_used)]

mod commands;
mod no_panic;
mod round_trip;
mod strategies;
