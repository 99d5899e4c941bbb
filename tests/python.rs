//! The Python client's own unittest suite (clients/python/tests), run
//! against the binary this build produced.

use std::process::Command;

#[test]
fn python_client_unittests_pass_against_the_real_daemon() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = Command::new("python3")
        .args([
            "-m",
            "unittest",
            "discover",
            "-s",
            "clients/python/tests",
            "-v",
        ])
        .current_dir(root)
        .env("JOBLOGD_BIN", crate::util::bin())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("python3 is required by the test suite (see README)");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "python unittest failed:\n{text}");
    // A suite that ran nothing must not pass silently.
    assert!(
        text.contains("Ran ") && !text.contains("Ran 0 tests"),
        "{text}"
    );
    eprintln!(
        "{}",
        text.lines().rev().take(3).collect::<Vec<_>>().join(" | ")
    );
}
