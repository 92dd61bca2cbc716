//! The flags of `pigeon bench stream`, named after RabbitMQ's stream PerfTest where one exists
//! (`-x`, `-y`, `-s`, `--max-inflight`... the PerfTest's `--confirms` is our `--max-inflight`,
//! `--sub-entry-size` our `--sub-entry`).

use super::{LoadArgs, Until};
use crate::stamp::Stamp;
use crate::tls::TlsArgs;
use clap::Args;
use std::str::FromStr;
use std::time::Duration;
use stream_wire::OffsetSpec;

/// Flags of `pigeon bench stream`.
#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    /// Broker to load, as a stream URI (the vhost is URL-encoded: `%2f` is `/`);
    /// `rabbitmq-stream+tls://` connects over TLS (port 5551 by default).
    #[arg(
        long,
        default_value = "rabbitmq-stream://guest:guest@localhost:5552/%2f"
    )]
    pub url: String,

    #[command(flatten)]
    pub tls: TlsArgs,

    /// The stream, created if absent and kept unless --delete. Without it the run creates
    /// `pigeon-bench-<run>` and deletes it at the end.
    #[arg(long, value_name = "NAME")]
    pub stream: Option<String>,

    /// Delete the stream at the end (always done for the run's own stream).
    #[arg(long)]
    pub delete: bool,

    /// Publishers, each its own connection (0: only read, see --offset).
    #[arg(long, short = 'x', visible_alias = "publishers", default_value_t = 1,
          value_name = "N",
          value_parser = clap::value_parser!(u32).range(0..=i64::from(u16::MAX)))]
    pub producers: u32,

    /// Consumers, each its own connection; every consumer reads every message.
    #[arg(
        long,
        short = 'y',
        visible_alias = "subscribers",
        default_value_t = 1,
        value_name = "N"
    )]
    pub consumers: u32,

    /// Message body size in bytes (sent as an AMQP 1.0 message with one data section); the
    /// first 16 carry the send time, producer and sequence.
    #[arg(long, short = 's', default_value_t = 16, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(Stamp::LEN as i64..))]
    pub size: u32,

    /// Publish for this many seconds (the default is 10 unless --count is given).
    #[arg(long, value_name = "SECS", conflicts_with = "count",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: Option<u64>,

    /// Publish this many messages per publisher (with -x 0: read this many per consumer).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Messages per second per publisher (0: as fast as the broker confirms them).
    #[arg(long, default_value_t = 0, value_name = "R")]
    pub rate: u32,

    /// Most unconfirmed messages per publisher.
    #[arg(long, default_value_t = 10_000, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_inflight: u32,

    /// Entries per Publish frame (a message, or a sub-batch with --sub-entry).
    #[arg(long, default_value_t = 100, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub batch: u32,

    /// Put this many messages in each entry, as one uncompressed sub-batch.
    #[arg(long, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..))]
    pub sub_entry: Option<u16>,

    /// Where consumers start: first, last, next or an offset (default: next when publishing,
    /// first with -x 0).
    #[arg(long, value_name = "SPEC")]
    pub offset: Option<OffsetArg>,

    /// Chunks each consumer may have in flight (the subscription's initial credit; each chunk
    /// received gives one back).
    #[arg(long, default_value_t = 32, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=32_767))]
    pub credit: u16,

    /// With -x 0: the read ends when no chunk has arrived for this many seconds (the end of
    /// the stream, unless --count comes first).
    #[arg(long, default_value_t = 2, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_end: u64,

    /// Give up when a broker operation, or the whole run, makes no progress for this long.
    #[arg(long, default_value_t = 10, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,

    /// Print the report as one JSON object on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// An offset specification on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetArg(pub OffsetSpec);

impl FromStr for OffsetArg {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(OffsetArg(match s {
            "first" => OffsetSpec::First,
            "last" => OffsetSpec::Last,
            "next" => OffsetSpec::Next,
            n => {
                OffsetSpec::Offset(n.parse().map_err(|_| {
                    format!("`{s}` is not first, last, next or an offset (a number)")
                })?)
            }
        }))
    }
}

impl StreamArgs {
    /// Whether this run only reads (no publishers).
    pub fn read_only(&self) -> bool {
        self.producers == 0
    }

    /// Where consumers start.
    pub fn offset(&self) -> OffsetSpec {
        match self.offset {
            Some(OffsetArg(spec)) => spec,
            None if self.read_only() => OffsetSpec::First,
            None => OffsetSpec::Next,
        }
    }

    /// The offset as the report writes it.
    pub fn offset_name(&self) -> String {
        match self.offset() {
            OffsetSpec::First => "first".into(),
            OffsetSpec::Last => "last".into(),
            OffsetSpec::Next => "next".into(),
            OffsetSpec::Offset(n) => n.to_string(),
            OffsetSpec::Timestamp(t) => format!("timestamp {t}"),
        }
    }

    /// The flags the message workload shares with the other modes (publishing runs only).
    pub fn load(&self) -> LoadArgs {
        LoadArgs {
            producers: self.producers,
            consumers: self.consumers,
            size: self.size,
            duration: self.duration,
            count: self.count,
            rate: self.rate,
            timeout: self.timeout,
            json: self.json,
        }
    }

    /// When a read-only run stops early.
    pub fn until(&self) -> Until {
        self.load().until()
    }

    /// How long one broker operation may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// Checks what clap cannot: a read needs readers and a stream that exists, and the
    /// message count must fit the stamp.
    pub fn validate(&self) -> Result<(), String> {
        if self.read_only() {
            if self.consumers == 0 {
                return Err("-x 0 -y 0: nothing to do".into());
            }
            if self.stream.is_none() {
                return Err(
                    "-x 0 reads an existing stream: name it with --stream (fill it first with \
                     a run of publishers, e.g. `-y 0 --stream NAME --count N`)"
                        .into(),
                );
            }
            if self.duration.is_some() {
                return Err("-x 0 reads until the end of the stream or --count".into());
            }
        }
        Ok(())
    }
}
