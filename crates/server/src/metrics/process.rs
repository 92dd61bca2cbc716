//! Figures of the process, read from `/proc` when scraped: what RabbitMQ reports of its
//! Erlang VM's process where the meaning is the same (file descriptors, sockets).

/// What `/proc/self` says (0 where it says nothing, off Linux).
pub(super) struct Figures {
    /// Open file descriptors.
    pub open_fds: u64,
    /// Of those, sockets (listeners and connections).
    pub sockets: u64,
    /// The soft limit on open file descriptors.
    pub max_fds: u64,
}

pub(super) fn read() -> Figures {
    let (mut open_fds, mut sockets) = (0, 0);
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        for entry in dir.flatten() {
            open_fds += 1;
            let socket = std::fs::read_link(entry.path())
                .is_ok_and(|t| t.as_os_str().as_encoded_bytes().starts_with(b"socket:"));
            if socket {
                sockets += 1;
            }
        }
    }
    Figures {
        open_fds,
        sockets,
        max_fds: max_fds(),
    }
}

fn max_fds() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(0)
}
