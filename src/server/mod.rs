//! The accept loop with a connection cap, the access check at connect,
//! and the shutdown fan-out. The socket itself (lock file, bind, the
//! socket file known by device and inode) is `socket.rs`'s.

use std::future::Future;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::access::Peer;
use crate::conn::{self, Shared};

pub(crate) mod socket;

use socket::rebind_now;
pub(crate) use socket::{BindError, Bound, SocketFile, adopt, bind, lock_socket};

use crate::config::tuning::LAST_CALL;

/// One error reply, then close: the peer is not on the allow lists.
async fn refuse(mut stream: tokio::net::UnixStream, peer: Option<Peer>) {
    use tokio::io::AsyncWriteExt;
    tracing::warn!(
        uid = peer.map(|p| p.uid),
        pid = peer.and_then(|p| p.pid),
        "Refused a connection from a peer not allowed."
    );
    let e = crate::protocol::ProtocolError::new(
        crate::protocol::ErrorCode::Forbidden,
        "this user may not use joblogd (see --allow-uid / --allow-gid)",
    );
    let _ = stream.write_all(&e.reply(0)).await;
    let _ = stream.shutdown().await;
}

/// Serves an accepted client on its own task, if the access policy allows
/// it (and refuses it otherwise); its connection slot is given back when
/// the task ends.
fn spawn_connection(
    conns: &mut JoinSet<()>,
    stream: tokio::net::UnixStream,
    shared: Arc<Shared>,
    stop: crate::shutdown::Shutdown,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let peer = stream.peer_cred().ok().map(|c| Peer {
        pid: c.pid(),
        uid: c.uid(),
        gid: c.gid(),
    });
    let groups = crate::access::peer_groups(stream.as_raw_fd());
    conns.spawn(async move {
        match peer {
            Some(p) if shared.access.allows(&p, groups.as_deref()) => {
                shared.metrics.connection(false);
                let may_clear = shared.access.may_clear(&p, groups.as_deref());
                conn::handle(stream, shared, stop, Some(p), may_clear).await
            }
            _ => {
                shared.metrics.connection(true);
                refuse(stream, peer).await
            }
        }
        drop(permit);
    });
}

/// The stop: connections finish what their clients sent, for up to
/// `grace`; then the last call, and after [`LAST_CALL`] the rest are
/// aborted.
async fn drain(mut conns: JoinSet<()>, stopper: &crate::shutdown::Stopper, grace: Duration) {
    let open = conns.len();
    tracing::info!(
        connections = open,
        "Shutting down: no longer accepting; draining connections."
    );
    stopper.begin();
    let drained =
        tokio::time::timeout(grace, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            connections = conns.len(),
            grace_ms = grace.as_millis() as u64,
            "Connections still open after the grace period; closing them."
        );
        // Those held back by the byte budget hand over what they have read
        // first: they stop waiting for it now (bounded: they read nothing
        // new from their sockets after what was queued at shutdown).
        stopper.last_call();
        let last = tokio::time::timeout(LAST_CALL, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
        if last.is_err() {
            conns.shutdown().await;
        }
    }
}

/// Accepts connections until `shutdown` completes, then tells every
/// connection to finish (read what its client already sent, answer it) and
/// waits up to `grace` for them. Returns the bound socket, so the caller
/// decides when the file goes away (after the final flush).
pub(crate) async fn serve(
    mut bound: Bound,
    shared: Arc<Shared>,
    max_connections: usize,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
    mut rebind: tokio::sync::mpsc::UnboundedReceiver<()>,
) -> Bound {
    let stopper = crate::shutdown::Stopper::new(grace);
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut conns = JoinSet::new();
    let mut backoff = Duration::from_millis(1);
    tokio::pin!(shutdown);
    loop {
        // Reap finished connections so the set does not grow.
        while conns.try_join_next().is_some() {}
        // SIGHUP's re-bind is served while every connection slot is taken
        // too: new clients cannot even queue while the socket file is gone.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            Some(()) = rebind.recv() => {
                rebind_now(&mut bound);
                continue;
            }
        };
        let accepted = tokio::select! {
            _ = &mut shutdown => break,
            r = bound.listener().inner().accept() => r,
            Some(()) = rebind.recv() => {
                rebind_now(&mut bound);
                continue;
            }
        };
        match accepted {
            Ok((stream, _)) => {
                backoff = Duration::from_millis(1);
                spawn_connection(&mut conns, stream, shared.clone(), stopper.watch(), permit);
            }
            Err(e) => {
                // EMFILE and friends: wait, do not spin.
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "Accept failed.");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    drain(conns, &stopper, grace).await;
    bound
}
