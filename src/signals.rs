//! Signals, handled by signal-hook on a thread of their own and fed into
//! the runtime as a future: async code never runs inside a signal handler.

use std::future::Future;
use std::io;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tokio::sync::oneshot;

/// A future that completes on the first SIGTERM or SIGINT. A second one
/// while shutting down exits at once with status 130 (the operator insists;
/// at most the records of the batch being written are lost, and the file is
/// repaired at the next start).
///
/// # Errors
/// The handlers could not be installed.
pub fn shutdown() -> io::Result<impl Future<Output = ()>> {
    let mut signals = Signals::new([SIGTERM, SIGINT])?;
    let (tx, rx) = oneshot::channel::<i32>();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut tx = Some(tx);
            for sig in signals.forever() {
                match tx.take() {
                    Some(tx) => {
                        let _ = tx.send(sig);
                    }
                    None => {
                        tracing::warn!(signal = sig, "Second signal during shutdown; exiting now.");
                        std::process::exit(130);
                    }
                }
            }
        })?;
    Ok(async move {
        if let Ok(sig) = rx.await {
            tracing::info!(signal = sig, "Shutdown requested.");
        }
    })
}
