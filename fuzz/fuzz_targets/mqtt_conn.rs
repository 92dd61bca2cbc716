//! Fuzzes whole MQTT connections (3.1.1 and 5.0) against the real broker core: one to three
//! clients, in memory, their packets interleaved in any order and any state
//! (`common/driver.rs`), so that subscriptions, publishes, retained messages, wills, session
//! takeover and persistent sessions meet.
//!
//! Input: a flags byte, then a script of steps. Flags: bits 0-1, the number of connections
//! (1-3); bit 2, "raw" (no CONNECT is written: the fuzzer writes its own); bit 3, MQTT 5.0
//! for connections 0 and 2 (else 3.1.1); bit 4, MQTT 5.0 for connection 1; bit 5, every
//! client uses the same client id (takeover); bit 6, persistent sessions (clean session /
//! clean start off); bit 7, each CONNECT carries a will (QoS 1, retained). Without "raw",
//! each client starts with a CONNECT as guest/guest, keep-alive 60 s.
//!
//! Each step starts with a byte: bits 0-1 pick the connection, the rest the kind of step:
//! 0, raw bytes (a length byte, then the bytes); 1, a packet (its first byte, a length byte
//! and the rest: the remaining length is filled in); 2, run (a byte: the clock moves on by
//! that many quarter seconds); 3, the client hangs up; 4, the broker's periodic tick.

#![no_main]

#[path = "common/driver.rs"]
mod driver;
#[path = "common/mqtt.rs"]
mod mqtt;

use mqtt::{connect, packet};

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
        for c in 0..n {
            let v5 = if c % 2 == 0 {
                flags & 8 != 0
            } else {
                flags & 16 != 0
            };
            let id = if flags & 32 != 0 {
                "c".to_string()
            } else {
                format!("c{c}")
            };
            let connect = connect(v5, &id, flags & 64 == 0, flags & 128 != 0, c);
            actions.push(Action::Write(c, connect));
        }
    }
    while !input.is_empty() && actions.len() < MAX_STEPS {
        let op = input.u8();
        let c = usize::from(op & 3) % n;
        match (op >> 2) % 5 {
            0 => {
                let len = usize::from(input.u8());
                actions.push(Action::Write(c, input.bytes(len).to_vec()));
            }
            1 => {
                let first = input.u8();
                let len = usize::from(input.u8());
                actions.push(Action::Write(c, packet(first, input.bytes(len))));
            }
            2 => actions.push(Action::Run(u64::from(input.u8()) * 250)),
            3 => actions.push(Action::Eof(c)),
            _ => actions.push(Action::Tick),
        }
    }
    driver::run(
        Protocol::Mqtt,
        pigeon_server::ServerConfig::for_tests(),
        n,
        actions,
    );
});
