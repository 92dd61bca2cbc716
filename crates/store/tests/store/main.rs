//! The store's integration tests in one test binary (one link instead of one per file).

#![allow(clippy::unwrap_used)] // a failed step fails the test at its own line

mod acks_recovery;
mod checkpoint_recovery;
mod common;
mod corrupt_record_recovery;
mod crash_recovery;
mod format_fixture;
mod group_commit;
mod live_range;
mod metadata;
mod model_proptest;
mod queue_dirs;
mod round_trip_recovery;
mod segment_deletion;
mod torn_tail_recovery;
mod write_failure;
