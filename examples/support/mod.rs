//! What the development examples (`joblogd-bench`, `joblogd-torture`)
//! share. Not an example itself: cargo only takes `examples/*.rs` and
//! `examples/*/main.rs` for those.

use std::path::{Path, PathBuf};

/// The daemon built with the calling example: `target/<profile>/joblogd`,
/// one directory above `target/<profile>/examples/` where examples land.
pub fn joblogd_beside(exe: &Path) -> PathBuf {
    let dir = exe.parent().unwrap_or(Path::new("."));
    let dir = if dir.ends_with("examples") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    dir.join("joblogd")
}
