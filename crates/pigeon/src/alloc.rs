//! The process's allocator: jemalloc, set up to give memory back to the OS after a burst, and
//! its statistics plugged into the broker's memory alarm.
//!
//! Why jemalloc, and the measurements behind the settings: docs/performance.md, "Allocator".
//! In short: with glibc's malloc, a broker that queued gigabytes during a burst kept its RSS
//! after the queues were drained (7.7 GB during, 6.6 GB after); jemalloc returns freed pages to
//! the OS on a timer, from its background threads, whether or not the program allocates again.

use pigeon_server::memory::{set_allocator_probe, AllocatorStats};
use tikv_jemalloc_ctl::{Access, AsName};

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How long freed ("dirty") pages stay mapped before they are returned (jemalloc's default is
/// 10 s). 1 s lets the memory alarm clear soon after consumers drain a backlog, and costs
/// nothing measurable under steady load (the pages a busy broker frees are reused first).
const DIRTY_DECAY_MS: isize = 1000;

/// Returned pages are unmapped (`MADV_DONTNEED`) at once rather than left "muzzy"
/// (`MADV_FREE`), which Linux would still count in the RSS until it is short of memory.
const MUZZY_DECAY_MS: isize = 0;

/// Starts jemalloc's background threads, sets its decay times, and plugs its statistics into
/// the memory alarm. Errors are logged: the broker still runs, with jemalloc's defaults.
pub fn configure() {
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(error = %e, "cannot start jemalloc's background threads: freed memory goes back to the OS only while the broker allocates");
    }
    // New arenas take these; existing ones (threads that already allocated) are set one by one.
    let mut failed = None;
    for (name, ms) in [
        ("arenas.dirty_decay_ms\0", DIRTY_DECAY_MS),
        ("arenas.muzzy_decay_ms\0", MUZZY_DECAY_MS),
    ] {
        if let Err(e) = name.name().write(ms) {
            failed = Some(e);
        }
    }
    let arenas = tikv_jemalloc_ctl::arenas::narenas::read().unwrap_or(0);
    for i in 0..arenas {
        for (key, ms) in [("dirty", DIRTY_DECAY_MS), ("muzzy", MUZZY_DECAY_MS)] {
            // An arena that no thread has used yet does not exist: it will take the defaults.
            let _ = format!("arena.{i}.{key}_decay_ms\0")
                .as_str()
                .name()
                .write(ms);
        }
    }
    if let Some(e) = failed {
        tracing::warn!(error = %e, "cannot set jemalloc's decay times: memory goes back to the OS after jemalloc's default 10 s");
    }
    set_allocator_probe(stats);
}

/// jemalloc's `stats.allocated` and `stats.resident`, refreshed (`epoch`).
fn stats() -> Option<AllocatorStats> {
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    Some(AllocatorStats {
        allocated: tikv_jemalloc_ctl::stats::allocated::read().ok()? as u64,
        resident: tikv_jemalloc_ctl::stats::resident::read().ok()? as u64,
    })
}
