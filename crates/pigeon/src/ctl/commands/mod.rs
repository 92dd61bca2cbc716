//! The commands, by family: `lists.rs` (the `list_*` commands), `objects.rs` (connections
//! and queues), `access.rs` (users, vhosts, permissions), `policies.rs` (policies and limits),
//! `node.rs` (status, cluster, runtime settings, definitions, feature flags), `health.rs`
//! (await_startup and rabbitmq-diagnostics' checks) and `streams.rs` (rabbitmq-streams' super
//! stream commands).
//!
//! Each command is a function of a [`Ctx`]; [`COMMANDS`] names them with their usage, as
//! `pigeon ctl help` lists them.

mod access;
mod definitions;
mod health;
mod limits;
mod lists;
mod maintenance;
mod node;
mod objects;
mod policies;
// rabbitmq-queues' member commands (quorummembers).
mod queues;
mod stream_lists;
mod streams;

use super::args::Invocation;
use super::client::Node;
use super::error::{CtlError, CtlResult};
use super::output::{Output, Render};
use serde_json::Value;

/// What a command works with.
pub struct Ctx {
    /// The command line.
    pub inv: Invocation,
    /// The node's API.
    pub node: Node,
    /// Where results go.
    pub out: Output,
}

impl Ctx {
    /// The i-th positional argument (arity is checked before it is read).
    pub fn arg(&self, i: usize) -> &str {
        self.inv.args.get(i).map_or("", String::as_str)
    }

    /// The vhost (`-p`, `/` by default).
    pub fn vhost(&self) -> &str {
        self.inv.opts.vhost()
    }
}

/// A command: its name, its usage line, and what it does.
pub struct Command {
    /// rabbitmqctl's name.
    pub name: &'static str,
    /// Arguments and options, as rabbitmqctl's usage shows them.
    pub usage: &'static str,
    /// What it does, one line.
    pub about: &'static str,
    /// The implementation.
    pub run: fn(&Ctx) -> CtlResult,
}

const fn cmd(
    name: &'static str,
    usage: &'static str,
    about: &'static str,
    run: fn(&Ctx) -> CtlResult,
) -> Command {
    Command {
        name,
        usage,
        about,
        run,
    }
}

/// Every command, in the order `help` lists them.
#[rustfmt::skip]
pub const COMMANDS: &[Command] = &[
    cmd("status", "", "Shows the node's status", node::status),
    cmd("cluster_status", "", "Shows the cluster's nodes, listeners and alarms", node::cluster_status),
    cmd("join_cluster", "<member cluster address host:port> [--force]", "Resets this node (deletes its data) and makes it join the cluster of that member", node::join_cluster),
    cmd("forget_cluster_node", "<node name>", "Removes a node from the cluster", node::forget_cluster_node),
    cmd("drain", "[<node name>]", "Puts the node in maintenance mode (rabbitmq-upgrade drain): clients disconnected, listeners suspended, leadership moved", maintenance::drain),
    cmd("revive", "[<node name>]", "Takes the node out of maintenance mode (rabbitmq-upgrade revive)", maintenance::revive),
    // rabbitmq-queues' member commands (quorummembers).
    cmd("add_member", "[--vhost <vhost>] <queue> <node>", "Adds a member (replica) on the node to a quorum queue (rabbitmq-queues add_member)", queues::add_member),
    cmd("delete_member", "[--vhost <vhost>] <queue> <node>", "Removes the quorum queue's member on the node (rabbitmq-queues delete_member)", queues::delete_member),
    cmd("grow", "<node> <all|even> [--vhost-pattern <re>] [--queue-pattern <re>]", "Adds a member on the node to every matching quorum queue (rabbitmq-queues grow)", queues::grow),
    cmd("shrink", "<node> [--errors-only]", "Removes the node's member from every quorum queue (rabbitmq-queues shrink)", queues::shrink),
    cmd("rebalance", "<all|quorum|classic|stream> [--vhost-pattern <re>] [--queue-pattern <re>]", "Spreads the quorum queues' leaders over the running nodes (rabbitmq-queues rebalance)", queues::rebalance),
    cmd("await_startup", "[--timeout <seconds>]", "Waits until the node answers its API", health::await_startup),
    cmd("list_queues", "[-p <vhost>] [--no-table-headers] [<column> ...]", "Lists queues (default columns: name messages)", lists::queues),
    cmd("list_exchanges", "[-p <vhost>] [--no-table-headers] [<column> ...]", "Lists exchanges (default: name type)", lists::exchanges),
    cmd("list_bindings", "[-p <vhost>] [--no-table-headers] [<column> ...]", "Lists bindings", lists::bindings),
    cmd("list_connections", "[--no-table-headers] [<column> ...]", "Lists connections (default: user peer_host peer_port state)", lists::connections),
    cmd("list_channels", "[--no-table-headers] [<column> ...]", "Lists channels (default: pid user consumer_count messages_unacknowledged)", lists::channels),
    cmd("list_consumers", "[-p <vhost>] [--no-table-headers] [<column> ...]", "Lists consumers", lists::consumers),
    cmd("close_connection", "<connection name or pid> <explanation>", "Closes a connection; the client sees the explanation", objects::close_connection),
    cmd("purge_queue", "[-p <vhost>] <queue>", "Removes a queue's ready messages", objects::purge_queue),
    cmd("delete_queue", "[-p <vhost>] <queue> [--if-empty|-e] [--if-unused|-u]", "Deletes a queue", objects::delete_queue),
    cmd("add_user", "<username> <password>", "Creates a user", access::add_user),
    cmd("delete_user", "<username>", "Deletes a user", access::delete_user),
    cmd("change_password", "<username> <password>", "Changes a user's password", access::change_password),
    cmd("set_user_tags", "<username> <tag> [...]", "Sets a user's tags (none: clears them)", access::set_user_tags),
    cmd("list_users", "[--no-table-headers]", "Lists users", lists::users),
    cmd("authenticate_user", "<username> <password>", "Checks a user's credentials", access::authenticate_user),
    cmd("add_vhost", "<vhost> [--description <text>] [--tags <t1,t2>] [--default-queue-type <type>]", "Creates a virtual host", access::add_vhost),
    cmd("update_vhost_metadata", "<vhost> [--description <text>] [--tags <t1,t2>] [--default-queue-type <type>]", "Changes a virtual host's description, tags or default queue type", access::update_vhost_metadata),
    cmd("delete_vhost", "<vhost>", "Deletes a virtual host and everything in it", access::delete_vhost),
    cmd("list_vhosts", "[--no-table-headers] [<column> ...]", "Lists virtual hosts (default: name)", lists::vhosts),
    cmd("set_permissions", "[-p <vhost>] <username> <conf> <write> <read>", "Sets a user's permissions in a vhost", access::set_permissions),
    cmd("clear_permissions", "[-p <vhost>] <username>", "Removes a user's permissions in a vhost", access::clear_permissions),
    cmd("list_permissions", "[-p <vhost>] [--no-table-headers]", "Lists the permissions in a vhost", lists::permissions),
    cmd("list_user_permissions", "<username>", "Lists a user's permissions", lists::user_permissions),
    cmd("set_topic_permissions", "[-p <vhost>] <username> <exchange> <write> <read>", "Sets a user's topic permissions on an exchange", access::set_topic_permissions),
    cmd("clear_topic_permissions", "[-p <vhost>] <username> [<exchange>]", "Removes a user's topic permissions", access::clear_topic_permissions),
    cmd("list_topic_permissions", "[-p <vhost>] [--no-table-headers]", "Lists the topic permissions in a vhost", lists::topic_permissions),
    cmd("list_user_topic_permissions", "<username>", "Lists a user's topic permissions", lists::user_topic_permissions),
    cmd("set_policy", "[-p <vhost>] [--priority <n>] [--apply-to <queues|exchanges|all>] <name> <pattern> <definition>", "Sets a policy", policies::set_policy),
    cmd("clear_policy", "[-p <vhost>] <name>", "Removes a policy", policies::clear_policy),
    cmd("list_policies", "[-p <vhost>] [--no-table-headers]", "Lists policies", lists::policies),
    cmd("set_vhost_limits", "[-p <vhost>] <definition>", "Sets a vhost's limits, e.g. '{\"max-connections\": 100}'", policies::set_vhost_limits),
    cmd("clear_vhost_limits", "[-p <vhost>]", "Removes a vhost's limits", policies::clear_vhost_limits),
    cmd("list_vhost_limits", "[-p <vhost>] [--global]", "Shows a vhost's limits", policies::list_vhost_limits),
    cmd("set_user_limits", "<username> <definition>", "Sets a user's limits, e.g. '{\"max-channels\": 10}'", policies::set_user_limits),
    cmd("clear_user_limits", "<username> <limit|all>", "Removes a user's limits", policies::clear_user_limits),
    cmd("list_user_limits", "[--user <username>] [--global]", "Shows users' limits", policies::list_user_limits),
    cmd("set_cluster_name", "<name>", "Sets the cluster's name", node::set_cluster_name),
    cmd("set_disk_free_limit", "<bytes, e.g. 50MB> | mem_relative <fraction>", "Sets the free disk space under which publishers are blocked", limits::set_disk_free_limit),
    cmd("set_vm_memory_high_watermark", "<fraction> | absolute <bytes, e.g. 2GB>", "Sets the memory use over which publishers are blocked", limits::set_vm_memory_high_watermark),
    cmd("export_definitions", "<file | ->", "Writes the definitions (users, vhosts, queues...) as JSON", definitions::export_definitions),
    cmd("import_definitions", "<file | ->", "Imports definitions from a JSON file", definitions::import_definitions),
    cmd("enable_feature_flag", "<flag | all>", "Accepted for scripts: Pigeon has no feature flags to enable", node::enable_feature_flag),
    cmd("add_super_stream", "<name> [-p <vhost>] [--partitions <n> | --binding-keys <k1,k2>] [--max-length-bytes <20gb>] [--max-age <PT1H>] [--stream-max-segment-size-bytes <500mb>] [--leader-locator <client-local|balanced>] [--initial-cluster-size <n>]", "Adds a super stream (rabbitmq-streams)", streams::add_super_stream),
    cmd("delete_super_stream", "<name> [-p <vhost>]", "Deletes a super stream and its partitions (rabbitmq-streams)", streams::delete_super_stream),
    cmd("list_stream_connections", "[--no-table-headers] [<column> ...]", "Lists stream protocol connections (default: conn_name; rabbitmq-streams)", stream_lists::connections),
    cmd("list_stream_publishers", "[-p <vhost>] [--no-table-headers] [<column> ...]", "Lists stream publishers (rabbitmq-streams)", stream_lists::publishers),
    cmd("list_stream_consumers", "[-p <vhost>] [--no-table-headers] [<column> ...]", "Lists stream consumers (rabbitmq-streams)", stream_lists::consumers),
    cmd("list_stream_consumer_groups", "[-p <vhost>] [--no-table-headers] [<column> ...]", "Lists single active consumer groups (rabbitmq-streams)", stream_lists::consumer_groups),
    cmd("list_stream_group_consumers", "--stream <stream> --reference <reference> [-p <vhost>] [--no-table-headers] [<column> ...]", "Lists the consumers of a single active consumer group (rabbitmq-streams)", stream_lists::group_consumers),
    cmd("ping", "", "Checks that the node answers", health::ping),
    cmd("check_running", "", "Checks that the node is running and serving clients", health::check_running),
    cmd("check_local_alarms", "", "Fails if the node has a memory or disk alarm", health::check_local_alarms),
    cmd("check_port_connectivity", "", "Connects to every listener the node has", health::check_port_connectivity),
];

/// Looks a command up by name.
pub fn find(name: &str) -> Option<&'static Command> {
    COMMANDS.iter().find(|c| c.name == name)
}

/// A `list_*` command's columns: the ones asked for, else `defaults`; each must be in `keys`
/// (rabbitmqctl's wording and exit code 64 otherwise).
pub(super) fn columns(ctx: &Ctx, keys: &[&str], defaults: &[&str]) -> CtlResult<Vec<String>> {
    let asked: Vec<String> = if ctx.inv.args.is_empty() {
        defaults.iter().map(|s| s.to_string()).collect()
    } else {
        // rabbitmqctl takes `name,messages` as well as `name messages`.
        ctx.inv
            .args
            .iter()
            .flat_map(|a| a.split(',').map(str::trim).filter(|s| !s.is_empty()))
            .map(String::from)
            .collect()
    };
    let unknown: Vec<&str> = asked
        .iter()
        .map(String::as_str)
        .filter(|c| !keys.contains(c))
        .collect();
    if !unknown.is_empty() {
        return Err(CtlError::Usage(format!(
            "Info key(s) {} are not supported; columns must be among: {}",
            unknown.join(","),
            keys.join(", ")
        )));
    }
    Ok(asked)
}

/// Items of a list answer: an array, or a page's `items`.
pub(super) fn items(body: Value) -> Vec<Value> {
    match body {
        Value::Array(items) => items,
        Value::Object(mut map) => match map.remove("items") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        },
        _ => Vec::new(),
    }
}

/// How a column prints: AMQP tables and JSON definitions have their own forms.
pub(super) fn render(column: &str) -> Render {
    match column {
        "arguments" | "client_properties" | "cluster_state" => Render::Table,
        "definition" | "limits" => Render::JsonText,
        _ => Render::Plain,
    }
}

/// A name in double quotes, as rabbitmqctl's banners quote them (`"bob"`, unescaped).
pub(super) fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}
