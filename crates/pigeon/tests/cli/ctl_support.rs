//! What the `ctl*.rs` tests share: running the real `pigeon ctl` binary against the test
//! harness's in-process broker and reading what it printed.
//!
//! The binary is `PIGEON_BIN` when set, else the one Cargo built for these tests.

#![allow(dead_code)] // each test file uses its own part

use pigeon_server::ServerConfig;
use pigeon_tests::{within, TestBroker};
use serde_json::Value;
use std::process::Command;

/// What one `pigeon ctl` run printed, and its exit code.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    pub fn ok(self) -> String {
        assert_eq!(self.code, 0, "pigeon ctl failed: {self:?}");
        self.stdout
    }

    /// Asserts failure with `code` and exactly one line on stderr; returns that line.
    pub fn fails(self, code: i32) -> String {
        assert_eq!(self.code, code, "unexpected exit code: {self:?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one error line expected: {self:?}");
        assert!(lines[0].starts_with("Error: "), "{self:?}");
        lines[0].to_string()
    }

    /// stdout parsed as JSON.
    pub fn json(self) -> Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }
}

pub async fn broker() -> Option<TestBroker> {
    TestBroker::start_with(ServerConfig::for_tests()).await
}

pub fn api_url(broker: &TestBroker) -> String {
    let addr = broker
        .server()
        .and_then(|s| s.management_addr())
        .expect("the management listener");
    format!("http://{addr}")
}

/// Runs `pigeon ctl --node <url> <args>` as guest, with no environment or config file that
/// could point it elsewhere.
pub async fn ctl(broker: &TestBroker, args: &[&str]) -> Run {
    ctl_at(&api_url(broker), args).await
}

pub async fn ctl_at(url: &str, args: &[&str]) -> Run {
    let home = tempfile::tempdir().unwrap();
    let mut all = vec!["--node", url];
    all.extend_from_slice(args);
    ctl_with(home.path(), &[], &all).await
}

/// Runs `pigeon ctl <args>` with `HOME` at `home` and only the `PIGEON_*` variables of `env`.
pub async fn ctl_with(home: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Run {
    let bin = std::env::var("PIGEON_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_pigeon").into());
    let mut command = Command::new(bin);
    command
        .arg("ctl")
        .args(args)
        .env_remove("PIGEON_URL")
        .env_remove("PIGEON_USER")
        .env_remove("PIGEON_PASS")
        .env("HOME", home)
        .envs(env.iter().copied());
    // The broker runs in this process: wait for the child off the runtime's threads.
    let output = within(
        "pigeon ctl to finish",
        tokio::task::spawn_blocking(move || command.output()),
    )
    .await
    .unwrap()
    .expect("pigeon ctl runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
