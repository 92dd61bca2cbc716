//! Crash tests of the stream log.
