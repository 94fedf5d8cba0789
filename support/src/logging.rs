//! The logging flags every Berth binary takes, and the tracing set-up they drive.
//!
//! Logs go to standard error, as text (coloured on a terminal) or as one JSON object per line.
//! `--log-level` takes a level (`info`) or a full filter (`info,berth_control=debug`);
//! `RUST_LOG`, when set, wins, so a test harness or an operator can turn one module up.

use std::io::IsTerminal;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// `--log-level` and `--log-format`, to flatten into a binary's clap arguments.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct LogArgs {
    /// Log level (error, warn, info, debug, trace) or a filter such as info,berth_proxy=debug.
    /// RUST_LOG, when set, wins.
    #[arg(long, env = "BERTH_LOG_LEVEL", default_value = "info", value_name = "LEVEL")]
    pub log_level: String,

    /// Log line format: text or json.
    #[arg(long, env = "BERTH_LOG_FORMAT", default_value = "text", value_name = "FORMAT")]
    pub log_format: LogFormat,
}

impl Default for LogArgs {
    fn default() -> Self {
        LogArgs {
            log_level: "info".into(),
            log_format: LogFormat::Text,
        }
    }
}

/// Installs the global subscriber. Returns an error naming the flag when the filter does not
/// parse.
pub fn init(args: &LogArgs) -> Result<(), String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(env) if !env.trim().is_empty() => {
            tracing_subscriber::EnvFilter::try_new(&env).map_err(|e| format!("RUST_LOG {env:?}: {e}"))?
        }
        _ => tracing_subscriber::EnvFilter::try_new(&args.log_level)
            .map_err(|e| format!("--log-level {:?}: {e}", args.log_level))?,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match args.log_format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| format!("cannot install the logger: {e}"))
}
