//! `weft`: the command line. Parses arguments, opens the store and hands each command to its
//! module under `commands/`. Data goes to stdout; progress and messages go to stderr.
//!
//! Exit codes: 0 the run (or command) succeeded, 1 the run failed or was cancelled, 2 a usage
//! or template error.

// The standard printing macros, shadowed for every module below: a closed pipe ends the
// process quietly instead of panicking (see `stdio.rs`). Declared before the modules, so their
// textual scope covers them all.
macro_rules! println {
    () => { $crate::stdio::out(format_args!(""), true) };
    ($($arg:tt)*) => { $crate::stdio::out(format_args!($($arg)*), true) };
}
macro_rules! print {
    ($($arg:tt)*) => { $crate::stdio::out(format_args!($($arg)*), false) };
}
macro_rules! eprintln {
    () => { $crate::stdio::err(format_args!("")) };
    ($($arg:tt)*) => { $crate::stdio::err(format_args!($($arg)*)) };
}

mod app;
mod commands;
mod folders;
mod guard;
mod logging;
mod memory;
mod otel;
mod progress;
mod stdio;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // An evaluator child of `weft serve` (weft_tools::eval): nothing else may start first,
    // no runtime and no threads, so its memory limit is what evaluation may use.
    let mut args = std::env::args_os().skip(1);
    if args
        .next()
        .is_some_and(|a| a == weft_tools::eval::CHILD_ARG)
    {
        let memory = args.next().and_then(|a| a.to_str()?.parse().ok());
        return weft_tools::eval::child_main(memory);
    }
    let cli = commands::Cli::parse();
    // A server or worker protects itself before any thread starts (see `guard.rs`).
    if matches!(
        cli.command,
        commands::Command::Serve(_) | commands::Command::Worker(_)
    ) && let Err(e) = guard::protect()
    {
        eprintln!("error: {e}");
        return ExitCode::from(1);
    }
    logging::init(&cli);
    // Traces start before the runtime and stop after it, outside async code: the exporter
    // flushes on its own thread when the guard drops.
    let endpoint = cli.global.otlp_endpoint.clone().or_else(|| {
        app::Config::load(cli.global.config.as_deref())
            .ok()
            .and_then(|c| c.telemetry.otlp_endpoint)
    });
    let _traces = match endpoint.as_deref().filter(|e| !e.trim().is_empty()) {
        Some(url) => match otel::init(url) {
            Ok(guard) => Some(guard),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(commands::dispatch(cli));
    // Dropping the runtime would wait for every blocking task, however long it runs; the
    // command already gave its work the time it allows (`serve`'s and `worker`'s grace).
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(code) => code,
        Err(e) => {
            let code = match e.downcast_ref::<app::UsageError>() {
                Some(_) => 2,
                None => 1,
            };
            eprintln!("error: {e:#}");
            ExitCode::from(code)
        }
    }
}
