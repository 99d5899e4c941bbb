//! The `joblogd` binary: parse the command line, set up logging, run.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use joblogd::config::{Args, Config};

fn main() -> ExitCode {
    init_tracing();
    let config = match Config::from_args(Args::parse()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("joblogd: {e}");
            return ExitCode::from(2);
        }
    };
    // Before any other thread exists: it edits the environment.
    let activated = match joblogd::systemd::listen_fd() {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("joblogd: {e}");
            return ExitCode::from(1);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("joblogd: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let (shutdown, reopen) = match joblogd::signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("joblogd: cannot install signal handlers: {e}");
            return ExitCode::from(1);
        }
    };
    let startup = joblogd::Startup {
        activated,
        reopen: Some(reopen),
    };
    match runtime.block_on(joblogd::run(config, startup, shutdown)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Exiting.");
            eprintln!("joblogd: {e}");
            ExitCode::from(1)
        }
    }
}

/// `RUST_LOG` (default `info`) to stderr. Under systemd (JOURNAL_STREAM set)
/// the journal adds its own timestamps, so ours are left out.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().init();
    } else {
        builder.init();
    }
}
