//! The bench process's own CPU time, so a report shows when the load generator is the bottleneck.
//!
//! Read from `/proc/self/stat` (Linux); elsewhere the report leaves it out.

use std::time::Duration;

/// Kernel clock ticks per second in `/proc` (`USER_HZ`). The kernel fixes it at 100 on every
/// architecture Linux exposes to user space, whatever the internal `HZ`.
const USER_HZ: u64 = 100;

/// CPU time consumed so far by every thread of this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// Time spent running our code.
    pub user: Duration,
    /// Time the kernel spent on our behalf (socket reads and writes, mostly).
    pub system: Duration,
}

impl CpuTime {
    /// This process's CPU time, or `None` where `/proc/self/stat` cannot be read.
    pub fn now() -> Option<CpuTime> {
        parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
    }

    /// CPU used between `earlier` and `self`.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    /// User plus system time.
    pub fn total(self) -> Duration {
        self.user + self.system
    }
}

/// Parses `utime` and `stime`, fields 14 and 15 of proc(5)'s `/proc/[pid]/stat`. The command
/// name (field 2) is in parentheses and may itself hold spaces and parentheses, so fields are
/// counted from the last `)`.
fn parse_stat(stat: &str) -> Option<CpuTime> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11); // field 3 (state) is index 0
    let ticks = |f: Option<&str>| -> Option<Duration> {
        let t: u64 = f?.parse().ok()?;
        Some(Duration::from_millis(t * 1000 / USER_HZ))
    };
    Some(CpuTime {
        user: ticks(fields.next())?,
        system: ticks(fields.next())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utime_and_stime_are_read_after_an_awkward_command_name() {
        let stat = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 \
                    123 456789 1234 18446744073709551615";
        assert_eq!(
            parse_stat(stat),
            Some(CpuTime {
                user: Duration::from_millis(2500),
                system: Duration::from_millis(750),
            })
        );
    }

    #[test]
    fn truncated_stat_is_none() {
        assert_eq!(parse_stat("4242 (pigeon) S 1 2 3"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn own_cpu_time_grows_when_we_spin() {
        let before = CpuTime::now().expect("linux has /proc");
        let start = std::time::Instant::now();
        let mut x = 0u64;
        // Spin until the kernel has charged us 50 ms, giving up after 10 s of wall time.
        let used = loop {
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
            let used = CpuTime::now().expect("linux has /proc").since(before);
            if used.total() >= Duration::from_millis(50) || start.elapsed().as_secs() >= 10 {
                break used;
            }
        };
        assert!(used.total() >= Duration::from_millis(50), "{used:?}");
    }
}
