//! Prometheus metrics: `families.rs` writes the text exposition, `endpoint.rs` serves it on
//! the `prometheus_listen` addresses (RabbitMQ's port 15692).

pub mod endpoint;
pub mod families;
