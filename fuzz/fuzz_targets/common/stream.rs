//! RabbitMQ Stream protocol frames for the connection target: the size filled in, the
//! handshake as guest/guest into vhost `/`.

/// A frame: its size, key, version, then `body` (correlation id and fields).
pub fn frame(key: u16, version: u16, body: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(8 + body.len());
    f.extend_from_slice(&((4 + body.len()) as u32).to_be_bytes());
    f.extend_from_slice(&key.to_be_bytes());
    f.extend_from_slice(&version.to_be_bytes());
    f.extend_from_slice(body);
    f
}

/// A protocol string (i16 length, bytes).
pub fn string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// PeerProperties, SaslHandshake, SaslAuthenticate (PLAIN guest/guest), Tune (the server's
/// defaults, as clients echo them) and Open `/`, with correlation ids 1 to 4.
pub fn handshake() -> Vec<u8> {
    let mut out = frame(0x0011, 1, &[0, 0, 0, 1, 0, 0, 0, 0]);
    out.extend(frame(0x0012, 1, &[0, 0, 0, 2]));
    let mut auth = vec![0, 0, 0, 3];
    string(&mut auth, "PLAIN");
    auth.extend_from_slice(&12u32.to_be_bytes());
    auth.extend_from_slice(b"\0guest\0guest");
    out.extend(frame(0x0013, 1, &auth));
    let mut tune = 1_048_576u32.to_be_bytes().to_vec();
    tune.extend_from_slice(&60u32.to_be_bytes());
    out.extend(frame(0x0014, 1, &tune));
    let mut open = vec![0, 0, 0, 4];
    string(&mut open, "/");
    out.extend(frame(0x0015, 1, &open));
    out
}

/// Create stream `s` (no arguments), correlation id 5.
pub fn create() -> Vec<u8> {
    let mut body = vec![0, 0, 0, 5];
    string(&mut body, "s");
    body.extend_from_slice(&[0, 0, 0, 0]);
    frame(0x000d, 1, &body)
}

/// DeclarePublisher id 0, reference `p<c>`, on `s`, correlation id 6.
pub fn declare_publisher(c: usize) -> Vec<u8> {
    let mut body = vec![0, 0, 0, 6, 0];
    string(&mut body, &format!("p{c}"));
    string(&mut body, "s");
    frame(0x0001, 1, &body)
}

/// Subscribe id 0 to `s` from `first` with a credit of 10 chunks, correlation id 7.
pub fn subscribe() -> Vec<u8> {
    let mut body = vec![0, 0, 0, 7, 0];
    string(&mut body, "s");
    body.extend_from_slice(&1u16.to_be_bytes()); // offset type first
    body.extend_from_slice(&10u16.to_be_bytes()); // credit
    body.extend_from_slice(&[0, 0, 0, 0]); // no properties
    frame(0x0007, 1, &body)
}
