//! Fuzzes AMQP and MQTT clients on one broker at once (`common/driver.rs`): what one protocol
//! publishes, the other consumes (`amq.topic`, the message conversions in
//! `server/src/amqp/convert.rs` and `server/src/mqtt/convert.rs`), and what one deletes, the
//! other was using.
//!
//! Connection 0 speaks AMQP (handshake and `channel.open 1` pre-written), connection 1 MQTT
//! (a CONNECT pre-written), connection 2, if any, AMQP again. Input: a flags byte, then steps.
//! Flags: bit 0, MQTT 5.0 (else 3.1.1); bit 1, the third connection; bit 2, a persistent
//! MQTT session; bit 3, an MQTT will. Each step starts with a byte: bits 0-2 (mod 7) are the
//! kind, bit 3 picks connection 2 over 0 for AMQP steps, bits 4-5 the connection for raw
//! bytes and hang-ups. Kinds: 0, raw bytes (a length byte, then the bytes); 1, an AMQP method
//! frame and 2, an AMQP content header and body (as in `amqp_conn.rs`); 3, an MQTT packet (as
//! in `mqtt_conn.rs`); 4, run (a byte: quarter seconds of clock); 5, a client hangs up; 6, the
//! broker's periodic tick.

#![no_main]

#[path = "common/amqp.rs"]
mod amqp;
#[path = "common/driver.rs"]
mod driver;
#[path = "common/mqtt.rs"]
mod mqtt;

use amqp::{channel, frame, handshake, header, method_frame, METHODS};
use driver::{Action, Input, Protocol};
use libfuzzer_sys::fuzz_target;

const MAX_STEPS: usize = 256;

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let flags = input.u8();
    let mut protocols = vec![Protocol::Amqp, Protocol::Mqtt];
    if flags & 2 != 0 {
        protocols.push(Protocol::Amqp);
    }
    let n = protocols.len();
    let mut actions = vec![
        Action::Write(0, handshake(0, true)),
        Action::Write(
            1,
            mqtt::connect(flags & 1 != 0, "m", flags & 4 == 0, flags & 8 != 0, 1),
        ),
    ];
    if n == 3 {
        actions.push(Action::Write(2, handshake(0, true)));
    }
    while !input.is_empty() && actions.len() < MAX_STEPS {
        let op = input.u8();
        let amqp_conn = if op & 8 != 0 && n == 3 { 2 } else { 0 };
        let c = usize::from((op >> 4) & 3) % n;
        match (op & 7) % 7 {
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
                let f = method_frame(channel, class, method, args);
                actions.push(Action::Write(amqp_conn, f));
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
                actions.push(Action::Write(amqp_conn, out));
            }
            3 => {
                let first = input.u8();
                let len = usize::from(input.u8());
                actions.push(Action::Write(1, mqtt::packet(first, input.bytes(len))));
            }
            4 => actions.push(Action::Run(u64::from(input.u8()) * 250)),
            5 => actions.push(Action::Eof(c)),
            _ => actions.push(Action::Tick),
        }
    }
    driver::run_mixed(
        &protocols,
        pigeon_server::ServerConfig::for_tests(),
        actions,
    );
});
