//! What joblogd is measured against, without joblogd: the raw ceiling (the
//! same bytes and writers into a trivial in-process server) and the write
//! path alone (joblogd's own `Store::append`, no socket, no parsing, no
//! index), both in section 2, and the disk floor of one small append and
//! fdatasync that section 4's ack latency is read against.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use joblogd::dev::{FsyncPolicy, PageCache, Store};

use crate::bench::Bench;
use crate::records::Kind;
use crate::stats::{Latency, latency};
use crate::throughput::run_writers;
use crate::util::other;

/// Read buffer of the raw ceiling server.
const RAW_READ: usize = 256 * 1024;

/// The raw ceiling server: a thread per connection copying socket bytes
/// into one file under a mutex.
fn raw_serve(mut stream: UnixStream, file: &Mutex<File>) {
    let mut buf = vec![0u8; RAW_READ];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let Ok(mut f) = file.lock() else { break };
                if f.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    // Dropping the stream closes it: the writer's read sees EOF.
}

/// Same bytes, same writers, into the raw server; one fdatasync at the end
/// (as joblogd's final flush). Returns the time.
pub(crate) fn raw_run(dir: &Path, bufs: &[Vec<u8>]) -> io::Result<Duration> {
    let sock = dir.join("raw.sock");
    let out = dir.join("raw.out");
    let _ = fs::remove_file(&sock);
    let listener = UnixListener::bind(&sock)?;
    let file = Mutex::new(File::create(&out)?);
    let n = bufs.len();
    let res = thread::scope(|s| {
        let (file, listener) = (&file, &listener);
        s.spawn(move || {
            for _ in 0..n {
                match listener.accept() {
                    Ok((stream, _)) => {
                        s.spawn(move || raw_serve(stream, file));
                    }
                    Err(_) => break,
                }
            }
        });
        let res = run_writers(&sock, bufs, || {
            file.lock()
                .map_err(|_| other("raw file lock poisoned"))?
                .sync_data()
        });
        if res.is_err() {
            // Unblock the acceptor if some writer never connected.
            for _ in 0..n {
                let _ = UnixStream::connect(&sock);
            }
        }
        res
    });
    let _ = fs::remove_file(&sock);
    let _ = fs::remove_file(&out);
    let (took, _) = res?;
    Ok(took)
}

/// Bytes per append of the write path alone: the daemon's default
/// `--batch-max-bytes`, which its batches reach whenever the disk is what
/// holds it back (group commit).
const DISK_BATCH: usize = 8 << 20;

/// Bytes per chunk inside one append: under load a connection hands its
/// chunk over to the writer once it holds 256 KiB (`HANDOFF_BYTES`), so a
/// full batch arrives as chunks of about this.
pub(crate) const DISK_CHUNK: usize = 256 << 10;

/// The write path alone: joblogd's own [`Store::append`] with the daemon's
/// defaults (`--fsync always --page-cache drop`) appending `total` bytes in
/// batches of [`DISK_BATCH`], with no socket, no parsing and no index. It
/// shows what the disk allows that path at the default batch size. It is
/// not a strict bound: under load the daemon's batches grow past
/// `--batch-max-bytes` while a flush is in flight, and larger batches write
/// faster on this VM, so seed-sized runs can beat it. `chunk` is
/// [`DISK_CHUNK`] bytes of input lines (their content does not matter to
/// the disk). Returns the time.
pub(crate) fn disk_run(dir: &Path, total: u64, chunk: &[u8]) -> io::Result<Duration> {
    let path = dir.join("disk.json");
    let _ = fs::remove_file(&path);
    let (mut store, _) = Store::open(
        &path,
        FsyncPolicy::Always,
        joblogd::dev::FileOptions::default(),
        |_, _, _| {},
        |_, _| {},
    )
    .map_err(|e| other(e.to_string()))?;
    store.set_page_cache(PageCache::Drop);
    let per_batch = DISK_BATCH / DISK_CHUNK;
    let t0 = Instant::now();
    let mut left = total;
    let mut batch: Vec<&[u8]> = Vec::with_capacity(per_batch);
    while left > 0 {
        // Exactly `total` bytes in all: the last chunk may be cut short (the
        // store adds `\n]` and skips the first record's comma, 2 bytes either
        // way, as the daemon's file has them).
        batch.clear();
        while batch.len() < per_batch && left > 0 {
            let n = usize::try_from(left).map_or(chunk.len(), |l| l.min(chunk.len()));
            batch.push(&chunk[..n]);
            left -= n as u64;
        }
        store
            .append(&batch, batch.len() as u64)
            .map_err(|e| other(e.to_string()))?;
    }
    let took = t0.elapsed();
    drop(store);
    let _ = fs::remove_file(&path);
    Ok(took)
}

impl Bench {
    /// Context for section 4: what one small append + fdatasync costs on
    /// this disk, without joblogd. Microseconds.
    pub(crate) fn fsync_floor(&self) -> io::Result<Latency> {
        let path = self.dir.join("floor.bin");
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let mut line = Vec::new();
        self.rg.line(&mut line, Kind::Small, "floor", 0, 0);
        let mut at = 0u64;
        let mut samples = Vec::new();
        for _ in 0..self.plan.fsync_floor_iters {
            let t = Instant::now();
            file.write_all_at(&line, at)?;
            file.sync_data()?;
            samples.push(t.elapsed().as_secs_f64() * 1e6);
            at += line.len() as u64;
        }
        drop(file);
        let _ = fs::remove_file(&path);
        Ok(latency(&samples))
    }
}
