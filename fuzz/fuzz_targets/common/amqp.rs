//! AMQP 0-9-1 frames for the connection targets: the fuzzer's steps become well-framed
//! methods and content, so that mutations land on arguments rather than on framing.

use crate::driver::Input;

/// The methods a client may send, (class, method): the fuzzer picks by index.
pub const METHODS: &[(u16, u16)] = &[
    (10, 11),
    (10, 21),
    (10, 31),
    (10, 40),
    (10, 50),
    (10, 51),
    (10, 60),
    (10, 61),
    (10, 70),
    (20, 10),
    (20, 20),
    (20, 21),
    (20, 40),
    (20, 41),
    (40, 10),
    (40, 20),
    (40, 30),
    (40, 40),
    (50, 10),
    (50, 20),
    (50, 30),
    (50, 40),
    (50, 50),
    (60, 10),
    (60, 20),
    (60, 30),
    (60, 40),
    (60, 70),
    (60, 80),
    (60, 90),
    (60, 100),
    (60, 110),
    (60, 120),
    (85, 10),
    (90, 10),
    (90, 20),
    (90, 30),
];

/// Channels 0-3 most of the time (where the handshake opened 1), any channel otherwise.
pub fn channel(input: &mut Input) -> u16 {
    match input.u8() {
        b @ 0..=0xEF => u16::from(b % 4),
        _ => input.u16(),
    }
}

pub fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 8);
    f.push(kind);
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xCE);
    f
}

pub fn method_frame(channel: u16, class: u16, method: u16, args: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(args.len() + 4);
    p.extend_from_slice(&class.to_be_bytes());
    p.extend_from_slice(&method.to_be_bytes());
    p.extend_from_slice(args);
    frame(1, channel, &p)
}

/// A content header of class basic: weight 0, the body size, then the fuzzer's property
/// flags and properties.
pub fn header(size: u64, props: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(props.len() + 14);
    p.extend_from_slice(&60u16.to_be_bytes());
    p.extend_from_slice(&0u16.to_be_bytes());
    p.extend_from_slice(&size.to_be_bytes());
    if props.len() < 2 {
        p.extend_from_slice(&[0, 0]);
    } else {
        p.extend_from_slice(props);
    }
    p
}

pub fn shortstr(out: &mut Vec<u8>, s: &str) {
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

/// The protocol header, `start-ok`, `tune-ok`, `open` on `/`, and `channel.open` on 1.
pub fn handshake(heartbeat: u16, open_channel: bool) -> Vec<u8> {
    let mut out = b"AMQP\x00\x00\x09\x01".to_vec();
    let mut start_ok = 0u32.to_be_bytes().to_vec(); // client-properties: an empty table
    shortstr(&mut start_ok, "PLAIN");
    let response = b"\x00guest\x00guest";
    start_ok.extend_from_slice(&(response.len() as u32).to_be_bytes());
    start_ok.extend_from_slice(response);
    shortstr(&mut start_ok, "en_US");
    out.extend(method_frame(0, 10, 11, &start_ok));
    let mut tune_ok = 0u16.to_be_bytes().to_vec();
    tune_ok.extend_from_slice(&131_072u32.to_be_bytes());
    tune_ok.extend_from_slice(&heartbeat.to_be_bytes());
    out.extend(method_frame(0, 10, 31, &tune_ok));
    let mut open = Vec::new();
    shortstr(&mut open, "/");
    shortstr(&mut open, "");
    open.push(0);
    out.extend(method_frame(0, 10, 40, &open));
    if open_channel {
        out.extend(method_frame(1, 20, 10, &[0]));
    }
    out
}
