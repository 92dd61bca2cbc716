//! Logging: tracing to stderr (stdout stays free for `pigeon bench --json`), and the same lines
//! into the live log the dashboard shows (`pigeon_server::livelog`: the last lines, in memory).

use anyhow::Context;
use std::io::IsTerminal;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. The filter comes from, in order: the `--log` flag, the
/// `RUST_LOG` environment variable, the config file's `log` key, then `default`.
pub fn init(flag: Option<&str>, config: Option<&str>, default: &str) -> anyhow::Result<()> {
    let env = std::env::var("RUST_LOG").ok().filter(|v| !v.is_empty());
    let (filter, origin) = pick(flag, env.as_deref(), config, default);
    let filter = EnvFilter::try_new(filter)
        .with_context(|| format!("invalid log filter {filter:?} (from {origin})"))?;
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // The filter applies to both layers: the live log shows what stderr shows.
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(pigeon_server::livelog::layer())
        .init();
    Ok(())
}

/// Chooses the filter and names where it came from, for the error message.
fn pick<'a>(
    flag: Option<&'a str>,
    env: Option<&'a str>,
    config: Option<&'a str>,
    default: &'a str,
) -> (&'a str, &'static str) {
    flag.map(|f| (f, "--log"))
        .or(env.map(|e| (e, "RUST_LOG")))
        .or(config.map(|c| (c, "the config file's `log` key")))
        .unwrap_or((default, "the default"))
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn flag_beats_environment_beats_file_beats_default() {
        assert_eq!(pick(Some("a"), Some("b"), Some("c"), "d").0, "a");
        assert_eq!(pick(None, Some("b"), Some("c"), "d").0, "b");
        assert_eq!(pick(None, None, Some("c"), "d").0, "c");
        assert_eq!(pick(None, None, None, "d").0, "d");
    }
}
