//! The `sh` examples in protocol.md and README.md, run verbatim with real
//! socat against a real daemon: the documentation cannot drift from the code.

use std::process::Command;

use serde_json::Value;

use crate::util::{Daemon, TempDir};

/// The ```sh blocks of a Markdown file.
fn sh_blocks(md: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in md.lines() {
        match (&mut cur, line.trim_end()) {
            (None, "```sh") => cur = Some(String::new()),
            (Some(_), "```") => blocks.extend(cur.take()),
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn tools_available() -> bool {
    let ok = |cmd: &str, arg: &str| {
        Command::new(cmd)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    ok("socat", "-V") && ok("jq", "--version")
}

/// Runs every block; each `# {...}` comment line is the expected reply of the
/// block's next output line.
fn check_examples(file: &str, tagged: &[&str]) {
    if !tools_available() {
        // .ci/run installs them; a developer machine may lack them.
        eprintln!("SKIPPED: {file} examples need socat and jq (apt-get install socat jq)");
        return;
    }
    let md = std::fs::read_to_string(file).expect("read doc");
    let blocks: Vec<String> = sh_blocks(&md)
        .into_iter()
        .filter(|b| b.contains("socat") && !tagged.iter().any(|t| b.contains(t)))
        .collect();
    assert!(!blocks.is_empty(), "{file} has socat examples");
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    for block in blocks {
        let out = Command::new("bash")
            .arg("-euo")
            .arg("pipefail")
            .arg("-c")
            .arg(&block)
            .current_dir(dir.path())
            .env("JOBLOGD_SOCKET", &d.socket)
            .env("SOCK", &d.socket)
            .env_remove("XDG_RUNTIME_DIR")
            .output()
            .expect("bash");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "example failed:\n{block}\nstdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<Value> = stdout
            .lines()
            .filter(|l| l.starts_with("{\"") && l.contains("\"ok\""))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        let want: Vec<Value> = block
            .lines()
            .filter_map(|l| l.strip_prefix("# {").map(|j| format!("{{{j}")))
            .map(|j| serde_json::from_str(&j).unwrap_or_else(|e| panic!("doc comment {j}: {e}")))
            .collect();
        for (i, w) in want.iter().enumerate() {
            assert_eq!(got.get(i), Some(w), "example:\n{block}");
        }
    }
}

#[test]
fn protocol_md_examples_work_verbatim() {
    check_examples("protocol.md", &[]);
}

#[test]
fn readme_examples_work_verbatim() {
    check_examples("README.md", &[]);
}

/// Every flag `joblogd --help` lists is in README's options table.
#[test]
fn every_flag_in_help_is_documented_in_the_readme() {
    let out = Command::new(crate::util::bin())
        .arg("--help")
        .output()
        .expect("run joblogd --help");
    let help = String::from_utf8_lossy(&out.stdout);
    let readme = std::fs::read_to_string("README.md").expect("read README");
    let flags: Vec<&str> = help
        .lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("-h, ")
                .or(l.strip_prefix("-V, "))
                .unwrap_or(l);
            l.starts_with("--")
                .then(|| l.split([' ', '=']).next().unwrap_or(l))
        })
        .filter(|f| *f != "--help" && *f != "--version")
        .collect();
    assert!(flags.len() > 10, "flags parsed from --help: {flags:?}");
    let missing: Vec<&&str> = flags
        .iter()
        .filter(|f| !readme.contains(&format!("| `{f}")))
        .collect();
    assert!(
        missing.is_empty(),
        "flags missing from README's table: {missing:?}"
    );
}
