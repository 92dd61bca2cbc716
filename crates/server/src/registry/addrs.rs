//! A connection's two addresses, compact: the registry keeps one entry per connection and two
//! `SocketAddr`s take 64 bytes of it (32 each, IPv6's size), where the usual IPv4 pair is 12
//! (docs/performance.md, "Idle connections", the fifth pass).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// The client's address and ours: inline for an IPv4 pair, boxed otherwise (IPv6, or no
/// local address). 16 bytes either way.
#[derive(Debug, Clone)]
pub(crate) enum Addrs {
    /// Both IPv4 (the common case): addresses and ports inline.
    V4 {
        peer: [u8; 4],
        local: [u8; 4],
        peer_port: u16,
        local_port: u16,
    },
    /// Anything else, boxed.
    Other(Box<(SocketAddr, Option<SocketAddr>)>),
}

impl Addrs {
    pub(crate) fn new(peer: SocketAddr, local: Option<SocketAddr>) -> Addrs {
        match (peer, local) {
            (SocketAddr::V4(p), Some(SocketAddr::V4(l))) => Addrs::V4 {
                peer: p.ip().octets(),
                local: l.ip().octets(),
                peer_port: p.port(),
                local_port: l.port(),
            },
            _ => Addrs::Other(Box::new((peer, local))),
        }
    }

    /// The client's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        match self {
            Addrs::V4 {
                peer, peer_port, ..
            } => SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(*peer), *peer_port)),
            Addrs::Other(b) => b.0,
        }
    }

    /// Ours, where the client connected (none when the socket could not say).
    pub(crate) fn local(&self) -> Option<SocketAddr> {
        match self {
            Addrs::V4 {
                local, local_port, ..
            } => Some(SocketAddr::V4(SocketAddrV4::new(
                Ipv4Addr::from(*local),
                *local_port,
            ))),
            Addrs::Other(b) => b.1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_round_trip() {
        let v4: SocketAddr = "10.1.2.3:54321".parse().unwrap();
        let l4: SocketAddr = "127.0.0.1:5672".parse().unwrap();
        let v6: SocketAddr = "[::1]:1883".parse().unwrap();
        for (peer, local) in [(v4, Some(l4)), (v4, None), (v6, Some(l4)), (v4, Some(v6))] {
            let a = Addrs::new(peer, local);
            assert_eq!((a.peer(), a.local()), (peer, local));
        }
        assert!(matches!(Addrs::new(v4, Some(l4)), Addrs::V4 { .. }));
        assert_eq!(std::mem::size_of::<Addrs>(), 16);
    }
}
