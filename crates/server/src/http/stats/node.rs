//! The node's figures for `/api/nodes` (`rabbit_mgmt_format`/`rabbit_mgmt_external_stats`):
//! memory, file descriptors, sockets, "processes" (Pigeon's tokio tasks), disk, uptime and
//! the run queue, with `_details` rates for those RabbitMQ samples (`node_coarse_stats`).

use super::super::Http;
use super::values::{DISK_FREE, FD_USED, MEM_USED, NODE, PROC_USED, SOCKETS_USED};
use std::path::{Path, PathBuf};

/// The Erlang VM's default process limit, which RabbitMQ shows as `proc_total`. Pigeon's
/// tasks have no such limit; the figure keeps tools that show `proc_used / proc_total`
/// working.
const PROC_TOTAL: u64 = 1_048_576;

/// Open file descriptors of the process (0 where `/proc` cannot be read).
pub(crate) fn fd_used() -> u64 {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64)
}

/// The open-files limit (soft), from `/proc/self/limits`; 0 when unknown or unlimited.
pub(crate) fn fd_total() -> u64 {
    let Ok(limits) = std::fs::read_to_string("/proc/self/limits") else {
        return 0;
    };
    limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|soft| soft.parse().ok())
        .unwrap_or(0)
}

/// Live tokio tasks (RabbitMQ's `proc_used` counts Erlang processes: one per connection,
/// channel, queue...; Pigeon's tasks are the nearest thing).
fn proc_used() -> u64 {
    tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().num_alive_tasks() as u64)
}

/// Tasks waiting in the runtime's global queue (RabbitMQ's `run_queue`: processes ready to
/// run and waiting for a scheduler).
fn run_queue() -> u64 {
    tokio::runtime::Handle::try_current().map_or(0, |h| h.metrics().global_queue_depth() as u64)
}

/// Where the disk alarm looks: the data directory, else the working directory.
fn data_dir(http: &Http) -> PathBuf {
    http.state
        .config
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("."))
}

fn disk_free(dir: &Path) -> u64 {
    crate::alarm::free_space(dir).unwrap_or(0)
}

/// The values the sampler keeps for the node.
pub(crate) fn sample(http: &Http) -> [u64; NODE] {
    let mut v = [0u64; NODE];
    v[MEM_USED] = http.state.memory.used();
    v[FD_USED] = fd_used();
    v[SOCKETS_USED] = http.state.registry.len() as u64;
    v[PROC_USED] = proc_used();
    v[DISK_FREE] = disk_free(&data_dir(http));
    v
}

/// The figures `/api/nodes` shows that the sampler does not keep.
pub(crate) struct Static {
    pub fd_total: u64,
    pub sockets_total: u64,
    pub proc_total: u64,
    pub run_queue: u64,
    pub uptime_ms: u64,
}

/// Reads them.
pub(crate) fn statics(http: &Http) -> Static {
    let fd_total = fd_total();
    Static {
        fd_total,
        // RabbitMQ leaves a tenth of the descriptors to files (`rabbit_networking`'s
        // `ulimit` based socket limit).
        sockets_total: fd_total / 10 * 9,
        proc_total: PROC_TOTAL,
        run_queue: run_queue(),
        uptime_ms: http.started.elapsed().as_millis() as u64,
    }
}
