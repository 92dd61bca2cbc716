//! The flags of `pigeon bench` and the checks clap cannot express.

use super::stamp::Stamp;
use clap::Args;
use std::time::Duration;

/// Flags of `pigeon bench`. Names follow RabbitMQ's PerfTest where one exists (`-x`, `-y`, `-s`).
#[derive(Debug, Clone, Args)]
pub struct BenchArgs {
    /// Broker to load, as an AMQP URI (the vhost is URL-encoded: `%2f` is `/`).
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub url: String,

    /// Publishing connections, one channel each.
    #[arg(long, short = 'x', default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=i64::from(u16::MAX)))]
    pub producers: u32,

    /// Consuming connections, one channel and one consumer each (0: publish only).
    #[arg(long, short = 'y', default_value_t = 1, value_name = "N")]
    pub consumers: u32,

    /// Queues to declare; producer i publishes to queue i % Q and consumer j reads queue j % Q.
    #[arg(long, default_value_t = 1, value_name = "Q",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub queues: u32,

    /// Message body size in bytes; the first 16 carry the send time, producer and sequence.
    #[arg(long, short = 's', default_value_t = 16, value_name = "BYTES",
          value_parser = clap::value_parser!(u32).range(Stamp::LEN as i64..))]
    pub size: u32,

    /// Publish for this many seconds (the default is 10 unless --count is given).
    #[arg(long, value_name = "SECS", conflicts_with = "count",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: Option<u64>,

    /// Publish this many messages per producer, then stop.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,

    /// Use publisher confirms (confirm.select) and count acks and nacks.
    #[arg(long)]
    pub confirm: bool,

    /// Most unconfirmed messages per producer before it waits for confirms.
    #[arg(long, default_value_t = 128, value_name = "K", requires = "confirm",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub confirm_window: u32,

    /// Consume with manual acknowledgements instead of auto-ack (no-ack).
    #[arg(long)]
    pub ack: bool,

    /// Acknowledge every K-th delivery with `multiple` set instead of each one.
    #[arg(long, default_value_t = 1, value_name = "K", requires = "ack",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub multi_ack_every: u32,

    /// Consumer prefetch (basic.qos); 0 sends none, leaving it unlimited. Brokers apply it only
    /// with --ack.
    #[arg(long, default_value_t = 0, value_name = "P")]
    pub prefetch: u16,

    /// Publish persistent messages (delivery_mode 2) to durable queues.
    #[arg(long)]
    pub persistent: bool,

    /// Messages per second per producer (0: as fast as the broker takes them).
    #[arg(long, default_value_t = 0, value_name = "R")]
    pub rate: u32,

    /// Give up when a broker operation, or the whole run, makes no progress for this long.
    #[arg(long, default_value_t = 10, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,

    /// Print the report as one JSON object on stdout (progress still goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// When the producers stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// After this long.
    Elapsed(Duration),
    /// After this many messages each.
    Count(u64),
}

impl BenchArgs {
    /// When producers stop publishing.
    pub fn until(&self) -> Until {
        match (self.count, self.duration) {
            (Some(n), _) => Until::Count(n),
            (None, secs) => Until::Elapsed(Duration::from_secs(secs.unwrap_or(10))),
        }
    }

    /// How long one broker operation or a run without progress may take.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// Checks the combinations clap cannot: every queue must have a producer, and a consumer
    /// when there are consumers, and a batch of acks must fit in the prefetch window.
    pub fn validate(&self) -> Result<(), String> {
        if self.queues > self.producers {
            return Err(format!(
                "--queues {} exceeds --producers {}: every queue needs a producer",
                self.queues, self.producers
            ));
        }
        if self.consumers > 0 && self.consumers < self.queues {
            return Err(format!(
                "--consumers {} is fewer than --queues {}: every queue needs a consumer \
                 (or use --consumers 0 to only publish)",
                self.consumers, self.queues
            ));
        }
        // The broker stops delivering after `prefetch` unacked messages; a consumer that waits for
        // more than that before acking would wait forever.
        if self.prefetch > 0 && self.multi_ack_every > u32::from(self.prefetch) {
            return Err(format!(
                "--multi-ack-every {} exceeds --prefetch {}: the consumer would wait forever",
                self.multi_ack_every, self.prefetch
            ));
        }
        Ok(())
    }

    /// The URL with its password replaced, for reports.
    pub fn redacted_url(&self) -> String {
        redact_password(&self.url)
    }
}

/// `amqp://user:secret@host/` becomes `amqp://user:***@host/`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: BenchArgs,
    }

    fn parse(flags: &str) -> Result<BenchArgs, String> {
        let argv = std::iter::once("bench").chain(flags.split_whitespace());
        let args = Wrapper::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .args;
        args.validate()?;
        Ok(args)
    }

    #[test]
    fn defaults_are_one_producer_one_consumer_ten_seconds() {
        let a = parse("").unwrap();
        assert_eq!((a.producers, a.consumers, a.queues, a.size), (1, 1, 1, 16));
        assert_eq!(a.until(), Until::Elapsed(Duration::from_secs(10)));
        assert!(!a.confirm && !a.ack && !a.persistent && !a.json);
    }

    #[test]
    fn count_replaces_duration_and_they_conflict() {
        assert_eq!(parse("--count 5").unwrap().until(), Until::Count(5));
        assert!(parse("--count 5 --duration 3").is_err());
    }

    #[test]
    fn body_must_hold_the_stamp() {
        assert!(parse("--size 15").is_err());
        assert!(parse("--size 16").is_ok());
    }

    #[test]
    fn windows_need_their_mode() {
        assert!(parse("--confirm-window 10").is_err());
        assert!(parse("--confirm --confirm-window 10").is_ok());
        assert!(parse("--multi-ack-every 10").is_err());
        assert!(parse("--ack --multi-ack-every 10").is_ok());
        assert!(parse("--confirm --confirm-window 0").is_err());
    }

    #[test]
    fn ack_batch_larger_than_prefetch_is_rejected() {
        let err = parse("--ack --multi-ack-every 100 --prefetch 50").unwrap_err();
        assert!(err.contains("--prefetch"), "{err}");
        assert!(parse("--ack --multi-ack-every 50 --prefetch 50").is_ok());
        assert!(
            parse("--ack --multi-ack-every 100").is_ok(),
            "no prefetch: no limit"
        );
    }

    #[test]
    fn every_queue_needs_a_producer_and_a_consumer() {
        assert!(parse("--queues 2 --producers 1 --consumers 2").is_err());
        assert!(parse("--queues 2 --producers 2 --consumers 1").is_err());
        assert!(parse("--queues 2 --producers 2 --consumers 0").is_ok());
        assert!(parse("--queues 2 --producers 4 --consumers 2").is_ok());
    }

    #[test]
    fn producer_ids_fit_the_stamp() {
        assert!(parse("--producers 0").is_err());
        assert!(parse("--producers 65536").is_err());
    }

    #[test]
    fn password_is_redacted() {
        assert_eq!(
            redact_password("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact_password("amqp://127.0.0.1"), "amqp://127.0.0.1");
    }
}
