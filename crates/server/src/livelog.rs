//! The live log: the last [`CAPACITY`] log lines kept in memory, for the dashboard's log page
//! (`GET /api/pigeon/log?since=SEQ`, `http/dashboard/log.rs`).
//!
//! [`layer`] is a `tracing` layer the binary installs beside its stderr writer
//! (`crates/pigeon/src/logging.rs`), under the same filter, so the page shows what stderr
//! shows. Memory stays bounded: a ring of [`CAPACITY`] lines of at most [`MAX_LINE`] bytes
//! each; the oldest line goes when a new one comes. Every line gets a sequence number so a
//! poller asks only for what it has not seen, and can tell when it fell behind the ring.
//!
//! The ring is process-wide (a `static`): there is one global subscriber per process, and the
//! HTTP handler finds the ring without the binary handing it through the server's state. A
//! process that installs no layer (a library user, most tests) simply has an empty log.

use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::Layer;

/// How many lines the ring keeps.
pub const CAPACITY: usize = 1000;

/// The longest line kept, in bytes (longer ones are cut, with `…`).
pub const MAX_LINE: usize = 2048;

/// One log line.
#[derive(Debug, Clone)]
pub struct Line {
    /// Its sequence number: 1 for the process's first line, then one more per line.
    pub seq: u64,
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub level: &'static str,
    /// The module that logged it (`pigeon_server::amqp::connection`).
    pub target: String,
    /// The message, then the event's fields as `key=value`.
    pub text: String,
}

/// What a reader gets: the lines after the sequence number it asked for.
#[derive(Debug, Clone)]
pub struct Tail {
    /// The lines, oldest first.
    pub lines: Vec<Line>,
    /// The sequence number to ask from next time (the last line's, or the one asked for).
    pub last: u64,
    /// Lines after the one asked for that the ring no longer holds (the reader fell behind).
    pub missed: u64,
}

struct Ring {
    lines: VecDeque<Line>,
    last_seq: u64,
}

static RING: Mutex<Ring> = Mutex::new(Ring {
    lines: VecDeque::new(),
    last_seq: 0,
});

/// Adds a line (the layer calls it; anything else may too).
pub fn push(level: &'static str, target: &str, mut text: String) {
    if text.len() > MAX_LINE {
        let mut cut = MAX_LINE;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
        text.push('…');
    }
    let time_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut ring = RING.lock();
    ring.last_seq += 1;
    let line = Line {
        seq: ring.last_seq,
        time_ms,
        level,
        target: target.to_string(),
        text,
    };
    if ring.lines.len() >= CAPACITY {
        ring.lines.pop_front();
    }
    ring.lines.push_back(line);
}

/// The lines after `since` (0: every line held), at most `max` of them (the oldest first).
pub fn since(since: u64, max: usize) -> Tail {
    let ring = RING.lock();
    let first = ring.lines.front().map_or(ring.last_seq + 1, |l| l.seq);
    let missed = first.saturating_sub(since.saturating_add(1));
    let lines: Vec<Line> = ring
        .lines
        .iter()
        .filter(|l| l.seq > since)
        .take(max)
        .cloned()
        .collect();
    let last = lines.last().map_or(since.min(ring.last_seq), |l| l.seq);
    Tail {
        lines,
        last,
        missed,
    }
}

/// The `tracing` layer that feeds the ring.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveLog;

/// The layer to add to the process's subscriber.
pub fn layer() -> LiveLog {
    LiveLog
}

impl<S: Subscriber> Layer<S> for LiveLog {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = Fields::default();
        event.record(&mut fields);
        let mut text = fields.message;
        if !fields.rest.is_empty() {
            if !text.is_empty() {
                text.push(' ');
            }
            text.push_str(&fields.rest);
        }
        push(meta.level().as_str(), meta.target(), text);
    }
}

/// Collects an event's fields: the message apart, the rest as `key=value`.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Fields {
    fn separate(&mut self) {
        if !self.rest.is_empty() {
            self.rest.push(' ');
        }
    }
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.separate();
            let _ = write!(self.rest, "{}={value:?}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.separate();
            let _ = write!(self.rest, "{}={value:?}", field.name());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_lines_and_counts_what_a_slow_reader_missed() {
        let start = since(0, usize::MAX).last;
        for i in 0..CAPACITY + 10 {
            push("INFO", "test", format!("line {i}"));
        }
        let all = since(start, usize::MAX);
        assert_eq!(all.lines.len(), CAPACITY);
        assert!(all.missed >= 10);
        assert_eq!(all.lines.last().map(|l| l.text.as_str()), Some("line 1009"));
        let none = since(all.last, 10);
        assert!(none.lines.is_empty());
        assert_eq!(none.last, all.last);
        assert_eq!(none.missed, 0);
        push("WARN", "test", "x".repeat(MAX_LINE * 2));
        let long = since(all.last, 10);
        assert_eq!(long.lines.len(), 1);
        assert!(long.lines[0].text.len() <= MAX_LINE + '…'.len_utf8());
    }
}
