//! Reloading the certificate, key and CAs while the server runs.
//!
//! The DIRECTORIES holding the files are watched, not the files: an editor that writes a new
//! file and renames it over the old one, and Kubernetes, which mounts a secret as symlinks
//! (`tls.crt -> ..data/tls.crt`, `..data -> ..2024_01_01_...`) and swaps the `..data` link,
//! change the directory without ever writing the file the configuration names. Any change in
//! one of them starts a reload after a short pause (writers often touch several files in a
//! row); the reload compares the files' contents with what is in use, so an unrelated change
//! in the directory costs a read of three small files and no log line.
//!
//! SIGHUP reloads too (`ServerHandle::reload_tls`, called by the binary). Connections keep the
//! configuration of their handshake; new ones get the new one. A failed reload (a file
//! half-written, a key that does not match) keeps the previous configuration and logs an error.

use super::TlsContext;
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How long a burst of changes may last before the files are read.
const SETTLE: Duration = Duration::from_millis(100);

/// Watches the directories of the context's files and reloads it on change, until shutdown.
/// Without a watcher (the platform refused one), SIGHUP still reloads.
pub async fn watch_files(ctx: Arc<TlsContext>, mut shutdown: watch::Receiver<bool>) {
    let (tx, mut changes) = mpsc::unbounded_channel::<()>();
    let dirs: BTreeSet<PathBuf> = ctx.config().files().into_iter().map(dir_of).collect();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    });
    let _watcher = match watcher {
        Ok(mut w) => {
            for dir in &dirs {
                if let Err(e) = w.watch(dir, RecursiveMode::NonRecursive) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot watch the TLS files' directory: reload them with SIGHUP");
                }
            }
            w
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the TLS files: reload them with SIGHUP");
            return;
        }
    };
    loop {
        tokio::select! {
            change = changes.recv() => {
                if change.is_none() {
                    return;
                }
                // Let the burst settle, then take every change it made at once.
                tokio::time::sleep(SETTLE).await;
                while changes.try_recv().is_ok() {}
                ctx.reload_logged("TLS files changed on disk");
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// The directory a file is in (`.` for a bare file name).
fn dir_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}
