//! `pigeon ctl`: rabbitmqctl's commands (and rabbitmq-diagnostics' common checks) against a
//! running node, over its management HTTP API, so that scripts written for rabbitmqctl work:
//! the same command names, argument order, column arguments, banners, tab-separated output
//! (or `--formatter json`) and exit codes.
//!
//! The rooms: `args.rs` (the command line, options anywhere as rabbitmqctl takes them),
//! `client.rs` (where the node is, the credentials, the HTTP requests), `output.rs` (banners,
//! tables, JSON), `error.rs` (errors and their exit codes), and `commands/`, one file per
//! family of commands.
//!
//! Errors print as one line on stderr, `Error: ...`, and exit with rabbitmqctl's code.

mod args;
mod client;
mod commands;
mod error;
mod output;

use clap::Args;
use error::CtlError;
use std::process::ExitCode;

/// `pigeon ctl`'s arguments, taken raw: rabbitmqctl's syntax lets options come anywhere, so
/// `args.rs` parses them rather than clap.
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub struct CtlArgs {
    /// A command and its arguments (`pigeon ctl help` lists the commands).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
    pub args: Vec<String>,
}

/// Runs one command; the exit code is rabbitmqctl's.
pub fn run(args: CtlArgs) -> ExitCode {
    match execute(&args.args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let text = e.to_string().replace('\n', " ");
            eprintln!("Error: {text}");
            e.exit_code()
        }
    }
}

fn execute(raw: &[String]) -> Result<(), CtlError> {
    let inv = args::parse(raw)?;
    if inv.command.is_empty() || inv.command == "help" {
        let topic = if inv.command == "help" {
            inv.args.first().cloned()
        } else {
            None
        };
        return help(topic.as_deref());
    }
    let Some(command) = commands::find(&inv.command) else {
        return Err(CtlError::Usage(format!(
            "{:?} is not a known command (`pigeon ctl help` lists them)",
            inv.command
        )));
    };
    if inv.opts.help {
        return help(Some(command.name));
    }
    let node = client::Node::from_opts(&inv.opts)?;
    let out = output::Output::new(&inv.opts);
    let ctx = commands::Ctx { inv, node, out };
    (command.run)(&ctx)
}

const GLOBAL_OPTIONS: &str = "\
Options (before or after the command):
  -n, --node <URL>         the node's management API (default http://localhost:15672; also
                           PIGEON_URL, a rabbitmqadmin config section, rabbit@host, host:port)
      --username <user>    (default guest; also PIGEON_USER or the config file)
      --password <pass>    (default guest; also PIGEON_PASS or the config file)
      --config <file>      a rabbitmqadmin config file (default ~/.rabbitmqadmin.conf)
      --cacert <file>      PEM certificates to trust for an https:// node
      --insecure           do not verify an https:// node's certificate
  -p, --vhost <vhost>      the virtual host (default /)
  -q, --quiet              no banners
  -s, --silent             no banners, no table headers
      --no-table-headers   no table headers
      --formatter <f>      table (default) or json
  -t, --timeout <seconds>  how long to wait for the node";

fn help(topic: Option<&str>) -> Result<(), CtlError> {
    let text = match topic.map(|t| commands::find(t).ok_or(t)) {
        Some(Ok(c)) => format!(
            "Usage: pigeon ctl {} {}\n\n{}.\n\n{GLOBAL_OPTIONS}\n",
            c.name, c.usage, c.about
        ),
        Some(Err(unknown)) => {
            return Err(CtlError::Usage(format!(
                "{unknown:?} is not a known command (`pigeon ctl help` lists them)"
            )))
        }
        None => {
            let mut text = String::from(
                "Usage: pigeon ctl [options] <command> [<args>]\n\n\
                 rabbitmqctl's commands against a running node, over its management HTTP API.\n\n\
                 Commands:\n",
            );
            for c in commands::COMMANDS {
                text.push_str(&format!("  {:<30} {}\n", c.name, c.about));
            }
            text.push_str(&format!("\n{GLOBAL_OPTIONS}\n"));
            text
        }
    };
    output::print(&text);
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cli::{Cli, Command};
    use clap::Parser;

    #[test]
    fn ctl_takes_its_arguments_raw_options_included() {
        let argv = [
            "pigeon",
            "ctl",
            "-q",
            "list_queues",
            "-p",
            "/",
            "--help",
            "name",
        ];
        let cli = Cli::try_parse_from(argv).unwrap();
        let Ok(Command::Ctl(ctl)) = cli.into_command() else {
            panic!("expected ctl");
        };
        assert_eq!(ctl.args, ["-q", "list_queues", "-p", "/", "--help", "name"]);
    }
}
