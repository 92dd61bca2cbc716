//! The flags of `pigeon bench declare`.

use super::QueueArg;
use clap::Args;

/// Flags of `pigeon bench declare`: many durable queues declared (or deleted) over a few
/// connections, for a broker's memory and CPU per idle queue.
#[derive(Debug, Clone, Args)]
pub struct DeclareArgs {
    /// Broker, as an AMQP URI (plain TCP).
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1/%2f")]
    pub url: String,

    /// Queues to declare (or delete): `<prefix>-0` to `<prefix>-<count - 1>`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub count: u32,

    /// The queues' name prefix.
    #[arg(long, default_value = "pigeon-bench-idle", value_name = "NAME")]
    pub prefix: String,

    /// An argument of every queue, `KEY=VALUE` (as `pigeon bench --queue-arg`).
    #[arg(long = "queue-arg", value_name = "KEY=VALUE")]
    pub queue_args: Vec<QueueArg>,

    /// Connections declaring at once, each taking every n-th queue in turn.
    #[arg(long, default_value_t = 16, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub connections: u32,

    /// Delete the queues instead of declaring them.
    #[arg(long)]
    pub delete: bool,

    /// Give up when one declare or delete takes this long.
    #[arg(long, default_value_t = 60, value_name = "SECS",
          value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,
}
