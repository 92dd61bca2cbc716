//! Users and passwords, shared by every protocol.

use crate::config::UserConfig;
use std::net::IpAddr;

/// Why a login was refused (logged; clients only learn that it was).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// The client picked a SASL mechanism we do not offer.
    #[error("unsupported authentication mechanism '{0}'")]
    Mechanism(String),
    /// The SASL response could not be parsed.
    #[error("malformed {0} response")]
    Malformed(&'static str),
    /// Unknown user or wrong password.
    #[error("invalid credentials for user '{0}'")]
    Credentials(String),
    /// The user may only connect from loopback.
    #[error("user '{0}' can only connect via localhost")]
    LoopbackOnly(String),
}

/// Checks a user name and password for a client at `peer`.
pub fn check(
    users: &[UserConfig],
    user: &str,
    password: &[u8],
    peer: IpAddr,
) -> Result<(), AuthError> {
    let found = users
        .iter()
        .find(|u| u.name == user && constant_time_eq(u.password.as_bytes(), password));
    match found {
        None => Err(AuthError::Credentials(user.to_string())),
        Some(u) if u.loopback_only && !peer.to_canonical().is_loopback() => {
            Err(AuthError::LoopbackOnly(user.to_string()))
        }
        Some(_) => Ok(()),
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
