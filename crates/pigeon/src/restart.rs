//! The process restart `pigeon ctl join_cluster` asks for (server `cluster/join.rs`): the
//! server stops gracefully, then the process executes its own binary again with the same
//! arguments (same pid, so a supervisor or a test harness keeps following it), and the new
//! start resets the node and joins. The listeners keep the addresses they had: those bound to
//! port 0 would otherwise get new ports, and `pigeon ctl join_cluster` waits for the node on
//! the management address it called.

use pigeon_server::{Listen, ListenerKind as K, ServerConfig, ServerHandle};
use serde_json::{Map, Value};
use std::net::SocketAddr;

/// The environment variable that carries the bound addresses across the restart.
const LISTEN_VAR: &str = "PIGEON_RESTART_LISTEN";

/// The listeners a restart keeps, with their command-line flags' configuration keys.
const KEPT: [(K, &str); 9] = [
    (K::Amqp, "amqp"),
    (K::Amqps, "amqps"),
    (K::Mqtt, "mqtt"),
    (K::Mqtts, "mqtts"),
    (K::MqttWs, "mqtt_ws"),
    (K::MqttWss, "mqtt_wss"),
    (K::Stream, "stream"),
    (K::Http, "management"),
    (K::Prometheus, "prometheus"),
];

/// The addresses the server is bound to, for [`exec`].
pub fn bound(server: &ServerHandle) -> String {
    let mut all = Map::new();
    for (kind, key) in KEPT {
        let addrs: Vec<Value> = server
            .addrs(kind)
            .map(|a| Value::String(a.to_string()))
            .collect();
        if !addrs.is_empty() {
            all.insert(key.to_string(), Value::Array(addrs));
        }
    }
    Value::Object(all).to_string()
}

/// After a restart: the listeners take the addresses they had before it.
pub fn keep_listeners(server: &mut ServerConfig) {
    let Ok(text) = std::env::var(LISTEN_VAR) else {
        return;
    };
    std::env::remove_var(LISTEN_VAR);
    let Ok(Value::Object(all)) = serde_json::from_str::<Value>(&text) else {
        tracing::warn!("{LISTEN_VAR} is not a JSON object: ignored");
        return;
    };
    for (key, addrs) in all {
        let addrs: Vec<SocketAddr> = addrs
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str()?.parse().ok())
            .collect();
        let listen = Listen(addrs);
        match key.as_str() {
            "amqp" => server.amqp_listen = listen,
            "amqps" => server.amqps_listen = Some(listen),
            "mqtt" => server.mqtt_listen = listen,
            "mqtts" => server.mqtts_listen = Some(listen),
            "mqtt_ws" => server.mqtt_ws_listen = listen,
            "mqtt_wss" => server.mqtt_wss_listen = Some(listen),
            "stream" => server.stream_listen = listen,
            "management" => server.management_listen = listen,
            "prometheus" => server.prometheus_listen = listen,
            _ => {}
        }
    }
}

/// Executes this binary again with the same arguments; returns only if that failed.
#[cfg(unix)]
pub fn exec(listen: String) -> anyhow::Error {
    use std::os::unix::process::CommandExt;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return anyhow::anyhow!("cannot find this program to restart it: {e}"),
    };
    let e = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .env(LISTEN_VAR, listen)
        .exec();
    anyhow::anyhow!("cannot restart {}: {e}", exe.display())
}

/// Without `exec`, the operator starts the node again.
#[cfg(not(unix))]
pub fn exec(_listen: String) -> anyhow::Error {
    anyhow::anyhow!("join_cluster: start pigeon again to reset this node and join the cluster")
}
