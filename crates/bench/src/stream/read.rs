//! The read-only run (`pigeon bench stream -x 0`): consumers read an existing stream from
//! `--offset` (first by default) to its end, and the report says how fast, in messages and
//! megabytes per second. It measures the broker's read path (store, page cache or disk, socket)
//! rather than end-to-end latency, so no message is looked into: each chunk's header gives its
//! record count, and the bytes counted are the chunks' headers and data as delivered.
//!
//! The end of the stream is where no chunk has arrived for `--idle-end` seconds (that quiet
//! time is not counted), or `--count` messages per consumer.

use super::{Client, StreamClient, StreamConfig};
use crate::args::{StreamArgs, Until};
use crate::cpu::CpuTime;
use crate::describe;
use serde::Serialize;
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// What one consumer read.
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Read {
    /// Chunks delivered.
    pub chunks: u64,
    /// Messages in them.
    pub messages: u64,
    /// Bytes of chunk headers and data.
    pub bytes: u64,
    /// From the subscription to the last chunk.
    pub seconds: f64,
}

/// The report of a read-only run.
#[derive(Debug, Serialize)]
pub struct ReadReport {
    pub protocol: &'static str,
    pub mode: &'static str,
    pub url: String,
    pub stream: String,
    pub offset: String,
    pub consumers: u32,
    /// Each consumer's.
    pub per_consumer: Vec<Read>,
    /// Summed over consumers.
    pub messages: u64,
    pub bytes: u64,
    /// From the first subscription to the last chunk any consumer received.
    pub seconds: f64,
    pub messages_per_s: f64,
    /// Megabytes (10^6 bytes) per second, all consumers together.
    pub mb_per_s: f64,
    /// CPU seconds of the bench process (user + system).
    pub bench_cpu_s: Option<f64>,
    pub errors: Vec<String>,
}

/// Reads the stream with `args.consumers` consumers and prints the report.
pub async fn run(
    args: &StreamArgs,
    config: &StreamConfig,
    stream: &str,
    url: String,
) -> anyhow::Result<ExitCode> {
    let cpu_before = CpuTime::now();
    let limit = match args.until() {
        Until::Count(n) => Some(n),
        Until::Elapsed(_) => None,
    };
    let (timeout, idle) = (args.timeout(), Duration::from_secs(args.idle_end));
    let mut tasks = Vec::new();
    for j in 0..args.consumers {
        let (config, stream) = (config.clone(), stream.to_owned());
        tasks.push(tokio::spawn(async move {
            read_one(config, &stream, j, limit, timeout, idle).await
        }));
    }
    let mut per_consumer = Vec::new();
    let mut errors = Vec::new();
    let mut last = 0.0f64;
    for (j, task) in tasks.into_iter().enumerate() {
        match task.await {
            Ok((read, result)) => {
                if let Err(e) = result {
                    errors.push(format!("consumer {j}: {}", describe(&e)));
                }
                last = last.max(read.1);
                per_consumer.push(read.0);
            }
            Err(e) => errors.push(format!("consumer {j}: task failed: {e}")),
        }
    }
    let messages = per_consumer.iter().map(|r| r.messages).sum();
    let bytes: u64 = per_consumer.iter().map(|r| r.bytes).sum();
    let per_s = |n: f64| {
        if last > 0.0 {
            (n / last * 10.0).round() / 10.0
        } else {
            0.0
        }
    };
    let report = ReadReport {
        protocol: "stream",
        mode: "read",
        url,
        stream: stream.to_owned(),
        offset: args.offset_name(),
        consumers: args.consumers,
        per_consumer,
        messages,
        bytes,
        seconds: (last * 1000.0).round() / 1000.0,
        messages_per_s: per_s(messages as f64),
        mb_per_s: per_s(bytes as f64 / 1e6),
        bench_cpu_s: CpuTime::now()
            .zip(cpu_before)
            .map(|(after, before)| after.since(before).total().as_secs_f64()),
        errors,
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        println!(
            "read {} messages, {:.1} MB in {:.3} s from {} ({}): {:.0} msg/s, {:.1} MB/s",
            report.messages,
            report.bytes as f64 / 1e6,
            report.seconds,
            report.stream,
            report.offset,
            report.messages_per_s,
            report.mb_per_s
        );
        for e in &report.errors {
            println!("error: {e}");
        }
    }
    Ok(if report.errors.is_empty() && report.messages > 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// One consumer: connects, subscribes, reads until the stream goes quiet or `limit` messages;
/// returns what it read and when its last chunk came, in seconds since it subscribed.
async fn read_one(
    config: StreamConfig,
    stream: &str,
    j: u32,
    limit: Option<u64>,
    timeout: Duration,
    idle: Duration,
) -> ((Read, f64), anyhow::Result<()>) {
    let open = async {
        let client = StreamClient::connect(&config, &format!("pigeon-bench reader {j}")).await?;
        super::StreamConsumer::open(client.conn, stream, config.offset, config.credit).await
    };
    let mut consumer = match tokio::time::timeout(timeout, open).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return ((Read::default(), 0.0), Err(e)),
        Err(_) => {
            let e = anyhow::anyhow!("subscribing to {stream}: no answer within {timeout:?}");
            return ((Read::default(), 0.0), Err(e));
        }
    };
    let start = Instant::now();
    let mut last = Duration::ZERO;
    let result = async {
        loop {
            // Until the first chunk the broker may take the run's timeout to find the offset.
            let wait = if consumer.counts.chunks == 0 {
                timeout
            } else {
                idle
            };
            match tokio::time::timeout(wait, consumer.next_chunk()).await {
                Ok(Ok(Some(_))) => {
                    last = start.elapsed();
                    if limit.is_some_and(|n| consumer.counts.records >= n) {
                        break;
                    }
                }
                Ok(Ok(None)) => anyhow::bail!("the stream was deleted"),
                Ok(Err(e)) => return Err(e),
                Err(_) if consumer.counts.chunks == 0 => {
                    anyhow::bail!("no chunk within {wait:?}: is the stream empty?")
                }
                Err(_) => break,
            }
        }
        anyhow::Ok(())
    }
    .await;
    let counts = consumer.counts;
    let _ = tokio::time::timeout(timeout, crate::client::Consumer::close(consumer)).await;
    let read = Read {
        chunks: counts.chunks,
        messages: counts.records,
        bytes: counts.bytes,
        seconds: (last.as_secs_f64() * 1000.0).round() / 1000.0,
    };
    ((read, last.as_secs_f64()), result)
}
