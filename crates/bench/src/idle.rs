//! `pigeon bench idle`: open many connections that do nothing, hold them, and report how many
//! the broker took and, given its process id, how much resident memory each one cost it.
//!
//! An MQTT connection sends CONNECT (clean session, keep-alive 60 by default) and then only the
//! PINGREQ the keep-alive asks for; an AMQP connection logs in, opens one channel, and is silent
//! (heartbeats off). Connections are set up `--concurrency` at a time; each then waits in a task
//! of its own until the hold is over or the broker drops it.
//!
//! The bench needs a file descriptor per connection: it raises its soft RLIMIT_NOFILE to what the
//! run needs (up to the hard limit, or beyond when the process may) and says so; when that is not
//! enough it says which `ulimit -n` to run. Beyond about 28,000 connections to one address, a
//! single source address runs out of ephemeral ports: `--source-addrs`, or the default for
//! loopback brokers, spreads them over 127.0.0.1, 127.0.0.2, ...

use super::amqp_raw::Conn;
use super::args::{IdleArgs, Protocol};
use super::mqtt::{MqttConfig, Session};
use super::net::{self, BrokerUrl};
use super::tls::TlsClient;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tracing::{info, warn};

/// Descriptors the bench keeps for itself beyond one per connection.
const SPARE_FDS: u64 = 64;
/// Connections per source address before the default spreads them over more.
const PER_SOURCE: u32 = 20_000;
/// Read buffer of an idle connection: it only ever reads PINGRESP or a close.
const IDLE_READ: usize = 256;

/// Runs `pigeon bench idle`; fails unless every connection opened and lasted the hold.
pub async fn run(args: &IdleArgs) -> anyhow::Result<ExitCode> {
    let (url, schemes) = match args.protocol {
        Protocol::Mqtt => (
            args.tls.url(&args.url(), "mqtt", "mqtts"),
            net::MQTT_SCHEMES,
        ),
        Protocol::Amqp => (
            args.tls.url(&args.url(), "amqp", "amqps"),
            net::AMQP_SCHEMES,
        ),
    };
    let target = BrokerUrl::parse(&url, schemes)?;
    let tls = args.tls.client(target.is_tls())?;
    let fds = FdLimit::ensure(u64::from(args.connections) + SPARE_FDS);
    if let Some(warning) = fds.warning() {
        warn!("{warning}");
    }
    let sources = sources(args, &target).await?;
    let broker = args.broker_pid.map(|pid| BrokerMemory {
        pid,
        open_files_limit: open_files_limit(pid),
        ..BrokerMemory::default()
    });
    let mut report = IdleReport {
        protocol: match args.protocol {
            Protocol::Mqtt => "mqtt",
            Protocol::Amqp => "amqp",
        },
        url: net::redact_password(&url),
        requested: args.connections,
        opened: 0,
        failed: 0,
        open_s: 0.0,
        held_s: 0.0,
        dropped_during_hold: 0,
        sources: sources.iter().map(ToString::to_string).collect(),
        fd_limit: fds,
        broker,
        errors: BTreeMap::new(),
    };
    if let Some(b) = &mut report.broker {
        b.rss_before_kib = rss_kib(b.pid);
        b.anon_before_kib = anon_kib(b.pid);
        if b.rss_before_kib.is_none() {
            warn!("cannot read /proc/{}/status: no memory figures", b.pid);
        }
    }

    let (stop, stopped) = watch::channel(false);
    let (results, mut opened) = mpsc::unbounded_channel();
    let setup = Arc::new(Semaphore::new(args.concurrency as usize));
    let mut tasks = JoinSet::new();
    let mqtt = MqttConfig {
        url: target.clone(),
        version: args.mqtt_version.wire(),
        qos: mqtt_wire::QoS::AtMostOnce,
        keep_alive: args.keep_alive,
        run: super::run_id(),
        tls: tls.clone(),
    };
    let timeout = Duration::from_secs(args.timeout);
    let started = Instant::now();
    // With --settle: half the connections, a pause, the broker's RSS, then the other half.
    let first = if args.settle > 0 {
        args.connections / 2
    } else {
        args.connections
    };
    let mut settled = Duration::ZERO;
    for (from, to) in [(0, first), (first, args.connections)] {
        if from == to {
            continue;
        }
        if from > 0 {
            info!(
                "{} of {} connections open; {} s before the other half",
                report.opened, args.connections, args.settle
            );
            let pause = Instant::now();
            tokio::time::sleep(Duration::from_secs(args.settle)).await;
            if let Some(b) = &mut report.broker {
                b.rss_half_open_kib = rss_kib(b.pid);
                b.half_opened = Some(report.opened);
            }
            settled = pause.elapsed();
        }
        for i in from..to {
            let source = (!sources.is_empty()).then(|| sources[i as usize % sources.len()]);
            let idle = Idle {
                protocol: args.protocol,
                url: url.clone(),
                tls: tls.clone(),
                mqtt: mqtt.clone(),
                id: i,
                source,
                timeout,
            };
            let (setup, results, stopped) = (setup.clone(), results.clone(), stopped.clone());
            tasks.spawn(idle.run(setup, results, stopped));
        }
        let mut last_log = Instant::now();
        while report.opened + report.failed < to {
            let Some(result) = opened.recv().await else {
                break;
            };
            match result {
                Ok(()) => report.opened += 1,
                Err(e) => {
                    report.failed += 1;
                    *report.errors.entry(e).or_insert(0) += 1;
                }
            }
            if last_log.elapsed() >= Duration::from_secs(1) {
                info!(
                    "{} open, {} failed of {}",
                    report.opened, report.failed, args.connections
                );
                last_log = Instant::now();
            }
        }
    }
    drop(results);
    report.open_s = round3((started.elapsed() - settled).as_secs_f64());
    info!(
        "{} of {} connections open after {:.1} s ({} failed); holding them {} s",
        report.opened, args.connections, report.open_s, report.failed, args.hold
    );
    if let Some(b) = &mut report.broker {
        b.rss_all_open_kib = rss_kib(b.pid);
    }

    let held = Instant::now();
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(args.hold)) => {}
        _ = tokio::signal::ctrl_c() => info!("interrupted: closing the connections"),
    }
    report.held_s = round3(held.elapsed().as_secs_f64());
    if let Some(b) = &mut report.broker {
        b.rss_end_of_hold_kib = rss_kib(b.pid);
        b.anon_end_of_hold_kib = anon_kib(b.pid);
        let per = |from: Option<u64>, to: Option<u64>, n: u32| match (from, to) {
            (Some(from), Some(to)) if n > 0 => {
                Some(round3((to as f64 - from as f64) / f64::from(n)))
            }
            _ => None,
        };
        b.per_connection_kib = per(b.rss_before_kib, b.rss_all_open_kib, report.opened);
        b.per_connection_end_of_hold_kib =
            per(b.rss_before_kib, b.rss_end_of_hold_kib, report.opened);
        b.anon_per_connection_end_of_hold_kib =
            per(b.anon_before_kib, b.anon_end_of_hold_kib, report.opened);
        b.slope_kib = b.half_opened.and_then(|half| {
            per(
                b.rss_half_open_kib,
                b.rss_end_of_hold_kib,
                report.opened.saturating_sub(half),
            )
        });
    }
    let _ = stop.send(true);
    let closing = Instant::now();
    while let Some(joined) = tasks.join_next().await {
        if let Ok(Held::Dropped(why)) = joined {
            report.dropped_during_hold += 1;
            *report
                .errors
                .entry(format!("during the hold: {why}"))
                .or_insert(0) += 1;
        }
    }
    info!("closed in {:.1} s", closing.elapsed().as_secs_f64());

    if args.json {
        println!(
            "{}",
            serde_json::to_string(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
        );
    } else {
        println!("{report}");
    }
    Ok(
        if report.opened == args.connections && report.dropped_during_hold == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        },
    )
}

/// The local addresses to connect from; empty for the system's choice.
async fn sources(args: &IdleArgs, target: &BrokerUrl) -> anyhow::Result<Vec<IpAddr>> {
    if !args.source_addrs.is_empty() {
        return Ok(args.source_addrs.clone());
    }
    if args.connections <= PER_SOURCE {
        return Ok(Vec::new());
    }
    let addr = net::resolve(&target.host, target.port).await?;
    if !addr.ip().is_loopback() || !addr.is_ipv4() {
        warn!(
            "{} connections from one address may exhaust its ephemeral ports; \
             --source-addrs spreads them",
            args.connections
        );
        return Ok(Vec::new());
    }
    let n = args.connections.div_ceil(PER_SOURCE).min(254);
    Ok((1..=n)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i as u8)))
        .collect())
}

/// One idle connection's recipe.
struct Idle {
    protocol: Protocol,
    url: String,
    tls: Option<TlsClient>,
    mqtt: MqttConfig,
    id: u32,
    source: Option<IpAddr>,
    timeout: Duration,
}

/// How an idle connection ended.
enum Held {
    /// It never opened (reported on the results channel already).
    NeverOpened,
    /// It lasted until the hold was over.
    Lasted,
    /// The broker or the network ended it during the hold.
    Dropped(String),
}

/// An open idle connection of either protocol.
enum Open {
    Mqtt(Session),
    Amqp(Conn),
}

impl Idle {
    async fn open(&self) -> anyhow::Result<Open> {
        let name = format!("pigeon-bench idle {}", self.id);
        Ok(match self.protocol {
            Protocol::Mqtt => {
                let client_id = format!("pigeon-bench-idle-{}-{}", self.id, self.mqtt.run);
                Open::Mqtt(Session::open(&self.mqtt, &client_id, self.source, IDLE_READ).await?)
            }
            Protocol::Amqp => {
                let mut conn =
                    Conn::open(&self.url, &name, self.source, IDLE_READ, self.tls.as_ref()).await?;
                conn.open_first_channel().await?;
                Open::Amqp(conn)
            }
        })
    }

    /// Opens the connection (holding a setup permit), reports how that went, then holds it until
    /// `stop` says so and closes it politely.
    async fn run(
        self,
        setup: Arc<Semaphore>,
        results: mpsc::UnboundedSender<Result<(), String>>,
        mut stop: watch::Receiver<bool>,
    ) -> Held {
        let opened = {
            let _permit = setup.acquire().await;
            match tokio::time::timeout(self.timeout, self.open()).await {
                Ok(Ok(open)) => Ok(open),
                Ok(Err(e)) => Err(crate::describe(&e)),
                Err(_) => Err(format!("no connection within {} s", self.timeout.as_secs())),
            }
        };
        let mut open = match opened {
            Ok(open) => {
                let _ = results.send(Ok(()));
                open
            }
            Err(e) => {
                let _ = results.send(Err(e));
                return Held::NeverOpened;
            }
        };
        let stop = stop.wait_for(|s| *s);
        let held = match &mut open {
            Open::Mqtt(session) => tokio::select! {
                _ = stop => Held::Lasted,
                e = session.hold() => Held::Dropped(crate::describe(&e)),
            },
            Open::Amqp(conn) => tokio::select! {
                _ = stop => Held::Lasted,
                e = conn.hold() => Held::Dropped(crate::describe(&e)),
            },
        };
        if matches!(held, Held::Lasted) {
            let close = async {
                match open {
                    Open::Mqtt(session) => session.disconnect().await,
                    Open::Amqp(conn) => conn.close().await,
                }
            };
            let _ = tokio::time::timeout(self.timeout, close).await;
        }
        held
    }
}

/// The bench's open-files limit, and what it did about it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FdLimit {
    /// Descriptors the run needs.
    needed: u64,
    /// The soft limit found.
    soft_before: Option<u64>,
    /// The soft limit after raising it.
    soft: Option<u64>,
    /// The hard limit after raising it.
    hard: Option<u64>,
    /// Why raising failed, if it did.
    error: Option<String>,
}

impl FdLimit {
    /// Raises the soft limit to `needed` if it is lower: up to the hard limit, and past it when
    /// the process is allowed to (root).
    fn ensure(needed: u64) -> FdLimit {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let before = getrlimit(Resource::Nofile);
        let mut limit = FdLimit {
            needed,
            soft_before: before.current,
            soft: before.current,
            hard: before.maximum,
            error: None,
        };
        if before.current.is_none_or(|soft| soft >= needed) {
            return limit;
        }
        let hard = before.maximum.map_or(needed, |hard| hard.max(needed));
        let wanted = Rlimit {
            current: Some(needed),
            maximum: Some(hard),
        };
        if let Err(e) = setrlimit(Resource::Nofile, wanted) {
            // Not allowed past the hard limit: go as far as it.
            let capped = Rlimit {
                current: before.maximum.map(|h| h.min(needed)),
                maximum: before.maximum,
            };
            if let Err(e2) = setrlimit(Resource::Nofile, capped) {
                limit.error = Some(format!("{e2}"));
            } else {
                limit.error = Some(format!("cannot go past the hard limit: {e}"));
            }
        }
        let after = getrlimit(Resource::Nofile);
        limit.soft = after.current;
        limit.hard = after.maximum;
        limit
    }

    /// What to tell the user when the limit is too low.
    fn warning(&self) -> Option<String> {
        match self.soft {
            Some(soft) if soft < self.needed => Some(format!(
                "the open-files limit is {soft} (hard {}) but {} connections need about {}: \
                 only about {} can open; run `ulimit -n {}` (as root, or after raising the \
                 hard limit) first",
                self.hard.map_or("unlimited".into(), |h| h.to_string()),
                self.needed - SPARE_FDS,
                self.needed,
                soft.saturating_sub(SPARE_FDS),
                self.needed,
            )),
            _ => None,
        }
    }
}

/// The broker's resident memory (VmRSS) at three moments.
#[derive(Debug, Clone, Default, Serialize)]
struct BrokerMemory {
    pid: u32,
    /// The broker's own open-files limit (`Max open files` in /proc/PID/limits).
    open_files_limit: Option<String>,
    rss_before_kib: Option<u64>,
    rss_all_open_kib: Option<u64>,
    rss_end_of_hold_kib: Option<u64>,
    /// With `--settle`: VmRSS with the first half open, after the pause.
    rss_half_open_kib: Option<u64>,
    /// With `--settle`: the connections open then.
    half_opened: Option<u32>,
    /// (all open - before) / connections opened: when the last one opened, before most
    /// have been idle long enough to hibernate (MQTT).
    per_connection_kib: Option<f64>,
    /// (end of hold - before) / connections opened: what they cost once settled (idle MQTT
    /// connections hibernated), the figure docs/performance.md calls steady.
    per_connection_end_of_hold_kib: Option<f64>,
    /// RssAnon (the anonymous part of VmRSS: the heap, without the executable's pages) before
    /// and at the end of the hold.
    anon_before_kib: Option<u64>,
    anon_end_of_hold_kib: Option<u64>,
    /// (RssAnon end of hold - before) / connections opened. The executable's code pages that
    /// the first connections fault in (1.6 MB with 10,000 MQTT connections: a fixed cost, not
    /// one per connection) are in VmRSS, not here.
    anon_per_connection_end_of_hold_kib: Option<f64>,
    /// With `--settle`: (end of hold - half open) / the connections opened after the pause.
    /// The cost of one more idle connection, without what the broker maps anyway as it
    /// starts serving (its baseline moves with the build and the machine: ~0.3 KiB per
    /// connection at 10,000).
    slope_kib: Option<f64>,
}

/// VmRSS of process `pid`, in KiB.
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_rss(&status)
}

/// RssAnon of process `pid` (VmRSS without file-backed and shared pages), in KiB.
fn anon_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&status, "RssAnon:")
}

fn parse_rss(status: &str) -> Option<u64> {
    parse_status_kib(status, "VmRSS:")
}

fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The soft and hard `Max open files` of process `pid`.
fn open_files_limit(pid: u32) -> Option<String> {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut values = line.trim_start_matches("Max open files").split_whitespace();
    Some(format!("{} (hard {})", values.next()?, values.next()?))
}

/// The results of `pigeon bench idle`.
#[derive(Debug, Serialize)]
struct IdleReport {
    protocol: &'static str,
    url: String,
    requested: u32,
    opened: u32,
    failed: u32,
    /// Time to open them all.
    open_s: f64,
    held_s: f64,
    /// Connections that ended before the hold was over.
    dropped_during_hold: u32,
    /// Local addresses used (empty: the system's choice).
    sources: Vec<String>,
    fd_limit: FdLimit,
    broker: Option<BrokerMemory>,
    /// Error texts and how often each happened.
    errors: BTreeMap<String, u32>,
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl fmt::Display for IdleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "pigeon bench idle against {} ({})",
            self.url, self.protocol
        )?;
        writeln!(
            f,
            "  connections  {} requested  {} open  {} failed  in {:.1} s; held {:.1} s, {} dropped meanwhile",
            self.requested,
            self.opened,
            self.failed,
            self.open_s,
            self.held_s,
            self.dropped_during_hold
        )?;
        let l = &self.fd_limit;
        let show = |v: Option<u64>| v.map_or("unlimited".into(), |v| v.to_string());
        write!(
            f,
            "  bench open-files limit {} (hard {}), needed {}",
            show(l.soft),
            show(l.hard),
            l.needed
        )?;
        if l.soft != l.soft_before {
            write!(f, ", raised from {}", show(l.soft_before))?;
        }
        if let Some(warning) = l.warning() {
            write!(f, "\n  warning: {warning}")?;
        }
        writeln!(f)?;
        if !self.sources.is_empty() {
            writeln!(f, "  from {}", self.sources.join(", "))?;
        }
        if let Some(b) = &self.broker {
            let show = |v: Option<u64>| v.map_or("?".into(), mib);
            writeln!(
                f,
                "  broker pid {} VmRSS  before {}  all open {}  end of hold {}",
                b.pid,
                show(b.rss_before_kib),
                show(b.rss_all_open_kib),
                show(b.rss_end_of_hold_kib)
            )?;
            if let Some(per) = b.per_connection_kib {
                writeln!(f, "  broker memory per connection {per:.3} KiB (all open)")?;
            }
            if let Some(per) = b.per_connection_end_of_hold_kib {
                writeln!(
                    f,
                    "  broker memory per connection {per:.3} KiB (end of hold)"
                )?;
            }
            if let Some(per) = b.anon_per_connection_end_of_hold_kib {
                writeln!(
                    f,
                    "  broker anonymous memory per connection {per:.3} KiB (end of hold, RssAnon)"
                )?;
            }
            if let (Some(half), Some(slope)) = (b.rss_half_open_kib, b.slope_kib) {
                writeln!(
                    f,
                    "  broker VmRSS with half open {}; per connection of the second half {slope:.3} KiB",
                    mib(half)
                )?;
            }
            if let Some(limit) = &b.open_files_limit {
                writeln!(f, "  broker open-files limit {limit}")?;
            }
        }
        for (e, n) in &self.errors {
            writeln!(f, "  error ({n}x): {e}")?;
        }
        write!(
            f,
            "  ended: {}",
            if self.opened == self.requested && self.dropped_during_hold == 0 {
                "all connections opened and lasted"
            } else {
                "some connections failed"
            }
        )
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_kib() {
        let status = "Name:\tpigeon\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads:\t3\n";
        assert_eq!(parse_rss(status), Some(12_345));
        assert_eq!(parse_rss("Name:\tx\n"), None);
        let status = "VmRSS:\t   12345 kB\nRssAnon:\t    4567 kB\nRssFile:\t    7778 kB\n";
        assert_eq!(parse_status_kib(status, "RssAnon:"), Some(4567));
    }

    #[test]
    fn own_rss_and_limits_are_readable() {
        let pid = std::process::id();
        assert!(rss_kib(pid).is_some_and(|kib| kib > 0));
        assert!(open_files_limit(pid).is_some());
    }

    #[test]
    fn a_limit_already_high_enough_is_left_alone() {
        let limit = FdLimit::ensure(16);
        assert_eq!(limit.soft, limit.soft_before);
        assert!(limit.warning().is_none());
    }

    #[test]
    fn a_low_limit_is_explained() {
        let limit = FdLimit {
            needed: 10_064,
            soft_before: Some(1024),
            soft: Some(1024),
            hard: Some(4096),
            error: Some("EPERM".into()),
        };
        let w = limit.warning().unwrap_or_default();
        assert!(w.contains("ulimit -n 10064"), "{w}");
    }
}
