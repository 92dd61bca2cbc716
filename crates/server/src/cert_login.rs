//! Logging in with a client certificate: SASL EXTERNAL over AMQPS and certificate login over
//! MQTTS, as RabbitMQ's `rabbitmq_auth_mechanism_ssl` and `mqtt.ssl_cert_login`.
//!
//! Only a certificate the TLS listener verified counts: with `verify_peer` the handshake
//! checks the chain against `cacertfile` (and a client without one sends none), with
//! `verify_none` no certificate is asked for, so [`TlsInfo::peer_certs`] is empty. The user
//! name is the subject DN in RFC 4514 form or its CN (`ssl_cert_login_from`,
//! rabbit_ssl:peer_cert_auth_name); the user must exist, no password is checked.

use crate::config::CertLoginFrom;
use crate::transport::{CertNames, TlsInfo};

/// The user name the client's verified certificate stands for, if it sent one and it has
/// that name.
pub fn user_name(tls: Option<&TlsInfo>, from: CertLoginFrom) -> Option<String> {
    let cert = tls?.peer_certs.first()?;
    let names = match CertNames::of(cert.as_ref()) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "client certificate unreadable: no certificate login");
            return None;
        }
    };
    match from {
        CertLoginFrom::DistinguishedName => Some(names.subject_dn),
        CertLoginFrom::CommonName => names.common_name,
    }
}
