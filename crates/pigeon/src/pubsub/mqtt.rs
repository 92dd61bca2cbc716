//! `pigeon pub` and `pigeon sub` over MQTT 3.1.1 or 5.0, with rumqttc (TLS through rustls with
//! the ring provider, configured by the same flags as `pigeon bench`).
//!
//! A publish is done when the broker has answered it as its QoS requires (PUBACK for 1, PUBCOMP
//! for 2; written to the socket for 0); an MQTT 5 error reason code in PUBACK or PUBREC fails
//! the command, as a refused subscription does. MQTT 3.1.1 has no negative PUBACK: a broker
//! refusing a publish there closes the connection, which fails the command too.

mod v311;
mod v5;

use super::args::{ConnArgs, MqttVersion, PubArgs, SubArgs};
use anyhow::Context;
use rumqttc::{TlsConfiguration, Transport};
use tokio::sync::mpsc;

/// Publishes every body to `-t`.
pub async fn publish(
    args: &PubArgs,
    tls: bool,
    bodies: mpsc::Receiver<Vec<u8>>,
) -> anyhow::Result<()> {
    let Some(topic) = &args.topic else {
        anyhow::bail!("MQTT needs a topic to publish to (-t TOPIC)");
    };
    let endpoint = Endpoint::parse(&args.conn, tls, "pigeon-pub")?;
    match args.conn.mqtt_version {
        MqttVersion::V311 => v311::publish(args, endpoint, topic, bodies).await,
        MqttVersion::V5 => v5::publish(args, endpoint, topic, bodies).await,
    }
}

/// Subscribes to every `-t` and prints what arrives.
pub async fn subscribe(args: &SubArgs, tls: bool) -> anyhow::Result<()> {
    if args.topic.is_empty() {
        anyhow::bail!("MQTT needs a topic filter to subscribe to (-t FILTER)");
    }
    let endpoint = Endpoint::parse(&args.conn, tls, "pigeon-sub")?;
    match args.conn.mqtt_version {
        MqttVersion::V311 => v311::subscribe(args, endpoint).await,
        MqttVersion::V5 => v5::subscribe(args, endpoint).await,
    }
}

/// What rumqttc's options need from the URL and flags.
struct Endpoint {
    /// The host, or for WebSocket the whole `ws://host:port/path` URL (rumqttc's way).
    host: String,
    port: u16,
    client_id: String,
    credentials: Option<(String, String)>,
    transport: Transport,
    /// For messages: the URL without its password.
    shown: String,
}

impl Endpoint {
    fn parse(conn: &ConnArgs, tls: bool, default_id: &str) -> anyhow::Result<Endpoint> {
        let url = url::Url::parse(&conn.url).with_context(|| format!("bad URL {}", conn.url))?;
        let scheme = url.scheme().to_ascii_lowercase();
        let websocket = matches!(scheme.as_str(), "ws" | "wss");
        let port = url.port().unwrap_or(match (websocket, tls) {
            (false, false) => 1883,
            (false, true) => 8883,
            (true, false) => 8083,
            (true, true) => 8084,
        });
        let Some(host) = url.host_str() else {
            anyhow::bail!("{}: no host", conn.url);
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let transport = match (websocket, tls) {
            (false, false) => {
                if conn.tls.cacert.is_some() || conn.tls.cert.is_some() || conn.tls.insecure {
                    anyhow::bail!(
                        "TLS options given for a plain connection: use mqtts:// or wss://"
                    );
                }
                Transport::Tcp
            }
            (false, true) => Transport::tls_with_config(tls_config(conn)?),
            (true, false) => Transport::Ws,
            (true, true) => Transport::wss_with_config(tls_config(conn)?),
        };
        if conn.tls.server_name.is_some() {
            anyhow::bail!("--server-name is not supported by pigeon pub/sub: connect by that name");
        }
        let user = percent_decode(url.username());
        let credentials = match (user.is_empty(), url.password()) {
            (true, None) => None,
            (_, password) => Some((user, percent_decode(password.unwrap_or_default()))),
        };
        let mut shown = url.clone();
        if url.password().is_some() {
            let _ = shown.set_password(Some("***"));
        }
        Ok(Endpoint {
            host: if websocket {
                let path = match url.path() {
                    "" | "/" => "/mqtt",
                    p => p,
                };
                format!("{scheme}://{host}:{port}{path}")
            } else {
                host
            },
            port,
            client_id: conn
                .id
                .clone()
                .unwrap_or_else(|| format!("{default_id}-{}", std::process::id())),
            credentials,
            transport,
            shown: shown.to_string(),
        })
    }
}

fn tls_config(conn: &ConnArgs) -> anyhow::Result<TlsConfiguration> {
    Ok(TlsConfiguration::Rustls(conn.tls.rustls_config()?))
}

/// `%xx` escapes in a URL's user or password.
fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        conn: ConnArgs,
    }

    fn endpoint(argv: &[&str]) -> anyhow::Result<Endpoint> {
        let flags = Flags::try_parse_from(std::iter::once("t").chain(argv.iter().copied()))?;
        let tls = flags.conn.url.starts_with("mqtts") || flags.conn.url.starts_with("wss");
        Endpoint::parse(&flags.conn, tls, "pigeon-sub")
    }

    #[test]
    fn urls_give_host_port_and_credentials() {
        let e = endpoint(&["-u", "mqtt://us%3Aer:p%40ss@localhost"]).unwrap();
        assert_eq!((e.host.as_str(), e.port), ("localhost", 1883));
        assert_eq!(e.credentials, Some(("us:er".into(), "p@ss".into())));
        assert!(!e.shown.contains("p%40ss"), "{}", e.shown);
        let e = endpoint(&["-u", "ws://127.0.0.1:9001", "-i", "me"]).unwrap();
        assert_eq!(e.host, "ws://127.0.0.1:9001/mqtt");
        assert_eq!(e.client_id, "me");
        assert!(endpoint(&["-u", "mqtt://h", "--insecure"]).is_err());
    }
}
