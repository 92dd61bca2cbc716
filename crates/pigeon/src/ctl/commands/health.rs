//! `await_startup` and the rabbitmq-diagnostics checks scripts and probes run: `ping`,
//! `check_running`, `check_local_alarms`, `check_port_connectivity`. A failed check exits 69,
//! as rabbitmq-diagnostics does.

use super::Ctx;
use crate::ctl::args::arity;
use crate::ctl::error::{CtlError, CtlResult};
use serde_json::{json, Value};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// How long `await_startup` waits unless `--timeout` says otherwise (rabbitmqctl's default).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(300);
/// How often `await_startup` asks again while the node does not answer.
const STARTUP_POLL: Duration = Duration::from_millis(200);

fn node_name(overview: &Value) -> &str {
    overview.get("node").and_then(Value::as_str).unwrap_or("")
}

/// `await_startup [--timeout s]`: waits until the node answers its API (a node still starting
/// has not bound its port yet: refused connections are retried until the timeout).
pub fn await_startup(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 0, 0)?;
    let timeout = ctx
        .inv
        .opts
        .timeout
        .map(Duration::from_secs)
        .unwrap_or(STARTUP_TIMEOUT);
    let deadline = Instant::now() + timeout;
    loop {
        // Any HTTP answer means the node is up: a refused login is final, not retried.
        match ctx.node.call("GET", "/api/overview", None, &[]) {
            Ok(reply) if reply.ok() => return Ok(()),
            Ok(reply) => return Err(ctx.node.refused(&reply)),
            Err(CtlError::Unavailable(_) | CtlError::TempFail(_)) if Instant::now() < deadline => {
                std::thread::sleep(STARTUP_POLL);
            }
            Err(e) => {
                return Err(CtlError::Unavailable(format!(
                    "the node did not start within {} s: {e}",
                    timeout.as_secs()
                )))
            }
        }
    }
}

/// `ping`: the node answers its API.
pub fn ping(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 0, 0)?;
    let timeout_ms = ctx.inv.opts.timeout.unwrap_or(60) * 1000;
    ctx.out.banner(&format!(
        "Will ping {}. This only checks that the node answers its HTTP API. Timeout: {timeout_ms} ms.",
        ctx.node.url()
    ));
    ctx.node.get("/api/overview")?;
    if ctx.out.json() {
        ctx.out.json_value(&json!({"result": "ok"}));
    } else {
        ctx.out.line("Ping succeeded");
    }
    Ok(())
}

/// `check_running`: the node answers and serves clients.
pub fn check_running(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 0, 0)?;
    let overview = ctx.node.get("/api/overview")?;
    let name = node_name(&overview);
    ctx.out
        .banner(&format!("Checking if Pigeon is running on node {name} ..."));
    if ctx.out.json() {
        ctx.out.json_value(&json!({"result": "ok"}));
    } else {
        ctx.out.line(&format!(
            "Pigeon on node {name} is fully booted and running"
        ));
    }
    Ok(())
}

/// `check_local_alarms`: fails (69) while a memory or disk alarm is on.
pub fn check_local_alarms(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 0, 0)?;
    let overview = ctx.node.get("/api/overview")?;
    let name = node_name(&overview);
    ctx.out.banner(&format!(
        "Asking node {name} to report any local resource alarms ..."
    ));
    let reply = ctx
        .node
        .call("GET", "/api/health/checks/local-alarms", None, &[])?;
    if reply.ok() {
        if ctx.out.json() {
            ctx.out.json_value(&json!({"result": "ok"}));
        } else {
            ctx.out
                .line(&format!("Node {name} reported no local alarms"));
        }
        return Ok(());
    }
    if reply.status == 503 {
        let alarms: Vec<String> = reply
            .body
            .get("alarms")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|x| {
                        x.get("resource")
                            .and_then(Value::as_str)
                            .map_or_else(|| x.to_string(), String::from)
                    })
                    .collect()
            })
            .unwrap_or_default();
        let what = if alarms.is_empty() {
            reply.reason()
        } else {
            alarms.join(", ")
        };
        return Err(CtlError::Unavailable(format!(
            "Node {name} reported local alarms: {what}"
        )));
    }
    Err(ctx.node.refused(&reply))
}

/// The host part of the node's URL (where the listeners are reached from here).
fn url_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = authority.rsplit('@').next().unwrap_or(authority);
    if let Some(v6) = authority.strip_prefix('[') {
        return v6.split(']').next().unwrap_or(v6).to_string();
    }
    authority.split(':').next().unwrap_or(authority).to_string()
}

/// `check_port_connectivity`: opens a TCP connection to every listener the node reports.
pub fn check_port_connectivity(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 0, 0)?;
    let overview = ctx.node.get("/api/overview")?;
    let name = node_name(&overview);
    ctx.out.banner(&format!(
        "Testing TCP connections to all active listeners on node {name} ..."
    ));
    let host = url_host(ctx.node.url());
    let timeout = Duration::from_secs(ctx.inv.opts.timeout.unwrap_or(10));
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    let listeners = overview
        .get("listeners")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for l in &listeners {
        let Some(port) = l.get("port").and_then(Value::as_u64) else {
            continue;
        };
        let ip = l.get("ip_address").and_then(Value::as_str).unwrap_or("");
        // A wildcard listener is reached where the API was.
        let target = match ip {
            "" | "0.0.0.0" | "::" => host.clone(),
            ip => ip.to_string(),
        };
        let reached = (target.as_str(), port as u16)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .is_some_and(|addr| TcpStream::connect_timeout(&addr, timeout).is_ok());
        if reached {
            ok.push(port.to_string());
        } else {
            failed.push(format!("{target}:{port}"));
        }
    }
    if !failed.is_empty() {
        return Err(CtlError::Unavailable(format!(
            "Connection to {} on node {name} failed",
            failed.join(", ")
        )));
    }
    if ctx.out.json() {
        ctx.out.json_value(&json!({"result": "ok"}));
    } else {
        ctx.out.line(&format!(
            "Successfully connected to ports {} on node {name}.",
            ok.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::url_host;

    #[test]
    fn host_of_the_url() {
        assert_eq!(url_host("http://localhost:15672"), "localhost");
        assert_eq!(url_host("https://u:p@db1:15671/prefix"), "db1");
        assert_eq!(url_host("http://[::1]:15672"), "::1");
    }
}
