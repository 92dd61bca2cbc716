//! What the memory alarm measures, against what limit, and how often.
//!
//! **The figure** is the memory the process really uses: its resident set (RSS), read from
//! `/proc/self/statm` through a file kept open (one `pread`, a couple of microseconds). RSS is
//! what `ps`, the cgroup and the OOM killer count, whatever holds it (queued messages and their
//! bookkeeping, connection buffers, the allocator's free pages not yet given back), so the alarm
//! cannot be fooled by a count of message bodies (16 B each for ~450 B of real memory). Where
//! `/proc` cannot be read (not Linux), the allocator's resident figure is used, if the binary
//! plugged a probe ([`set_allocator_probe`]; the `pigeon` binary plugs jemalloc's
//! `stats.allocated` / `stats.resident`); the probe's figures are also logged beside the RSS
//! when the alarm changes, so that fragmentation shows (RSS far above `allocated`).
//!
//! **The limit** is `memory_high_watermark_bytes`, else `memory_high_watermark` (0.4, as
//! RabbitMQ's `vm_memory_high_watermark`) times the machine's memory: `MemTotal`, or the
//! cgroup's limit when lower (v2 `memory.max`, v1 `memory.limit_in_bytes`), as RabbitMQ does in
//! a container.
//!
//! **How often**: the server's timer (every 200 ms) checks, and so does the publish path: each
//! connection charges what it publishes (body plus [`MESSAGE_OVERHEAD`]) to a shared counter at
//! the end of each read batch (and every [`LOCAL_CHUNK`] within one), and whoever brings the
//! counter past [`CHECK_EVERY`] checks at once, on its own task. A flood therefore meets the
//! alarm after at most [`CHECK_EVERY`] of estimated growth, whatever its rate; and a publisher
//! stops at the next message once the alarm is on (the adapters look at an atomic flag between
//! messages). The margin this leaves is in docs/architecture.md ("Memory").

use crate::ServerState;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

/// What one published message costs beyond its body, as the publish path estimates it: the
/// message and queue entry, its properties, the `Bytes` and allocator rounding. Measured at
/// about 450 B for a 16 B transient message in one queue (docs/performance.md, "Allocator").
pub(crate) const MESSAGE_OVERHEAD: u64 = 512;

/// A connection adds its charge to the shared counter at least this often within a read batch.
pub(crate) const LOCAL_CHUNK: u64 = 256 * 1024;

/// The publish path checks the memory after this much estimated growth.
pub(crate) const CHECK_EVERY: u64 = 4 * 1024 * 1024;

/// Allocator statistics, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocatorStats {
    /// Bytes the program holds (jemalloc `stats.allocated`).
    pub allocated: u64,
    /// Bytes of physical memory the allocator holds, free pages not yet returned included
    /// (jemalloc `stats.resident`).
    pub resident: u64,
}

/// Reads the allocator's statistics (`None`: cannot tell now).
pub type AllocatorProbe = fn() -> Option<AllocatorStats>;

static PROBE: OnceLock<AllocatorProbe> = OnceLock::new();

/// Plugs the allocator's statistics into the memory alarm (for the whole process: the allocator
/// is). The first call wins; returns false if a probe was already set.
pub fn set_allocator_probe(probe: AllocatorProbe) -> bool {
    PROBE.set(probe).is_ok()
}

/// The plugged allocator's statistics, if any.
pub fn allocator_stats() -> Option<AllocatorStats> {
    PROBE.get().and_then(|p| p())
}

/// The process's resident set in bytes (`/proc/self/statm`), if it can be read.
pub fn resident_set() -> Option<u64> {
    Statm::open().and_then(|s| s.rss())
}

/// `/proc/self/statm`, kept open: reading it again is one `pread`.
pub(crate) struct Statm {
    file: File,
    page: u64,
}

impl Statm {
    pub fn open() -> Option<Statm> {
        let file = File::open("/proc/self/statm").ok()?;
        let page = rustix::param::page_size() as u64;
        Some(Statm { file, page })
    }

    /// The resident set in bytes (the second field, in pages).
    pub fn rss(&self) -> Option<u64> {
        let mut buf = [0u8; 128];
        let n = self.file.read_at(&mut buf, 0).ok()?;
        let text = std::str::from_utf8(buf.get(..n)?).ok()?;
        let pages: u64 = text.split_ascii_whitespace().nth(1)?.parse().ok()?;
        Some(pages.saturating_mul(self.page))
    }
}

/// The memory alarm's state: the limit, the figure's source and the publish-path counter.
pub(crate) struct MemoryMeter {
    /// The memory high watermark in bytes ([`crate::ServerHandle::set_memory_limit`]).
    limit: AtomicU64,
    statm: Option<Statm>,
    /// Estimated bytes published since the last check.
    charged: AtomicU64,
    /// One check at a time (a second publisher past the mark skips it).
    checking: AtomicBool,
}

impl MemoryMeter {
    pub fn new(limit: u64) -> MemoryMeter {
        MemoryMeter {
            limit: AtomicU64::new(limit),
            statm: Statm::open(),
            charged: AtomicU64::new(0),
            checking: AtomicBool::new(false),
        }
    }

    /// The memory the process uses: RSS, else the allocator's resident bytes, else 0 (no
    /// figure, no memory alarm; logged once at start).
    pub fn used(&self) -> u64 {
        self.statm
            .as_ref()
            .and_then(Statm::rss)
            .or_else(|| allocator_stats().map(|s| s.resident))
            .unwrap_or(0)
    }

    /// The memory high watermark in bytes.
    pub fn limit(&self) -> u64 {
        self.limit.load(Ordering::Relaxed)
    }

    pub fn set_limit(&self, bytes: u64) {
        self.limit.store(bytes, Ordering::Relaxed);
    }

    /// Whether any figure is available.
    pub fn measurable(&self) -> bool {
        self.statm.is_some() || allocator_stats().is_some()
    }
}

/// What one message costs as the publish path estimates it.
pub(crate) fn message_cost(body: usize) -> u64 {
    body as u64 + MESSAGE_OVERHEAD
}

/// Adds what a connection published to the shared counter; past [`CHECK_EVERY`], checks the
/// memory now (and raises the alarm flag, which the adapters see before their next message).
pub(crate) fn charge(state: &ServerState, bytes: u64) {
    if bytes == 0 {
        return;
    }
    let meter = &state.memory;
    let total = meter.charged.fetch_add(bytes, Ordering::Relaxed) + bytes;
    if total < CHECK_EVERY {
        return;
    }
    if meter.checking.swap(true, Ordering::Acquire) {
        return;
    }
    meter.charged.store(0, Ordering::Relaxed);
    check(state);
    crate::alarm::update_flag(state);
    meter.checking.store(false, Ordering::Release);
}

/// Raises and clears the memory alarm (raised past the limit, cleared under 90% of it, as
/// RabbitMQ does not: it clears at the limit; the gap keeps the alarm from flapping on every
/// check while the allocator gives pages back).
pub(crate) fn check(state: &ServerState) {
    let meter = &state.memory;
    let used = meter.used();
    let limit = meter.limit();
    let on = state.alarm_causes.memory.load(Ordering::Relaxed);
    if !on && used > limit {
        let alloc = allocator_stats();
        tracing::warn!(
            rss = used,
            limit,
            allocated = alloc.map(|a| a.allocated),
            allocator_resident = alloc.map(|a| a.resident),
            "memory alarm: the broker uses {} MiB, over the high watermark {} MiB: publishers are blocked",
            used >> 20,
            limit >> 20
        );
        state.alarm_causes.memory.store(true, Ordering::Relaxed);
    } else if on && used < limit / 10 * 9 {
        tracing::info!(
            rss = used,
            limit,
            "memory alarm cleared: the broker uses {} MiB: publishers resume",
            used >> 20
        );
        state.alarm_causes.memory.store(false, Ordering::Relaxed);
    }
}

/// The machine's memory in bytes: `MemTotal`, or the cgroup's memory limit when lower (4 GiB
/// when neither can be read).
pub(crate) fn total_memory() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map(|kib| kib.saturating_mul(1024));
    match (meminfo, cgroup_limit()) {
        (Some(m), Some(c)) => m.min(c),
        (Some(m), None) => m,
        (None, Some(c)) => c,
        (None, None) => 4 << 30,
    }
}

/// The memory limit of the process's cgroup and its ancestors, the lowest (v2 `memory.max`, v1
/// `memory.limit_in_bytes`); `None` when unlimited or unknown.
fn cgroup_limit() -> Option<u64> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut dirs = Vec::new();
    for line in own.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if id == "0" && controllers.is_empty() {
            // v2: the limit may sit on any ancestor; inside a container the path is `/`.
            let mut p = std::path::PathBuf::from("/sys/fs/cgroup");
            p.push(path.trim_start_matches('/'));
            for dir in p
                .ancestors()
                .take_while(|d| d.starts_with("/sys/fs/cgroup"))
            {
                dirs.push(dir.join("memory.max"));
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            let mut p = std::path::PathBuf::from("/sys/fs/cgroup/memory");
            p.push(path.trim_start_matches('/'));
            dirs.push(p.join("memory.limit_in_bytes"));
            dirs.push("/sys/fs/cgroup/memory/memory.limit_in_bytes".into());
        }
    }
    dirs.iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .filter_map(|s| parse_limit(&s))
        .min()
}

/// A cgroup memory limit file's value: `max` (v2) or a page-rounded `i64::MAX` (v1) is none.
fn parse_limit(text: &str) -> Option<u64> {
    let v: u64 = text.trim().parse().ok()?;
    (v < 1 << 62).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statm_reads_a_resident_set_that_follows_allocations() {
        let s = Statm::open().unwrap();
        let before = s.rss().unwrap();
        assert!(before > 0);
        let big = vec![1u8; 64 << 20];
        let after = s.rss().unwrap();
        assert!(after >= before + (32 << 20), "{before} -> {after}");
        drop(big);
    }

    #[test]
    fn cgroup_limit_values() {
        assert_eq!(parse_limit("max\n"), None);
        assert_eq!(parse_limit("9223372036854771712\n"), None);
        assert_eq!(parse_limit("536870912\n"), Some(512 << 20));
    }

    #[test]
    fn total_memory_is_known_here() {
        assert!(total_memory() > 64 << 20);
    }
}
