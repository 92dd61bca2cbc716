//! The `[cluster]` table of the configuration file, parsed and checked.
//!
//! ```toml
//! [cluster]
//! node_name = "rabbit@node-a"          # required; the part after '@' is the default host to dial
//! listen = "0.0.0.0:25672"             # the cluster listener (default [::]:25672)
//! advertise = "node-a.internal:25672"  # how the others dial this node (default: host of node_name, listen's port)
//! peers = ["node-b:25672", "node-c"]   # the other nodes (port 25672 when omitted); listing this node too is fine
//! tls_certfile = "/etc/pigeon/cluster/node-a.pem"   # TLS with mutual certificates (all three or none)
//! tls_keyfile = "/etc/pigeon/cluster/node-a.key"
//! tls_cacertfile = "/etc/pigeon/cluster/ca.pem"
//! node_heartbeat_ms = 500              # node liveness: one ping per pair of nodes
//! node_heartbeat_misses = 8            # a node is down after 8 unanswered (4 s)
//! quorum_idle_after_ms = 5000          # a quorum queue's group stops its timers after 5 s without commands
//! metadata_election_timeout_ms = 1500  # the metadata group's election timeout: 1.5-3 s
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
    /// Some of the TLS files are given, not all.
    #[error(
        "cluster TLS needs tls_certfile, tls_keyfile and tls_cacertfile together (missing: {0})"
    )]
    IncompleteTls(&'static str),
    /// A TLS file cannot be used.
    #[error("cluster TLS: {}: {reason}", path.display())]
    Tls {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A value is out of range.
    #[error("cluster.{key} is invalid: {reason}")]
    BadValue {
        /// The key.
        key: &'static str,
        /// Why.
        reason: &'static str,
    },
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
    /// This node's certificate chain (PEM), its own certificate first: presented to the peers
    /// that connect to it and to those it connects to (RabbitMQ's inter-node TLS `certfile`).
    #[serde(default)]
    pub tls_certfile: Option<PathBuf>,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1; not encrypted) (`keyfile`).
    #[serde(default)]
    pub tls_keyfile: Option<PathBuf>,
    /// The CAs the other nodes' certificates must chain to (`cacertfile`).
    #[serde(default)]
    pub tls_cacertfile: Option<PathBuf>,
    /// Whether a node dialling a peer checks that the peer's certificate names the host it
    /// dialled (default true). RabbitMQ's inter-node TLS examples switch the check off with
    /// `{server_name_indication, disable}` where certificates do not name the hosts.
    #[serde(default)]
    pub tls_verify_peer_name: Option<bool>,
    /// Node liveness: how often each node pings each other node (milliseconds; default 500).
    #[serde(default)]
    pub node_heartbeat_ms: Option<u64>,
    /// Node liveness: a node is declared down after this many unanswered pings (default 8,
    /// so 4 s).
    #[serde(default)]
    pub node_heartbeat_misses: Option<u32>,
    /// A quorum queue's Raft group switches its timers off after this long without a command
    /// (milliseconds; default 5,000; 0 keeps every group's timers on).
    #[serde(default)]
    pub quorum_idle_after_ms: Option<u64>,
    /// The metadata group's election timeout is drawn from `[this, twice this)` (milliseconds;
    /// default 1,500; more than the group's heartbeat, 1,000). Its followers' leader lease is
    /// twice this. Only the fallback for a leader whose loss node liveness does not see: a lost
    /// leader's node is replaced at once (docs/clustering.md, "Raft timing and failover").
    #[serde(default)]
    pub metadata_election_timeout_ms: Option<u64>,
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
        let tls = match (self.tls_certfile, self.tls_keyfile, self.tls_cacertfile) {
            (None, None, None) => None,
            (Some(certfile), Some(keyfile), Some(cacertfile)) => Some(TlsFiles {
                certfile,
                keyfile,
                cacertfile,
                verify_peer_name: self.tls_verify_peer_name.unwrap_or(true),
            }),
            (None, _, _) => return Err(ConfigError::IncompleteTls("tls_certfile")),
            (_, None, _) => return Err(ConfigError::IncompleteTls("tls_keyfile")),
            (_, _, None) => return Err(ConfigError::IncompleteTls("tls_cacertfile")),
        };
        let defaults = Timing::default();
        let node_heartbeat = match self.node_heartbeat_ms {
            None => defaults.node_heartbeat,
            Some(0) => {
                return Err(ConfigError::BadValue {
                    key: "node_heartbeat_ms",
                    reason: "must be at least 1",
                })
            }
            Some(ms) => Duration::from_millis(ms),
        };
        let node_heartbeat_misses = match self.node_heartbeat_misses {
            None => defaults.node_heartbeat_misses,
            Some(0) => {
                return Err(ConfigError::BadValue {
                    key: "node_heartbeat_misses",
                    reason: "must be at least 1",
                })
            }
            Some(n) => n,
        };
        let quorum_idle_after = match self.quorum_idle_after_ms {
            None => defaults.quorum_idle_after,
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
        };
        let (election_min, election_max) = match self.metadata_election_timeout_ms {
            None => (defaults.election_min, defaults.election_max),
            Some(ms) if Duration::from_millis(ms) <= defaults.heartbeat => {
                return Err(ConfigError::BadValue {
                    key: "metadata_election_timeout_ms",
                    reason: "must exceed the metadata group's heartbeat (1000 ms)",
                })
            }
            Some(ms) => (
                Duration::from_millis(ms),
                Duration::from_millis(ms.saturating_mul(2)),
            ),
        };
        Ok(ClusterConfig {
            node_name,
            listen,
            advertise,
            peers,
            data_dir,
            timing: Timing {
                write_timeout: self
                    .write_timeout_ms
                    .map_or(defaults.write_timeout, Duration::from_millis),
                node_heartbeat,
                node_heartbeat_misses,
                quorum_idle_after,
                election_min,
                election_max,
                ..defaults
            },
            tls,
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
    /// TLS on the cluster link; `None`: plain TCP (the port must then be reachable by the
    /// nodes only; a warning says so at start).
    pub tls: Option<TlsFiles>,
}

/// The cluster link's TLS files: every node presents its certificate and requires the peer's,
/// verified against the CA (mutual authentication), in both directions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate chain (PEM), its own first.
    pub certfile: PathBuf,
    /// Its private key (PEM).
    pub keyfile: PathBuf,
    /// The CAs the peers' certificates must chain to (PEM).
    pub cacertfile: PathBuf,
    /// Whether the dialling node checks that the peer's certificate names the host dialled.
    pub verify_peer_name: bool,
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
    /// The metadata group: how often its leader sends heartbeats, and, in openraft 0.9, how
    /// long an AppendEntries (and a read-index confirmation) may take to be answered: the
    /// same 1 s as `quorum_heartbeat`, for the same reason (a 300 ms round trip to a follower
    /// must not stall the group). Nothing waits for it: the commit index reaches the followers
    /// on the replication stream, and a lost leader's node is replaced on node liveness's word
    /// (node/failover.rs), not when heartbeats stop.
    pub heartbeat: Duration,
    /// The metadata group's election timeout is drawn from `[election_min, election_max)`; its
    /// followers' leader lease is `election_max`, so a follower elects on its timer after
    /// `election_max` plus the timeout without a word from its leader. The fallback when
    /// liveness does not see the leader's node go (its Raft stopped, the node alive).
    pub election_min: Duration,
    /// See `election_min`.
    pub election_max: Duration,
    /// Quorum queues' groups: how often a leader sends heartbeats. openraft 0.9 also gives each
    /// AppendEntries this long to be answered (`replication/mod.rs`: the RPC's timeout *is* the
    /// heartbeat interval, with no separate setting), so it must exceed a follower's round trip
    /// with its fsync under load: a shorter one makes the leader resend what the follower is
    /// still writing, and a leader whose round trip passes it never commits. Longer than the
    /// metadata group's: a queue group's failover does not wait for its heartbeats to stop but
    /// for node liveness (quorum/idle.rs, "Woken when a node is lost").
    pub quorum_heartbeat: Duration,
    /// Quorum queues' groups: the election timeout is drawn from
    /// `[quorum_election_min, quorum_election_max)`, the followers' leader lease is
    /// `quorum_election_max` (openraft 0.9's `EngineConfig`). The fallback when liveness does
    /// not see the leader's node go (its member stopped, the node alive).
    pub quorum_election_min: Duration,
    /// See `quorum_election_min`.
    pub quorum_election_max: Duration,
    /// How long a write waits to be committed before [`crate::ClusterError::Timeout`].
    pub write_timeout: Duration,
    /// How long a join waits for the new node to catch up.
    pub join_timeout: Duration,
    /// Node liveness: how often each node pings each other member.
    pub node_heartbeat: Duration,
    /// Node liveness: unanswered pings after which a member is declared down.
    pub node_heartbeat_misses: u32,
    /// A quorum queue's group switches its Raft timers off after this long without a command
    /// (quorum/idle.rs); `None` leaves them on (and [`crate::quorum::QuorumQueue::set_idle`] to
    /// the caller).
    pub quorum_idle_after: Option<Duration>,
}

impl Default for Timing {
    fn default() -> Timing {
        Timing {
            heartbeat: Duration::from_millis(1000),
            election_min: Duration::from_millis(1500),
            election_max: Duration::from_millis(3000),
            quorum_heartbeat: Duration::from_millis(1000),
            quorum_election_min: Duration::from_millis(1500),
            quorum_election_max: Duration::from_millis(3000),
            write_timeout: Duration::from_secs(10),
            join_timeout: Duration::from_secs(60),
            node_heartbeat: Duration::from_millis(500),
            node_heartbeat_misses: 8,
            quorum_idle_after: Some(Duration::from_secs(5)),
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
            tls_certfile: None,
            tls_keyfile: None,
            tls_cacertfile: None,
            tls_verify_peer_name: None,
            node_heartbeat_ms: None,
            node_heartbeat_misses: None,
            quorum_idle_after_ms: None,
            metadata_election_timeout_ms: None,
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
    fn tls_needs_its_three_files_and_checks_peer_names_by_default() {
        let mut t = toml_like("a|127.0.0.1:7000|");
        t.tls_certfile = Some("n.pem".into());
        t.tls_keyfile = Some("n.key".into());
        assert!(matches!(
            t.clone().into_config(PathBuf::from("/tmp/x")),
            Err(ConfigError::IncompleteTls("tls_cacertfile"))
        ));
        t.tls_cacertfile = Some("ca.pem".into());
        let tls = t
            .clone()
            .into_config(PathBuf::from("/tmp/x"))
            .unwrap()
            .tls
            .unwrap();
        assert_eq!(tls.cacertfile, PathBuf::from("ca.pem"));
        assert!(tls.verify_peer_name);
        t.tls_verify_peer_name = Some(false);
        let tls = t.into_config(PathBuf::from("/tmp/x")).unwrap().tls.unwrap();
        assert!(!tls.verify_peer_name);
        assert!(table("a|127.0.0.1:7000|").unwrap().tls.is_none());
    }

    #[test]
    fn liveness_and_idle_settings() {
        let c = table("a|127.0.0.1:7000|").unwrap();
        assert_eq!(c.timing.node_heartbeat, Duration::from_millis(500));
        assert_eq!(c.timing.node_heartbeat_misses, 8);
        assert_eq!(c.timing.quorum_idle_after, Some(Duration::from_secs(5)));
        let mut t = toml_like("a|127.0.0.1:7000|");
        t.node_heartbeat_ms = Some(200);
        t.node_heartbeat_misses = Some(10);
        t.quorum_idle_after_ms = Some(0);
        let c = t.into_config(PathBuf::from("/tmp/x")).unwrap();
        assert_eq!(c.timing.node_heartbeat, Duration::from_millis(200));
        assert_eq!(c.timing.node_heartbeat_misses, 10);
        assert_eq!(c.timing.quorum_idle_after, None);
        let mut t = toml_like("a|127.0.0.1:7000|");
        t.node_heartbeat_misses = Some(0);
        assert!(matches!(
            t.into_config(PathBuf::from("/tmp/x")),
            Err(ConfigError::BadValue { .. })
        ));
    }

    #[test]
    fn metadata_election_timeout() {
        let c = table("a|127.0.0.1:7000|").unwrap();
        assert_eq!(c.timing.heartbeat, Duration::from_millis(1000));
        assert_eq!(c.timing.election_min, Duration::from_millis(1500));
        assert_eq!(c.timing.election_max, Duration::from_millis(3000));
        let mut t = toml_like("a|127.0.0.1:7000|");
        t.metadata_election_timeout_ms = Some(120_000);
        let c = t.into_config(PathBuf::from("/tmp/x")).unwrap();
        assert_eq!(c.timing.election_min, Duration::from_secs(120));
        assert_eq!(c.timing.election_max, Duration::from_secs(240));
        let mut t = toml_like("a|127.0.0.1:7000|");
        t.metadata_election_timeout_ms = Some(1000);
        assert!(matches!(
            t.into_config(PathBuf::from("/tmp/x")),
            Err(ConfigError::BadValue {
                key: "metadata_election_timeout_ms",
                ..
            })
        ));
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
