//! The `[cluster]` table of the configuration file, parsed and checked.
//!
//! ```toml
//! [cluster]
//! node_name = "rabbit@node-a"          # required; the part after '@' is the default host to dial
//! listen = "0.0.0.0:25672"             # the cluster listener (default [::]:25672)
//! advertise = "node-a.internal:25672"  # how the others dial this node (default: host of node_name, listen's port)
//! peers = ["node-b:25672", "node-c"]   # the other nodes (port 25672 when omitted); listing this node too is fine
//! ```

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// The cluster listener's port when none is given (RabbitMQ's inter-node port, 25672).
pub const DEFAULT_PORT: u16 = 25672;

/// A node's name: non-empty, printable, no spaces. It is the node's identity (its Raft id is
/// derived from it), so it must not change across restarts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeName(String);

impl NodeName {
    /// Checks a name.
    pub fn new(name: &str) -> Result<NodeName, ConfigError> {
        if name.is_empty() || name.len() > 255 {
            return Err(ConfigError::BadNodeName(name.to_string(), "1 to 255 bytes"));
        }
        if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(ConfigError::BadNodeName(
                name.to_string(),
                "no spaces or control characters",
            ));
        }
        Ok(NodeName(name.to_string()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host part: what follows the '@' of `rabbit@host`, or the whole name.
    pub fn host(&self) -> &str {
        self.0
            .rsplit_once('@')
            .map_or(self.0.as_str(), |(_, host)| host)
    }
}

impl std::fmt::Display for NodeName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is wrong with a `[cluster]` table.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The node name is unusable.
    #[error("cluster.node_name {0:?} is invalid: {1}")]
    BadNodeName(String, &'static str),
    /// An address does not parse.
    #[error("cluster.{key} {value:?} is not a valid address: {reason}")]
    BadAddress {
        /// The key.
        key: &'static str,
        /// The text.
        value: String,
        /// Why.
        reason: &'static str,
    },
    /// A peer is listed twice.
    #[error("cluster.peers lists {0:?} twice")]
    DuplicatePeer(String),
}

/// The `[cluster]` table as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTable {
    /// This node's name.
    pub node_name: String,
    /// The cluster listener's address.
    #[serde(default)]
    pub listen: Option<String>,
    /// The address the other nodes dial.
    #[serde(default)]
    pub advertise: Option<String>,
    /// The other nodes' cluster addresses.
    #[serde(default)]
    pub peers: Vec<String>,
    /// How long a metadata change waits for a majority before it fails (milliseconds;
    /// default 10,000), what a node in a minority answers after.
    #[serde(default)]
    pub write_timeout_ms: Option<u64>,
}

impl ClusterTable {
    /// Checks the table and builds the node's configuration; `data_dir` is the broker's data
    /// directory (the cluster keeps its files in `data_dir/cluster`).
    pub fn into_config(self, data_dir: PathBuf) -> Result<ClusterConfig, ConfigError> {
        let node_name = NodeName::new(&self.node_name)?;
        let listen = match &self.listen {
            None => SocketAddr::from(([0u16; 8], DEFAULT_PORT)),
            Some(text) => parse_listen(text)?,
        };
        let advertise = match self.advertise {
            Some(text) => with_port("advertise", &text)?,
            None if !listen.ip().is_unspecified() => listen.to_string(),
            None => format!("{}:{}", node_name.host(), listen.port()),
        };
        let mut peers: Vec<String> = Vec::new();
        for peer in &self.peers {
            let peer = with_port("peers", peer)?;
            if peers.contains(&peer) {
                return Err(ConfigError::DuplicatePeer(peer));
            }
            // The same list may be given to every node: this node's own entry is skipped.
            if peer != advertise {
                peers.push(peer);
            }
        }
        Ok(ClusterConfig {
            node_name,
            listen,
            advertise,
            peers,
            data_dir,
            timing: Timing {
                write_timeout: self.write_timeout_ms.map_or(
                    Timing::default().write_timeout,
                    std::time::Duration::from_millis,
                ),
                ..Timing::default()
            },
        })
    }
}

fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([0u16; 8], port)));
    }
    text.parse().map_err(|_| ConfigError::BadAddress {
        key: "listen",
        value: text.to_string(),
        reason: "expected ip:port or a port",
    })
}

/// `host:port`, adding the default port to a bare host.
fn with_port(key: &'static str, text: &str) -> Result<String, ConfigError> {
    let bad = |reason| ConfigError::BadAddress {
        key,
        value: text.to_string(),
        reason,
    };
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        return Err(bad("expected host:port"));
    }
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(text.to_string());
    }
    match text.rsplit_once(':') {
        // A bare IPv6 address has colons but no port.
        Some(_) if text.parse::<std::net::Ipv6Addr>().is_ok() => {
            Ok(format!("[{text}]:{DEFAULT_PORT}"))
        }
        Some((host, port)) if !host.is_empty() && !host.contains(':') => {
            port.parse::<u16>()
                .map_err(|_| bad("the port is not a number"))?;
            Ok(text.to_string())
        }
        Some(_) => Err(bad("expected host:port")),
        None => Ok(format!("{text}:{DEFAULT_PORT}")),
    }
}

/// A node's configuration.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// This node's name.
    pub node_name: NodeName,
    /// Where the cluster listener binds.
    pub listen: SocketAddr,
    /// How the other nodes dial this node.
    pub advertise: String,
    /// The other nodes' addresses, for bootstrap (RabbitMQ's classic config peer discovery).
    pub peers: Vec<String>,
    /// The broker's data directory; the cluster's files go in its `cluster` folder.
    pub data_dir: PathBuf,
    /// Raft's timers and the write timeout.
    pub timing: Timing,
}

impl ClusterConfig {
    /// The folder of this node's cluster files.
    pub fn cluster_dir(&self) -> PathBuf {
        self.data_dir.join("cluster")
    }
}

/// Raft's timers. The defaults suit a LAN; tests shorten them.
#[derive(Debug, Clone)]
pub struct Timing {
    /// How often a leader sends heartbeats.
    pub heartbeat: Duration,
    /// The election timeout is drawn from `[election_min, election_max)`.
    pub election_min: Duration,
    /// See `election_min`.
    pub election_max: Duration,
    /// How long a write waits to be committed before [`crate::ClusterError::Timeout`].
    pub write_timeout: Duration,
    /// How long a join waits for the new node to catch up.
    pub join_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            heartbeat: Duration::from_millis(250),
            election_min: Duration::from_millis(1500),
            election_max: Duration::from_millis(3000),
            write_timeout: Duration::from_secs(10),
            join_timeout: Duration::from_secs(60),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn table(text: &str) -> Result<ClusterConfig, ConfigError> {
        let table: ClusterTable = toml_like(text);
        table.into_config(PathBuf::from("/tmp/x"))
    }

    // The crate does not depend on toml; build the table by hand.
    fn toml_like(spec: &str) -> ClusterTable {
        let mut parts = spec.split('|');
        let node_name = parts.next().unwrap_or_default().to_string();
        let listen = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
        let peers = parts.next().map_or(Vec::new(), |p| {
            p.split(',')
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        });
        ClusterTable {
            node_name,
            listen,
            advertise: None,
            peers,
            write_timeout_ms: None,
        }
    }

    #[test]
    fn defaults_listen_on_25672_and_advertise_the_name_host() {
        let c = table("rabbit@node-a||node-b,node-c:25673").unwrap();
        assert_eq!(c.listen.port(), 25672);
        assert_eq!(c.advertise, "node-a:25672");
        assert_eq!(
            c.peers,
            vec!["node-b:25672".to_string(), "node-c:25673".to_string()]
        );
    }

    #[test]
    fn own_entry_in_peers_is_skipped() {
        let c = table("a|127.0.0.1:7000|127.0.0.1:7000,127.0.0.1:7001").unwrap();
        assert_eq!(c.peers, vec!["127.0.0.1:7001".to_string()]);
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(matches!(table(""), Err(ConfigError::BadNodeName(..))));
        assert!(matches!(table("a b"), Err(ConfigError::BadNodeName(..))));
        assert!(matches!(
            table("a|nope"),
            Err(ConfigError::BadAddress { key: "listen", .. })
        ));
        assert!(matches!(
            table("a||b:x"),
            Err(ConfigError::BadAddress { key: "peers", .. })
        ));
        assert!(matches!(
            table("a||b,b:25672"),
            Err(ConfigError::DuplicatePeer(_))
        ));
    }
}
