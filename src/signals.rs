//! Signals, handled by signal-hook on a thread of their own and fed into
//! the runtime: async code never runs inside a signal handler.

use std::future::Future;
use std::io;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use tokio::sync::{mpsc, oneshot};

/// Signal handling: a future that completes on the first SIGTERM or SIGINT,
/// and a channel that gets a message per SIGHUP (reopen the log file).
///
/// A second SIGTERM or SIGINT while shutting down exits at once with status
/// 130, after any write in progress completes (it waits for
/// [`crate::store::WRITE_LOCK`]), so the file is never left mid-batch by it.
///
/// # Errors
/// The handlers could not be installed.
pub fn install() -> io::Result<(impl Future<Output = ()>, mpsc::UnboundedReceiver<()>)> {
    let mut signals = Signals::new([SIGTERM, SIGINT, SIGHUP])?;
    let (tx, rx) = oneshot::channel::<i32>();
    let (hup_tx, hup_rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut tx = Some(tx);
            for sig in signals.forever() {
                if sig == SIGHUP {
                    let _ = hup_tx.send(());
                    continue;
                }
                match tx.take() {
                    Some(tx) => {
                        let _ = tx.send(sig);
                    }
                    None => {
                        tracing::warn!(signal = sig, "Second signal during shutdown; exiting now.");
                        let _guard = crate::store::WRITE_LOCK
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        std::process::exit(130);
                    }
                }
            }
        })?;
    let shutdown = async move {
        if let Ok(sig) = rx.await {
            tracing::info!(signal = sig, "Shutdown requested.");
        }
    };
    Ok((shutdown, hup_rx))
}
