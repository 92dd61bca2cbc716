//! What the whole-connection targets share: a fresh in-memory server per input, N client
//! byte streams over `tokio::io::duplex`, and a script of writes, pauses and hang-ups
//! interleaved across the connections.
//!
//! Each input runs on its own current-thread runtime with the clock paused: when every task
//! is idle, time jumps to the next timer (heartbeats, handshake and close timeouts, message
//! TTLs), so an input that waits on the clock ends at once and the same way every time. The
//! server's output is drained and thrown away, so it never blocks on a full pipe. At the
//! end every client hangs up; every connection must then end by itself (and, failing
//! that, at the server's shutdown): one that does not is a hang, reported as a panic.

#![allow(dead_code)] // each target uses some of it

use pigeon_server::in_memory::InMemoryServer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, WriteHalf};

/// Which adapter serves the streams.
#[derive(Clone, Copy, Debug)]
pub enum Protocol {
    Amqp,
    Mqtt,
    MqttWs,
    /// The RabbitMQ Stream protocol.
    Stream,
}

/// One step of the script.
#[derive(Debug)]
pub enum Action {
    /// These bytes on this connection.
    Write(usize, Vec<u8>),
    /// Let the server run, then advance the (paused) clock by this many milliseconds.
    Run(u64),
    /// This client hangs up (shuts its writing side).
    Eof(usize),
    /// The broker's periodic work (message TTLs, queue expiry).
    Tick,
}

/// How long one write may wait for the server to read (virtual time): a server that stops
/// reading (flow control, a blocked connection) must not hang the input.
const WRITE_WAIT: Duration = Duration::from_secs(5);

/// Runs `actions` over `n` connections to a fresh server.
pub fn run(
    protocol: Protocol,
    config: pigeon_server::ServerConfig,
    n: usize,
    actions: Vec<Action>,
) {
    run_mixed(&vec![protocol; n], config, actions);
}

/// Runs `actions` over one connection per entry of `protocols` to a fresh server.
pub fn run_mixed(
    protocols: &[Protocol],
    config: pigeon_server::ServerConfig,
    actions: Vec<Action>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let server = Arc::new(InMemoryServer::new(config).expect("an in-memory server"));
    rt.block_on(session(protocols, server, actions));
}

/// As [`run`], on a server with a store in a fresh temporary directory (streams need one),
/// removed afterwards. Put `TMPDIR` on a tmpfs (`/dev/shm`) to keep the disk out of it.
pub fn run_with_store(
    protocol: Protocol,
    config: pigeon_server::ServerConfig,
    n: usize,
    actions: Vec<Action>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let server = Arc::new(
        InMemoryServer::with_store(config, dir.path()).expect("an in-memory server with a store"),
    );
    rt.block_on(session(&vec![protocol; n], Arc::clone(&server), actions));
    drop(server);
}

async fn session(protocols: &[Protocol], server: Arc<InMemoryServer>, actions: Vec<Action>) {
    let mut writers: Vec<Option<WriteHalf<DuplexStream>>> = Vec::with_capacity(protocols.len());
    let mut served = Vec::with_capacity(protocols.len());
    for (i, &protocol) in protocols.iter().enumerate() {
        let (client, stream) = tokio::io::duplex(64 * 1024);
        let (mut read, write) = tokio::io::split(client);
        let peer = SocketAddr::from(([127, 0, 0, 1], 40_000 + i as u16));
        let s = Arc::clone(&server);
        served.push(tokio::spawn(async move {
            match protocol {
                Protocol::Amqp => s.serve_amqp(stream, peer).await,
                Protocol::Mqtt => s.serve_mqtt(stream, peer).await,
                Protocol::MqttWs => s.serve_mqtt_ws(stream, peer).await,
                Protocol::Stream => s.serve_stream(stream, peer).await,
            }
        }));
        // FUZZ_ECHO=1: what the server wrote, to check that a seed does what it means to.
        let echo = std::env::var_os("FUZZ_ECHO").is_some();
        tokio::spawn(async move {
            let mut sink = vec![0u8; 16 * 1024];
            while let Ok(n @ 1..) = read.read(&mut sink).await {
                if echo {
                    eprintln!("[{i}] {:?}", String::from_utf8_lossy(&sink[..n]));
                }
            }
        });
        writers.push(Some(write));
    }
    for action in actions {
        match action {
            Action::Write(c, bytes) => {
                let Some(w) = writers.get_mut(c).and_then(Option::as_mut) else {
                    continue;
                };
                let done = tokio::time::timeout(WRITE_WAIT, w.write_all(&bytes)).await;
                if !matches!(done, Ok(Ok(()))) {
                    hang_up(&mut writers[c]).await;
                }
            }
            Action::Run(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Action::Eof(c) => {
                if let Some(w) = writers.get_mut(c) {
                    hang_up(w).await;
                }
            }
            Action::Tick => server.tick(),
        }
        // Let the connections read what was written before the next step: the interleaving
        // across connections is the script's, not the scheduler's.
        for _ in 0..8 {
            tokio::task::yield_now().await;
        }
    }
    for w in &mut writers {
        hang_up(w).await;
    }
    let all = async {
        for s in &mut served {
            let _ = s.await;
        }
    };
    tokio::pin!(all);
    if tokio::time::timeout(Duration::from_secs(3600), &mut all)
        .await
        .is_ok()
    {
        // Whatever a connection held is given back when it ends (tasks it spawned for that
        // get a moment of virtual time).
        tokio::time::sleep(Duration::from_secs(1)).await;
        let left = server.leftovers();
        assert!(
            left.is_empty(),
            "left behind after every client hung up: {left:?}"
        );
        return;
    }
    server.shutdown();
    if tokio::time::timeout(Duration::from_secs(600), &mut all)
        .await
        .is_err()
    {
        panic!("a connection outlived its client's hang-up and the server's shutdown");
    }
}

async fn hang_up(w: &mut Option<WriteHalf<DuplexStream>>) {
    if let Some(mut w) = w.take() {
        let _ = tokio::time::timeout(WRITE_WAIT, w.shutdown()).await;
    }
}

/// Reads the input left to right; every read past the end gives zeros/empty.
pub struct Input<'a>(pub &'a [u8]);

impl<'a> Input<'a> {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    pub fn bytes(&mut self, n: usize) -> &'a [u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}
