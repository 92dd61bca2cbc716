//! The management API client: where the node is, who we are, and one blocking request at a time.
//!
//! **Where and who**, first found wins: the `--node`/`--username`/`--password` flags, then
//! `PIGEON_URL`/`PIGEON_USER`/`PIGEON_PASS`, then a rabbitmqadmin configuration file
//! (`--config FILE`, else `~/.rabbitmqadmin.conf` when it exists: the section `--node` names,
//! else `[default]`, with rabbitmqadmin's keys `hostname`, `port`, `username`, `password`,
//! `ssl`, `path_prefix`), then rabbitmqadmin's defaults: `http://localhost:15672`, guest/guest.
//! `--node` takes a URL (`http://host:15672`, credentials in it allowed), a configuration
//! section, rabbitmqctl's `rabbit@host` (the host's API on 15672) or `host[:port]`.
//!
//! **Requests** go through `ureq` (rustls with ring; `--cacert` adds trusted certificates,
//! `--insecure` skips verification). An HTTP error status is an answer, not a failure: the
//! commands read RabbitMQ's `{"error", "reason"}` bodies and decide what it means for them.

use super::args::Opts;
use super::error::{CtlError, CtlResult};
use base64::Engine;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// rabbitmqadmin's default node.
const DEFAULT_URL: &str = "http://localhost:15672";
/// The management API's port when only a host is named.
const DEFAULT_PORT: u16 = 15672;
/// How long a request may take unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest answer read (a definitions export of a big broker is tens of MB).
const MAX_ANSWER: u64 = 1 << 30;

/// A node's API, ready to be called.
pub struct Node {
    base: String,
    user: String,
    password: String,
    agent: ureq::Agent,
}

/// An answer: the HTTP status and the body (JSON, or `Value::Null`).
#[derive(Debug)]
pub struct Reply {
    /// The HTTP status.
    pub status: u16,
    /// The body parsed as JSON (`Value::Null` when empty or not JSON).
    pub body: Value,
}

impl Reply {
    /// Whether the status is 2xx.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// RabbitMQ's error reason (`{"error": ..., "reason": ...}`), or the status.
    pub fn reason(&self) -> String {
        match self.body.get("reason").and_then(Value::as_str) {
            Some(r) if !r.is_empty() => r.to_string(),
            _ => match self.body.get("error").and_then(Value::as_str) {
                Some(e) => e.to_string(),
                None => format!("HTTP status {}", self.status),
            },
        }
    }
}

impl Node {
    /// The node the options, environment and configuration file name.
    pub fn from_opts(opts: &Opts) -> CtlResult<Node> {
        let target = Target::resolve(opts)?;
        let mut tls = ureq::tls::TlsConfig::builder().disable_verification(opts.insecure);
        if let Some(path) = &opts.cacert {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&read_certs(path)?));
        }
        let timeout = opts
            .timeout
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_TIMEOUT);
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .tls_config(tls.build())
            .build();
        Ok(Node {
            base: target.url,
            user: target.user,
            password: target.password,
            agent: config.into(),
        })
    }

    /// The node's URL, as messages name it.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The same node, logging in as someone else (`authenticate_user`).
    pub fn as_user(&self, user: &str, password: &str) -> Node {
        Node {
            base: self.base.clone(),
            user: user.to_string(),
            password: password.to_string(),
            agent: self.agent.clone(),
        }
    }

    /// Sends a request; `body` is sent as JSON. `headers` are extra headers (`X-Reason`).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> CtlResult<Reply> {
        let url = format!("{}{path}", self.base);
        let credentials = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.password));
        let auth = format!("Basic {credentials}");
        let result = match (method, body) {
            ("GET" | "DELETE", _) => {
                let mut request = if method == "GET" {
                    self.agent.get(&url)
                } else {
                    self.agent.delete(&url)
                };
                request = request.header("authorization", &auth);
                for (k, v) in headers {
                    request = request.header(*k, *v);
                }
                request.call()
            }
            (_, body) => {
                let mut request = if method == "POST" {
                    self.agent.post(&url)
                } else {
                    self.agent.put(&url)
                };
                request = request.header("authorization", &auth);
                for (k, v) in headers {
                    request = request.header(*k, *v);
                }
                let bytes = body.map(Value::to_string).unwrap_or_default();
                request
                    .content_type("application/json")
                    .send(bytes.as_bytes())
            }
        };
        let mut response = result.map_err(|e| self.transport_error(e))?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec()
            .map_err(|e| self.transport_error(e))?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Reply { status, body })
    }

    /// `GET path`, expecting 2xx; a 401 is the login refused, anything else an error.
    pub fn get(&self, path: &str) -> CtlResult<Value> {
        let reply = self.call("GET", path, None, &[])?;
        if reply.ok() {
            return Ok(reply.body);
        }
        Err(self.refused(&reply))
    }

    /// `GET path`: `None` on 404.
    pub fn get_opt(&self, path: &str) -> CtlResult<Option<Value>> {
        let reply = self.call("GET", path, None, &[])?;
        match reply.status {
            404 => Ok(None),
            _ if reply.ok() => Ok(Some(reply.body)),
            _ => Err(self.refused(&reply)),
        }
    }

    /// A request that must succeed: 2xx, else the error the reply says.
    pub fn send(&self, method: &str, path: &str, body: Option<&Value>) -> CtlResult<Reply> {
        let reply = self.call(method, path, body, &[])?;
        if reply.ok() {
            return Ok(reply);
        }
        Err(self.refused(&reply))
    }

    /// The error for an unexpected answer: 401 and 403 are the node refusing us (69, as
    /// rabbitmqctl answers a node it cannot authenticate to), 400 a bad argument (65), 404 a
    /// missing object (65), anything else a software error (70).
    pub fn refused(&self, reply: &Reply) -> CtlError {
        let reason = reply.reason();
        match reply.status {
            401 | 403 => CtlError::Unavailable(format!(
                "access to {} refused for user '{}': {reason}",
                self.base, self.user
            )),
            400 => CtlError::Data(reason),
            404 => CtlError::Data(format!("not found: {reason}")),
            status => CtlError::Software(format!("the node answered {status}: {reason}")),
        }
    }

    fn transport_error(&self, e: ureq::Error) -> CtlError {
        match e {
            ureq::Error::Timeout(_) => {
                CtlError::TempFail(format!("the node at {} did not answer in time", self.base))
            }
            e => CtlError::Unavailable(format!("unable to reach the node at {}: {e}", self.base)),
        }
    }
}

/// Encodes one path segment (a vhost, a queue name) as the API expects: `/` is `%2F`.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The node and the credentials, resolved.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    url: String,
    user: String,
    password: String,
}

impl Target {
    fn resolve(opts: &Opts) -> CtlResult<Target> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let config = config_file(opts)?;
        Ok(Target::from_sources(
            opts.node.clone(),
            opts.username.clone(),
            opts.password.clone(),
            (env("PIGEON_URL"), env("PIGEON_USER"), env("PIGEON_PASS")),
            config.as_ref(),
        ))
    }

    fn from_sources(
        node: Option<String>,
        user: Option<String>,
        password: Option<String>,
        env: (Option<String>, Option<String>, Option<String>),
        config: Option<&Ini>,
    ) -> Target {
        let (env_url, env_user, env_pass) = env;
        // The config section: the one --node names, else [default].
        let section = config.and_then(|ini| {
            node.as_deref()
                .and_then(|n| ini.get(n))
                .or_else(|| ini.get("default"))
        });
        let named_section = node
            .as_deref()
            .is_some_and(|n| config.is_some_and(|ini| ini.contains_key(n)));
        let from_flag = node.filter(|_| !named_section).map(|n| node_url(&n));
        let from_section = section.map(|s| {
            let tls = s
                .get("ssl")
                .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes"));
            let host = s.get("hostname").map_or("localhost", String::as_str);
            let port = s.get("port").map_or(DEFAULT_PORT.to_string(), Clone::clone);
            let prefix = s.get("path_prefix").map_or("", |p| p.trim_end_matches('/'));
            let scheme = if tls { "https" } else { "http" };
            (format!("{scheme}://{host}:{port}{prefix}"), None, None)
        });
        let (url, url_user, url_pass) = from_flag
            .or_else(|| env_url.map(|u| node_url(&u)))
            .or(from_section)
            .unwrap_or_else(|| (DEFAULT_URL.to_string(), None, None));
        let conf = |k: &str| section.and_then(|s| s.get(k)).cloned();
        Target {
            url,
            user: user
                .or(env_user)
                .or(url_user)
                .or_else(|| conf("username"))
                .unwrap_or_else(|| "guest".into()),
            password: password
                .or(env_pass)
                .or(url_pass)
                .or_else(|| conf("password"))
                .unwrap_or_else(|| "guest".into()),
        }
    }
}

/// A node given on the command line or in `PIGEON_URL`: the base URL and the credentials a
/// URL carries (`http://user:pass@host:port`).
fn node_url(node: &str) -> (String, Option<String>, Option<String>) {
    let node = node.trim_end_matches('/');
    let Some((scheme, rest)) = node.split_once("://") else {
        // rabbitmqctl's `rabbit@host`, or `host[:port]`.
        let host = node.rsplit('@').next().unwrap_or(node);
        return if host.contains(':') {
            (format!("http://{host}"), None, None)
        } else {
            (format!("http://{host}:{DEFAULT_PORT}"), None, None)
        };
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((creds, host)) => {
            let (u, p) = match creds.split_once(':') {
                Some((u, p)) => (u.to_string(), Some(p.to_string())),
                None => (creds.to_string(), None),
            };
            (format!("{scheme}://{host}{path}"), Some(u), p)
        }
        None => (node.to_string(), None, None),
    }
}

/// An INI file's sections: name -> key -> value (Python's configparser syntax, which
/// rabbitmqadmin reads: `key = value` or `key: value`, `#` and `;` comments).
type Ini = BTreeMap<String, BTreeMap<String, String>>;

fn config_file(opts: &Opts) -> CtlResult<Option<Ini>> {
    let (path, required): (PathBuf, bool) = match &opts.config {
        Some(p) => (p.clone(), true),
        None => match std::env::var_os("HOME") {
            Some(home) => (Path::new(&home).join(".rabbitmqadmin.conf"), false),
            None => return Ok(None),
        },
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(parse_ini(&text))),
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(CtlError::Data(format!(
            "cannot read the configuration file {}: {e}",
            path.display()
        ))),
    }
}

fn parse_ini(text: &str) -> Ini {
    let mut ini = Ini::new();
    let mut section = String::from("default");
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.trim().to_string();
            ini.entry(section.clone()).or_default();
            continue;
        }
        let split = line.find(['=', ':']).map(|i| line.split_at(i));
        if let Some((k, v)) = split {
            ini.entry(section.clone())
                .or_default()
                .insert(k.trim().to_string(), v[1..].trim().to_string());
        }
    }
    ini
}

fn read_certs(path: &Path) -> CtlResult<Vec<ureq::tls::Certificate<'static>>> {
    let pem = std::fs::read(path)
        .map_err(|e| CtlError::Data(format!("cannot read {}: {e}", path.display())))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(CtlError::Data(format!(
                    "cannot parse {}: {e}",
                    path.display()
                )))
            }
        }
    }
    if certs.is_empty() {
        return Err(CtlError::Data(format!(
            "no certificate in {}",
            path.display()
        )));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(node: Option<&str>, env: Option<&str>, ini: Option<&str>) -> Target {
        let ini = ini.map(parse_ini);
        Target::from_sources(
            node.map(String::from),
            None,
            None,
            (env.map(String::from), None, None),
            ini.as_ref(),
        )
    }

    #[test]
    fn defaults_are_rabbitmqadmins() {
        let target = t(None, None, None);
        assert_eq!(target.url, "http://localhost:15672");
        assert_eq!(
            (target.user.as_str(), target.password.as_str()),
            ("guest", "guest")
        );
    }

    #[test]
    fn node_forms() {
        assert_eq!(t(Some("rabbit@db1"), None, None).url, "http://db1:15672");
        assert_eq!(t(Some("db1:8080"), None, None).url, "http://db1:8080");
        let target = t(Some("https://ops:s3cret@db1:15671/"), None, None);
        assert_eq!(target.url, "https://db1:15671");
        assert_eq!(
            (target.user.as_str(), target.password.as_str()),
            ("ops", "s3cret")
        );
    }

    #[test]
    fn flag_beats_environment_beats_config() {
        let ini = "[default]\nhostname = conf\nport = 1\nusername = cu\npassword: cp\n";
        assert_eq!(t(None, None, Some(ini)).url, "http://conf:1");
        assert_eq!(t(None, None, Some(ini)).user, "cu");
        assert_eq!(t(None, None, Some(ini)).password, "cp");
        assert_eq!(t(None, Some("http://env:2"), Some(ini)).url, "http://env:2");
        assert_eq!(
            t(Some("http://flag:3"), Some("http://env:2"), Some(ini)).url,
            "http://flag:3"
        );
    }

    #[test]
    fn node_may_name_a_config_section() {
        let ini = "[default]\nhostname = a\n[prod]\nhostname = b\nssl = True\nport = 15671\n";
        assert_eq!(t(Some("prod"), None, Some(ini)).url, "https://b:15671");
    }

    #[test]
    fn path_segments_are_percent_encoded() {
        assert_eq!(seg("/"), "%2F");
        assert_eq!(seg("a b/ü"), "a%20b%2F%C3%BC");
        assert_eq!(seg("q-1.x_~"), "q-1.x_~");
    }
}
