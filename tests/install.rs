//! Installing for operators: `cargo install --path . --locked` puts the
//! daemon and `joblogctl` in place, and nothing else (the bench and the
//! crash harness are examples, for development).

use std::fs;
use std::process::Command;

use crate::util::TempDir;

#[test]
fn cargo_install_locked_installs_exactly_the_two_programs() {
    let root = TempDir::new();
    // The suite's own build directory, so nothing is compiled twice: the
    // debug profile this suite was built with, the same lock file.
    let target = std::path::Path::new(crate::util::bin())
        .parent()
        .and_then(|p| p.parent())
        .expect("target/<profile>/joblogd");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "install",
            "--path",
            env!("CARGO_MANIFEST_DIR"),
            "--locked",
            "--debug",
            "--offline",
            "--root",
        ])
        .arg(root.path())
        .env("CARGO_TARGET_DIR", target)
        .output()
        .expect("run cargo install");
    assert!(
        out.status.success(),
        "cargo install failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut installed: Vec<String> = fs::read_dir(root.join("bin"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    installed.sort();
    assert_eq!(installed, ["joblogctl", "joblogd"]);
    let version = Command::new(root.join("bin/joblogctl"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(version.status.success());
}
