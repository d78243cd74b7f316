//! `weft`: the command line. Parses arguments, opens the store and hands each command to its
//! module under `commands/`. Data goes to stdout; progress and messages go to stderr.
//!
//! Exit codes: 0 the run (or command) succeeded, 1 the run failed or was cancelled, 2 a usage
//! or template error.

mod app;
mod commands;
mod folders;
mod logging;
mod memory;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    logging::init(&cli);
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
    match runtime.block_on(commands::dispatch(cli)) {
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
