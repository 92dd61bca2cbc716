//! `pigeon bench` over TLS against the real binary: `pigeon` runs as a child process with AMQPS
//! and MQTTS listeners (a CA and certificates made by rcgen, client certificates required), and
//! `pigeon bench` runs as another, as a user would run them. Every message must arrive exactly
//! once (the bench's own check: it exits non-zero otherwise), with bodies large enough to span
//! several TLS records; a bench without a client certificate, or trusting another CA, must fail
//! to connect and say why.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long the broker may take to say where it listens.
const STARTUP: Duration = Duration::from_secs(30);

fn dn(cn: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, cn);
    name
}

/// A CA and its files in a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let pki = Pki {
            dir: tempfile::tempdir().unwrap(),
            ca,
        };
        pki.write("ca.pem", &pki.ca.pem());
        pki
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Signs a certificate and writes `<name>.pem` and `<name>.key`.
    fn issue(&self, name: &str, mut params: CertificateParams) {
        let key = KeyPair::generate().unwrap();
        params.distinguished_name = dn(name);
        let cert = params.signed_by(&key, &self.ca).unwrap();
        self.write(&format!("{name}.pem"), &cert.pem());
        self.write(&format!("{name}.key"), &key.serialize_pem());
    }

    fn server(&self) {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().unwrap()),
            SanType::IpAddress([127, 0, 0, 1].into()),
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue("server", params);
    }

    fn client(&self) {
        let mut params = CertificateParams::default();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue("client", params);
    }
}

/// The broker as a child process; killed when dropped.
struct Pigeon {
    child: Child,
    amqps: SocketAddr,
    mqtts: SocketAddr,
}

impl Drop for Pigeon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Pigeon {
    fn start(pki: &Pki) -> Pigeon {
        let p = |name: &str| pki.path(name).display().to_string();
        let config = pki.write(
            "pigeon.toml",
            &format!(
                "[server]\n\
                 amqps_listen = \"127.0.0.1:0\"\n\
                 mqtts_listen = \"127.0.0.1:0\"\n\
                 mqtt_wss_listen = []\n\
                 management_tls_listen = []\n\
                 prometheus_tls_listen = []\n\
                 stream_tls_listen = []\n\
                 data_dir = \"{data}\"\n\
                 [tls]\n\
                 certfile = \"{cert}\"\n\
                 keyfile = \"{key}\"\n\
                 cacertfile = \"{ca}\"\n\
                 verify = \"verify_peer\"\n\
                 fail_if_no_peer_cert = true\n",
                data = p("data"),
                cert = p("server.pem"),
                key = p("server.key"),
                ca = p("ca.pem"),
            ),
        );
        let (mut child, log, rx) =
            crate::spawn::spawn_pigeon(env!("CARGO_BIN_EXE_pigeon"), &config);
        let deadline = Instant::now() + STARTUP;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "pigeon did not say where it listens:\n{}",
                    log.lock().unwrap().join("\n")
                );
            };
            if line.contains(" listening for ") {
                let addr = |what: &str| -> SocketAddr {
                    let rest = line
                        .split(what)
                        .nth(1)
                        .unwrap_or_else(|| panic!("{what} in {line}"));
                    rest.split([',', ' ']).next().unwrap().parse().unwrap()
                };
                return Pigeon {
                    amqps: addr("AMQPS on "),
                    mqtts: addr("MQTTS on "),
                    child,
                };
            }
        }
    }
}

/// Runs `pigeon bench ARGS --json` to the end.
fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pigeon"))
        .arg("bench")
        .args(args)
        .args(["--json", "--timeout", "20"])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// The bench passed: exit 0, and its report counts every message once.
fn assert_exactly_once(out: &Output, expected: u64) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(report["consumed"], expected, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicates"], 0, "{report}");
}

fn tls_flags(pki: &Pki) -> Vec<String> {
    let p = |name: &str| pki.path(name).display().to_string();
    vec![
        "--cacert".into(),
        p("ca.pem"),
        "--cert".into(),
        p("client.pem"),
        "--key".into(),
        p("client.key"),
    ]
}

fn run_bench(url: &str, flags: &[String], rest: &[&str]) -> Output {
    let mut args = vec!["--url", url];
    if let Some(mode) = rest.first().filter(|m| **m == "mqtt") {
        args.insert(0, mode);
    }
    args.extend(flags.iter().map(String::as_str));
    args.extend(rest.iter().filter(|a| **a != "mqtt"));
    bench(&args)
}

fn pki() -> Pki {
    let pki = Pki::new("bench test CA");
    pki.server();
    pki.client();
    pki
}

#[test]
fn amqp_over_tls_delivers_every_message_once_small_and_across_records() {
    let pki = pki();
    let broker = Pigeon::start(&pki);
    let url = format!("amqps://guest:guest@localhost:{}/%2f", broker.amqps.port());
    let flags = tls_flags(&pki);
    // 1 KiB bodies, many per record; then 40 KiB bodies, each over several 16 KiB records.
    let out = run_bench(
        &url,
        &flags,
        &["-x", "2", "-y", "2", "-s", "1024", "--count", "5000"],
    );
    assert_exactly_once(&out, 10_000);
    let out = run_bench(&url, &flags, &["-s", "40960", "--count", "300", "--ack"]);
    assert_exactly_once(&out, 300);
}

#[test]
fn mqtt_over_tls_delivers_every_message_once() {
    let pki = pki();
    let broker = Pigeon::start(&pki);
    // --tls turns mqtt:// into mqtts://; the certificate names 127.0.0.1 too.
    let url = format!("mqtt://127.0.0.1:{}", broker.mqtts.port());
    let mut flags = tls_flags(&pki);
    flags.push("--tls".into());
    let out = run_bench(
        &url,
        &flags,
        &["mqtt", "-s", "64", "--qos", "1", "--count", "5000"],
    );
    assert_exactly_once(&out, 5000);
}

#[test]
fn bench_without_a_client_certificate_or_trusting_another_ca_cannot_connect() {
    let pki = pki();
    let broker = Pigeon::start(&pki);
    let url = format!("amqps://guest:guest@localhost:{}/%2f", broker.amqps.port());
    let ca = pki.path("ca.pem").display().to_string();
    // The broker requires a client certificate (fail_if_no_peer_cert).
    let out = bench(&["--url", &url, "--cacert", &ca, "--count", "10"]);
    assert!(!out.status.success());

    let other = Pki::new("another CA");
    let other_ca = other.path("ca.pem").display().to_string();
    let mut flags = tls_flags(&pki);
    flags[1] = other_ca;
    let out = run_bench(&url, &flags, &["--count", "10"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
}
