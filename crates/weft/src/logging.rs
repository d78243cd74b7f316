//! Where log lines go and what they look like: `tracing` to stderr, as text for a person or as
//! one JSON object per line for a log pipeline (`--log-format json`).
//!
//! Long-running commands (`serve`, `worker`) log at `info` by default, so the engine's
//! `[WORKFLOW] start|step|complete|fail` lines are there; one-shot commands log warnings only,
//! because their progress view already tells the story. `-v`/`-vv` and `RUST_LOG` override.
//! The engine logs ids, names, attempts, durations and errors — never a run's inputs or a
//! step's output — so a secret passed as an input stays out of the logs.

use std::io::IsTerminal;

use crate::commands::{Cli, Command};

/// `--log-format`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

pub fn init(cli: &Cli) {
    let long_running = matches!(cli.command, Command::Serve(_) | Command::Worker(_));
    let default = match (cli.global.verbose, long_running) {
        (0, true) => "info",
        // The progress view and the final message already tell of a failed step or run: the
        // engine's `[WORKFLOW]` warnings would say it twice more.
        (0, false) => "warn,weft_engine::telemetry=error",
        (1, _) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal (and never with NO_COLOR set).
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none());
    let _ = match cli.global.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
}
