//! Fuzzes whole AMQP 0-9-1 connections against the real broker core: one to three clients,
//! in memory, their frames interleaved in any order and any state (`common/driver.rs`).
//!
//! Input: a flags byte, then a script of steps. Flags: bits 0-1, the number of connections
//! (1-3); bit 2, "raw" (no handshake is written for the clients: the fuzzer writes the
//! protocol header and `connection.*` itself); bit 3, no `channel.open` on channel 1 after
//! the handshake; bit 4, a 5 s heartbeat instead of none. Without "raw", each client starts
//! with the protocol header, `start-ok` (PLAIN guest/guest), `tune-ok` and `open` on `/`, so
//! the fuzzer spends its time on channels, methods and content.
//!
//! Each step starts with a byte: bits 0-1 pick the connection, the rest the kind of step:
//! 0, raw bytes (a length byte, then the bytes); 1, a method frame (channel, method index
//! into [`METHODS`] or an explicit class and method id, then a length byte and the
//! arguments: the frame's size and end octet are filled in); 2, a content header and body
//! (channel, properties, body size; the body from the input); 3, run (a byte: the clock moves
//! on by that many quarter seconds); 4, the client hangs up; 5, the broker's periodic tick.

#![no_main]

#[path = "common/driver.rs"]
mod driver;

use driver::{Action, Input, Protocol};
use libfuzzer_sys::fuzz_target;

/// The methods a client may send, (class, method): the fuzzer picks by index.
const METHODS: &[(u16, u16)] = &[
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

/// At most this many steps per input: an input is one short session.
const MAX_STEPS: usize = 256;

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let flags = input.u8();
    let n = 1 + usize::from(flags & 3) % 3;
    let mut actions = Vec::new();
    if flags & 4 == 0 {
        let heartbeat = if flags & 16 != 0 { 5 } else { 0 };
        for c in 0..n {
            actions.push(Action::Write(c, handshake(heartbeat, flags & 8 == 0)));
        }
    }
    while !input.is_empty() && actions.len() < MAX_STEPS {
        let op = input.u8();
        let c = usize::from(op & 3) % n;
        match (op >> 2) % 6 {
            0 => {
                let len = usize::from(input.u8());
                actions.push(Action::Write(c, input.bytes(len).to_vec()));
            }
            1 => {
                let channel = channel(&mut input);
                let index = usize::from(input.u8());
                let (class, method) = match METHODS.get(index) {
                    Some(&m) => m,
                    None => (input.u16(), input.u16()),
                };
                let len = usize::from(input.u8());
                let args = input.bytes(len);
                actions.push(Action::Write(c, method_frame(channel, class, method, args)));
            }
            2 => {
                let channel = channel(&mut input);
                let len = usize::from(input.u8());
                let props = input.bytes(len);
                let size = input.u16();
                let body = input.bytes(usize::from(size));
                let mut out = frame(2, channel, &header(size.into(), props));
                if !body.is_empty() {
                    out.extend_from_slice(&frame(3, channel, body));
                }
                actions.push(Action::Write(c, out));
            }
            3 => actions.push(Action::Run(u64::from(input.u8()) * 250)),
            4 => actions.push(Action::Eof(c)),
            _ => actions.push(Action::Tick),
        }
    }
    driver::run(
        Protocol::Amqp,
        pigeon_server::ServerConfig::for_tests(),
        n,
        actions,
    );
});

/// Channels 0-3 most of the time (where the handshake opened 1), any channel otherwise.
fn channel(input: &mut Input) -> u16 {
    match input.u8() {
        b @ 0..=0xEF => u16::from(b % 4),
        _ => input.u16(),
    }
}

fn frame(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(payload.len() + 8);
    f.push(kind);
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xCE);
    f
}

fn method_frame(channel: u16, class: u16, method: u16, args: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(args.len() + 4);
    p.extend_from_slice(&class.to_be_bytes());
    p.extend_from_slice(&method.to_be_bytes());
    p.extend_from_slice(args);
    frame(1, channel, &p)
}

/// A content header of class basic: weight 0, the body size, then the fuzzer's property
/// flags and properties.
fn header(size: u64, props: &[u8]) -> Vec<u8> {
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

fn shortstr(out: &mut Vec<u8>, s: &str) {
    out.push(s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}

/// The protocol header, `start-ok`, `tune-ok`, `open` on `/`, and `channel.open` on 1.
fn handshake(heartbeat: u16, open_channel: bool) -> Vec<u8> {
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
