//! Prometheus' text exposition format (version 0.0.4), written in chunks.
//!
//! A scrape is written on a blocking thread into a buffer that goes to the HTTP body each time
//! it passes [`CHUNK`] bytes (through a bounded channel: the writer waits while the client
//! reads), so a per-object scrape of 100,000 queues (tens of megabytes of text) never sits in
//! memory whole. A client that hangs up stops the writing at the next chunk.

use bytes::Bytes;
use std::fmt::Write;
use tokio::sync::mpsc;

/// Bytes written before a chunk goes to the client.
pub(crate) const CHUNK: usize = 64 * 1024;

/// Chunks written ahead of the client at most: the scrape's memory is this many chunks.
pub(crate) const CHUNKS_AHEAD: usize = 4;

/// Writes families and samples.
pub struct Exposition {
    buf: String,
    prefix: String,
    /// Where full chunks go; `None` keeps everything in `buf` (tests).
    sink: Option<mpsc::Sender<Bytes>>,
    /// The client went away: nothing more is worth writing.
    gone: bool,
}

/// The kind of a family (`# TYPE`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Untyped,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Untyped => "untyped",
            Kind::Histogram => "histogram",
        }
    }
}

/// Whose name a family carries: RabbitMQ's (under the configurable prefix) or Pigeon's own
/// (`pigeon_`, for what RabbitMQ has no metric for).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    RabbitMq,
    Pigeon,
}

impl Exposition {
    /// An exposition kept whole in memory, whose RabbitMQ names start with `prefix`.
    pub fn new(prefix: &str) -> Exposition {
        Exposition {
            buf: String::with_capacity(16 * 1024),
            prefix: prefix.to_string(),
            sink: None,
            gone: false,
        }
    }

    /// An exposition sent to `sink` in chunks.
    pub(crate) fn streaming(prefix: &str, sink: mpsc::Sender<Bytes>) -> Exposition {
        Exposition {
            buf: String::with_capacity(CHUNK + 4096),
            prefix: prefix.to_string(),
            sink: Some(sink),
            gone: false,
        }
    }

    /// The text (of an exposition kept in memory).
    pub fn into_string(self) -> String {
        self.buf
    }

    /// Sends what is left (of a streaming exposition).
    pub(crate) fn finish(mut self) {
        self.flush();
    }

    /// True when the client has gone away.
    pub(crate) fn gone(&self) -> bool {
        self.gone
    }

    fn flush(&mut self) {
        let Some(sink) = &self.sink else {
            return;
        };
        if self.gone || self.buf.is_empty() {
            self.buf.clear();
            return;
        }
        let chunk = std::mem::replace(&mut self.buf, String::with_capacity(CHUNK + 4096));
        if sink.blocking_send(Bytes::from(chunk.into_bytes())).is_err() {
            self.gone = true;
        }
    }

    /// Starts a family; returns its full name.
    pub(crate) fn family(&mut self, owner: Owner, name: &str, kind: Kind, help: &str) -> String {
        let full = match owner {
            Owner::RabbitMq => format!("{}_{name}", self.prefix),
            Owner::Pigeon => format!("pigeon_{name}"),
        };
        let _ = writeln!(self.buf, "# HELP {full} {help}");
        let _ = writeln!(self.buf, "# TYPE {full} {}", kind.as_str());
        full
    }

    /// One sample.
    pub(crate) fn sample(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        value: impl std::fmt::Display,
    ) {
        self.buf.push_str(name);
        if !labels.is_empty() {
            self.buf.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.buf.push(',');
                }
                self.buf.push_str(k);
                self.buf.push_str("=\"");
                escape_into(&mut self.buf, v);
                self.buf.push('"');
            }
            self.buf.push('}');
        }
        let _ = writeln!(self.buf, " {value}");
        if self.buf.len() >= CHUNK {
            self.flush();
        }
    }

    /// A family with one unlabelled sample.
    pub(crate) fn single(
        &mut self,
        owner: Owner,
        name: &str,
        kind: Kind,
        help: &str,
        value: impl std::fmt::Display,
    ) {
        let full = self.family(owner, name, kind, help);
        self.sample(&full, &[], value);
    }

    /// The samples of one histogram series: cumulative `_bucket`s over `counts` (one per
    /// `le`, the last `+Inf`), `_sum` and `_count`.
    pub(crate) fn histogram_series(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        le: &[&str],
        counts: &[u64],
        sum: impl std::fmt::Display,
    ) {
        let bucket = format!("{name}_bucket");
        let mut with_le: Vec<(&str, &str)> = labels.to_vec();
        with_le.push(("le", ""));
        let mut total = 0;
        for (bound, n) in le.iter().zip(counts) {
            total += n;
            if let Some(last) = with_le.last_mut() {
                last.1 = bound;
            }
            self.sample(&bucket, &with_le, total);
        }
        self.sample(&format!("{name}_sum"), labels, sum);
        self.sample(&format!("{name}_count"), labels, total);
    }
}

/// Label values escape `\`, `"` and newlines (text format 0.0.4).
fn escape_into(buf: &mut String, v: &str) {
    // Most names need no escaping: one copy.
    if !v.contains(['\\', '"', '\n']) {
        buf.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '"' => buf.push_str("\\\""),
            '\n' => buf.push_str("\\n"),
            c => buf.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::new("rabbitmq");
        e.sample("m", &[("queue", "a\"b\\c\nd")], 1);
        assert_eq!(e.into_string(), "m{queue=\"a\\\"b\\\\c\\nd\"} 1\n");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut e = Exposition::new("rabbitmq");
        e.histogram_series("h", &[("p", "x")], &["1.0", "+Inf"], &[2, 3], 7);
        assert_eq!(
            e.into_string(),
            "h_bucket{p=\"x\",le=\"1.0\"} 2\nh_bucket{p=\"x\",le=\"+Inf\"} 5\n\
             h_sum{p=\"x\"} 7\nh_count{p=\"x\"} 5\n"
        );
    }

    #[test]
    fn a_streaming_exposition_sends_chunks_and_stops_when_the_client_is_gone() {
        let (tx, mut rx) = mpsc::channel(CHUNKS_AHEAD);
        let mut e = Exposition::streaming("rabbitmq", tx);
        let n = e.family(Owner::RabbitMq, "queue_messages", Kind::Gauge, "help");
        let mut i = 0;
        while rx.is_empty() {
            e.sample(&n, &[("queue", &format!("q{i}"))], i);
            i += 1;
        }
        let chunk = rx.try_recv().expect("a chunk");
        assert!(chunk.len() >= CHUNK);
        drop(rx);
        for _ in 0..CHUNK {
            e.sample(&n, &[("queue", "more")], 1);
        }
        assert!(e.gone());
        e.finish();
    }
}
