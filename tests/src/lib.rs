//! The harness for Pigeon's behaviour tests.
//!
//! Every test starts a [`TestBroker`]: a real Pigeon server inside the test process, listening on
//! `127.0.0.1:0`, driven over real loopback sockets by real client crates (lapin, amqprs) or by
//! the hand-rolled [`raw`] client when a test must send what no well-behaved client would.
//!
//! **Reference mode.** When `PIGEON_TEST_AMQP_URL` is set (for example
//! `amqp://guest:guest@127.0.0.1:5673/%2f`), no Pigeon is started and every test runs against
//! that broker instead. Pointed at RabbitMQ, the suite checks itself: a test that fails against
//! RabbitMQ is wrong. Tests therefore use [`unique`] names, so that they can share one broker, and
//! delete what they declare. Tests that need a particular server configuration (a small
//! `frame_max`, other users) get `None` from [`TestBroker::start_with`] in reference mode, say
//! so on stdout and pass without checking anything.
//!
//! **Waiting.** Nothing here sleeps and hopes. A test waits for the event it expects (a delivery,
//! a close, a returned message) with [`within`], which fails the test after [`TIMEOUT`]. To show
//! that something did *not* happen, a test first observes something that must come after it
//! (a marker message, a synchronous round trip).

pub mod access;
pub mod amqprs_support;
pub mod http_support;
pub mod jemalloc;
pub mod lapin_support;
pub mod mqtt_support;
pub mod raw;
pub mod restart;
pub mod streams_support;
pub mod tls_support;

pub use restart::DataDir;

use pigeon_server::{ServerConfig, ServerHandle};
use std::future::Future;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long any single expected event may take before the test fails. Generous on purpose: it
/// only bounds a failing test, a passing one never waits for it.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The environment variable that points the suite at an external broker.
pub const EXTERNAL_URL_VAR: &str = "PIGEON_TEST_AMQP_URL";

/// A byte stream a raw client can speak over: a plain [`tokio::net::TcpStream`] or a TLS stream
/// around one (`tokio_rustls::client::TlsStream`), so the same hostile bytes can be sent
/// tunnelled through TLS.
pub trait ByteStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ByteStream for S {}

/// The `pigeon` binary for tests that run it as a process: `PIGEON_BIN`, else built (once
/// per test binary) with the profile of the running test, in its target directory.
pub fn pigeon_bin() -> &'static std::path::Path {
    use std::path::{Path, PathBuf};
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("PIGEON_BIN") {
            return PathBuf::from(bin);
        }
        // A test runs as <target>/<profile dir>/deps/<test>-<hash>.
        let exe = std::env::current_exe().expect("the test's own path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("the test binary's profile directory");
        let target = profile_dir.parent().expect("the target directory");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") | None => "dev",
            Some(other) => other,
        };
        let status = std::process::Command::new(env!("CARGO"))
            .args([
                "build",
                "-p",
                "pigeon",
                "--bin",
                "pigeon",
                "--profile",
                profile,
            ])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cargo build -p pigeon failed");
        profile_dir.join("pigeon")
    })
}

/// Awaits `fut`, failing the test with `what` if it takes longer than [`TIMEOUT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(TIMEOUT, fut).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {TIMEOUT:?} waiting for {what}"),
    }
}

/// A name no other test (in this process or another one sharing the broker) uses:
/// `prefix-<pid>-<counter>-<time>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// A broker for one test: an in-process Pigeon, or the external one named by
/// [`EXTERNAL_URL_VAR`].
pub struct TestBroker {
    addr: SocketAddr,
    user: String,
    password: String,
    vhost_path: String,
    server: Option<ServerHandle>,
}

impl TestBroker {
    /// Starts Pigeon with [`ServerConfig::for_tests`] (or connects nowhere yet, in reference
    /// mode: the clients will dial the external broker).
    pub async fn start() -> TestBroker {
        match external() {
            Some(broker) => broker,
            None => Self::start_pigeon(ServerConfig::for_tests()).await,
        }
    }

    /// Starts Pigeon with a specific configuration. Returns `None` in reference mode, because an
    /// external broker's configuration is not ours to choose; the caller then returns early.
    pub async fn start_with(config: ServerConfig) -> Option<TestBroker> {
        if std::env::var_os(EXTERNAL_URL_VAR).is_some() {
            println!("skipped against an external broker: this test needs its own server config");
            return None;
        }
        Some(Self::start_pigeon(config).await)
    }

    async fn start_pigeon(config: ServerConfig) -> TestBroker {
        // The clients log in as the first configured user, else as the default user.
        let (user, password) = match config.users.first() {
            Some(u) => (Some(u.name.clone()), Some(u.password.clone())),
            None if !config.default_user.is_empty() => (
                Some(config.default_user.clone()),
                Some(config.default_pass.clone()),
            ),
            None => (None, None),
        };
        let server = pigeon_server::start(config)
            .await
            .expect("start Pigeon on 127.0.0.1:0");
        TestBroker {
            addr: server.amqp_addr(),
            user: user.unwrap_or_else(|| "guest".into()),
            password: password.unwrap_or_else(|| "guest".into()),
            vhost_path: "%2f".into(),
            server: Some(server),
        }
    }

    /// The in-process server (`None` against an external broker), for what only its owner can
    /// do, such as [`ServerHandle::set_policies`].
    pub fn server(&self) -> Option<&ServerHandle> {
        self.server.as_ref()
    }

    /// True when the tests run against an external broker (see [`EXTERNAL_URL_VAR`]).
    pub fn is_external(&self) -> bool {
        self.server.is_none()
    }

    /// The broker's AMQP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address of the RabbitMQ Stream protocol listener (`None` against an external
    /// broker, or when the listener is off).
    pub fn stream_addr(&self) -> Option<SocketAddr> {
        self.server.as_ref().and_then(|s| s.stream_addr())
    }

    /// The user the clients log in as.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// That user's password.
    pub fn password(&self) -> &str {
        &self.password
    }

    /// `amqp://user:password@127.0.0.1:PORT/%2f`
    pub fn amqp_url(&self) -> String {
        self.url_as(&self.user, &self.password)
    }

    /// The URL with other credentials.
    pub fn url_as(&self, user: &str, password: &str) -> String {
        format!("amqp://{user}:{password}@{}/{}", self.addr, self.vhost_path)
    }

    /// Stops the in-process broker (a no-op for an external one).
    pub async fn stop(self) {
        if let Some(server) = self.server {
            server.shutdown().await;
        }
    }

    /// The login the raw client uses, answering `connection.tune` with the server's own values.
    pub fn raw_handshake(&self) -> raw::Handshake {
        raw::Handshake {
            user: self.user.clone(),
            password: self.password.clone(),
            tune_ok: |proposed| proposed,
            authentication_failure_close: true,
        }
    }

    /// A raw client that has completed the handshake with the server's tune values.
    pub async fn raw_connection(&self) -> raw::RawClient {
        let mut client = raw::RawClient::connect(self.addr).await;
        client.handshake(&self.raw_handshake()).await;
        client
    }
}

/// Parses [`EXTERNAL_URL_VAR`] when it is set: `amqp://user:password@host:port/vhost`.
fn external() -> Option<TestBroker> {
    let url = std::env::var(EXTERNAL_URL_VAR).ok()?;
    let rest = url
        .strip_prefix("amqp://")
        .unwrap_or_else(|| panic!("{EXTERNAL_URL_VAR} must start with amqp://, got {url}"));
    let (authority, vhost_path) = rest.split_once('/').unwrap_or((rest, "%2f"));
    let (userinfo, hostport) = authority
        .rsplit_once('@')
        .unwrap_or(("guest:guest", authority));
    let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let hostport = if hostport.contains(':') {
        hostport.to_string()
    } else {
        format!("{hostport}:5672")
    };
    let addr = hostport
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("{EXTERNAL_URL_VAR}: cannot resolve {hostport}"));
    Some(TestBroker {
        addr,
        user: user.into(),
        password: password.into(),
        vhost_path: if vhost_path.is_empty() {
            "%2f".into()
        } else {
            vhost_path.into()
        },
        server: None,
    })
}

/// AMQP 0-9-1 reply codes the tests assert (spec section 1.9 "constants").
pub mod reply {
    /// 200: normal close.
    pub const REPLY_SUCCESS: u16 = 200;
    /// 312: a mandatory message could not be routed.
    pub const NO_ROUTE: u16 = 312;
    /// 403: the client may not do that.
    pub const ACCESS_REFUSED: u16 = 403;
    /// 404: the named entity does not exist.
    pub const NOT_FOUND: u16 = 404;
    /// 405: another connection holds the entity exclusively.
    pub const RESOURCE_LOCKED: u16 = 405;
    /// 406: the request contradicts the entity's state.
    pub const PRECONDITION_FAILED: u16 = 406;
    /// 501: a malformed frame.
    pub const FRAME_ERROR: u16 = 501;
    /// 502: a malformed method.
    pub const SYNTAX_ERROR: u16 = 502;
    /// 503: an invalid sequence of frames or methods.
    pub const COMMAND_INVALID: u16 = 503;
    /// 504: the channel is not open, or already open.
    pub const CHANNEL_ERROR: u16 = 504;
    /// 505: a frame the server did not expect now.
    pub const UNEXPECTED_FRAME: u16 = 505;
    /// 530: the server's limits or policy forbid it.
    pub const NOT_ALLOWED: u16 = 530;
    /// 540: the server does not implement it.
    pub const NOT_IMPLEMENTED: u16 = 540;
}
