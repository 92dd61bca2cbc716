//! `pigeon pub` and `pigeon sub`: publish and consume from the command line, over AMQP 0-9-1
//! (lapin) or MQTT 3.1.1 / 5.0 (rumqttc), the protocol chosen by the URL's scheme, in the
//! manner of mosquitto_pub/mosquitto_sub and amqp-publish/amqp-consume.
//!
//! - `args`: the flags (one set for both protocols; where the tools clash, `args` says which
//!   meaning won);
//! - `amqp`, `mqtt`: the two protocols' publish and consume loops;
//! - `output`: how `sub` prints a message (text or JSON lines).
//!
//! Exit codes follow the mosquitto tools: 0 when done, 1 with a one-line error on stderr when
//! the broker refuses the connection, a publish (a nack, a returned mandatory message, a closed
//! channel, an MQTT 5 error reason) or a subscription; `sub -W` gives up with 27.

mod amqp;
mod args;
mod mqtt;
mod output;

pub use args::{PubArgs, SubArgs};

use crate::logging;
use anyhow::Context;
use std::io::Read;
use std::process::ExitCode;
use tokio::sync::mpsc;

/// The protocol a URL asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Amqp,
    Mqtt,
}

/// Which protocol, and whether over TLS, from the URL's scheme.
fn protocol(url: &str, tls_flag: bool) -> anyhow::Result<(Protocol, bool)> {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    let (protocol, tls) = match scheme.as_deref() {
        Some("amqp") => (Protocol::Amqp, false),
        Some("amqps") => (Protocol::Amqp, true),
        Some("mqtt" | "tcp" | "ws") => (Protocol::Mqtt, false),
        Some("mqtts" | "ssl" | "wss") => (Protocol::Mqtt, true),
        _ => anyhow::bail!(
            "{url}: the URL must start with amqp://, amqps://, mqtt://, mqtts://, ws:// or wss://"
        ),
    };
    if tls_flag && !tls {
        anyhow::bail!("--tls needs a TLS URL (amqps://, mqtts:// or wss://)");
    }
    Ok((protocol, tls))
}

/// Log lines go to stderr; without `--log`, only warnings and errors (the client libraries'
/// own connection errors are left out: the error we print says what matters).
fn init_logging(log_flag: Option<&str>) -> anyhow::Result<()> {
    logging::init(
        log_flag,
        None,
        "warn,lapin=off,amq_protocol=off,rumqttc=off",
    )
}

/// Runs `pigeon pub`.
pub async fn publish(args: PubArgs, log_flag: Option<String>) -> anyhow::Result<ExitCode> {
    init_logging(log_flag.as_deref())?;
    let (protocol, tls) = protocol(&args.conn.url, args.conn.tls.tls)?;
    let bodies = bodies(&args)?;
    match protocol {
        Protocol::Amqp => amqp::publish(&args, tls, bodies).await?,
        Protocol::Mqtt => mqtt::publish(&args, tls, bodies).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs `pigeon sub`.
pub async fn subscribe(args: SubArgs, log_flag: Option<String>) -> anyhow::Result<ExitCode> {
    init_logging(log_flag.as_deref())?;
    let (protocol, tls) = protocol(&args.conn.url, args.conn.tls.tls)?;
    let run = async {
        match protocol {
            Protocol::Amqp => amqp::subscribe(&args, tls).await,
            Protocol::Mqtt => mqtt::subscribe(&args, tls).await,
        }
    };
    match args.timeout {
        None => run.await?,
        Some(secs) => match tokio::time::timeout(std::time::Duration::from_secs(secs), run).await {
            Ok(result) => result?,
            Err(_) => {
                eprintln!("pigeon: timed out after {secs} s");
                // mosquitto_sub's code for -W running out.
                return Ok(ExitCode::from(27));
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// The bodies to publish, in order, from a thread that reads the file or standard input (so a
/// line typed with `-l` goes out as soon as it is read).
fn bodies(args: &PubArgs) -> anyhow::Result<mpsc::Receiver<Vec<u8>>> {
    let (tx, rx) = mpsc::channel(64);
    let one: Option<Vec<u8>> = if let Some(m) = &args.message {
        Some(m.clone().into_bytes())
    } else if let Some(path) = &args.file {
        Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
    } else if args.null_message {
        Some(Vec::new())
    } else {
        None
    };
    let count = args.count;
    let lines = args.stdin_line;
    std::thread::Builder::new()
        .name("pigeon pub stdin".into())
        .spawn(move || {
            let body = match one {
                Some(body) => body,
                None if lines => {
                    for line in std::io::stdin().lines() {
                        let Ok(line) = line else { return };
                        if tx.blocking_send(line.into_bytes()).is_err() {
                            return;
                        }
                    }
                    return;
                }
                None => {
                    let mut all = Vec::new();
                    if std::io::stdin().read_to_end(&mut all).is_err() {
                        return;
                    }
                    all
                }
            };
            for _ in 0..count {
                if tx.blocking_send(body.clone()).is_err() {
                    return;
                }
            }
        })
        .context("cannot start the thread reading the message")?;
    Ok(rx)
}

/// The routing key a broker gives an MQTT topic (RabbitMQ's MQTT plugin and Pigeon):
/// `/` and `.` swap places.
fn topic_to_routing_key(topic: &str) -> String {
    topic
        .chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_picks_the_protocol() {
        assert_eq!(
            protocol("amqp://h", false).unwrap(),
            (Protocol::Amqp, false)
        );
        assert_eq!(
            protocol("AMQPS://h", false).unwrap(),
            (Protocol::Amqp, true)
        );
        assert_eq!(protocol("mqtts://h", true).unwrap(), (Protocol::Mqtt, true));
        assert_eq!(
            protocol("ws://h/mqtt", false).unwrap(),
            (Protocol::Mqtt, false)
        );
        assert!(protocol("http://h", false).is_err());
        assert!(protocol("mqtt://h", true).is_err());
    }

    #[test]
    fn topics_become_routing_keys() {
        assert_eq!(topic_to_routing_key("a/b.c"), "a.b/c");
    }
}
