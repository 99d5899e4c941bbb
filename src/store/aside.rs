//! Files beside the log: copies of bytes cut or appended (complete once
//! named), unique names, and directory syncs.

use super::*;

/// Suffix of a copy of a damaged file while it is being written.
pub(super) const PARTIAL: &str = ".partial";

/// Copies the first `len` bytes of `src` to a new file `dst` and syncs
/// it, in pieces, reporting progress: a damaged log of tens of GB takes
/// minutes to copy, and the service manager must hear that the daemon is
/// still busy. Write-back of each piece starts as soon as it is written, so
/// the final sync does not wait for the whole file at once.
///
/// The bytes go to `<dst>.partial`, renamed to `dst` only once complete and
/// synced: a daemon killed mid-copy (by a start timeout, say) must not
/// leave a file named like a whole copy of the original for someone to
/// restore from. A failed copy removes its partial file; a killed one is
/// removed by the next start ([`remove_partial_copies`]).
pub(super) fn copy_aside(
    src: &File,
    from: u64,
    len: u64,
    dst: &Path,
    mode: u32,
    on_copy: &mut impl FnMut(u64, u64),
) -> io::Result<()> {
    const PIECE: usize = 8 << 20;
    if dst.exists() {
        return Err(io::Error::from(io::ErrorKind::AlreadyExists));
    }
    let partial = PathBuf::from(format!("{}{PARTIAL}", dst.display()));
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&partial)?;
    let copied = (|| {
        out.set_permissions(fs::Permissions::from_mode(mode))?;
        let mut buf = vec![0u8; PIECE.min(usize::try_from(len).unwrap_or(PIECE)).max(1)];
        let mut at = 0u64;
        on_copy(0, len);
        while at < len {
            let n = buf
                .len()
                .min(usize::try_from(len - at).unwrap_or(usize::MAX));
            src.read_exact_at(&mut buf[..n], from + at)?;
            out.write_all_at(&buf[..n], at)?;
            start_writeback(&out, at, n);
            at += n as u64;
            on_copy(at, len);
        }
        out.sync_all()?;
        fs::rename(&partial, dst)
    })();
    if copied.is_err() {
        let _ = fs::remove_file(&partial);
    }
    copied
}

/// Removes `<path>.corrupt-*.partial` and `<path>.appended-*.partial`
/// files beside the log: copies that a daemon stopped before finishing.
/// The log they came from was left as it was (it is cut only after a
/// complete copy), so the next start or flush copies again in full. Only
/// names of that exact shape are touched.
pub(super) fn remove_partial_copies(path: &Path) -> Vec<PathBuf> {
    let (Some(name), dir) = (path.file_name().and_then(|n| n.to_str()), path.parent()) else {
        return Vec::new();
    };
    let dir = dir
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let prefixes = [
        format!("{name}.corrupt-"),
        format!("{name}.appended-"),
        format!("{name}.clearing-"),
        format!("{name}.meta"),
    ];
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(n) = file_name.to_str() else {
            continue;
        };
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && prefixes.iter().any(|p| n.starts_with(p)) && n.ends_with(PARTIAL) {
            let p = entry.path();
            if fs::remove_file(&p).is_ok() {
                removed.push(p);
            }
        }
    }
    removed.sort();
    removed
}

/// `path`, or `path.1`, `path.2`… if it exists already: a set-aside copy
/// never replaces an earlier one.
/// The first of `make(0)`, `make(1)`, … that does not exist: for names
/// whose ending must stay as it is (`.from-<offset>`, `.partial`).
pub(super) fn unique_by(make: impl Fn(u32) -> PathBuf) -> PathBuf {
    (0..)
        .map(&make)
        .find(|p| !p.exists())
        .unwrap_or_else(|| make(0))
}

pub(super) fn unique_path(path: PathBuf) -> PathBuf {
    if !path.exists() {
        return path;
    }
    (1..)
        .map(|n| PathBuf::from(format!("{}.{n}", path.display())))
        .find(|p| !p.exists())
        .unwrap_or(path)
}

/// Makes the directory entries of `path`'s directory durable (a new or
/// renamed file's name). On file systems that do not journal names with
/// the data (ext2, ext4 without a journal, some FUSE and NFS setups) a
/// file's synced bytes can otherwise lose their name in a power cut, so a
/// failure is an error like a failed `fdatasync`.
pub(crate) fn sync_dir(path: &Path) -> io::Result<()> {
    if injected_fault() == Some(Fault::DirSyncFails) {
        return Err(io::Error::from_raw_os_error(libc::EIO));
    }
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)?.sync_all()
}
