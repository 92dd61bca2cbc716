//! `pigeon bench`: a load generator for any AMQP 0-9-1 or MQTT broker, in the manner of
//! RabbitMQ's PerfTest, that also checks every message arrived exactly once; and
//! `pigeon bench idle`, which holds many idle connections to show a broker's memory per
//! connection. A client of the broker, not part of it: this crate knows nothing of the server,
//! and the `pigeon` binary runs it as a subcommand ([`BenchArgs`], [`run`]).
//!
//! A run declares its own queues (and exchange, and bindings) or picks its own topics (unique
//! names; what it declared is deleted at the end), connects every consumer before any producer
//! starts, publishes for `--duration` or
//! `--count`, lets the consumers drain what is queued, and reports. Each body starts with a
//! [`stamp::Stamp`] (send time, producer, sequence) from which consumers compute end-to-end
//! latency and find lost and duplicated messages. With confirms, producers also time each
//! message from its publish call to the broker's confirm (confirm latency).
//!
//! The pieces:
//! - `args`: the flags and their checks;
//! - `client`: the traits the workload needs from a protocol client; `amqp_raw`: the bench's own
//!   AMQP client (the default), `amqp`: lapin, `mqtt`: the bench's own MQTT client, all three on
//!   `net` (sockets and URLs) except lapin; producers and consumers may use different clients
//!   (`pigeon bench cross`: MQTT publishers, AMQP consumers); `tls`: the TLS flags and
//!   handshake for `amqps://` and `mqtts://` (the bench's own clients only);
//! - `modes`: what each mode's flags make of a run (a `runner::Load`); `runner`: declares,
//!   connects, drives and cleans up; `workload`: the producer and consumer loops; `control`: the
//!   phases and the end of a run;
//! - `stamp`, `tally`: the message header and what consumers make of it;
//! - `report`, `cpu`: the results and the bench's own CPU time;
//! - `idle`: `pigeon bench idle`; `declare`: `pigeon bench declare` (many idle queues);
//! - `stream`: `pigeon bench stream`, the bench's own RabbitMQ Stream protocol client (publishers
//!   with a confirm window, consumers from an offset, and a read-only run for read speed).
//!
//! A run always ends: every wait on the broker races the controller's stop, the controller stops
//! when nothing has moved for `--timeout`, and connection setup and cleanup are bounded by it too.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod amqp;
mod amqp_raw;
mod args;
mod client;
mod confirms;
mod control;
mod cpu;
mod declare;
mod idle;
mod modes;
mod mqtt;
mod net;
mod report;
mod runner;
mod stamp;
mod stream;
mod tally;
mod tls;
mod workload;

pub use args::BenchArgs;
pub use tls::TlsArgs;

use args::Mode;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

/// The log filter for a run when the user gives none: lapin logs every connection error itself,
/// and the report says what matters. The caller installs the tracing subscriber (the bench logs
/// to whatever it is given; stdout stays free for the report).
pub const DEFAULT_LOG_FILTER: &str = "info,lapin=off,amq_protocol=off";
/// Runs `pigeon bench`; the exit code is failure unless every message arrived exactly once.
pub async fn run(args: BenchArgs) -> anyhow::Result<ExitCode> {
    match &args.mode {
        None => modes::run_amqp(&args.amqp).await,
        Some(Mode::Mqtt(mqtt)) => modes::run_mqtt(mqtt).await,
        Some(Mode::Cross(cross)) => modes::run_cross(cross).await,
        Some(Mode::Idle(idle)) => idle::run(idle).await,
        Some(Mode::Stream(stream)) => modes::run_stream(stream).await,
        Some(Mode::Declare(declare)) => declare::run(declare).await,
    }
}

/// An error and its causes on one line, like `{:#}`, without the causes that an error's own
/// message already quotes (std and lapin errors often both print and expose their source). The
/// same as the `pigeon` binary's, which prints the errors `run` returns.
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

/// A name unique to this run, so that two runs on one broker never share a queue, a topic or an
/// MQTT client identifier.
fn run_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{millis:x}-{}", std::process::id())
}
