//! A server without listeners: the real broker core and protocol adapters, handed byte streams
//! and HTTP requests in memory. The whole-connection fuzz targets (`fuzz/fuzz_targets/amqp_conn.rs`,
//! `mqtt_conn.rs`, `http_api.rs`) drive it; nothing else does.
//!
//! What differs from [`crate::start`]: no socket is bound, no data directory is opened (memory
//! only, whatever `data_dir` says), no background task runs (no timers, no `$SYS`, no
//! statistics sampler: each input must run alone and end deterministically). Everything a
//! connection does after its transport is identical: the same `amqp::serve`, `mqtt::serve`,
//! WebSocket upgrade and management router.

use crate::transport::{AsyncStream, PeerInfo, Transport};
use crate::{admin, alarm, auth, flow, limits, memory, mqtt, policy, registry};
use crate::{ServerConfig, ServerError, ServerState};
use pigeon_broker::Broker;
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
        let broker = Broker::new();
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
            store: None,
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
}
