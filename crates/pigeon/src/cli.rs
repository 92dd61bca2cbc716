//! The command line: `pigeon [serve]` runs the broker, `pigeon bench` drives load at any AMQP
//! 0-9-1 or MQTT broker.

use crate::bench::BenchArgs;
use crate::pubsub::{PubArgs, SubArgs};
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Pigeon: one message broker for AMQP 0-9-1 and MQTT 3.1, 3.1.1 and 5.0 clients, with
/// RabbitMQ's model (exchanges, queues, bindings) shared by both protocols.
///
/// Without a subcommand, `pigeon` runs the broker exactly as `pigeon serve` does.
#[derive(Debug, Parser)]
#[command(name = "pigeon", version, propagate_version = true)]
pub struct Cli {
    /// Log filter: a level (error, warn, info, debug, trace) or a tracing filter such as
    /// `info,pigeon_server=debug`. Overrides RUST_LOG and the config file's `log` key.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,

    #[command(subcommand)]
    pub command: Option<Command>,

    /// Flags for the default `serve` command.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// What `pigeon` does.
#[derive(Debug, Subcommand)]
// Parsed once at start: the size of the serve flags (one list per listener) costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the broker: AMQP 0-9-1 and MQTT listeners (the default when no subcommand is given).
    Serve(ServeArgs),
    /// Generate load against an AMQP 0-9-1 or MQTT broker (Pigeon, RabbitMQ, Mosquitto, ...) and
    /// report throughput, end-to-end latency and lost or duplicated messages.
    // Boxed: the bench's flags (with TLS's) are several times the size of serve's.
    Bench(Box<BenchArgs>),
    /// Manage a running node over its management HTTP API with rabbitmqctl's commands
    /// (`pigeon ctl help` lists them).
    Ctl(crate::ctl::CtlArgs),
    /// Publish messages over AMQP or MQTT, as mosquitto_pub and amqp-publish do (the URL's
    /// scheme picks the protocol).
    Pub(Box<PubArgs>),
    /// Consume messages over AMQP or MQTT and print them, as mosquitto_sub and amqp-consume do.
    Sub(Box<SubArgs>),
}

/// Flags of `pigeon serve`.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// TOML configuration file; every key is optional (see docs/configuration.md).
    #[arg(long, short = 'c', value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Addresses the AMQP listener binds to, e.g. 127.0.0.1:5672, comma-separated or repeated
    /// (overrides `server.amqp_listen`).
    #[arg(long, value_name = "ADDR", value_delimiter = ',', num_args = 1)]
    pub amqp_listen: Option<Vec<SocketAddr>>,

    /// Addresses the MQTT listener binds to, e.g. 127.0.0.1:1883 (overrides `server.mqtt_listen`).
    #[arg(long, value_name = "ADDR", value_delimiter = ',', num_args = 1)]
    pub mqtt_listen: Option<Vec<SocketAddr>>,

    /// Addresses the AMQP-over-TLS listener binds to, e.g. 0.0.0.0:5671 (overrides
    /// `server.amqps_listen`; needs the `[tls]` table).
    #[arg(long, value_name = "ADDR", value_delimiter = ',', num_args = 1)]
    pub amqps_listen: Option<Vec<SocketAddr>>,

    /// Addresses the MQTT-over-TLS listener binds to, e.g. 0.0.0.0:8883 (overrides
    /// `server.mqtts_listen`; needs the `[tls]` table).
    #[arg(long, value_name = "ADDR", value_delimiter = ',', num_args = 1)]
    pub mqtts_listen: Option<Vec<SocketAddr>>,

    /// Addresses the MQTT-over-WebSocket listener binds to, e.g. 127.0.0.1:8083 (overrides
    /// `server.mqtt_ws_listen`).
    #[arg(long, value_name = "ADDR", value_delimiter = ',', num_args = 1)]
    pub mqtt_ws_listen: Option<Vec<SocketAddr>>,

    /// Addresses the MQTT-over-secure-WebSocket listener binds to, e.g. 0.0.0.0:8084
    /// (overrides `server.mqtt_wss_listen`; needs the `[tls]` table).
    #[arg(long, value_name = "ADDR", value_delimiter = ',', num_args = 1)]
    pub mqtt_wss_listen: Option<Vec<SocketAddr>>,

    /// Addresses the management HTTP API binds to, e.g. 127.0.0.1:15672 (overrides
    /// `server.management_listen`).
    #[arg(long, value_name = "ADDR", value_delimiter = ',', num_args = 1)]
    pub management_listen: Option<Vec<SocketAddr>>,
    /// Addresses the Prometheus endpoint binds to, e.g. 127.0.0.1:15692 (overrides
    /// `server.prometheus_listen`).
    #[arg(long, value_name = "ADDR", value_delimiter = ',', num_args = 1)]
    pub prometheus_listen: Option<Vec<SocketAddr>>,
    /// Addresses the RabbitMQ Stream protocol listener binds to, e.g. 127.0.0.1:5552
    /// (overrides `server.stream_listen`).
    #[arg(long, value_name = "ADDR", value_delimiter = ',', num_args = 1)]
    pub stream_listen: Option<Vec<SocketAddr>>,
}

impl Cli {
    /// The command to run, with `serve` standing in for a missing subcommand. `serve`'s flags
    /// may come before or after the word `serve`; before `bench` they are an error.
    pub fn into_command(self) -> Result<Command, clap::Error> {
        let top = self.serve;
        match self.command {
            None => Ok(Command::Serve(top)),
            Some(Command::Serve(args)) => Ok(Command::Serve(ServeArgs {
                config: args.config.or(top.config),
                amqp_listen: args.amqp_listen.or(top.amqp_listen),
                mqtt_listen: args.mqtt_listen.or(top.mqtt_listen),
                amqps_listen: args.amqps_listen.or(top.amqps_listen),
                mqtts_listen: args.mqtts_listen.or(top.mqtts_listen),
                mqtt_ws_listen: args.mqtt_ws_listen.or(top.mqtt_ws_listen),
                mqtt_wss_listen: args.mqtt_wss_listen.or(top.mqtt_wss_listen),
                management_listen: args.management_listen.or(top.management_listen),
                prometheus_listen: args.prometheus_listen.or(top.prometheus_listen),
                stream_listen: args.stream_listen.or(top.stream_listen),
            })),
            Some(Command::Bench(_) | Command::Pub(_) | Command::Sub(_))
                if top.config.is_some()
                    || top.amqp_listen.is_some()
                    || top.mqtt_listen.is_some()
                    || top.amqps_listen.is_some()
                    || top.mqtts_listen.is_some()
                    || top.mqtt_ws_listen.is_some()
                    || top.mqtt_wss_listen.is_some()
                    || top.management_listen.is_some()
                    || top.stream_listen.is_some()
                    || top.prometheus_listen.is_some() =>
            {
                use clap::CommandFactory;
                Err(Cli::command().error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "--config and the --*-listen flags belong to `serve`",
                ))
            }
            Some(command) => Ok(command),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("pigeon").chain(args.iter().copied()))?.into_command()
    }

    #[test]
    fn no_subcommand_means_serve_with_its_flags() {
        let Ok(Command::Serve(serve)) = parse(&["--amqp-listen", "127.0.0.1:5680"]) else {
            panic!("expected serve");
        };
        assert_eq!(
            serve.amqp_listen,
            Some(vec!["127.0.0.1:5680".parse().expect("addr")])
        );
        assert_eq!(serve.config, None);
    }

    #[test]
    fn a_listener_takes_several_addresses() {
        let Ok(Command::Serve(serve)) = parse(&[
            "--amqp-listen",
            "[::1]:5672,127.0.0.1:5672",
            "--amqps-listen",
            "127.0.0.1:5671",
        ]) else {
            panic!("expected serve");
        };
        assert_eq!(serve.amqp_listen.map(|a| a.len()), Some(2));
        assert_eq!(serve.amqps_listen.map(|a| a.len()), Some(1));
    }

    #[test]
    fn listen_address_must_be_ip_and_port() {
        assert!(parse(&["serve", "--amqp-listen", "localhost"]).is_err());
    }

    #[test]
    fn log_filter_is_accepted_before_and_after_the_subcommand() {
        for argv in [
            ["pigeon", "serve", "--log", "debug"],
            ["pigeon", "--log", "debug", "bench"],
        ] {
            let cli = Cli::try_parse_from(argv).expect("parses");
            assert_eq!(cli.log.as_deref(), Some("debug"));
        }
    }

    #[test]
    fn serve_flags_may_precede_serve_but_not_bench() {
        let Ok(Command::Serve(serve)) = parse(&["--config", "a.toml", "serve"]) else {
            panic!("expected serve");
        };
        assert_eq!(serve.config, Some(PathBuf::from("a.toml")));
        assert!(parse(&["--config", "a.toml", "bench"]).is_err());
    }

    #[test]
    fn pub_and_sub_take_mosquitto_and_amqp_flags() {
        let Ok(Command::Pub(p)) = parse(&[
            "pub", "-u", "mqtt://h", "-t", "a/b", "-m", "x", "-q", "1", "-r", "-V", "5",
        ]) else {
            panic!("expected pub");
        };
        assert!(p.retain && p.conn.qos == 1 && p.topic.as_deref() == Some("a/b"));
        let Ok(Command::Sub(s)) = parse(&["sub", "-Q", "orders", "-b", "k", "-C", "2"]) else {
            panic!("expected sub");
        };
        assert_eq!((s.queue.as_deref(), s.count), (Some("orders"), Some(2)));
        // A body is required; serve's flags do not belong to pub or sub.
        assert!(parse(&["pub", "-t", "a"]).is_err());
        assert!(parse(&["--config", "a.toml", "sub", "-t", "x"]).is_err());
    }

    #[test]
    fn clap_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
