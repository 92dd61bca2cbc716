//! `pigeon bench declare`: declares (or deletes) many durable queues over a few connections and
//! reports how long it took, so that a broker's memory and CPU per idle queue can be measured
//! around it (quorum queues: `--queue-arg x-queue-type=quorum`).
//!
//! Queue i goes through connection i mod `--connections`; each connection declares its queues
//! one after another (a declare waits for its answer), so `--connections` declares are under way
//! at once.

use crate::amqp_raw::{AmqpConfig, RawAmqp};
use crate::args::{queue_arg, DeclareArgs};
use crate::client::Client;
use crate::{describe, net};
use serde::Serialize;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What a declare run did.
#[derive(Debug, Serialize)]
struct DeclareReport {
    /// The broker, password redacted.
    url: String,
    /// `declare` or `delete`.
    action: &'static str,
    /// Queues asked for.
    queues: u32,
    /// Queues the broker declared (or deleted).
    done: u32,
    /// Seconds from the first connection to the last answer.
    seconds: f64,
    /// `done` per second.
    per_s: f64,
    /// The first errors (at most one per connection).
    errors: Vec<String>,
}

pub(crate) async fn run(args: &DeclareArgs) -> anyhow::Result<ExitCode> {
    let config = AmqpConfig {
        url: args.url.clone(),
        exchange: String::new(),
        tls: None,
        queue_args: queue_arg::table(&args.queue_args)?,
    };
    let timeout = Duration::from_secs(args.timeout);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.connections.min(args.count) {
        let (config, args) = (config.clone(), args.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0u32;
            let result = async {
                let mut client = tokio::time::timeout(
                    timeout,
                    RawAmqp::connect(&config, &format!("pigeon-bench declare {c}")),
                )
                .await
                .map_err(|_| anyhow::anyhow!("connecting: no answer within {timeout:?}"))??;
                for i in (c..args.count).step_by(args.connections as usize) {
                    let name = format!("{}-{i}", args.prefix);
                    let op = async {
                        if args.delete {
                            client.delete_queue(&name).await
                        } else {
                            client.declare_queue(&name, true).await
                        }
                    };
                    tokio::time::timeout(timeout, op)
                        .await
                        .map_err(|_| anyhow::anyhow!("{name}: no answer within {timeout:?}"))??;
                    done += 1;
                }
                crate::workload::close(client, timeout).await;
                anyhow::Ok(())
            }
            .await;
            (done, result.err().map(|e| describe(&e)))
        }));
    }
    let mut report = DeclareReport {
        url: net::redact_password(&args.url),
        action: if args.delete { "delete" } else { "declare" },
        queues: args.count,
        done: 0,
        seconds: 0.0,
        per_s: 0.0,
        errors: Vec::new(),
    };
    for task in tasks {
        match task.await {
            Ok((done, error)) => {
                report.done += done;
                report.errors.extend(error);
            }
            Err(e) => report
                .errors
                .push(format!("a connection's task failed: {e}")),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    report.seconds = (secs * 1000.0).round() / 1000.0;
    report.per_s = if secs > 0.0 {
        (f64::from(report.done) / secs * 10.0).round() / 10.0
    } else {
        0.0
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(
        if report.errors.is_empty() && report.done == report.queues {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}
