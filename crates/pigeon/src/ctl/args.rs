//! rabbitmqctl's command line: `pigeon ctl [options] <command> [options] [arguments]`.
//!
//! Options may come before or after the command name and between its arguments, as with
//! rabbitmqctl (`list_queues -p / name messages`, `-q list_users`). Long options take their
//! value as `--vhost /` or `--vhost=/`; `--` ends the options (for an argument that starts
//! with `-`, such as a password). Command-specific options (`--priority`, `--if-empty`...) are
//! accepted anywhere and read by the commands that use them.

use super::error::{CtlError, CtlResult};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How results are printed (`--formatter`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Formatter {
    /// Tab-separated columns with a header line (rabbitmqctl's default).
    #[default]
    Table,
    /// JSON, as rabbitmqctl's `--formatter json`.
    Json,
}

/// The parsed command line.
#[derive(Debug, Default)]
pub struct Invocation {
    /// The command (`list_queues`); empty when none was given.
    pub command: String,
    /// Its positional arguments.
    pub args: Vec<String>,
    /// Every option.
    pub opts: Opts,
}

/// The options, global and command-specific.
#[derive(Debug, Default)]
pub struct Opts {
    /// `--node`/`-n`: the node's URL (or a rabbitmqadmin config section, or `rabbit@host`).
    pub node: Option<String>,
    /// `--username`.
    pub username: Option<String>,
    /// `--password`.
    pub password: Option<String>,
    /// `--vhost`/`-p`.
    pub vhost: Option<String>,
    /// `--timeout`/`-t`, in seconds.
    pub timeout: Option<u64>,
    /// `--formatter`.
    pub formatter: Formatter,
    /// `--quiet`/`-q`: no banners.
    pub quiet: bool,
    /// `--silent`/`-s`: no banners and no table headers.
    pub silent: bool,
    /// `--no-table-headers`.
    pub no_table_headers: bool,
    /// `--config`: a rabbitmqadmin configuration file.
    pub config: Option<PathBuf>,
    /// `--cacert`: PEM certificates to trust for an https:// node.
    pub cacert: Option<PathBuf>,
    /// `--insecure`: do not verify an https:// node's certificate.
    pub insecure: bool,
    /// `--help`/`-h`.
    pub help: bool,
    /// Command-specific options by long name (`priority` -> `1`, `if-empty` -> `true`).
    pub flags: BTreeMap<&'static str, String>,
}

impl Opts {
    /// The vhost (`-p`), `/` by default.
    pub fn vhost(&self) -> &str {
        self.vhost.as_deref().unwrap_or("/")
    }

    /// A command-specific option's value.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags.get(name).map(String::as_str)
    }

    /// Whether a command-specific switch was given.
    pub fn switch(&self, name: &str) -> bool {
        self.flags.contains_key(name)
    }
}

/// What an option is: its long name, short letter, and whether it takes a value.
struct Spec {
    long: &'static str,
    short: Option<char>,
    value: bool,
}

const fn spec(long: &'static str, short: Option<char>, value: bool) -> Spec {
    Spec { long, short, value }
}

/// Every option `pigeon ctl` knows (rabbitmqctl's, rabbitmqadmin's connection options, and the
/// command-specific ones of the commands implemented).
const SPECS: &[Spec] = &[
    spec("node", Some('n'), true),
    spec("username", None, true),
    spec("password", None, true),
    spec("vhost", Some('p'), true),
    spec("timeout", Some('t'), true),
    spec("formatter", None, true),
    spec("quiet", Some('q'), false),
    spec("silent", Some('s'), false),
    spec("no-table-headers", None, false),
    spec("longnames", Some('l'), false),
    spec("config", None, true),
    spec("cacert", None, true),
    spec("insecure", None, false),
    spec("help", Some('h'), false),
    // Command-specific.
    spec("priority", None, true),
    spec("apply-to", None, true),
    spec("description", None, true),
    spec("tags", None, true),
    spec("default-queue-type", None, true),
    spec("user", None, true),
    spec("format", None, true),
    spec("if-empty", Some('e'), false),
    spec("if-unused", Some('u'), false),
    spec("online", None, false),
    spec("offline", None, false),
    spec("local", None, false),
    spec("global", None, false),
    spec("skip-if-unchanged", None, false),
    // join_cluster.
    spec("force", None, false),
    // rabbitmq-streams add_super_stream.
    spec("partitions", None, true),
    spec("binding-keys", None, true),
    spec("routing-keys", None, true),
    spec("max-length-bytes", None, true),
    spec("max-age", None, true),
    spec("stream-max-segment-size-bytes", None, true),
    spec("leader-locator", None, true),
    spec("initial-cluster-size", None, true),
    // rabbitmq-streams list_stream_group_consumers.
    spec("stream", None, true),
    spec("reference", None, true),
    // rabbitmq-queues grow, shrink, add_member, rebalance (quorummembers).
    spec("vhost-pattern", None, true),
    spec("queue-pattern", None, true),
    spec("membership", None, true),
    spec("errors-only", None, false),
];

/// Parses `pigeon ctl`'s arguments.
pub fn parse(raw: &[String]) -> CtlResult<Invocation> {
    let mut inv = Invocation::default();
    let mut positional = Vec::new();
    let mut it = raw.iter();
    let mut options_done = false;
    while let Some(arg) = it.next() {
        if options_done || arg == "-" || !arg.starts_with('-') {
            positional.push(arg.clone());
            continue;
        }
        if arg == "--" {
            options_done = true;
            continue;
        }
        let (name, inline) = match arg.strip_prefix("--") {
            Some(long) => match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            },
            None => {
                let short = &arg[1..];
                let mut chars = short.chars();
                let (Some(c), rest) = (chars.next(), chars.as_str()) else {
                    return Err(usage(format!("invalid option {arg:?}")));
                };
                let Some(s) = SPECS.iter().find(|s| s.short == Some(c)) else {
                    return Err(usage(format!("unknown option {arg:?}")));
                };
                let rest = rest.strip_prefix('=').unwrap_or(rest);
                let inline = (!rest.is_empty()).then(|| rest.to_string());
                (s.long.to_string(), inline)
            }
        };
        let Some(s) = SPECS.iter().find(|s| s.long == name) else {
            return Err(usage(format!("unknown option \"--{name}\"")));
        };
        let value = if s.value {
            match inline {
                Some(v) => v,
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| usage(format!("option --{} needs a value", s.long)))?,
            }
        } else {
            if inline.is_some() {
                return Err(usage(format!("option --{} takes no value", s.long)));
            }
            "true".to_string()
        };
        apply(&mut inv.opts, s.long, value)?;
    }
    let mut positional = positional.into_iter();
    inv.command = positional.next().unwrap_or_default();
    inv.args = positional.collect();
    Ok(inv)
}

fn apply(opts: &mut Opts, long: &'static str, value: String) -> CtlResult {
    match long {
        "node" => opts.node = Some(value),
        "username" => opts.username = Some(value),
        "password" => opts.password = Some(value),
        "vhost" => opts.vhost = Some(value),
        "timeout" => {
            let secs = value.parse::<u64>().map_err(|_| {
                usage(format!(
                    "--timeout takes a whole number of seconds, not {value:?}"
                ))
            })?;
            opts.timeout = Some(secs);
        }
        "formatter" => {
            opts.formatter = match value.as_str() {
                "table" => Formatter::Table,
                "json" => Formatter::Json,
                other => {
                    return Err(usage(format!(
                        "formatter {other:?} is not supported (use table or json)"
                    )))
                }
            }
        }
        "quiet" => opts.quiet = true,
        "silent" => opts.silent = true,
        "no-table-headers" => opts.no_table_headers = true,
        // Erlang distribution's long node names mean nothing over HTTP.
        "longnames" => {}
        "config" => opts.config = Some(PathBuf::from(value)),
        "cacert" => opts.cacert = Some(PathBuf::from(value)),
        "insecure" => opts.insecure = true,
        "help" => opts.help = true,
        other => {
            opts.flags.insert(other, value);
        }
    }
    Ok(())
}

fn usage(text: String) -> CtlError {
    CtlError::Usage(text)
}

/// Checks the number of positional arguments: `Err` with rabbitmqctl's wording otherwise.
pub fn arity(inv: &Invocation, min: usize, max: usize) -> CtlResult {
    if inv.args.len() < min {
        return Err(usage(format!(
            "{}: not enough arguments (see `pigeon ctl help {}`)",
            inv.command, inv.command
        )));
    }
    if inv.args.len() > max {
        return Err(usage(format!(
            "{}: too many arguments (see `pigeon ctl help {}`)",
            inv.command, inv.command
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> CtlResult<Invocation> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn options_may_come_anywhere() {
        let inv = p(&[
            "-q",
            "list_queues",
            "-p",
            "v1",
            "name",
            "--formatter=json",
            "messages",
        ])
        .unwrap();
        assert_eq!(inv.command, "list_queues");
        assert_eq!(inv.args, ["name", "messages"]);
        assert_eq!(inv.opts.vhost(), "v1");
        assert!(inv.opts.quiet);
        assert_eq!(inv.opts.formatter, Formatter::Json);
    }

    #[test]
    fn command_switches_and_values_are_kept() {
        let inv = p(&[
            "set_policy",
            "--priority",
            "2",
            "--apply-to=queues",
            "ttl",
            "^q",
            "{}",
        ])
        .unwrap();
        assert_eq!(inv.opts.flag("priority"), Some("2"));
        assert_eq!(inv.opts.flag("apply-to"), Some("queues"));
        let inv = p(&["delete_queue", "q", "-e", "--if-unused"]).unwrap();
        assert!(inv.opts.switch("if-empty") && inv.opts.switch("if-unused"));
    }

    #[test]
    fn double_dash_ends_options() {
        let inv = p(&["add_user", "--", "bob", "-secret"]).unwrap();
        assert_eq!(inv.args, ["bob", "-secret"]);
    }

    #[test]
    fn unknown_options_and_bad_values_are_usage_errors() {
        assert_eq!(p(&["list_queues", "--bogus"]).unwrap_err().code(), 64);
        assert_eq!(p(&["list_queues", "-x"]).unwrap_err().code(), 64);
        assert_eq!(
            p(&["list_queues", "--formatter", "erlang"])
                .unwrap_err()
                .code(),
            64
        );
        assert_eq!(p(&["list_queues", "-p"]).unwrap_err().code(), 64);
        assert_eq!(p(&["list_queues", "-t", "soon"]).unwrap_err().code(), 64);
    }
}
