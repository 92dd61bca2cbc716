//! Fuzzes the management HTTP API: the real router over a fresh in-memory broker per input,
//! a few requests in a row (so that what one creates, the next reads, changes or deletes),
//! each with a fuzzed method, path, headers and body, called in memory (`oneshot`).
//!
//! Beyond "never panics": no answer is a 5xx, except the 503 of a failing health check
//! (`/api/health/...`, `/api/aliveness-test/...`), which the API means. A 500 is a bug: the
//! in-memory broker has no store that could refuse a write.
//!
//! Input: a flags byte, then up to 8 requests. Flags: bits 0-1, the credentials: 0-2, basic
//! auth as the default administrator (guest/guest); 3, an `Authorization` value from the
//! input (a length byte and the bytes; none if empty); bit 2, no `content-type:
//! application/json`; bit 3, the caller is not on loopback (guest is then refused). Each
//! request: a method byte (an index into [`METHODS`]; past it, a length byte and the method's
//! bytes), the path (a length byte and the bytes; `/api/` is prepended unless it starts with
//! `/`), a header count (0-3) and each header (name and value, length-prefixed), then the body
//! (a two-byte length and the bytes).

#![no_main]

#[path = "common/driver.rs"]
#[allow(dead_code)]
mod driver;

use driver::Input;
use libfuzzer_sys::fuzz_target;
use pigeon_server::in_memory::InMemoryServer;
use std::net::SocketAddr;

const METHODS: &[&[u8]] = &[
    b"GET", b"PUT", b"POST", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH",
];

const MAX_REQUESTS: usize = 8;

struct Request {
    method: Vec<u8>,
    path: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let flags = input.u8();
    let auth: Option<Vec<u8>> = match flags & 3 {
        3 => {
            let len = usize::from(input.u8());
            Some(input.bytes(len).to_vec()).filter(|v| !v.is_empty())
        }
        _ => Some(b"Basic Z3Vlc3Q6Z3Vlc3Q=".to_vec()),
    };
    let json = flags & 4 == 0;
    let peer = if flags & 8 == 0 {
        SocketAddr::from(([127, 0, 0, 1], 40_000))
    } else {
        SocketAddr::from(([10, 0, 0, 1], 40_000))
    };
    let mut requests = Vec::new();
    while !input.is_empty() && requests.len() < MAX_REQUESTS {
        let index = usize::from(input.u8());
        let method = match METHODS.get(index) {
            Some(m) => m.to_vec(),
            None => {
                let len = usize::from(input.u8());
                input.bytes(len).to_vec()
            }
        };
        let len = usize::from(input.u8());
        let raw = input.bytes(len);
        let path = if raw.first() == Some(&b'/') {
            raw.to_vec()
        } else {
            [b"/api/".as_slice(), raw].concat()
        };
        let mut headers = Vec::new();
        if let Some(a) = &auth {
            headers.push((b"authorization".to_vec(), a.clone()));
        }
        if json {
            headers.push((b"content-type".to_vec(), b"application/json".to_vec()));
        }
        for _ in 0..input.u8() % 4 {
            let len = usize::from(input.u8());
            let name = input.bytes(len).to_vec();
            let len = usize::from(input.u8());
            headers.push((name, input.bytes(len).to_vec()));
        }
        let len = usize::from(input.u16());
        let body = input.bytes(len).to_vec();
        requests.push(Request {
            method,
            path,
            headers,
            body,
        });
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let server =
        InMemoryServer::new(pigeon_server::ServerConfig::for_tests()).expect("an in-memory server");
    rt.block_on(async {
        for r in &requests {
            let headers: Vec<(&[u8], &[u8])> = r
                .headers
                .iter()
                .map(|(n, v)| (n.as_slice(), v.as_slice()))
                .collect();
            let Some(answer) = server
                .http(&r.method, &r.path, &headers, r.body.clone(), peer)
                .await
            else {
                continue;
            };
            if std::env::var_os("FUZZ_ECHO").is_some() {
                eprintln!(
                    "{} {} -> {} {}",
                    String::from_utf8_lossy(&r.method),
                    String::from_utf8_lossy(&r.path),
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                );
            }
            let health =
                r.path.starts_with(b"/api/health/") || r.path.starts_with(b"/api/aliveness-test/");
            if answer.status >= 500 && !(answer.status == 503 && health) {
                panic!(
                    "{} {} -> {}: {}",
                    String::from_utf8_lossy(&r.method),
                    String::from_utf8_lossy(&r.path),
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                );
            }
        }
    });
});
