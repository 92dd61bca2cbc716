//! The node as a whole: `status`, `cluster_status`, `set_cluster_name`, `join_cluster`,
//! `forget_cluster_node` and `enable_feature_flag` (the resource limits are in `limits.rs`, the
//! definitions in `definitions.rs`).

use super::{items, quoted, Ctx};
use crate::ctl::args::arity;
use crate::ctl::client::seg;
use crate::ctl::error::{CtlError, CtlResult};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// What `status` and `cluster_status` show: the overview, this node, the vhost count.
struct NodeFacts {
    overview: Value,
    node: Value,
    vhosts: usize,
}

impl NodeFacts {
    fn read(ctx: &Ctx) -> CtlResult<NodeFacts> {
        let overview = ctx.node.get("/api/overview")?;
        let name = overview.get("node").and_then(Value::as_str).unwrap_or("");
        let node = ctx
            .node
            .get_opt(&format!("/api/nodes/{}", seg(name)))?
            .unwrap_or(Value::Null);
        let vhosts = items(ctx.node.get("/api/vhosts")?).len();
        Ok(NodeFacts {
            overview,
            node,
            vhosts,
        })
    }

    fn name(&self) -> &str {
        text(&self.overview, "node")
    }

    fn alarms(&self) -> Vec<&'static str> {
        let mut alarms = Vec::new();
        if self.node.get("mem_alarm").and_then(Value::as_bool) == Some(true) {
            alarms.push("memory");
        }
        if self.node.get("disk_free_alarm").and_then(Value::as_bool) == Some(true) {
            alarms.push("disk");
        }
        alarms
    }

    fn alarm_lines(&self) -> Vec<String> {
        let alarms = self.alarms();
        if alarms.is_empty() {
            return vec!["(none)".into()];
        }
        alarms
            .iter()
            .map(|a| match *a {
                "memory" => format!("Memory alarm on node {}", self.name()),
                _ => format!("Free disk space alarm on node {}", self.name()),
            })
            .collect()
    }

    fn listeners(&self) -> Vec<Value> {
        self.overview
            .get("listeners")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }
}

/// The operating system, as rabbitmqctl names it (`Linux`).
fn os() -> String {
    let os = std::env::consts::OS;
    let mut chars = os.chars();
    chars.next().map_or_else(String::new, |c| {
        c.to_ascii_uppercase().to_string() + chars.as_str()
    })
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn num(v: &Value, key: &str) -> u64 {
    v.get(key).and_then(Value::as_u64).unwrap_or(0)
}

/// What a listener is for, as rabbitmqctl's `purpose`.
fn purpose(protocol: &str) -> &'static str {
    match protocol {
        "amqp" => "AMQP 0-9-1",
        "amqp/ssl" => "AMQP 0-9-1 over TLS",
        "mqtt" => "MQTT",
        "mqtt/ssl" => "MQTT over TLS",
        "http" => "HTTP API",
        "https" => "HTTP API over TLS",
        "http/web-mqtt" => "MQTT over WebSockets",
        "https/web-mqtt" => "MQTT over WebSockets and TLS",
        "http/prometheus" => "Prometheus exporter API over HTTP",
        _ => "",
    }
}

/// Bytes as rabbitmqctl's status shows them: gigabytes (10^9) to four decimals.
fn gb(bytes: u64) -> String {
    let gb = bytes as f64 / 1e9;
    let s = format!("{gb:.4}");
    let s = s.trim_end_matches('0');
    let s = if s.ends_with('.') {
        format!("{s}0")
    } else {
        s.to_string()
    };
    format!("{s} gb")
}

fn listener_json(node: &str, l: &Value) -> Value {
    let protocol = text(l, "protocol");
    json!({
        "node": node,
        "interface": text(l, "ip_address"),
        "port": l.get("port").cloned().unwrap_or(Value::Null),
        "protocol": protocol,
        "purpose": purpose(protocol),
    })
}

fn section(ctx: &Ctx, title: &str, lines: &[String]) {
    ctx.out.line(&format!("{title}\n"));
    for l in lines {
        ctx.out.line(l);
    }
    ctx.out.line("");
}

/// `status`.
pub fn status(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 0, 0)?;
    let f = NodeFacts::read(ctx)?;
    let (o, n) = (&f.overview, &f.node);
    let totals = o.get("object_totals").cloned().unwrap_or(Value::Null);
    let listeners: Vec<Value> = f
        .listeners()
        .iter()
        .map(|l| listener_json(f.name(), l))
        .collect();
    if ctx.out.json() {
        ctx.out.json_value(&json!({
            "pid": text(n, "os_pid").parse::<u64>().ok(),
            "os": os(),
            "node": f.name(),
            "product_name": text(o, "product_name"),
            "product_version": text(o, "product_version"),
            "rabbitmq_version": text(o, "rabbitmq_version"),
            "is_under_maintenance": false,
            "alarms": f.alarms(),
            "memory": {"strategy": "rss", "total": {"rss": num(n, "mem_used")}},
            "vm_memory_calculation_strategy": "rss",
            "vm_memory_high_watermark_limit": num(n, "mem_limit"),
            "disk_free": num(n, "disk_free"),
            "disk_free_limit": num(n, "disk_free_limit"),
            "totals": {
                "connection_count": num(&totals, "connections"),
                "queue_count": num(&totals, "queues"),
                "virtual_host_count": f.vhosts,
            },
            "listeners": listeners,
        }));
        return Ok(());
    }
    ctx.out.banner(&format!("Status of node {} ...", f.name()));
    section(
        ctx,
        "Runtime",
        &[
            format!("OS PID: {}", text(n, "os_pid")),
            format!("OS: {}", os()),
            format!("Node name: {}", f.name()),
            format!(
                "Product: {} {}",
                text(o, "product_name"),
                text(o, "product_version")
            ),
            format!(
                "RabbitMQ version (of the API implemented): {}",
                text(o, "rabbitmq_version")
            ),
            "Is under maintenance?: false".into(),
        ],
    );
    section(ctx, "Alarms", &f.alarm_lines());
    section(
        ctx,
        "Memory",
        &[
            format!("Total memory used: {}", gb(num(n, "mem_used"))),
            "Calculation strategy: rss".into(),
            format!("Memory high watermark: {}", gb(num(n, "mem_limit"))),
        ],
    );
    section(
        ctx,
        "Free Disk Space",
        &[
            format!(
                "Low free disk space watermark: {}",
                gb(num(n, "disk_free_limit"))
            ),
            format!("Free disk space: {}", gb(num(n, "disk_free"))),
        ],
    );
    section(
        ctx,
        "Totals",
        &[
            format!("Connection count: {}", num(&totals, "connections")),
            format!("Queue count: {}", num(&totals, "queues")),
            format!("Virtual host count: {}", f.vhosts),
        ],
    );
    let lines: Vec<String> = listeners
        .iter()
        .map(|l| {
            format!(
                "Interface: {}, port: {}, protocol: {}, purpose: {}",
                text(l, "interface"),
                l["port"],
                text(l, "protocol"),
                text(l, "purpose")
            )
        })
        .collect();
    section(ctx, "Listeners", &lines);
    Ok(())
}

/// The members a clustered node lists (`/api/pigeon/cluster`): every name, and those that
/// answer on the cluster link; `None` for a single node.
fn cluster_members(cluster: &Value) -> Option<(Vec<String>, Vec<String>)> {
    if cluster["clustered"] != Value::Bool(true) {
        return None;
    }
    let members = cluster["members"].as_array().cloned().unwrap_or_default();
    let name = |m: &Value| text(m, "name").to_string();
    let all = members.iter().map(name).collect();
    let running = members
        .iter()
        .filter(|m| m["running"] == Value::Bool(true))
        .map(name)
        .collect();
    Some((all, running))
}

/// `cluster_status`: the members (every node when clustered, else this one), listeners and
/// alarms of this node, and its view of the metadata group.
pub fn cluster_status(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 0, 0)?;
    let f = NodeFacts::read(ctx)?;
    let o = &f.overview;
    let name = f.name();
    let cluster = ctx
        .node
        .get_opt("/api/pigeon/cluster")?
        .unwrap_or(Value::Null);
    let (disk_nodes, running_nodes) = cluster_members(&cluster)
        .unwrap_or_else(|| (vec![name.to_string()], vec![name.to_string()]));
    let listeners: Vec<Value> = f
        .listeners()
        .iter()
        .map(|l| listener_json(name, l))
        .collect();
    if ctx.out.json() {
        ctx.out.json_value(&json!({
            "cluster_name": text(o, "cluster_name"),
            "disk_nodes": disk_nodes,
            "ram_nodes": [],
            "running_nodes": running_nodes,
            "raft": cluster,
            "versions": {name: {
                "rabbitmq_name": text(o, "product_name"),
                "rabbitmq_version": text(o, "rabbitmq_version"),
                "product_version": text(o, "product_version"),
            }},
            "maintenance_status": {name: if f.node["being_drained"] == Value::Bool(true) {
                "under maintenance"
            } else {
                "not under maintenance"
            }},
            "alarms": f.alarms(),
            "partitions": {},
            "listeners": {name: listeners},
            "feature_flags": [],
        }));
        return Ok(());
    }
    ctx.out
        .banner(&format!("Cluster status of node {name} ..."));
    section(
        ctx,
        "Basics",
        &[format!("Cluster name: {}", text(o, "cluster_name"))],
    );
    section(ctx, "Disk Nodes", &disk_nodes);
    section(ctx, "Running Nodes", &running_nodes);
    if cluster["clustered"] == Value::Bool(true) {
        section(
            ctx,
            "Metadata group (Raft)",
            &[
                format!("Role: {}", text(&cluster, "role")),
                format!("Leader: {}", text(&cluster, "leader")),
                format!("Term: {}", cluster["term"]),
                format!(
                    "Last log index: {}, last applied: {}",
                    cluster["last_log_index"], cluster["last_applied"]
                ),
            ],
        );
    }
    section(
        ctx,
        "Versions",
        &[format!(
            "{name}: {} {} (RabbitMQ {} API)",
            text(o, "product_name"),
            text(o, "product_version"),
            text(o, "rabbitmq_version")
        )],
    );
    section(
        ctx,
        "Maintenance status",
        &[format!("Node: {name}, status: not under maintenance")],
    );
    section(ctx, "Alarms", &f.alarm_lines());
    section(ctx, "Network Partitions", &["(none)".to_string()]);
    let lines: Vec<String> = listeners
        .iter()
        .map(|l| {
            format!(
                "Node: {name}, interface: {}, port: {}, protocol: {}, purpose: {}",
                text(l, "interface"),
                l["port"],
                text(l, "protocol"),
                text(l, "purpose")
            )
        })
        .collect();
    section(ctx, "Listeners", &lines);
    Ok(())
}

/// `set_cluster_name <name>`.
pub fn set_cluster_name(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let name = ctx.arg(0);
    ctx.out
        .banner(&format!("Setting cluster name to {name} ..."));
    ctx.node
        .send("PUT", "/api/cluster-name", Some(&json!({ "name": name })))?;
    Ok(())
}

/// `enable_feature_flag <name | all>`: Pigeon has no feature flags (what RabbitMQ gates behind
/// them is always on), so this succeeds once the node answers.
pub fn enable_feature_flag(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let flag = ctx.arg(0);
    if flag == "all" {
        ctx.out.banner("Enabling all feature flags ...");
    } else {
        ctx.out
            .banner(&format!("Enabling feature flag {} ...", quoted(flag)));
    }
    ctx.node.get("/api/overview")?;
    Ok(())
}

/// `join_cluster <member address> [--force]`: this node, a cluster of one, resets itself
/// (**its users, vhosts, queues and messages are deleted**, as `rabbitmqctl reset` does) and
/// joins the cluster of the member reachable at that cluster address (host:port), as a learner
/// and then, caught up, a voter; its users, vhosts and queues are then that cluster's. The node
/// restarts to do it (docs/clustering.md, "Membership"); this waits until it is a voter.
/// Refused for a node whose cluster has other members, and for one holding messages in
/// durable queues unless `--force`.
pub fn join_cluster(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let seed = ctx.arg(0);
    let force = ctx.inv.opts.switch("force");
    ctx.out.banner(&format!(
        "Clustering node {} with {seed} ...",
        ctx.node.url()
    ));
    let reply = ctx.node.send(
        "POST",
        "/api/pigeon/cluster/join",
        Some(&json!({ "seed": seed, "force": force })),
    )?;
    if reply.body["restarting"] != json!(true) {
        return Ok(());
    }
    // The node restarts, resets and joins; it answers again once started, and takes this
    // login once the cluster's users reached it. Until then every call may fail.
    let wait = Duration::from_secs(ctx.inv.opts.timeout.unwrap_or(JOIN_WAIT_SECS));
    let deadline = Instant::now() + wait;
    loop {
        if let Ok(status) = ctx.node.get("/api/pigeon/cluster") {
            let me = status["node"].as_str().unwrap_or_default();
            let members = status["members"].as_array().cloned().unwrap_or_default();
            let voter = members
                .iter()
                .any(|m| m["name"] == me && m["voter"] == json!(true));
            if members.len() > 1 && voter {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(CtlError::TempFail(format!(
                "{} restarted to join the cluster of {seed} but is not a voter of it after {}s: see its log",
                ctx.node.url(),
                wait.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// How long `join_cluster` waits for the node to be a voter of the cluster it joins, by default.
const JOIN_WAIT_SECS: u64 = 120;

/// `forget_cluster_node <node name>`: removes a member from the cluster.
pub fn forget_cluster_node(ctx: &Ctx) -> CtlResult {
    arity(&ctx.inv, 1, 1)?;
    let name = ctx.arg(0);
    ctx.out
        .banner(&format!("Removing node {name} from the cluster ..."));
    ctx.node.send(
        "DELETE",
        &format!(
            "/api/pigeon/cluster/nodes/{}",
            crate::ctl::client::seg(name)
        ),
        None,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gigabytes_print_as_rabbitmqctl_prints_them() {
        assert_eq!(gb(135_000_000), "0.135 gb");
        assert_eq!(gb(1_000_000_000), "1.0 gb");
        assert_eq!(gb(0), "0.0 gb");
    }
}
