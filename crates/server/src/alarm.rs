//! The resource alarms that block publishers: memory (the process's resident memory past
//! `memory_high_watermark`, measured in `memory.rs`) and disk (free space of the data directory's
//! filesystem under `disk_free_limit`, checked here).
//!
//! The server's timer checks both five times a second (memory also from the publish path,
//! see `memory.rs`) and keeps one `watch` flag, memory OR
//! disk, that every connection selects on: a connection that has published stops reading its
//! socket (AMQP also sends `connection.blocked` with the cause as its reason) until the flag
//! drops. Publishers are slowed, never disconnected, and nothing is dropped.

use crate::ServerState;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

/// Which alarms are on. The `watch` flag in [`ServerState::alarm`] is their OR.
#[derive(Debug, Default)]
pub(crate) struct AlarmCauses {
    /// The process's memory is past the memory high watermark.
    pub memory: AtomicBool,
    /// The data directory's filesystem has less free space than the disk free limit.
    pub disk: AtomicBool,
}

impl AlarmCauses {
    /// Whether publishers must stop now: read between two messages of one read batch, so
    /// that a publisher stops at the next message once an alarm is raised (the `watch` flag
    /// wakes the connections that wait).
    pub fn any(&self) -> bool {
        self.memory.load(Ordering::Relaxed) || self.disk.load(Ordering::Relaxed)
    }

    /// The reason an AMQP client reads in `connection.blocked` (RabbitMQ's wording).
    pub fn reason(&self) -> &'static str {
        match (
            self.memory.load(Ordering::Relaxed),
            self.disk.load(Ordering::Relaxed),
        ) {
            (true, true) => "low on memory and disk",
            (false, true) => "low on disk",
            _ => "low on memory",
        }
    }
}

/// Sets the alarm flag connections watch to memory OR disk (telling them only on a change).
pub(crate) fn update_flag(state: &ServerState) {
    let causes = &state.alarm_causes;
    let on = causes.memory.load(Ordering::Relaxed) || causes.disk.load(Ordering::Relaxed);
    state.alarm.send_if_modified(|flag| {
        let changed = *flag != on;
        *flag = on;
        changed
    });
}

/// The disk free limit in bytes: the relative form (a fraction of the machine's memory, as
/// RabbitMQ's `disk_free_limit.relative`) wins over the absolute one when set.
pub(crate) fn disk_free_limit(config: &crate::ServerConfig) -> u64 {
    match config.disk_free_limit_relative {
        Some(fraction) => (crate::memory::total_memory() as f64 * fraction) as u64,
        None => config.disk_free_limit,
    }
}

/// Raises or clears the disk alarm from the free space of the data directory's filesystem.
/// Without a data directory nothing is written to disk, and there is no disk alarm.
pub(crate) fn check_disk(state: &ServerState) {
    let Some(store) = &state.store else {
        return;
    };
    let limit = state.disk_free_limit.load(Ordering::Relaxed);
    let free = match free_space(store.dir()) {
        Ok(free) => free,
        Err(e) => {
            // Keep the last verdict: a failing statvfs says nothing about the space left.
            tracing::debug!(error = %e, dir = %store.dir().display(), "cannot read the free disk space");
            return;
        }
    };
    let on = state.alarm_causes.disk.load(Ordering::Relaxed);
    if !on && free < limit {
        tracing::warn!(
            free,
            limit,
            "disk alarm: disk free space {} below the limit {}: publishers are blocked",
            Mib(free),
            Mib(limit)
        );
        state.alarm_causes.disk.store(true, Ordering::Relaxed);
    } else if on && free >= limit {
        tracing::info!(
            free,
            limit,
            "disk alarm cleared: disk free space {} above the limit {}: publishers resume",
            Mib(free),
            Mib(limit)
        );
        state.alarm_causes.disk.store(false, Ordering::Relaxed);
    }
}

/// Bytes an unprivileged process may still write on the filesystem holding `dir`.
pub(crate) fn free_space(dir: &Path) -> std::io::Result<u64> {
    let s = rustix::fs::statvfs(dir)?;
    Ok(s.f_bavail.saturating_mul(s.f_frsize))
}

/// Bytes shown in MiB for the log.
struct Mib(u64);

impl std::fmt::Display for Mib {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} MiB", self.0 / (1024 * 1024))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_of_the_temp_dir_is_read() {
        let free = free_space(&std::env::temp_dir()).unwrap();
        assert!(free > 0);
    }

    #[test]
    fn reason_names_the_cause() {
        let c = AlarmCauses::default();
        c.disk.store(true, Ordering::Relaxed);
        assert_eq!(c.reason(), "low on disk");
        c.memory.store(true, Ordering::Relaxed);
        assert_eq!(c.reason(), "low on memory and disk");
        c.disk.store(false, Ordering::Relaxed);
        assert_eq!(c.reason(), "low on memory");
    }

    #[test]
    fn mib_rounds_down() {
        assert_eq!(Mib(50 * 1024 * 1024 + 5).to_string(), "50 MiB");
    }
}
