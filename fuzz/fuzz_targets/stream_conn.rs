//! Fuzzes whole RabbitMQ Stream protocol connections against the real broker core, with a
//! store (in a temporary directory, never synced: streams need one): one to three clients,
//! in memory, their frames interleaved in any order and any state (`common/driver.rs`), so
//! that publishers, de-duplication, subscriptions and credit, offsets, single active
//! consumers, super streams and the handshake meet.
//!
//! Input: a flags byte, then a script of steps. Flags: bits 0-1, the number of connections
//! (1-3); bit 2, "raw" (no handshake is written: the fuzzer writes its own); bit 3,
//! connection 0 creates the stream `s` after its handshake; bit 4, every connection declares
//! publisher 0 (reference `p<c>`) on `s`; bit 5, every connection subscribes (id 0) to `s`
//! from `first` with 10 chunks of credit. Without "raw", each client starts with
//! PeerProperties, SaslHandshake, SaslAuthenticate as guest/guest, Tune and Open `/`.
//!
//! Each step starts with a byte: bits 0-1 pick the connection, the rest the kind of step:
//! 0, raw bytes (a length byte, then the bytes); 1, a frame (a key byte: the command key is
//! its low five bits, bit 7 sets the response flag; a version byte: 1 or 2 from its low bit;
//! a length byte and the body: the size is filled in); 2, run (a byte: the clock moves on by
//! that many quarter seconds); 3, the client hangs up; 4, the broker's periodic tick.

#![no_main]

#[path = "common/driver.rs"]
mod driver;
#[path = "common/stream.rs"]
mod stream;

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
            actions.push(Action::Write(c, stream::handshake()));
        }
        if flags & 8 != 0 {
            actions.push(Action::Write(0, stream::create()));
        }
        for c in 0..n {
            if flags & 16 != 0 {
                actions.push(Action::Write(c, stream::declare_publisher(c)));
            }
            if flags & 32 != 0 {
                actions.push(Action::Write(c, stream::subscribe()));
            }
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
                let k = input.u8();
                let key = u16::from(k & 0x1f) | if k & 0x80 != 0 { 0x8000 } else { 0 };
                let version = 1 + u16::from(input.u8() & 1);
                let len = usize::from(input.u8());
                actions.push(Action::Write(
                    c,
                    stream::frame(key, version, input.bytes(len)),
                ));
            }
            2 => actions.push(Action::Run(u64::from(input.u8()) * 250)),
            3 => actions.push(Action::Eof(c)),
            _ => actions.push(Action::Tick),
        }
    }
    driver::run_with_store(
        Protocol::Stream,
        pigeon_server::ServerConfig::for_tests(),
        n,
        actions,
    );
});
