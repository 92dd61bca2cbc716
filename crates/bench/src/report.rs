//! The bench report: computed once from the run's outcome, printed as text or as JSON.

use super::control::{AckGap, Ending, Outcome};
use super::cpu::CpuTime;
use super::tally::Sharing;
use hdrhistogram::Histogram;
use serde::Serialize;
use std::fmt;
use std::time::Duration;

/// The results of one run. Absent (`null`) fields did not apply: no consumers, no confirms, or no
/// `/proc` to read CPU time from.
#[derive(Debug, Serialize)]
pub struct Report {
    /// `amqp`, `mqtt` or `cross` (MQTT publishers, AMQP consumers).
    pub protocol: &'static str,
    /// The client inside the bench: `raw` (its own) or `lapin`.
    pub client: &'static str,
    /// The broker, password redacted.
    pub url: String,
    /// The flags of the run.
    pub settings: Settings,
    /// Why the run ended.
    pub ending: Ending,
    /// Messages handed to the client.
    pub published: u64,
    /// `published` over the time from the start to the last publish.
    pub published_per_s: f64,
    /// Confirms received (AMQP --confirm; MQTT PUBACK or PUBCOMP at QoS 1 or 2).
    pub confirmed: Option<u64>,
    /// `confirmed` over the time from the start to the last confirm.
    pub confirmed_per_s: Option<f64>,
    /// Of those, nacks (MQTT 5: reason codes 0x80 and above).
    pub nacked: Option<u64>,
    /// Confirm latency, publish call to the broker's confirm (AMQP basic.ack or basic.nack;
    /// MQTT PUBACK, or PUBCOMP at QoS 2) as the producer handled it, in microseconds; one
    /// sample per message confirmed, every producer's merged.
    pub confirm_latency_us: Option<Latency>,
    /// With confirms: the longest wait between two acks of one producer, which is how long
    /// confirms stopped while a broker failed over (a leader killed during the run).
    pub max_confirm_gap: Option<ConfirmGap>,
    /// How consumers share messages: `competing` (each message to one consumer), `fan-out`
    /// (MQTT: to every subscriber of its topic) or `broadcast` (AMQP fanout: to every queue).
    pub sharing: &'static str,
    /// Whether `consumed` and `consumed_per_s` count every copy of a fanned-out message (true
    /// with `fan-out` and `broadcast`: a message delivered to N consumers counts N times).
    pub consumed_counts_copies: bool,
    /// Deliveries, duplicates and fanned-out copies included.
    pub consumed: Option<u64>,
    /// Deliveries there should have been (one per message and consumer group that hears it:
    /// with MQTT, per subscriber of its topic; with an AMQP fanout, per queue).
    pub expected: Option<u64>,
    /// `consumed` over the time from the start to the last delivery.
    pub consumed_per_s: Option<f64>,
    /// End-to-end latency, publish call to delivery, in microseconds.
    pub latency_us: Option<Latency>,
    /// Deliveries that should have happened and did not (counted per subscriber with MQTT, per
    /// queue with an AMQP fanout, and added up).
    pub lost: Option<u64>,
    /// Deliveries of a message already delivered (to the same subscriber with MQTT, the same
    /// queue with an AMQP fanout).
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
#[serde(untagged)]
pub enum Settings {
    /// `pigeon bench`.
    Amqp(AmqpSettings),
    /// `pigeon bench mqtt`.
    Mqtt(MqttSettings),
    /// `pigeon bench cross`.
    Cross(CrossSettings),
    /// `pigeon bench stream`.
    Stream(crate::stream::StreamSettings),
}

/// The flags of an AMQP run.
#[derive(Debug, Serialize)]
pub struct AmqpSettings {
    /// Producers.
    pub producers: u32,
    /// Consumers.
    pub consumers: u32,
    /// Queues.
    pub queues: u32,
    /// Body size in bytes.
    pub size: u32,
    /// Seconds of publishing.
    pub duration_s: Option<u64>,
    /// Messages per producer.
    pub count: Option<u64>,
    /// With confirms: the window.
    pub confirm_window: Option<u32>,
    /// With manual acks: how many deliveries per ack.
    pub multi_ack_every: Option<u32>,
    /// basic.qos prefetch.
    pub prefetch: u16,
    /// Delivery mode 2 and durable queues.
    pub persistent: bool,
    /// Messages per second per producer; 0 unlimited.
    pub rate: u32,
    /// The exchange published to; empty for the default one.
    pub exchange: String,
    /// A fanout exchange of the run's own feeds every queue.
    pub fanout: bool,
}

/// The flags of a cross-protocol run.
#[derive(Debug, Serialize)]
pub struct CrossSettings {
    /// MQTT version of the publishers.
    pub mqtt_version: &'static str,
    /// QoS of the publishes.
    pub qos: u8,
    /// With QoS 1 or 2: the in-flight window per publisher.
    pub inflight: Option<u32>,
    /// MQTT publishers.
    pub publishers: u32,
    /// AMQP consumers.
    pub consumers: u32,
    /// Queues (one topic each).
    pub queues: u32,
    /// The exchange the queues are bound to.
    pub exchange: String,
    /// Payload size in bytes.
    pub size: u32,
    /// Seconds of publishing.
    pub duration_s: Option<u64>,
    /// Messages per publisher.
    pub count: Option<u64>,
    /// With manual acks: how many deliveries per ack.
    pub multi_ack_every: Option<u32>,
    /// basic.qos prefetch.
    pub prefetch: u16,
    /// Messages per second per publisher; 0 unlimited.
    pub rate: u32,
}

/// The flags of an MQTT run.
#[derive(Debug, Serialize)]
pub struct MqttSettings {
    /// `3.1.1` or `5`.
    pub mqtt_version: &'static str,
    /// QoS of publishes and subscriptions.
    pub qos: u8,
    /// With QoS 1 or 2: the in-flight window per publisher.
    pub inflight: Option<u32>,
    /// Publishers.
    pub publishers: u32,
    /// Subscribers.
    pub subscribers: u32,
    /// Topics.
    pub topics: u32,
    /// Payload size in bytes.
    pub size: u32,
    /// Seconds of publishing.
    pub duration_s: Option<u64>,
    /// Messages per publisher.
    pub count: Option<u64>,
    /// Messages per second per publisher; 0 unlimited.
    pub rate: u32,
}

/// What the report says about the run besides its outcome.
#[derive(Debug)]
pub struct RunInfo {
    /// `amqp` or `mqtt`.
    pub protocol: &'static str,
    /// `raw` or `lapin`.
    pub client: &'static str,
    /// The broker, password redacted.
    pub url: String,
    /// The flags.
    pub settings: Settings,
    /// Whether producers counted confirms.
    pub confirm: bool,
    /// How consumers share messages.
    pub sharing: Sharing,
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

/// The longest wait between two acks of one producer.
#[derive(Debug, Serialize)]
pub struct ConfirmGap {
    /// Its length in milliseconds.
    pub ms: f64,
    /// When it began (the ack before it), Unix time in milliseconds.
    pub from_unix_ms: u64,
    /// When it ended (the first ack after it), Unix time in milliseconds.
    pub to_unix_ms: u64,
}

impl ConfirmGap {
    fn of(gap: AckGap, epoch_unix_ms: u64) -> ConfirmGap {
        let to = epoch_unix_ms + gap.end_ns / 1_000_000;
        ConfirmGap {
            ms: round1(gap.gap_ns as f64 / 1e6),
            from_unix_ms: to.saturating_sub(gap.gap_ns / 1_000_000),
            to_unix_ms: to,
        }
    }
}

/// CPU use of the bench process.
#[derive(Debug, Serialize)]
pub struct Cpu {
    user_s: f64,
    system_s: f64,
    /// (user + system) / wall time: 100 is one core busy all along.
    percent_of_one_core: f64,
}

impl Latency {
    /// The summary of a histogram in microseconds; `None` when it is empty.
    fn of(h: &Histogram<u64>) -> Option<Latency> {
        (!h.is_empty()).then(|| Latency {
            samples: h.len(),
            p50: h.value_at_quantile(0.50),
            p95: h.value_at_quantile(0.95),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
            mean: round1(h.mean()),
        })
    }

    /// `p50 … us  p95 … us  p99 … us  max … us  (mean … us, … samples)`.
    fn describe(&self) -> String {
        format!(
            "p50 {} us  p95 {} us  p99 {} us  max {} us  (mean {:.1} us, {} samples)",
            self.p50, self.p95, self.p99, self.max, self.mean, self.samples
        )
    }
}

impl Report {
    /// Builds the report of a run that took `wall` and used `cpu`.
    pub fn new(info: RunInfo, outcome: &Outcome, wall: Duration, cpu: Option<CpuTime>) -> Report {
        let secs = |ns: u64| ns as f64 / 1e9;
        let per_s = |n: u64, ns: u64| {
            if ns == 0 {
                0.0
            } else {
                round1(n as f64 / secs(ns))
            }
        };
        let published: u64 = outcome.sent.iter().sum();
        let delivered = outcome.delivered.as_ref();
        Report {
            protocol: info.protocol,
            client: info.client,
            url: info.url,
            settings: info.settings,
            ending: outcome.ending,
            sharing: match info.sharing {
                Sharing::Competing => "competing",
                Sharing::FanOut { .. } => "fan-out",
                Sharing::Broadcast { .. } => "broadcast",
            },
            consumed_counts_copies: info.sharing.fans_out(),
            published,
            published_per_s: per_s(published, outcome.publish_ns),
            confirmed: info.confirm.then_some(outcome.acked + outcome.nacked),
            confirmed_per_s: info
                .confirm
                .then(|| per_s(outcome.acked + outcome.nacked, outcome.confirm_ns)),
            nacked: info.confirm.then_some(outcome.nacked),
            confirm_latency_us: outcome
                .confirm_latency_us
                .as_ref()
                .filter(|_| info.confirm)
                .and_then(Latency::of),
            max_confirm_gap: outcome
                .max_ack_gap
                .filter(|_| info.confirm)
                .map(|g| ConfirmGap::of(g, outcome.epoch_unix_ms)),
            consumed: delivered.map(|d| d.received),
            expected: delivered.map(|d| d.expected),
            consumed_per_s: delivered.map(|d| per_s(d.received, d.last_ns)),
            latency_us: delivered.and_then(|d| Latency::of(&d.latency_us)),
            lost: delivered.map(|d| d.lost),
            duplicates: delivered.map(|d| d.duplicates),
            malformed: delivered.map(|d| d.malformed),
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

/// `10 s` or `1000 msgs per producer`.
fn until_text(duration_s: Option<u64>, count: Option<u64>, who: &str) -> String {
    match (duration_s, count) {
        (Some(d), _) => format!("{d} s"),
        (None, Some(n)) => format!("{n} msgs per {who}"),
        (None, None) => String::new(),
    }
}

fn rate_text(rate: u32) -> String {
    if rate == 0 {
        "unlimited".into()
    } else {
        format!("{rate}/s")
    }
}

impl Settings {
    /// The flags, in one line.
    fn describe(&self) -> String {
        match self {
            Settings::Amqp(s) => {
                let confirm = s
                    .confirm_window
                    .map_or("no confirms".into(), |w| format!("confirms (window {w})"));
                let ack = s
                    .multi_ack_every
                    .map_or("auto-ack".into(), |k| format!("manual ack every {k}"));
                let exchange = if s.fanout {
                    format!(", fanout exchange {} to every queue", s.exchange)
                } else if s.exchange.is_empty() {
                    String::new()
                } else {
                    format!(", through {}", s.exchange)
                };
                format!(
                    "{} producers, {} consumers, {} queues{exchange}, {} B, {}, {confirm}, {ack}, prefetch {}, {}, rate {}",
                    s.producers,
                    s.consumers,
                    s.queues,
                    s.size,
                    until_text(s.duration_s, s.count, "producer"),
                    s.prefetch,
                    if s.persistent { "persistent" } else { "transient" },
                    rate_text(s.rate),
                )
            }
            Settings::Mqtt(s) => {
                let window = s
                    .inflight
                    .map_or(String::new(), |k| format!(" (in-flight {k})"));
                format!(
                    "MQTT {}, QoS {}{window}, {} publishers, {} subscribers, {} topics, {} B, {}, rate {}",
                    s.mqtt_version,
                    s.qos,
                    s.publishers,
                    s.subscribers,
                    s.topics,
                    s.size,
                    until_text(s.duration_s, s.count, "publisher"),
                    rate_text(s.rate),
                )
            }
            Settings::Stream(s) => s.describe(),
            Settings::Cross(s) => {
                let window = s
                    .inflight
                    .map_or(String::new(), |k| format!(" (in-flight {k})"));
                let ack = s
                    .multi_ack_every
                    .map_or("auto-ack".into(), |k| format!("manual ack every {k}"));
                format!(
                    "MQTT {} QoS {}{window} publishers {} -> {} queues bound to {} -> {} AMQP consumers, {} B, {}, {ack}, prefetch {}, rate {}",
                    s.mqtt_version,
                    s.qos,
                    s.publishers,
                    s.queues,
                    s.exchange,
                    s.consumers,
                    s.size,
                    until_text(s.duration_s, s.count, "publisher"),
                    s.prefetch,
                    rate_text(s.rate),
                )
            }
        }
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
        writeln!(
            f,
            "pigeon bench against {} ({} client)",
            self.url, self.client
        )?;
        writeln!(f, "  {}", self.settings.describe())?;
        write!(
            f,
            "  published  {:>10} msgs  {:>11.1} msg/s",
            self.published, self.published_per_s
        )?;
        writeln!(f)?;
        if let (Some(c), Some(r), Some(n)) = (self.confirmed, self.confirmed_per_s, self.nacked) {
            writeln!(
                f,
                "  confirmed  {c:>10} msgs  {r:>11.1} msg/s  (nacked {n})"
            )?;
        }
        if let Some(l) = &self.confirm_latency_us {
            writeln!(f, "  confirms   {}", l.describe())?;
        }
        if let Some(g) = &self.max_confirm_gap {
            writeln!(f, "  longest wait between two acks {:.1} ms", g.ms)?;
        }
        if let (Some(c), Some(r)) = (self.consumed, self.consumed_per_s) {
            write!(f, "  consumed   {c:>10} msgs  {r:>11.1} msg/s")?;
            match self.expected {
                Some(e) if self.consumed_counts_copies => {
                    writeln!(f, "  (expected {e}: every copy counts)")?
                }
                Some(e) if e != self.published => writeln!(f, "  (expected {e})")?,
                _ => writeln!(f)?,
            }
        }
        if let Some(l) = &self.latency_us {
            writeln!(f, "  latency    {}", l.describe())?;
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
                Ending::Quiet => "deliveries stopped short of the expected count",
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
mod tests;
