//! Starting a `pigeon` process the way the process-level tests do (crash, cluster, TLS bench):
//! one place for the command line and the stderr reader.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};

/// Every line a process wrote to stderr so far.
pub(crate) type Log = Arc<Mutex<Vec<String>>>;

/// Starts `bin --config config` with every listener the command line names on an ephemeral
/// loopback port (the configuration may add others) and `--log info`. Returns the child, its
/// stderr lines so far, and each line as it comes: a thread drains the pipe for the process's
/// whole life, so the process never blocks on it.
pub(crate) fn spawn_pigeon(
    bin: impl AsRef<OsStr>,
    config: &Path,
) -> (Child, Log, mpsc::Receiver<String>) {
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .args([
            "--amqp-listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--management-listen",
            "127.0.0.1:0",
            "--prometheus-listen",
            "127.0.0.1:0",
            "--mqtt-ws-listen",
            "127.0.0.1:0",
            "--stream-listen",
            "127.0.0.1:0",
        ])
        .args(["--log", "info"])
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the pigeon binary");
    let stderr = child.stderr.take().expect("piped stderr");
    let log: Log = Arc::default();
    let (tx, rx) = mpsc::channel();
    let lines = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            lines.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    (child, log, rx)
}
