//! SASL authentication of `connection.start-ok`: PLAIN and AMQPLAIN (EXTERNAL: `cert_login.rs`).

pub use crate::auth::AuthError;
use crate::auth::{AuthenticatedUser, Authenticator};
use amqp_wire::FieldTable;
use bytes::{BufMut, Bytes, BytesMut};
use std::net::IpAddr;

/// The mechanisms offered in `connection.start`.
pub const MECHANISMS: &[u8] = b"PLAIN AMQPLAIN";

/// The mechanisms offered to a client that presented a verified certificate (SASL EXTERNAL,
/// handled by the connection with `cert_login.rs`).
pub const MECHANISMS_WITH_EXTERNAL: &[u8] = b"PLAIN AMQPLAIN EXTERNAL";

/// Checks the credentials in a SASL response against the broker's users.
pub fn authenticate(
    auth: &Authenticator,
    mechanism: &str,
    response: &Bytes,
    peer: IpAddr,
) -> Result<AuthenticatedUser, AuthError> {
    let (user, password) = match mechanism {
        "PLAIN" => plain(response)?,
        "AMQPLAIN" => amqplain(response)?,
        other => return Err(AuthError::Mechanism(other.to_string())),
    };
    auth.authenticate(&user, password.as_bytes(), peer)
}

/// The user a SASL response names (PLAIN, AMQPLAIN), without checking anything: the read
/// barrier (`connection/barrier.rs`) looks it up before the login.
pub fn login_name(mechanism: &str, response: &Bytes) -> Option<String> {
    match mechanism {
        "PLAIN" => plain(response).ok().map(|(user, _)| user),
        "AMQPLAIN" => amqplain(response).ok().map(|(user, _)| user),
        _ => None,
    }
}

/// RFC 4616: `[authzid] NUL authcid NUL passwd`.
fn plain(response: &[u8]) -> Result<(String, String), AuthError> {
    let mut parts = response.split(|&b| b == 0);
    let (_authzid, user, pass) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(u), Some(p), None) => (a, u, p),
        _ => return Err(AuthError::Malformed("PLAIN")),
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| AuthError::Malformed("PLAIN"));
    Ok((text(user)?, text(pass)?))
}

/// RabbitMQ's AMQPLAIN: a field table without its length prefix, with LOGIN and PASSWORD.
fn amqplain(response: &[u8]) -> Result<(String, String), AuthError> {
    let len = u32::try_from(response.len()).map_err(|_| AuthError::Malformed("AMQPLAIN"))?;
    let mut framed = BytesMut::with_capacity(response.len() + 4);
    framed.put_u32(len);
    framed.extend_from_slice(response);
    let table =
        FieldTable::decode(framed.freeze()).map_err(|_| AuthError::Malformed("AMQPLAIN"))?;
    let field = |key: &str| {
        table
            .get(key)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .ok_or(AuthError::Malformed("AMQPLAIN"))
    };
    Ok((field("LOGIN")?, field("PASSWORD")?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use amqp_wire::FieldValue;

    fn guest() -> Authenticator {
        let broker = pigeon_broker::Broker::new();
        broker
            .access()
            .add_user("guest", Some("guest"), Vec::new())
            .unwrap();
        Authenticator::new(broker, ["guest".to_string()], 1.0, 10)
    }

    fn name(r: Result<AuthenticatedUser, AuthError>) -> Result<String, AuthError> {
        r.map(|u| u.name)
    }

    #[test]
    fn plain_accepts_guest_from_loopback_only() {
        let r = Bytes::from_static(b"\0guest\0guest");
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let far: IpAddr = "10.0.0.1".parse().unwrap();
        assert_eq!(
            name(authenticate(&guest(), "PLAIN", &r, lo)),
            Ok("guest".into())
        );
        assert!(matches!(
            authenticate(&guest(), "PLAIN", &r, far),
            Err(AuthError::LoopbackOnly(_))
        ));
        let bad = Bytes::from_static(b"\0guest\0nope");
        assert!(matches!(
            authenticate(&guest(), "PLAIN", &bad, lo),
            Err(AuthError::Credentials(_))
        ));
    }

    #[test]
    fn amqplain_reads_login_and_password() {
        let mut t = FieldTable::new();
        t.insert(
            "LOGIN",
            FieldValue::LongString(Bytes::from_static(b"guest")),
        );
        t.insert(
            "PASSWORD",
            FieldValue::LongString(Bytes::from_static(b"guest")),
        );
        let mut buf = BytesMut::new();
        t.encode(&mut buf);
        let response = buf.freeze().slice(4..);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            name(authenticate(&guest(), "AMQPLAIN", &response, lo)),
            Ok("guest".into())
        );
    }
}
