//! A server without listeners: the real broker core and protocol adapters, handed byte streams
//! and HTTP requests in memory. The whole-connection fuzz targets (`fuzz/fuzz_targets/amqp_conn.rs`,
//! `mqtt_conn.rs`, `http_api.rs`, `stream_conn.rs`) drive it; nothing else does.
//!
//! What differs from [`crate::start`]: no socket is bound, no data directory is opened (memory
//! only, whatever `data_dir` says) unless [`InMemoryServer::with_store`] is asked for one (streams
//! need a store; it never syncs), no background task runs (no timers, no `$SYS`, no
//! statistics sampler: each input must run alone and end deterministically). Everything a
//! connection does after its transport is identical: the same `amqp::serve`, `mqtt::serve`,
//! WebSocket upgrade and management router.

use crate::transport::{AsyncStream, PeerInfo, Transport};
use crate::{admin, alarm, auth, flow, limits, memory, mqtt, policy, registry};
use crate::{ServerConfig, ServerError, ServerState};
use pigeon_broker::Broker;
use pigeon_store::{Store, StoreOptions, SyncMode};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize};
use std::sync::Arc;
use tokio::sync::watch;

/// The broker core and the server's shared state, with no listener.
pub struct InMemoryServer {
    state: Arc<ServerState>,
    shutdown: watch::Sender<bool>,
    /// Built at the first request: most inputs never make one, and the router is not cheap.
    http: std::sync::OnceLock<axum::Router>,
}

/// What an in-memory HTTP request got back.
#[derive(Debug)]
pub struct HttpAnswer {
    /// The status code.
    pub status: u16,
    /// The body, whole.
    pub body: Vec<u8>,
}

impl InMemoryServer {
    /// Sets up the broker as [`crate::start`] does (default vhost and user, configured users
    /// and policies, the deletion hooks), in memory.
    pub fn new(mut config: ServerConfig) -> Result<InMemoryServer, ServerError> {
        config.data_dir = None;
        Self::build(config, Broker::new(), None)
    }

    /// As [`InMemoryServer::new`], with a store in `dir` (which should be empty: what is there
    /// is recovered) that writes without syncing: streams, durable queues and paging work as
    /// on a broker with a data directory.
    pub fn with_store(
        mut config: ServerConfig,
        dir: &std::path::Path,
    ) -> Result<InMemoryServer, ServerError> {
        config.data_dir = None;
        let store_error = |source| ServerError::Store {
            dir: dir.to_path_buf(),
            source,
        };
        let options = StoreOptions {
            sync: SyncMode::Never,
            ..StoreOptions::default()
        };
        let store = Arc::new(Store::open(dir, options).map_err(store_error)?);
        let paging = crate::paging_limits(&config);
        let (broker, _) = Broker::open(Arc::clone(&store), &crate::amqp::AMQP_CODEC, paging)
            .map_err(store_error)?;
        Self::build(config, broker, Some(store))
    }

    fn build(
        config: ServerConfig,
        broker: Arc<Broker>,
        store: Option<Arc<Store>>,
    ) -> Result<InMemoryServer, ServerError> {
        // Streams store AMQP 1.0 messages, as `start` sets up.
        pigeon_broker::queue::stream::set_entry_codec(&crate::amqp::amqp10::Amqp10Entries);
        admin::bootstrap(&broker, &config)?;
        let config_policies = policy::Owned::default();
        policy::apply(&broker, &config.policies, &config_policies).map_err(ServerError::Config)?;
        let auth = auth::Authenticator::new(
            Arc::clone(&broker),
            admin::loopback_users(&config),
            config.login_failure_rate,
            config.login_failure_burst,
        );
        let (shutdown, shutdown_rx) = watch::channel(false);
        let disk_free_limit = AtomicU64::new(alarm::disk_free_limit(&config));
        let limits = limits::Limits::new(
            config.connection_rate_limit,
            config.connection_rate_limit_loopback,
        );
        let state = Arc::new(ServerState {
            broker,
            config,
            shutdown: shutdown_rx,
            connections: AtomicUsize::new(0),
            mqtt: mqtt::MqttState::new(),
            store,
            alarm: watch::channel(false).0,
            alarm_causes: alarm::AlarmCauses::default(),
            disk_free_limit,
            limits,
            auth,
            kicks: watch::channel(0).0,
            registry: Arc::<registry::Registry>::default(),
            // No memory alarm: the process's RSS is not this server's alone.
            memory: memory::MemoryMeter::new(u64::MAX),
            flow: flow::FlowMarks::new(u64::MAX),
            config_policies,
            grants: Arc::default(),
            stream_groups: crate::stream::Groups::default(),
            stream_views: crate::stream::Views::default(),
            cluster: None,
            declares: Arc::default(),
            maintenance: Default::default(),
            restart: Default::default(),
        });
        admin::register_hooks(&state);
        Ok(InMemoryServer {
            state,
            shutdown,
            http: std::sync::OnceLock::new(),
        })
    }

    /// The broker core.
    pub fn broker(&self) -> &Arc<Broker> {
        &self.state.broker
    }

    /// Serves one AMQP 0-9-1 connection over `stream` (from `peer`) until it closes.
    pub async fn serve_amqp(&self, stream: impl AsyncStream, peer: SocketAddr) {
        let transport = Transport::Other(Box::new(stream));
        crate::amqp::serve(transport, PeerInfo::plain(peer), Arc::clone(&self.state)).await;
    }

    /// Serves one MQTT connection over `stream` (from `peer`) until it closes.
    pub async fn serve_mqtt(&self, stream: impl AsyncStream, peer: SocketAddr) {
        let transport = Transport::Other(Box::new(stream));
        mqtt::serve(transport, PeerInfo::plain(peer), Arc::clone(&self.state)).await;
    }

    /// Serves one RabbitMQ Stream protocol connection over `stream` (from `peer`) until it
    /// closes.
    pub async fn serve_stream(&self, stream: impl AsyncStream, peer: SocketAddr) {
        let transport = Transport::Other(Box::new(stream));
        crate::stream::serve(transport, PeerInfo::plain(peer), Arc::clone(&self.state)).await;
    }

    /// Serves one MQTT-over-WebSocket connection: the upgrade, then MQTT.
    pub async fn serve_mqtt_ws(&self, stream: impl AsyncStream, peer: SocketAddr) {
        let transport = Transport::Other(Box::new(stream));
        let info = PeerInfo::plain(peer);
        if let Some(ws) = crate::ws::accept(transport, &info, &self.state).await {
            mqtt::serve(ws, info, Arc::clone(&self.state)).await;
        }
    }

    /// One management API request, from `peer`. `None` when the method, URI or a header is
    /// not valid HTTP (no server would see such a request: hyper refuses it first).
    pub async fn http(
        &self,
        method: &[u8],
        uri: &[u8],
        headers: &[(&[u8], &[u8])],
        body: Vec<u8>,
        peer: SocketAddr,
    ) -> Option<HttpAnswer> {
        use axum::body::Body;
        use axum::extract::ConnectInfo;
        use axum::http::{HeaderName, HeaderValue, Method, Request};
        use tower::ServiceExt;
        let mut request = Request::builder()
            .method(Method::from_bytes(method).ok()?)
            .uri(uri)
            .extension(ConnectInfo(peer));
        for (name, value) in headers {
            request = request.header(
                HeaderName::from_bytes(name).ok()?,
                HeaderValue::from_bytes(value).ok()?,
            );
        }
        let request = request.body(Body::from(body)).ok()?;
        let router = self
            .http
            .get_or_init(|| crate::http::in_memory_router(&self.state));
        let response = router.clone().oneshot(request).await.ok()?;
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .ok()?;
        Some(HttpAnswer {
            status,
            body: body.to_vec(),
        })
    }

    /// Tells every connection to close (AMQP 320 CONNECTION_FORCED), as a shutdown does.
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        // MQTT connections watch no channel: they look at the flag when woken, as the
        // server's timer task wakes them at shutdown (`timers` in lib.rs).
        self.state.registry.wake_all();
    }

    /// What is still held once every connection has ended, which should be nothing: a
    /// connection, channel or consumer in the registry, a connected MQTT client, a queue with
    /// a consumer, or an exclusive queue whose owner is gone. One line each.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let registry = &self.state.registry;
        for c in registry.connections() {
            left.push(format!("connection {} ({})", c.name, c.protocol));
        }
        for c in registry.channels() {
            left.push(format!("channel {} on {}", c.number, c.connection));
        }
        for c in registry.consumers() {
            left.push(format!("consumer {} on queue {}", c.consumer_tag, c.queue));
        }
        let connected = self
            .state
            .mqtt
            .stats
            .connected
            .load(std::sync::atomic::Ordering::Relaxed);
        if connected != 0 {
            left.push(format!("{connected} MQTT clients counted as connected"));
        }
        for vhost in self.state.broker.vhosts() {
            for q in vhost.queues() {
                if q.consumer_count() > 0 {
                    left.push(format!(
                        "{} consumers on queue {}",
                        q.consumer_count(),
                        q.name()
                    ));
                }
                if q.options().exclusive_owner.is_some() {
                    left.push(format!("exclusive queue {} outlived its owner", q.name()));
                }
            }
        }
        left
    }

    /// Runs the broker's periodic work once (message TTLs, unused queues, MQTT keep-alive
    /// deadlines), as the timers do.
    pub fn tick(&self) {
        let now = std::time::Instant::now();
        for vhost in self.state.broker.vhosts() {
            vhost.tick(now);
        }
        self.state.registry.sweep_keepalive();
    }
}

/// The fuzz targets are not built by CI: these keep the seam they stand on working.
#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 40_000))
    }

    #[tokio::test]
    async fn an_amqp_client_gets_connection_start_in_memory() {
        let server = Arc::new(InMemoryServer::new(ServerConfig::for_tests()).unwrap());
        let (mut client, stream) = tokio::io::duplex(64 * 1024);
        let s = Arc::clone(&server);
        let served = tokio::spawn(async move { s.serve_amqp(stream, peer()).await });
        client.write_all(b"AMQP\x00\x00\x09\x01").await.unwrap();
        let mut head = [0u8; 11];
        client.read_exact(&mut head).await.unwrap();
        // A method frame on channel 0: connection.start (class 10, method 10).
        assert_eq!((head[0], &head[1..3]), (1, &[0u8, 0][..]));
        assert_eq!(&head[7..11], &[0, 10, 0, 10]);
        drop(client);
        served.await.unwrap();
    }

    #[tokio::test]
    async fn an_mqtt_client_gets_connack_in_memory() {
        let server = Arc::new(InMemoryServer::new(ServerConfig::for_tests()).unwrap());
        let (mut client, stream) = tokio::io::duplex(64 * 1024);
        let s = Arc::clone(&server);
        let served = tokio::spawn(async move { s.serve_mqtt(stream, peer()).await });
        // CONNECT 3.1.1, clean session, user and password guest, client id "c".
        let mut connect = b"\x10\x1b\x00\x04MQTT\x04\xc2\x00\x3c\x00\x01c".to_vec();
        connect.extend_from_slice(b"\x00\x05guest\x00\x05guest");
        client.write_all(&connect).await.unwrap();
        let mut connack = [0u8; 4];
        client.read_exact(&mut connack).await.unwrap();
        assert_eq!(connack, [0x20, 2, 0, 0]);
        // SUBSCRIBE id 1 to "t" at QoS 1: the session's queue gets a consumer.
        client
            .write_all(b"\x82\x06\x00\x01\x00\x01t\x01")
            .await
            .unwrap();
        let mut suback = [0u8; 5];
        client.read_exact(&mut suback).await.unwrap();
        assert_eq!(suback, [0x90, 3, 0, 1, 1]);
        let held = server.leftovers();
        assert!(held.iter().any(|l| l.contains("connected")), "{held:?}");
        assert!(
            held.iter().any(|l| l.contains("consumers on queue")),
            "{held:?}"
        );
        drop(client);
        served.await.unwrap();
        assert_eq!(server.leftovers(), Vec::<String>::new());
    }

    #[tokio::test]
    async fn the_management_api_answers_in_memory() {
        let server = InMemoryServer::new(ServerConfig::for_tests()).unwrap();
        let auth: &[u8] = b"Basic Z3Vlc3Q6Z3Vlc3Q="; // guest:guest
        let headers = [(b"authorization".as_slice(), auth)];
        let answer = server
            .http(b"GET", b"/api/whoami", &headers, Vec::new(), peer())
            .await
            .unwrap();
        assert_eq!(answer.status, 200);
        assert!(String::from_utf8_lossy(&answer.body).contains("\"guest\""));
        assert!(server
            .http(b"G T", b"/", &[], Vec::new(), peer())
            .await
            .is_none());
    }

    /// A stream-protocol frame: size, key, version 1, then `body`.
    fn frame(key: u16, body: &[u8]) -> Vec<u8> {
        let mut f = ((4 + body.len()) as u32).to_be_bytes().to_vec();
        f.extend_from_slice(&key.to_be_bytes());
        f.extend_from_slice(&1u16.to_be_bytes());
        f.extend_from_slice(body);
        f
    }

    /// A protocol string: an i16 length, then the bytes.
    fn string(s: &str) -> Vec<u8> {
        let mut b = (s.len() as u16).to_be_bytes().to_vec();
        b.extend_from_slice(s.as_bytes());
        b
    }

    /// The next frame's key and what follows its version.
    async fn next_frame(client: &mut tokio::io::DuplexStream) -> (u16, Vec<u8>) {
        let mut size = [0u8; 4];
        client.read_exact(&mut size).await.unwrap();
        let mut rest = vec![0u8; u32::from_be_bytes(size) as usize];
        client.read_exact(&mut rest).await.unwrap();
        (u16::from_be_bytes([rest[0], rest[1]]), rest.split_off(4))
    }

    /// The response code of a response frame (after its correlation id).
    fn code(body: &[u8]) -> u16 {
        u16::from_be_bytes([body[4], body[5]])
    }

    #[tokio::test]
    async fn a_stream_client_opens_and_creates_a_stream_in_memory_with_a_store() {
        let dir = tempfile::tempdir().unwrap();
        let server =
            Arc::new(InMemoryServer::with_store(ServerConfig::for_tests(), dir.path()).unwrap());
        let (mut client, stream) = tokio::io::duplex(64 * 1024);
        let s = Arc::clone(&server);
        let served = tokio::spawn(async move { s.serve_stream(stream, peer()).await });
        // PeerProperties with no properties, SaslHandshake, SaslAuthenticate PLAIN guest.
        client
            .write_all(&frame(0x0011, &[0, 0, 0, 1, 0, 0, 0, 0]))
            .await
            .unwrap();
        assert_eq!(next_frame(&mut client).await.0, 0x8011);
        client
            .write_all(&frame(0x0012, &[0, 0, 0, 2]))
            .await
            .unwrap();
        assert_eq!(next_frame(&mut client).await.0, 0x8012);
        let mut auth = vec![0, 0, 0, 3];
        auth.extend(string("PLAIN"));
        auth.extend_from_slice(&12u32.to_be_bytes());
        auth.extend_from_slice(b"\0guest\0guest");
        client.write_all(&frame(0x0013, &auth)).await.unwrap();
        let (key, body) = next_frame(&mut client).await;
        assert_eq!((key, code(&body)), (0x8013, 1));
        // The server's Tune, answered with the same values; then Open "/".
        let (key, tune) = next_frame(&mut client).await;
        assert_eq!(key, 0x0014);
        client.write_all(&frame(0x0014, &tune)).await.unwrap();
        let mut open = vec![0, 0, 0, 4];
        open.extend(string("/"));
        client.write_all(&frame(0x0015, &open)).await.unwrap();
        let (key, body) = next_frame(&mut client).await;
        assert_eq!((key, code(&body)), (0x8015, 1));
        // Create "s" with no arguments: the store makes it a stream queue.
        let mut create = vec![0, 0, 0, 5];
        create.extend(string("s"));
        create.extend_from_slice(&[0, 0, 0, 0]);
        client.write_all(&frame(0x000d, &create)).await.unwrap();
        let (key, body) = next_frame(&mut client).await;
        assert_eq!((key, code(&body)), (0x800d, 1));
        let vhost = server.broker().vhost("/").unwrap();
        assert!(vhost.queue("s").unwrap().is_stream());
        drop(client);
        served.await.unwrap();
        assert_eq!(server.leftovers(), Vec::<String>::new());
    }
}
