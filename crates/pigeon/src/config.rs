//! The configuration file: TOML, every key optional, unknown keys rejected.
//!
//! ```toml
//! log = "info"              # used when neither --log nor RUST_LOG is given
//!
//! [server]                  # pigeon_server::ServerConfig, key for key
//! amqp_listen = ["[::]:5672", "0.0.0.0:5672"]   # or one address, or a port, or [] (off)
//! heartbeat = 60
//!
//! default_user = "admin"   # created at the first start only; "" creates none
//! default_pass = "change-me"
//!
//! [[server.users]]          # created or updated in the store at every start
//! name = "app"
//! password = "secret"
//!
//! [tls]                     # pigeon_server::TlsConfig (also accepted as [server.tls])
//! certfile = "/etc/pigeon/server.pem"
//! keyfile = "/etc/pigeon/server.key"
//!
//! [cluster]                 # pigeon_cluster::ClusterTable: this node of a cluster (docs/clustering.md)
//! node_name = "rabbit@node-a"
//! listen = "0.0.0.0:25672"
//! peers = ["node-b:25672", "node-c:25672"]
//! ```
//!
//! The `[server]` table deserializes straight into [`ServerConfig`], so a key added there is a
//! key of this file with no code here. Later sections (`[mqtt]`, `[storage]`, `[http]`) sit beside
//! it. docs/configuration.md lists every key.

use anyhow::{bail, Context};
use pigeon_cluster::config::ClusterTable;
use pigeon_cluster::ClusterConfig;
use pigeon_server::{ServerConfig, TlsConfig};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;

/// The smallest `frame_max` a peer may propose (AMQP 0-9-1 section 4.2.3, `frame-min-size`).
const AMQP_FRAME_MIN_SIZE: u32 = 4096;

/// The whole configuration file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Log filter used when neither `--log` nor `RUST_LOG` is set.
    pub log: Option<String>,
    /// Listeners, protocol limits and users.
    pub server: ServerConfig,
    /// The TLS listeners' certificate and client checks (moved into `server.tls` on load).
    pub tls: Option<TlsConfig>,
    /// This node's place in a cluster (docs/clustering.md). Checked at load; `serve` starts the
    /// node with it.
    pub cluster: Option<ClusterTable>,
}

impl Config {
    /// Reads, parses and checks the file at `path`. Errors name the file and, for syntax and
    /// unknown or mistyped keys, the line and column.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// Parses and checks a configuration from TOML text.
    pub fn parse(text: &str) -> anyhow::Result<Config> {
        // toml's error text carries the line, the column, a snippet and what was expected.
        let mut config: Config = toml::from_str(text).map_err(|e| anyhow::anyhow!("{e}"))?;
        if let Some(tls) = config.tls.take() {
            if config.server.tls.is_some() {
                bail!("TLS is configured twice: keep [tls] or [server.tls], not both");
            }
            config.server.tls = Some(tls);
        }
        config.check()?;
        Ok(config)
    }

    /// Rejects values that parse but cannot work, before any listener binds.
    fn check(&self) -> anyhow::Result<()> {
        let s = &self.server;
        if s.frame_max < AMQP_FRAME_MIN_SIZE {
            bail!(
                "server.frame_max = {} is below the AMQP 0-9-1 minimum frame size of {AMQP_FRAME_MIN_SIZE}",
                s.frame_max
            );
        }
        if s.max_connections == 0 {
            bail!("server.max_connections = 0 would refuse every client");
        }
        if s.max_message_size == 0 {
            bail!("server.max_message_size = 0 would refuse every message");
        }
        if s.handshake_timeout.is_zero() {
            bail!("server.handshake_timeout = 0 would drop every client before it logs in");
        }
        if let Some(f) = s.disk_free_limit_relative {
            if !(f.is_finite() && f >= 0.0) {
                bail!(
                    "server.disk_free_limit_relative = {f} must be a fraction of memory, 0 or more"
                );
            }
        }
        self.cluster()?;
        s.check_tls().map_err(|e| anyhow::anyhow!("server.{e}"))?;
        s.check_ws_path()
            .map_err(|e| anyhow::anyhow!("server.{e}"))?;
        let mut names = HashSet::new();
        for user in &s.users {
            if user.name.is_empty() {
                bail!("server.users: a user has an empty name");
            }
            if !names.insert(user.name.as_str()) {
                bail!("server.users: user {:?} is listed twice", user.name);
            }
        }
        Ok(())
    }
}

impl Config {
    /// The `[cluster]` table checked and turned into the cluster crate's configuration, with the
    /// cluster's files under the broker's data directory; `None` when there is no such table.
    pub fn cluster(&self) -> anyhow::Result<Option<ClusterConfig>> {
        let Some(table) = &self.cluster else {
            return Ok(None);
        };
        let data_dir = self
            .server
            .data_dir
            .clone()
            .unwrap_or_else(|| "pigeon-data".into());
        Ok(Some(table.clone().into_config(data_dir)?))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::time::Duration;

    const SAMPLE: &str = r#"
log = "debug"

[server]
amqp_listen = "127.0.0.1:5680"
frame_max = 65536
channel_max = 100
heartbeat = 30
max_message_size = 1048576
max_connections = 10
handshake_timeout = 5

[[server.users]]
name = "guest"
password = "guest"
loopback_only = true

[[server.users]]
name = "app"
password = "s3cret"
"#;

    #[test]
    fn sample_file_sets_every_key() {
        let c = Config::parse(SAMPLE).unwrap();
        assert_eq!(c.log.as_deref(), Some("debug"));
        let s = &c.server;
        assert_eq!(s.amqp_listen.addrs(), ["127.0.0.1:5680".parse().unwrap()]);
        assert_eq!(s.frame_max, 65536);
        assert_eq!(s.channel_max, 100);
        assert_eq!(s.heartbeat, 30);
        assert_eq!(s.max_message_size, 1_048_576);
        assert_eq!(s.max_connections, 10);
        assert_eq!(s.handshake_timeout, Duration::from_secs(5));
        assert_eq!(s.users.len(), 2);
        assert!(s.users[0].loopback_only);
        assert_eq!(s.users[1].name, "app");
        assert!(!s.users[1].loopback_only, "loopback_only defaults to false");
    }

    #[test]
    fn the_cluster_table_is_parsed_and_checked() {
        let c = Config::parse(
            "[cluster]\nnode_name = \"rabbit@node-a\"\npeers = [\"node-b\", \"node-c:25673\"]\n",
        )
        .unwrap();
        let cluster = c.cluster().unwrap().unwrap();
        assert_eq!(cluster.node_name.as_str(), "rabbit@node-a");
        assert_eq!(cluster.listen.port(), 25672);
        assert_eq!(cluster.advertise, "node-a:25672");
        assert_eq!(cluster.peers, ["node-b:25672", "node-c:25673"]);
        assert!(Config::parse("").unwrap().cluster().unwrap().is_none());
        let err =
            Config::parse("[cluster]\nnode_name = \"a\"\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("cluster.listen"), "{err:#}");
        let err = Config::parse("[cluster]\nnode_name = \"a\"\nport = 1\n").unwrap_err();
        assert!(format!("{err:#}").contains("port"), "{err:#}");
        assert!(
            Config::parse("[cluster]\npeers = []\n").is_err(),
            "node_name is required"
        );
    }

    #[test]
    fn empty_file_is_the_default_broker() {
        let c = Config::parse("").unwrap();
        let d = ServerConfig::default();
        assert_eq!(c.log, None);
        assert_eq!(c.server.amqp_listen, d.amqp_listen);
        assert_eq!(c.server.users, d.users);
    }

    #[test]
    fn unknown_key_is_reported_with_its_line() {
        let err = Config::parse("[server]\nheartbeat = 30\nframe_maxx = 4096\n").unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("frame_maxx"), "{msg}");
    }

    #[test]
    fn unknown_section_is_rejected() {
        let msg = format!("{:#}", Config::parse("[amqp]\nlisten = 1\n").unwrap_err());
        assert!(msg.contains("amqp"), "{msg}");
    }

    #[test]
    fn mistyped_value_is_reported_with_its_line() {
        let msg = format!(
            "{:#}",
            Config::parse("[server]\n\nheartbeat = \"60\"\n").unwrap_err()
        );
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn a_listener_takes_an_address_a_list_or_a_port() {
        let c = Config::parse(
            "[server]\namqp_listen = [\"[::1]:5680\", \"127.0.0.1:5680\"]\nmqtt_listen = []\n",
        )
        .unwrap();
        assert_eq!(c.server.amqp_listen.addrs().len(), 2);
        assert!(
            c.server.mqtt_listen.is_empty(),
            "an empty list turns MQTT off"
        );
        let c = Config::parse("[server]\nmqtt_listen = 1884\n").unwrap();
        assert_eq!(
            c.server.mqtt_listen.addrs(),
            [
                "[::]:1884".parse().unwrap(),
                "0.0.0.0:1884".parse().unwrap()
            ]
        );
    }

    #[test]
    fn mqtt_over_websocket_is_configured_in_server() {
        let c = Config::parse(
            "[server]\nmqtt_ws_listen = 8083\nmqtt_ws_path = \"/ws\"\n\
             mqtt_ws_origins = [\"https://app.example.com\"]\n",
        )
        .unwrap();
        assert_eq!(c.server.mqtt_ws_listen.addrs().len(), 2);
        assert_eq!(c.server.mqtt_ws_path, "/ws");
        assert_eq!(c.server.mqtt_ws_origins, ["https://app.example.com"]);
        let d = Config::parse("").unwrap().server;
        // WebSocket on 8083 by default; secure WebSocket only once [tls] is set.
        assert_eq!(d.mqtt_ws_listen.addrs()[1], "0.0.0.0:8083".parse().unwrap());
        assert!(d.mqtt_wss_addrs().is_empty());
        assert_eq!(d.mqtt_ws_path, "/mqtt");
        for bad in ["mqtt", "/mqtt?x=1", "/a b"] {
            let text = format!("[server]\nmqtt_ws_path = {bad:?}\n");
            let msg = format!("{:#}", Config::parse(&text).unwrap_err());
            assert!(msg.contains("mqtt_ws_path"), "{msg}");
        }
        let msg = format!(
            "{:#}",
            Config::parse("[server]\nmqtt_wss_listen = 8084\n").unwrap_err()
        );
        assert!(msg.contains("mqtt_wss_listen needs a [tls]"), "{msg}");
    }

    #[test]
    fn the_defaults_listen_on_ipv6_and_ipv4_and_tls_is_off() {
        let s = Config::parse("").unwrap().server;
        assert_eq!(
            s.amqp_listen.addrs(),
            [
                "[::]:5672".parse().unwrap(),
                "0.0.0.0:5672".parse().unwrap()
            ]
        );
        assert!(s.amqps_addrs().is_empty());
        assert!(s.mqtts_addrs().is_empty());
        assert_eq!(
            s.stream_listen.addrs(),
            [
                "[::]:5552".parse().unwrap(),
                "0.0.0.0:5552".parse().unwrap()
            ]
        );
        assert!(s.stream_tls_addrs().is_empty());
        assert_eq!(s.stream_advertised_host, None);
    }

    #[test]
    fn the_stream_listener_and_its_advertised_address() {
        let c = Config::parse(
            "[server]
stream_listen = []
stream_advertised_host = \"streams.example\"
\
             stream_advertised_port = 15552
",
        )
        .unwrap();
        assert!(c.server.stream_listen.is_empty());
        assert_eq!(
            c.server.stream_advertised_host.as_deref(),
            Some("streams.example")
        );
        assert_eq!(c.server.stream_advertised_port, Some(15552));
        let msg = format!(
            "{:#}",
            Config::parse("[server]\nstream_tls_listen = 5551\n").unwrap_err()
        );
        assert!(msg.contains("stream_tls_listen needs a [tls]"), "{msg}");
    }

    #[test]
    fn the_tls_table_turns_on_amqps_and_mqtts() {
        let text = "[tls]\ncertfile = \"c.pem\"\nkeyfile = \"k.pem\"\ncacertfile = \"ca.pem\"\n\
                    verify = \"verify_peer\"\nfail_if_no_peer_cert = true\n";
        let s = Config::parse(text).unwrap().server;
        let tls = s.tls.as_ref().unwrap();
        assert_eq!(tls.verify, pigeon_server::TlsVerify::VerifyPeer);
        assert!(tls.fail_if_no_peer_cert);
        assert_eq!(s.amqps_addrs().addrs()[1], "0.0.0.0:5671".parse().unwrap());
        assert_eq!(s.mqtts_addrs().addrs()[1], "0.0.0.0:8883".parse().unwrap());
        assert_eq!(
            s.stream_tls_addrs().addrs()[1],
            "0.0.0.0:5551".parse().unwrap()
        );
    }

    #[test]
    fn a_tls_listener_without_tls_is_rejected() {
        let msg = format!(
            "{:#}",
            Config::parse("[server]\namqps_listen = \"0.0.0.0:5671\"\n").unwrap_err()
        );
        assert!(msg.contains("amqps_listen"), "{msg}");
        assert!(
            Config::parse("[tls]\ncertfile = \"c\"\nkeyfile = \"k\"\nverify = \"maybe\"\n")
                .is_err()
        );
    }

    #[test]
    fn bad_listen_address_is_rejected() {
        assert!(Config::parse("[server]\namqp_listen = \"localhost\"\n").is_err());
    }

    #[test]
    fn frame_max_below_the_amqp_minimum_is_rejected() {
        let msg = format!(
            "{:#}",
            Config::parse("[server]\nframe_max = 4095\n").unwrap_err()
        );
        assert!(msg.contains("frame_max"), "{msg}");
        assert!(Config::parse("[server]\nframe_max = 4096\n").is_ok());
    }

    #[test]
    fn duplicate_user_is_rejected() {
        let text = "[[server.users]]\nname = \"a\"\npassword = \"x\"\n\
                    [[server.users]]\nname = \"a\"\npassword = \"y\"\n";
        let msg = format!("{:#}", Config::parse(text).unwrap_err());
        assert!(msg.contains("twice"), "{msg}");
    }

    #[test]
    fn zero_limits_are_rejected() {
        assert!(Config::parse("[server]\nmax_connections = 0\n").is_err());
        assert!(Config::parse("[server]\nhandshake_timeout = 0\n").is_err());
        assert!(Config::parse("[server]\nmax_message_size = 0\n").is_err());
    }

    #[test]
    fn disk_free_limit_is_bytes_or_a_fraction_of_memory() {
        let c = Config::parse("[server]\ndisk_free_limit = 1000000000\n").unwrap();
        assert_eq!(c.server.disk_free_limit, 1_000_000_000);
        assert_eq!(c.server.disk_free_limit_relative, None);
        let c = Config::parse("[server]\ndisk_free_limit_relative = 1.5\n").unwrap();
        assert_eq!(c.server.disk_free_limit_relative, Some(1.5));
        assert!(Config::parse("[server]\ndisk_free_limit_relative = -1.0\n").is_err());
    }

    #[test]
    fn load_names_the_file() {
        let dir = std::env::temp_dir().join(format!("pigeon-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[server]\nheartbeat = -1\n").unwrap();
        let msg = format!("{:#}", Config::load(&path).unwrap_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(msg.contains("bad.toml"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");

        let missing = format!("{:#}", Config::load(&dir.join("nope.toml")).unwrap_err());
        assert!(missing.contains("nope.toml"), "{missing}");
    }
}
