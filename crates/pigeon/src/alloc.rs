//! The process's allocator: jemalloc, set up to give memory back to the OS after a burst, and
//! its statistics plugged into the broker's memory alarm.
//!
//! Why jemalloc, and the measurements behind the settings: docs/performance.md, "Allocator".
//! In short: with glibc's malloc, a broker that queued gigabytes during a burst kept its RSS
//! after the queues were drained (7.7 GB during, 6.6 GB after); jemalloc returns freed pages to
//! the OS on a timer, from its background threads, whether or not the program allocates again.
//! Larger slabs ([`MALLOC_CONF`]) keep jemalloc's own bookkeeping small after a flood.

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

/// Options that only take effect when jemalloc starts (they size its data structures), read
/// by jemalloc from its `malloc_conf` symbol before `main` (and after it, from the
/// `_RJEM_MALLOC_CONF` environment variable, which overrides them option by option: this
/// build's jemalloc has the `_rjem_` symbol prefix).
///
/// `slab_sizes`: small allocations (up to 4 KiB) are carved from slabs of 16 pages (64 KiB)
/// instead of jemalloc's default of 1 to 7 pages, or as many as a slab may hold (512 regions)
/// for the smallest classes. jemalloc keeps a 128-byte descriptor per slab (`edata_t`) and never
/// gives descriptor memory back (it is reused, not freed), so the number of slabs at a peak is
/// a permanent cost: a flood of 22 M queued 16-byte messages (6.6 GB) left 61 MB of
/// descriptors (70 MiB of RSS above the start once the queue was gone) with the defaults; with
/// these slabs 24 M messages left 29 MB (40 MiB above the start). Measurements:
/// docs/performance.md, "Allocator".
///
/// `narenas:1`: one arena instead of jemalloc's default of four per CPU. Each arena keeps its
/// own partly used slab of every size class its threads allocate; with several, the
/// long-lived objects of idle connections (allocated by whichever worker accepted them) and
/// the handshakes' leftovers are spread over more slabs: 0.06 KiB more per idle MQTT
/// connection at 10,000 (0.03 at 19,000). The threads' caches (tcache) keep most allocations
/// off the arena's locks; on this 2-core machine throughput did not move (docs/performance.md,
/// "Idle connections", sixth pass). On a host with many cores, `_RJEM_MALLOC_CONF=narenas:N`
/// in the broker's environment gives it more.
///
/// `background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0`: what [`configure`] sets
/// (it still does, for a build whose `malloc_conf` is ignored), from jemalloc's start rather
/// than after the broker's start-up: the start-up's freed pages were otherwise decayed at
/// jemalloc's default 10 s, or purged only when `configure` reset the arena's decay, so that
/// an idle broker's RSS a few seconds after start varied by ~1 MB from run to run (0.07 KiB
/// of the idle-connection figure at 10,000: docs/performance.md, "Idle connections",
/// seventh pass).
///
/// The symbol is jemalloc's `const char *malloc_conf`, which jemalloc defines weak (as
/// `NULL`) so that a program may define it. Sound without an `unsafe` block, and allowed here
/// for the exported name only: `&'static [u8; N]` has the layout of a non-null C pointer to
/// the array's first byte; the array is a `'static`, immutable, NUL-terminated ASCII string
/// (its length is checked by the type), and jemalloc only reads through the pointer (it never
/// writes the variable nor the string). No Rust code refers to the symbol.
#[allow(unsafe_code)]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8; 91] =
    b"slab_sizes:1-4096:16,narenas:1,background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

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

/// How often at most a worker thread gives its cache back ([`on_thread_park`]).
const TCACHE_FLUSH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Called by tokio each time one of its worker threads runs out of work: at most once a
/// second per thread, gives the thread's jemalloc cache back to the arenas.
///
/// Why: jemalloc keeps up to 200 freed regions of each size class in the cache of the thread
/// that freed them (its tcache), and trims a cache only as its thread allocates. A thread
/// that then has nothing to do keeps them for good: after 10,000 idle MQTT connections had
/// hibernated (each frees its task cell, its tokio registration and its handshake's buffers),
/// the worker threads' caches held 1.5-1.8 MB, ~0.17 KiB of every idle connection's RSS, and
/// kept the slabs around those regions resident (docs/performance.md, "Idle connections",
/// sixth pass). Turning the thread's cache off and on again flushes it (jemalloc's
/// `thread.tcache.enabled`: disabling it returns every cached region). A busy thread parks
/// too, but the flush is rate-limited: its cost is one refill a second.
pub fn on_thread_park() {
    use std::cell::Cell;
    use std::time::Instant;
    thread_local! {
        static LAST_FLUSH: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    let now = Instant::now();
    LAST_FLUSH.with(|last| {
        if last
            .get()
            .is_some_and(|t| now.duration_since(t) < TCACHE_FLUSH_EVERY)
        {
            return;
        }
        last.set(Some(now));
        let enabled = "thread.tcache.enabled\0".name();
        if enabled.write(false).is_ok() {
            let _ = enabled.write(true);
        }
    });
}

/// jemalloc's `stats.allocated` and `stats.resident`, refreshed (`epoch`).
fn stats() -> Option<AllocatorStats> {
    tikv_jemalloc_ctl::epoch::advance().ok()?;
    Some(AllocatorStats {
        allocated: tikv_jemalloc_ctl::stats::allocated::read().ok()? as u64,
        resident: tikv_jemalloc_ctl::stats::resident::read().ok()? as u64,
    })
}
