//! TLS for the listeners (AMQPS, MQTTS, MQTT over secure WebSocket): rustls, TLS 1.2 and 1.3,
//! the ring provider.

pub mod cert;
