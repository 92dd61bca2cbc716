//! The background thread that checkpoints queue logs, so that a restart after a crash reads
//! little of each log beyond its checkpoint.
//!
//! Every [`StoreOptions::checkpoint_interval`](crate::StoreOptions) it looks at every open
//! durable log and checkpoints those with at least
//! [`StoreOptions::checkpoint_bytes`](crate::StoreOptions) of files not covered by their
//! checkpoint, and at least two bytes per live message (a checkpoint costs about one to a few
//! bytes per live message to write, so a long queue that barely moves is not rewritten for
//! nothing). It never touches the hot path: a checkpoint reads the live index a few thousand
//! entries per hold of the log's lock and writes on this thread (`log/checkpoint.rs`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use tracing::{debug, warn};

use crate::log::QueueLog;

/// Tells the thread to stop.
#[derive(Default)]
pub(crate) struct Control {
    stop: Mutex<bool>,
    wake: Condvar,
}

impl Control {
    pub(crate) fn stop(&self) {
        *self.stop.lock() = true;
        self.wake.notify_all();
    }

    fn stopped(&self) -> bool {
        *self.stop.lock()
    }
}

/// Whether `log` is due for a checkpoint with `min_bytes` uncovered.
pub(crate) fn due(log: &QueueLog, min_bytes: u64) -> bool {
    let uncovered = log.uncheckpointed_bytes();
    uncovered > 0 && uncovered >= min_bytes.max(2 * log.len() as u64)
}

/// The thread's body: `open_logs` lists the logs to look at.
pub(crate) fn run(
    control: Arc<Control>,
    open_logs: impl Fn() -> Vec<Arc<QueueLog>>,
    interval: Duration,
    min_bytes: u64,
) {
    loop {
        {
            let deadline = Instant::now() + interval;
            let mut stop = control.stop.lock();
            while !*stop && Instant::now() < deadline {
                control.wake.wait_until(&mut stop, deadline);
            }
            if *stop {
                return;
            }
        }
        let logs = open_logs();
        for log in logs {
            if control.stopped() {
                return;
            }
            if !due(&log, min_bytes) {
                continue;
            }
            let started = Instant::now();
            match log.checkpoint() {
                Ok(Some(w)) => {
                    debug!(
                        queue = %log.id().replace('\0', "/"),
                        entries = w.entries,
                        bytes = w.bytes,
                        ms = started.elapsed().as_millis() as u64,
                        "checkpointed a queue log",
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    warn!(queue = %log.id().replace('\0', "/"), error = %e, "could not checkpoint a queue log");
                }
            }
        }
    }
}
