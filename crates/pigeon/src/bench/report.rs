//! The bench report: computed once from the run's outcome, printed as text or as JSON.

use super::args::{BenchArgs, Until};
use super::control::{Ending, Outcome};
use super::cpu::CpuTime;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// The results of one run. Absent (`null`) fields did not apply: no consumers, no confirms, or no
/// `/proc` to read CPU time from.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The broker, password redacted.
    pub url: String,
    /// The flags of the run.
    pub settings: Settings,
    /// Why the run ended.
    pub ending: Ending,
    /// Messages handed to the client library.
    pub published: u64,
    /// `published` over the time from the start to the last publish.
    pub published_per_s: f64,
    /// Confirms received (with --confirm).
    pub confirmed: Option<u64>,
    /// Of those, nacks.
    pub nacked: Option<u64>,
    /// Deliveries, duplicates included.
    pub consumed: Option<u64>,
    /// `consumed` over the time from the start to the last delivery.
    pub consumed_per_s: Option<f64>,
    /// End-to-end latency, publish call to delivery, in microseconds.
    pub latency_us: Option<Latency>,
    /// Published messages never delivered.
    pub lost: Option<u64>,
    /// Deliveries of a message already delivered.
    pub duplicates: Option<u64>,
    /// Deliveries that did not carry a bench stamp.
    pub malformed: Option<u64>,
    /// CPU time of the bench process itself.
    pub bench_cpu: Option<Cpu>,
    /// Wall time of the whole run, connections and cleanup included.
    pub wall_s: f64,
    /// What went wrong.
    pub errors: Vec<String>,
}

/// The run's flags, echoed into the report.
#[derive(Debug, Serialize)]
pub struct Settings {
    producers: u32,
    consumers: u32,
    queues: u32,
    size: u32,
    duration_s: Option<u64>,
    count: Option<u64>,
    confirm_window: Option<u32>,
    multi_ack_every: Option<u32>,
    prefetch: u16,
    persistent: bool,
    rate: u32,
}

/// Latency percentiles in microseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    samples: u64,
    p50: u64,
    p95: u64,
    p99: u64,
    max: u64,
    mean: f64,
}

/// CPU use of the bench process.
#[derive(Debug, Serialize)]
pub struct Cpu {
    user_s: f64,
    system_s: f64,
    /// (user + system) / wall time: 100 is one core busy all along.
    percent_of_one_core: f64,
}

impl Report {
    /// Builds the report of a run that took `wall` and used `cpu`.
    pub fn new(
        args: &BenchArgs,
        outcome: &Outcome,
        wall: Duration,
        cpu: Option<CpuTime>,
    ) -> Report {
        let secs = |ns: u64| ns as f64 / 1e9;
        let per_s = |n: u64, ns: u64| {
            if ns == 0 {
                0.0
            } else {
                round1(n as f64 / secs(ns))
            }
        };
        let published: u64 = outcome.sent.iter().sum();
        let tally = outcome.tally.as_ref();
        let (duration_s, count) = match args.until() {
            Until::Elapsed(d) => (Some(d.as_secs()), None),
            Until::Count(n) => (None, Some(n)),
        };
        Report {
            url: args.redacted_url(),
            settings: Settings {
                producers: args.producers,
                consumers: args.consumers,
                queues: args.queues,
                size: args.size,
                duration_s,
                count,
                confirm_window: args.confirm.then_some(args.confirm_window),
                multi_ack_every: args.ack.then_some(args.multi_ack_every),
                prefetch: args.prefetch,
                persistent: args.persistent,
                rate: args.rate,
            },
            ending: outcome.ending,
            published,
            published_per_s: per_s(published, outcome.publish_ns),
            confirmed: args.confirm.then_some(outcome.acked + outcome.nacked),
            nacked: args.confirm.then_some(outcome.nacked),
            consumed: tally.map(|t| t.received),
            consumed_per_s: tally.map(|t| per_s(t.received, t.last_ns)),
            latency_us: tally.filter(|t| !t.latency_us.is_empty()).map(|t| {
                let h = &t.latency_us;
                Latency {
                    samples: h.len(),
                    p50: h.value_at_quantile(0.50),
                    p95: h.value_at_quantile(0.95),
                    p99: h.value_at_quantile(0.99),
                    max: h.max(),
                    mean: round1(h.mean()),
                }
            }),
            lost: tally.map(|t| t.lost(&outcome.sent)),
            duplicates: tally.map(|t| t.duplicates),
            malformed: tally.map(|t| t.malformed),
            bench_cpu: cpu.map(|c| Cpu {
                user_s: round3(c.user.as_secs_f64()),
                system_s: round3(c.system.as_secs_f64()),
                percent_of_one_core: round1(100.0 * c.total().as_secs_f64() / wall.as_secs_f64()),
            }),
            wall_s: round3(wall.as_secs_f64()),
            errors: outcome.errors.clone(),
        }
    }

    /// True when the run completed without errors and every message arrived exactly once.
    pub fn passed(&self) -> bool {
        self.errors.is_empty()
            && self.ending == Ending::Completed
            && self.lost.unwrap_or(0) == 0
            && self.duplicates.unwrap_or(0) == 0
            && self.malformed.unwrap_or(0) == 0
    }

    /// The report as one line of JSON.
    pub fn to_json(&self) -> String {
        // Plain numbers, strings and options: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.settings;
        writeln!(f, "pigeon bench against {}", self.url)?;
        let until = match (s.duration_s, s.count) {
            (Some(d), _) => format!("{d} s"),
            (None, Some(n)) => format!("{n} msgs per producer"),
            (None, None) => String::new(),
        };
        let confirm = s
            .confirm_window
            .map_or("no confirms".into(), |w| format!("confirms (window {w})"));
        let ack = s
            .multi_ack_every
            .map_or("auto-ack".into(), |k| format!("manual ack every {k}"));
        writeln!(
            f,
            "  {} producers, {} consumers, {} queues, {} B, {until}, {confirm}, {ack}, prefetch {}, {}, rate {}",
            s.producers,
            s.consumers,
            s.queues,
            s.size,
            s.prefetch,
            if s.persistent { "persistent" } else { "transient" },
            if s.rate == 0 { "unlimited".into() } else { format!("{}/s", s.rate) },
        )?;
        write!(
            f,
            "  published  {:>10} msgs  {:>11.1} msg/s",
            self.published, self.published_per_s
        )?;
        if let (Some(c), Some(n)) = (self.confirmed, self.nacked) {
            write!(f, "  (confirmed {c}, nacked {n})")?;
        }
        writeln!(f)?;
        if let (Some(c), Some(r)) = (self.consumed, self.consumed_per_s) {
            writeln!(f, "  consumed   {c:>10} msgs  {r:>11.1} msg/s")?;
        }
        if let Some(l) = &self.latency_us {
            writeln!(
                f,
                "  latency    p50 {} us  p95 {} us  p99 {} us  max {} us  (mean {:.1} us, {} samples)",
                l.p50, l.p95, l.p99, l.max, l.mean, l.samples
            )?;
        }
        if let (Some(lost), Some(dup)) = (self.lost, self.duplicates) {
            write!(f, "  lost {lost}  duplicates {dup}")?;
            match self.malformed {
                Some(m) if m > 0 => writeln!(f, "  malformed {m}")?,
                _ => writeln!(f)?,
            }
        }
        if let Some(c) = &self.bench_cpu {
            writeln!(
                f,
                "  bench cpu  user {:.2} s  system {:.2} s  = {:.0}% of one core over {:.1} s",
                c.user_s, c.system_s, c.percent_of_one_core, self.wall_s
            )?;
        }
        write!(
            f,
            "  ended: {}",
            match self.ending {
                Ending::Completed => "completed",
                Ending::Interrupted => "interrupted",
                Ending::Stalled => "stalled (nothing moved for --timeout)",
                Ending::Failed => "failed",
            }
        )?;
        for e in &self.errors {
            write!(f, "\n  error: {e}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::bench::stamp::Stamp;
    use crate::bench::tally::Tally;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn outcome_with(received: &[u64], sent: u64) -> Outcome {
        let mut tally = Tally::new(1);
        for &seq in received {
            let mut body = [0; Stamp::LEN];
            Stamp {
                sent_ns: 0,
                producer: 0,
                seq,
            }
            .write_to(&mut body);
            tally.record(&body, 2_000_000_000);
        }
        Outcome {
            sent: vec![sent],
            acked: 0,
            nacked: 0,
            publish_ns: 1_000_000_000,
            tally: Some(tally),
            ending: Ending::Completed,
            errors: vec![],
        }
    }

    fn report(outcome: &Outcome) -> Report {
        let args = Wrapper::parse_from(["bench", "--count", "3"]).args;
        Report::new(&args, outcome, Duration::from_secs(2), None)
    }

    #[test]
    fn every_message_once_passes() {
        let r = report(&outcome_with(&[0, 1, 2], 3));
        assert!(r.passed());
        assert_eq!(r.published_per_s, 3.0);
        assert_eq!(r.consumed_per_s, Some(1.5));
    }

    #[test]
    fn a_lost_or_repeated_message_fails_and_shows_in_json() {
        let lost = report(&outcome_with(&[0, 2], 3));
        assert!(!lost.passed());
        let json: serde_json::Value = serde_json::from_str(&lost.to_json()).unwrap();
        assert_eq!(json["lost"], 1);
        let max = json["latency_us"]["max"].as_u64().unwrap();
        assert!(
            (2_000_000..=2_002_000).contains(&max),
            "2 s in microseconds, 3 digits: {max}"
        );

        let dup = report(&outcome_with(&[0, 1, 1, 2], 3));
        assert!(!dup.passed());
        assert_eq!(dup.duplicates, Some(1));
    }
}
