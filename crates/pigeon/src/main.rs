//! The `pigeon` binary: the broker (`pigeon serve`, the default) and its tools (`pigeon bench`).
//!
//! - `alloc`: the process's allocator (jemalloc) and its statistics for the memory alarm;
//! - `cli`: the command line (clap);
//! - `config`: the TOML configuration file;
//! - `logging`: where log lines go and which;
//! - `serve`: starts `pigeon_server` and stops it on SIGINT or SIGTERM;
//! - `bench`: `pigeon bench`, the load generator of the `pigeon-bench` crate;
//! - `pubsub`: `pigeon pub` and `pigeon sub`, command-line AMQP and MQTT clients;
//! - `ctl`: rabbitmqctl's commands against a running node, over its management HTTP API.

#![cfg_attr(test, allow(clippy::unwrap_used))]

#[cfg(feature = "jemalloc")]
mod alloc;
mod bench;
mod cli;
mod config;
mod ctl;
mod logging;
mod pubsub;
mod restart;
mod serve;

use clap::Parser;
use cli::{Cli, Command};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = cli.log.clone();
    let command = cli.into_command().unwrap_or_else(|e| e.exit());
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    // An idle worker gives its allocator cache back (`alloc.rs`).
    #[cfg(feature = "jemalloc")]
    runtime.on_thread_park(alloc::on_thread_park);
    let runtime = match runtime.build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pigeon: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match command {
        Command::Serve(args) => runtime
            .block_on(serve::run(args, log))
            .map(|()| ExitCode::SUCCESS),
        Command::Bench(args) => runtime.block_on(bench::run(*args, log)),
        // A blocking HTTP client with rabbitmqctl's exit codes (no runtime needed).
        Command::Ctl(args) => Ok(ctl::run(args)),
        Command::Pub(args) => runtime.block_on(pubsub::publish(*args, log)),
        Command::Sub(args) => runtime.block_on(pubsub::subscribe(*args, log)),
    };
    // Connections still closing must not keep a finished process alive.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pigeon: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, like `{:#}`, without the causes that an error's own
/// message already quotes (std and lapin errors often both print and expose their source).
pub(crate) fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let cause = cause.to_string();
        let cause = cause.trim_end();
        if !text.contains(cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::describe;

    #[test]
    fn causes_already_quoted_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::AddrInUse, "address in use");
        let e = anyhow::Error::new(io).context("cannot listen on 1.2.3.4:5: address in use");
        let e = e.context("cannot start the server");
        assert_eq!(
            describe(&e),
            "cannot start the server: cannot listen on 1.2.3.4:5: address in use"
        );
    }
}
