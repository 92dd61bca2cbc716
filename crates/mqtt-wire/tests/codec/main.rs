//! The MQTT codec's property tests in one test binary (one link instead of one per file).

#![allow(clippy::unwrap_used)] // a failed step fails the test at its own line

mod never_panics;
mod roundtrip;
mod strategies;
