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

#[path = "common/amqp.rs"]
mod amqp;
#[path = "common/driver.rs"]
mod driver;

use amqp::{channel, frame, handshake, header, method_frame, METHODS};

use driver::{Action, Input, Protocol};
use libfuzzer_sys::fuzz_target;

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
