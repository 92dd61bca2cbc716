//! `pigeon bench`: the load generator of the `pigeon-bench` crate, run with the process's logging.

use crate::logging;
use std::process::ExitCode;

pub use pigeon_bench::BenchArgs;

/// Runs `pigeon bench`; the exit code is failure unless every message arrived exactly once.
pub async fn run(args: BenchArgs, log_flag: Option<String>) -> anyhow::Result<ExitCode> {
    logging::init(log_flag.as_deref(), None, pigeon_bench::DEFAULT_LOG_FILTER)?;
    pigeon_bench::run(args).await
}
