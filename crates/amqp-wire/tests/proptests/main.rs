//! Property tests for the AMQP 0-9-1 codec: everything encoded decodes to itself, and no input
//! makes a decoder panic. Case counts are kept modest so the suite stays fast in debug builds;
//! the fuzz target (`fuzz/fuzz_targets/amqp_frame.rs`) explores further.

#![allow(clippy::unwrap_used)]

mod no_panic;
mod round_trip;
mod strategies;
