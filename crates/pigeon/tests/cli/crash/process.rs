//! The broker process of the crash tests (also used by `crash_stream` and `crash_quorum`):
//! start, kill and restart `pigeon`, its configuration, the seeded kill delays.

use super::*;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;

/// A running `pigeon` child process; killed (SIGKILL) when dropped. Also used by
/// `crash_stream.rs`.
pub(crate) struct Pigeon {
    child: Child,
    amqp: SocketAddr,
    /// Its stream-protocol listener.
    pub(crate) stream: SocketAddr,
    /// Every line it wrote to stderr so far.
    pub(crate) log: Arc<Mutex<Vec<String>>>,
    /// `messages=` and `ms=` of its "recovered from the data directory" line.
    pub(super) recovered: (u64, u64),
}

impl Pigeon {
    /// Starts the binary with `config` on loopback ephemeral ports and waits (bounded) for the
    /// line saying where it listens.
    pub(crate) async fn start(config: &Path) -> Pigeon {
        let config = config.to_path_buf();
        tokio::task::spawn_blocking(move || Pigeon::start_blocking(&config))
            .await
            .unwrap()
    }

    fn start_blocking(config: &Path) -> Pigeon {
        // PIGEON_BIN: the binary of this worktree when several share a target directory.
        let bin =
            std::env::var("PIGEON_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_pigeon").into());
        let (mut child, log, rx) = crate::spawn::spawn_pigeon(bin, config);
        let deadline = Instant::now() + TIMEOUT;
        let mut recovered = None;
        let (amqp, stream) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match rx.recv_timeout(left) {
                Ok(line) => line,
                Err(e) => {
                    let _ = child.kill();
                    panic!(
                        "pigeon did not say where it listens ({e}); its log:\n{}",
                        log.lock().unwrap().join("\n")
                    );
                }
            };
            if line.contains("recovered from the data directory") {
                recovered = Some((field(&line, "messages="), field(&line, "ms=")));
            }
            if line.contains("listening for AMQP 0-9-1 on ") {
                let addr = |after: &str| {
                    let rest = line.split(after).nth(1).unwrap_or_default();
                    let addr = rest.split([',', ' ']).next().unwrap_or_default();
                    addr.parse::<SocketAddr>()
                        .unwrap_or_else(|e| panic!("bad address after {after:?} in {line:?}: {e}"))
                };
                break (addr("listening for AMQP 0-9-1 on "), addr(", stream on "));
            }
        };
        let recovered = recovered.unwrap_or_else(|| {
            panic!(
                "no recovery line before the listening line:\n{}",
                log.lock().unwrap().join("\n")
            )
        });
        Pigeon {
            child,
            amqp,
            stream,
            log,
            recovered,
        }
    }

    pub(crate) fn url(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.amqp)
    }

    /// SIGKILL, and reap the process.
    pub(crate) fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, and wait (bounded) for a clean exit.
    pub(crate) fn terminate(mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "pigeon exited with {status} after SIGTERM; its log:\n{}",
                    self.log.lock().unwrap().join("\n")
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "pigeon did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Pigeon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number after `key` in a log line (`messages=12`).
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

pub(crate) async fn within<F: std::future::Future>(what: &str, fut: F) -> F::Output {
    tokio::time::timeout(TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {TIMEOUT:?} waiting for {what}"))
}

/// The configuration of a crash test's broker in `dir`: a data directory, fsync on, no `$SYS`
/// publishing, its data under `dir/data`. Returns the configuration file.
pub(crate) fn crash_config(dir: &Path) -> PathBuf {
    let config = dir.join("pigeon.toml");
    let data = dir.join("data");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = '{}'\nfsync = true\nmqtt_sys_interval = 0\n",
            data.display()
        ),
    )
    .unwrap();
    config
}

/// xorshift64*: enough randomness for kill delays, reproducible from the printed seed.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    /// Seeded from `PIGEON_CRASH_SEED`, else from the clock; the seed is printed so that a
    /// failing run's kill delays can be replayed.
    pub(crate) fn from_env(test: &str) -> Rng {
        let seed = std::env::var("PIGEON_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(1, |d| d.as_nanos() as u64)
            })
            .max(1);
        println!("{test} seed: {seed} (replay the kill delays with PIGEON_CRASH_SEED={seed})");
        Rng(seed)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}
