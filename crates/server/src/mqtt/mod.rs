//! The MQTT adapter: 3.1, 3.1.1 and 5.0 on one listener, mapped onto the broker core.
//!
//! `connection.rs` runs the connection (CONNECT, keep-alive, takeover, will, the end of a
//! connection) over `io.rs` (the socket); `handlers.rs` handles PUBLISH, the acknowledgements
//! and (UN)SUBSCRIBE; `login.rs` checks who the client is and which vhost it gets;
//! `session.rs` is what outlives a connection and the registry of sessions; `sink.rs` delivers
//! queued messages to a session; `topic.rs` maps MQTT topics onto the topic exchange;
//! `convert.rs` maps MQTT 5 properties onto AMQP ones; `sys.rs` publishes `$SYS` topics;
//! `authz.rs` checks permissions and limits; `admin.rs` is what the management API shows of
//! sessions and retained messages, and does to them; `hibernate.rs` parks idle connections
//! without a task.

pub(crate) mod admin;
mod authz;
pub(crate) mod cluster;
pub(crate) mod cluster_shared;
mod connect;
mod connection;
mod convert;
mod handlers;
mod hibernate;
mod io;
mod login;
pub mod persist;
mod publishing;
mod qos2;
mod session;
mod sink;
pub mod sys;
mod topic;

pub use connection::{refuse_over_rate, serve};

use session::Registry;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Instant;

/// Counters published under `$SYS`.
pub struct Stats {
    /// When the broker started.
    pub started: Instant,
    /// MQTT clients connected now.
    pub connected: AtomicUsize,
}

/// The registry's protocol of an MQTT version.
pub(crate) fn protocol(version: mqtt_wire::ProtocolVersion) -> crate::registry::Protocol {
    use crate::registry::Protocol;
    match version {
        mqtt_wire::ProtocolVersion::V3_1 => Protocol::Mqtt310,
        mqtt_wire::ProtocolVersion::V3_1_1 => Protocol::Mqtt311,
        mqtt_wire::ProtocolVersion::V5 => Protocol::Mqtt50,
    }
}

/// What every MQTT connection shares.
pub struct MqttState {
    /// Sessions by client id.
    pub registry: Registry,
    /// Counters.
    pub stats: Arc<Stats>,
    /// Hibernated connections (`hibernate.rs`).
    pub parking: hibernate::Parking,
}

impl MqttState {
    /// MQTT connections hibernated now (idle, without a task: `hibernate.rs`).
    pub fn hibernated(&self) -> usize {
        self.parking.count()
    }
}

impl MqttState {
    /// Empty state.
    pub fn new() -> MqttState {
        MqttState {
            registry: Registry::default(),
            stats: Arc::new(Stats {
                started: Instant::now(),
                connected: AtomicUsize::new(0),
            }),
            parking: hibernate::Parking::default(),
        }
    }
}
