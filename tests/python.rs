//! The Python client's own unittest suite (clients/python/tests), run
//! against the binary this build produced; and the client as a package
//! (clients/python/pyproject.toml): its version, `mypy --strict`, a wheel
//! built offline and installed into a fresh venv, `pip install` of the
//! source directory.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{Daemon, TempDir, read_log};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const VERSION: &str = env!("CARGO_PKG_VERSION");

#[test]
fn python_client_unittests_pass_against_the_real_daemon() {
    let out = Command::new("python3")
        .args([
            "-m",
            "unittest",
            "discover",
            "-s",
            "clients/python/tests",
            "-v",
        ])
        .current_dir(ROOT)
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

/// Runs `cmd` (described by `what`); panics with its output unless it
/// succeeds. Returns its standard output.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{text}",
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy of the package's sources (pyproject.toml and joblog_client/) in
/// `to`: a build writes `build/` and `*.egg-info` beside its sources, which
/// must not land in the work tree (nor race with another test's build).
fn copy_client(to: &Path) -> PathBuf {
    let from = Path::new(ROOT).join("clients/python");
    fs::create_dir_all(to.join("joblog_client")).expect("mkdir");
    fs::copy(from.join("pyproject.toml"), to.join("pyproject.toml")).expect("copy pyproject");
    for e in fs::read_dir(from.join("joblog_client")).expect("read joblog_client/") {
        let p = e.expect("entry").path();
        if p.is_file() {
            fs::copy(&p, to.join("joblog_client").join(p.file_name().unwrap())).expect("copy");
        }
    }
    to.to_owned()
}

/// A Python that builds a wheel offline (`--no-build-isolation`, so
/// setuptools >= 61 and wheel must be there) and makes venvs: the tests'
/// python3 if it can, else Debian's (python3-setuptools, python3-wheel,
/// python3-pip, python3-venv; .ci/run installs them).
fn wheel_builder() -> &'static str {
    const PROBE: &str = "import sys, importlib.util, setuptools, wheel; \
                         sys.exit(int(setuptools.__version__.split('.')[0]) < 61 \
                         or not all(importlib.util.find_spec(m) for m in ('pip', 'ensurepip')))";
    for py in ["python3", "/usr/bin/python3"] {
        if Command::new(py)
            .args(["-c", PROBE])
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return py;
        }
    }
    panic!(
        "no python3 here can build a wheel offline: apt-get install python3-setuptools \
         python3-wheel python3-pip python3-venv (as .ci/run does)"
    );
}

/// Run by a venv's python from a directory outside the repository (no
/// PYTHONPATH): the installed package is the one imported, at the crate's
/// version, and logs through `with JobLogger(...)` and a JobLogHandler set
/// up by dictConfig.
const USE_INSTALLED: &str = r#"
import importlib.metadata, logging, logging.config, sys
import joblog_client
from joblog_client import JobLogger
sock, spool, version, tag = sys.argv[1:5]
assert joblog_client.__file__.startswith(sys.prefix + "/"), (joblog_client.__file__, sys.prefix)
assert joblog_client.__version__ == version, joblog_client.__version__
assert importlib.metadata.version("joblog-client") == version, importlib.metadata.version("joblog-client")
with JobLogger(socket_path=sock, spool_dir=spool) as lg:
    lg.log_job({"video_id": tag + "-with", "success": True})
logging.config.dictConfig({
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"jobs": {"class": "joblog_client.JobLogHandler", "socket_path": sock, "spool_dir": spool}},
    "loggers": {"pipeline": {"handlers": ["jobs"], "level": "INFO"}},
})
logging.getLogger("pipeline").info("done", extra={"job": {"video_id": tag + "-handler", "success": False}})
logging.getLogger("pipeline").info("a record without a job is not logged")
logging.shutdown()
"#;

/// Code that uses the package, for `mypy --strict` against an installed
/// copy: it type-checks only if the package is typed (`py.typed`).
const CONSUMER: &str = r#"
import logging
from joblog_client import JobLogError, JobLogForbidden, JobLogHandler, JobLogger, JobLogUnavailable


def report(lg: JobLogger) -> str:
    try:
        stats = lg.get_statistics()
    except JobLogUnavailable as e:
        return str(e)
    except JobLogForbidden as e:
        return e.message
    except JobLogError as e:
        return repr(e)
    total: int = stats["total_jobs"]
    return f"{total} jobs"


def setup() -> logging.Handler:
    with JobLogger(socket_path="/nonexistent.sock", timeout=0.1) as lg:
        lg.log_jobs_batch([{"video_id": "x"}])
    return JobLogHandler(socket_path="/nonexistent.sock", timeout=0.5)
"#;

fn video_ids(path: &Path) -> Vec<String> {
    read_log(path)
        .iter()
        .map(|r| {
            assert!(r["record_id"].is_string(), "{r}");
            r["video_id"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

#[test]
fn python_client_wheel_installs_into_a_fresh_venv_and_logs_to_a_real_daemon() {
    let dir = TempDir::new();
    let src = copy_client(&dir.join("src"));
    let dist = dir.join("dist");
    run(
        Command::new(wheel_builder())
            .args(["-m", "pip", "wheel", "--no-build-isolation", "--no-deps"])
            .args(["--no-index", "-q", "-w"])
            .arg(&dist)
            .arg(&src),
        "building the wheel",
    );
    let wheel = dist.join(format!("joblog_client-{VERSION}-py3-none-any.whl"));
    let built: Vec<_> = fs::read_dir(&dist)
        .expect("dist/")
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(wheel.exists(), "want {wheel:?}, built {built:?}");
    let listing = run(
        Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile; print(*zipfile.ZipFile(sys.argv[1]).namelist())",
            ])
            .arg(&wheel),
        "listing the wheel",
    );
    for file in ["joblog_client/__init__.py", "joblog_client/py.typed"] {
        assert!(
            listing.split_whitespace().any(|f| f == file),
            "{file} not in {listing}"
        );
    }
    assert!(!listing.contains("tests/"), "{listing}");

    // A fresh venv of the tests' python3, nothing but the wheel in it.
    let venv = dir.join("venv");
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "python3 -m venv",
    );
    let py = venv.join("bin/python");
    run(
        Command::new(&py)
            .args(["-m", "pip", "install", "--no-index", "--no-deps", "-q"])
            .arg(&wheel),
        "pip install of the wheel",
    );
    let d = Daemon::start(&dir, &[]);
    let work = dir.join("work");
    fs::create_dir_all(&work).expect("mkdir");
    run(
        Command::new(&py)
            .args(["-c", USE_INSTALLED])
            .arg(&d.socket)
            .arg(dir.join("spool"))
            .args([VERSION, "wheel"])
            .current_dir(&work)
            .env_remove("PYTHONPATH")
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        "the client installed from the wheel",
    );
    assert_eq!(video_ids(&d.log), ["wheel-with", "wheel-handler"]);

    // py.typed went along: code using the installed package type-checks.
    fs::write(work.join("consumer.py"), CONSUMER).expect("write consumer");
    run(
        Command::new("mypy")
            .args(["--strict", "--cache-dir"])
            .arg(dir.join("mypy-cache"))
            .arg("--python-executable")
            .arg(&py)
            .arg("consumer.py")
            .current_dir(&work),
        "mypy --strict on code using the installed wheel (apt-get install mypy)",
    );
}

#[test]
fn python_client_pip_installs_from_its_source_directory() {
    let dir = TempDir::new();
    let src = copy_client(&dir.join("python"));
    // The builder's setuptools and wheel, seen from the venv: `pip install
    // ./clients/python` without fetching the build backend.
    let builder = wheel_builder();
    let venv = dir.join("venv");
    run(
        Command::new(builder)
            .args(["-m", "venv", "--system-site-packages"])
            .arg(&venv),
        "venv",
    );
    let py = venv.join("bin/python");
    run(
        Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--no-build-isolation",
                "--no-index",
                "-q",
            ])
            .arg(&src),
        "pip install of the source directory",
    );
    let d = Daemon::start(&dir, &[]);
    run(
        Command::new(&py)
            .args(["-c", USE_INSTALLED])
            .arg(&d.socket)
            .arg(dir.join("spool"))
            .args([VERSION, "source"])
            .current_dir(dir.path())
            .env_remove("PYTHONPATH")
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        "the client installed from its source directory",
    );
    assert_eq!(video_ids(&d.log), ["source-with", "source-handler"]);
}

#[test]
fn python_client_version_follows_the_crate() {
    let out = run(
        Command::new("python3")
            .args([
                "-c",
                "import joblog_client; print(joblog_client.__version__)",
            ])
            .env("PYTHONPATH", Path::new(ROOT).join("clients/python"))
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        "import joblog_client",
    );
    assert_eq!(
        out.trim(),
        VERSION,
        "joblog_client.__version__ must follow Cargo.toml's version"
    );
    // The package's version is that one (the wheel test checks it built).
    let pyproject = fs::read_to_string(Path::new(ROOT).join("clients/python/pyproject.toml"))
        .expect("clients/python/pyproject.toml");
    assert!(
        pyproject.contains(r#"version = {attr = "joblog_client.__version__"}"#),
        "{pyproject}"
    );
}

#[test]
fn python_client_passes_mypy_strict() {
    let dir = TempDir::new();
    let out = run(
        Command::new("mypy")
            .args(["--strict", "--cache-dir"])
            .arg(dir.path())
            .arg("clients/python/joblog_client")
            .current_dir(ROOT),
        "mypy --strict clients/python/joblog_client (apt-get install mypy)",
    );
    assert!(out.contains("Success: no issues found"), "{out}");
}
