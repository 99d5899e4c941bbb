//! Running as a service: systemd units checked with systemd's own tools,
//! socket activation, the notify protocol, SIGHUP, a second SIGINT.

use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::util::{Client, Daemon, TempDir, bin, read_log, wait_for_records};

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The shipped units, with ExecStart pointing at the binary under test.
fn units(dir: &TempDir) -> (String, String) {
    let root = env!("CARGO_MANIFEST_DIR");
    let service = fs::read_to_string(format!("{root}/systemd/joblogd.service")).unwrap();
    let socket = fs::read_to_string(format!("{root}/systemd/joblogd.socket")).unwrap();
    let service = service.replace("/usr/local/bin/joblogd", bin());
    fs::write(dir.join("joblogd.service"), &service).unwrap();
    fs::write(dir.join("joblogd.socket"), &socket).unwrap();
    (service, socket)
}

#[test]
fn units_pass_systemd_analyze_verify_and_security() {
    if !have("systemd-analyze") {
        eprintln!("SKIPPED: systemd-analyze not installed (apt-get install systemd)");
        return;
    }
    let dir = TempDir::new();
    let (service, socket) = units(&dir);
    let out = Command::new("systemd-analyze")
        .args(["verify", "joblogd.socket", "joblogd.service"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "joblogd.service"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no score in:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let score: f64 = line
        .split(':')
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse {line}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
    // The conventions the issue names are present.
    for needle in [
        "Type=notify",
        "RuntimeDirectory=joblogd",
        "StateDirectory=joblogd",
        "Restart=on-failure",
        "TimeoutStopSec=",
    ] {
        assert!(service.contains(needle), "{needle}");
    }
    assert!(socket.contains("ListenStream=/run/joblogd/joblogd.sock"));
    assert!(socket.contains("SocketMode=0660"));
}

/// The forwarder's unit passes systemd's checks, runs `joblogctl forward`
/// on the socket the socket unit listens on, takes the database from its
/// environment file, and is not restarted in a loop over a configuration
/// error (joblogctl's usage exit code).
#[test]
fn the_forwarder_unit_passes_systemd_analyze_verify_and_security() {
    if !have("systemd-analyze") {
        eprintln!("SKIPPED: systemd-analyze not installed (apt-get install systemd)");
        return;
    }
    let dir = TempDir::new();
    let (_, socket) = units(&dir);
    let root = env!("CARGO_MANIFEST_DIR");
    let unit = fs::read_to_string(format!("{root}/systemd/joblogd-forward.service")).unwrap();
    let ctl = env!("CARGO_BIN_EXE_joblogctl");
    fs::write(
        dir.join("joblogd-forward.service"),
        unit.replace("/usr/local/bin/joblogctl", ctl),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "joblogd-forward.service"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-analyze verify failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "joblogd-forward.service"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no score in:\n{text}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
    let exec = setting(&unit, "ExecStart=").expect("ExecStart");
    let listen = setting(&socket, "ListenStream=").expect("ListenStream");
    assert!(
        exec.ends_with(&format!("joblogctl forward --socket {listen}")),
        "{exec}"
    );
    assert_eq!(
        setting(&unit, "RestartPreventExitStatus=").as_deref(),
        Some("2")
    );
    assert!(setting(&unit, "EnvironmentFile=").is_some());
    // The exit code the unit does not restart on is the one joblogctl
    // gives when the database is not configured.
    let out = Command::new(ctl)
        .args([
            "forward",
            "--socket",
            &dir.join("none.sock").display().to_string(),
        ])
        .env_remove("JOBLOGD_DATABASE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// One `Key=` setting of a unit (its first line with that key).
fn setting(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .find_map(|l| l.strip_prefix(key))
        .map(|v| v.trim().to_owned())
}

/// The sysusers.d entry creates the user the service runs as and the group
/// both units name (its primary group), with systemd's own tool, in a
/// scratch root (the host's /etc is not touched).
#[test]
fn the_sysusers_entry_creates_the_group_the_units_name() {
    if !have("systemd-sysusers") {
        eprintln!("SKIPPED: systemd-sysusers not installed (apt-get install systemd)");
        return;
    }
    let dir = TempDir::new();
    let (service, socket) = units(&dir);
    let user = setting(&service, "User=").expect("the service names a user");
    let group = setting(&socket, "SocketGroup=").expect("the socket names a group");
    assert_eq!(setting(&service, "Group=").as_deref(), Some(group.as_str()));
    let root = dir.join("root");
    fs::create_dir_all(root.join("etc")).unwrap();
    let entry = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/joblogd.sysusers");
    let out = Command::new("systemd-sysusers")
        .arg(format!("--root={}", root.display()))
        .arg(entry)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "systemd-sysusers failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let groups = fs::read_to_string(root.join("etc/group")).unwrap();
    let gid = groups
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{group}:")))
        .and_then(|rest| rest.split(':').nth(1))
        .unwrap_or_else(|| panic!("group {group} not created:\n{groups}"));
    let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
    let fields: Vec<&str> = passwd
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{user}:")))
        .unwrap_or_else(|| panic!("user {user} not created:\n{passwd}"))
        .split(':')
        .collect();
    // x:uid:gid:gecos:home:shell
    assert_eq!(
        fields.get(2).copied(),
        Some(gid),
        "{user}'s primary group is {group}:\n{passwd}"
    );
}

/// Every `Documentation=file:/usr/local/share/doc/joblogd/<NAME>` of the
/// units names a file of this repository that README's systemd setup
/// installs there, so `systemctl help joblogd` finds it.
#[test]
fn the_units_documentation_is_installed_by_the_readme_setup() {
    let root = env!("CARGO_MANIFEST_DIR");
    let doc_dir = "/usr/local/share/doc/joblogd";
    let readme = fs::read_to_string(format!("{root}/README.md")).unwrap();
    let section = readme
        .split("\n## Running under systemd\n")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("README has a section \"Running under systemd\"");
    // The install steps of the section's code blocks, split into words.
    let installs: Vec<Vec<&str>> = section
        .split("```")
        .skip(1)
        .step_by(2)
        .flat_map(str::lines)
        .map(|l| {
            l.split('#')
                .next()
                .unwrap_or(l)
                .split_whitespace()
                .collect::<Vec<_>>()
        })
        .filter(|w| w.first() == Some(&"install"))
        .collect();
    let installs_doc = |name: &str| {
        installs.iter().any(|w| {
            let to_doc_dir = w
                .windows(2)
                .any(|p| p[0] == "-t" && p[1].trim_end_matches('/') == doc_dir);
            (to_doc_dir && w.contains(&name))
                || w.last() == Some(&format!("{doc_dir}/{name}").as_str())
        })
    };
    let mut named = Vec::new();
    for unit in ["joblogd.service", "joblogd.socket"] {
        let text = fs::read_to_string(format!("{root}/systemd/{unit}")).unwrap();
        for url in text
            .lines()
            .filter_map(|l| l.strip_prefix("Documentation="))
            .flat_map(str::split_whitespace)
        {
            let Some(path) = url.strip_prefix("file:") else {
                continue;
            };
            let name = path
                .strip_prefix(&format!("{doc_dir}/"))
                .unwrap_or_else(|| panic!("{unit}: {url} is not under {doc_dir}/"));
            assert!(
                std::path::Path::new(root).join(name).is_file(),
                "{unit}: {name} is not in the repository"
            );
            assert!(
                installs_doc(name),
                "{unit}: README's systemd setup does not install {name} into {doc_dir}/: {installs:?}"
            );
            named.push(name.to_owned());
        }
    }
    assert!(!named.is_empty(), "the units name their documentation");
}

#[test]
fn socket_activation_adopts_the_passed_socket() {
    if !have("systemd-socket-activate") {
        eprintln!("SKIPPED: systemd-socket-activate not installed (apt-get install systemd)");
        return;
    }
    let dir = TempDir::new();
    let sock = dir.join("act.sock");
    let log = dir.join("log.json");
    let stderr = fs::File::create(dir.join("err")).unwrap();
    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&sock)
        .arg(bin())
        .arg("--socket")
        .arg(dir.join("unused.sock"))
        .arg("--log-file")
        .arg(&log)
        .stderr(stderr)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    // systemd-socket-activate binds, then starts the daemon on the first
    // connection: this client's bytes wait in the backlog meanwhile.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sock.exists() {
        assert!(Instant::now() < deadline, "no socket");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut c = Client::new(std::os::unix::net::UnixStream::connect(&sock).unwrap());
    c.send(r#"{"op":"log","job":{"via":"activation"},"ack":true}"#);
    assert_eq!(c.reply(), json!({"ok": true, "logged": 1}));
    c.send("ping");
    assert_eq!(c.reply()["records"], 1);
    assert_eq!(read_log(&log)[0]["via"], "activation");
    assert!(
        !dir.join("unused.sock").exists(),
        "did not bind its own socket"
    );
    let logs = fs::read_to_string(dir.join("err")).unwrap_or_default();
    assert!(logs.contains("activated=true"), "{logs}");
    // SAFETY: kill(2) on our child (systemd-socket-activate execs joblogd).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    assert!(
        sock.exists(),
        "the activated socket belongs to the service manager: not removed"
    );
}

/// A test-owned NOTIFY_SOCKET.
fn notify_socket(dir: &TempDir) -> (UnixDatagram, std::path::PathBuf) {
    let path = dir.join("notify.sock");
    let s = UnixDatagram::bind(&path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    (s, path)
}

/// The daemon on `sock` and `log`, reporting to the notify socket at
/// `npath`, with `env` set too.
fn spawn_notified(sock: &Path, log: &Path, npath: &Path, env: &[(&str, &str)]) -> Child {
    Command::new(bin())
        .arg("--socket")
        .arg(sock)
        .arg("--log-file")
        .arg(log)
        .env("NOTIFY_SOCKET", npath)
        .envs(env.iter().copied())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn next_message(s: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).expect("a notify message");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Taking over an existing log, the daemon tells the service manager it is
/// reading it (extending the start timeout) before it is ready.
#[test]
fn notify_reading_the_log_file_before_ready() {
    let dir = TempDir::new();
    let (ns, npath) = notify_socket(&dir);
    let log = dir.join("log.json");
    let recs: Vec<String> = (0..10_000)
        .map(|i| format!(r#"{{"video_id":"v{i}","success":true}}"#))
        .collect();
    fs::write(&log, format!("[{}]", recs.join(","))).unwrap();
    let mut child = spawn_notified(&dir.join("s.sock"), &log, &npath, &[]);
    let first = next_message(&ns);
    assert!(
        first.starts_with("EXTEND_TIMEOUT_USEC=")
            && first.contains("STATUS=Reading the log file: 0 of 358 kB"),
        "{first}"
    );
    let ready = next_message(&ns);
    assert!(ready.starts_with("READY=1"), "{ready}");
    assert!(ready.contains("10000 records"), "{ready}");
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// SIGHUP (`systemctl reload`) is reported as a reload that ends only
/// once the log path has been checked and reopened: RELOADING=1 with the
/// MONOTONIC_USEC= systemd matches it by, then READY=1 after the reopen.
#[test]
fn notify_reloading_until_a_sighup_reopen_is_done() {
    let dir = TempDir::new();
    let (ns, npath) = notify_socket(&dir);
    let sock = dir.join("s.sock");
    let log = dir.join("log.json");
    let mut child = spawn_notified(&sock, &log, &npath, &[]);
    // Periodic status lines may come in between; they start with STATUS=.
    let next = || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let m = next_message(&ns);
            if !m.starts_with("STATUS=") {
                return m;
            }
            assert!(Instant::now() < deadline, "only status lines for 20 s");
        }
    };
    assert!(next().starts_with("READY=1"));
    let mut c = Client::new(std::os::unix::net::UnixStream::connect(&sock).unwrap());
    c.send(r#"{"video_id":"before","success":true}"#);
    c.send("flush");
    assert_eq!(c.reply(), json!({"ok": true}));
    let rotated = dir.join("log.json.1");
    fs::rename(&log, &rotated).unwrap();
    // Usually still pending at SIGHUP (flushed 200 ms after arrival): the
    // reopen flushes it into the old file first.
    c.send(r#"{"video_id":"pending","success":true}"#);
    c.send("ping");
    assert_eq!(c.reply()["ok"], true);

    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec; kill(2) on our child.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now);
        libc::kill(child.id() as i32, libc::SIGHUP);
    }
    let reloading = next();
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    let ours = now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000;
    assert!(reloading.starts_with("RELOADING=1"), "{reloading}");
    assert!(
        usec >= ours && usec < ours + 10_000_000,
        "MONOTONIC_USEC {usec} vs ours {ours}"
    );
    let ready = next();
    assert!(ready.starts_with("READY=1"), "{ready}");
    // By READY both records are in the rotated file and a new log is open.
    let old: Vec<String> = read_log(&rotated)
        .iter()
        .map(|r| r["video_id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(old, ["before", "pending"]);
    assert_eq!(fs::read_to_string(&log).unwrap(), "[]");
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

#[test]
fn notify_ready_after_listening_stopping_on_sigterm_and_watchdog() {
    let dir = TempDir::new();
    let (ns, npath) = notify_socket(&dir);
    let sock = dir.join("s.sock");
    let mut child = spawn_notified(
        &sock,
        &dir.join("log.json"),
        &npath,
        &[("WATCHDOG_USEC", "200000")],
    );
    let first = next_message(&ns);
    assert!(first.starts_with("READY=1"), "{first}");
    // READY means it accepts: connecting right now must work.
    let mut c =
        Client::new(std::os::unix::net::UnixStream::connect(&sock).expect("accepts once READY"));
    c.send("ping");
    assert_eq!(c.reply()["ok"], true);
    // Watchdog pings at half the interval, with a status line.
    let mut watchdog = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while watchdog < 2 && Instant::now() < deadline {
        let m = next_message(&ns);
        if m.contains("WATCHDOG=1") {
            assert!(m.contains("STATUS=Serving: "), "{m}");
            watchdog += 1;
        }
    }
    assert_eq!(watchdog, 2, "watchdog pings");
    // SAFETY: kill(2) on our child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(0));
    // Every message sent after the watchdog pings: STOPPING=1 among them.
    ns.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut rest = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = ns.recv(&mut buf) {
        rest.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(
        rest.iter().any(|m| m.starts_with("STOPPING=1")),
        "STOPPING=1 on SIGTERM: {rest:?}"
    );
}

#[test]
fn sighup_follows_an_external_rotation() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    d.request(r#"{"op":"log","job":{"n":1},"ack":true}"#);
    // Nothing rotated: SIGHUP changes nothing. (Signals are asynchronous:
    // wait until it was handled, or it could land after the rename below.)
    d.signal(libc::SIGHUP);
    crate::util::wait_until("the first SIGHUP handled", || {
        d.logs().contains("SIGHUP: log file checked.")
    });
    d.request(r#"{"op":"log","job":{"n":2},"ack":true}"#);
    assert_eq!(read_log(&d.log).len(), 2);
    // logrotate-style: rename, then SIGHUP.
    let rotated = dir.join("log.json.1");
    fs::rename(&d.log, &rotated).unwrap();
    // Until SIGHUP, ping says the path no longer holds the file written.
    assert_eq!(d.request("ping")["log_file_at_path"], false);
    d.signal(libc::SIGHUP);
    crate::util::wait_until("a new log file after SIGHUP", || d.log.exists());
    d.request(r#"{"op":"log","job":{"n":3},"ack":true}"#);
    let old: Vec<i64> = read_log(&rotated)
        .iter()
        .map(|r| r["n"].as_i64().unwrap())
        .collect();
    let new: Vec<i64> = read_log(&d.log)
        .iter()
        .map(|r| r["n"].as_i64().unwrap())
        .collect();
    assert_eq!(old, vec![1, 2], "old file valid and complete");
    assert_eq!(new, vec![3]);
    assert_eq!(
        d.request("stats")["stats"]["total_jobs"],
        1,
        "index follows the new file"
    );
    assert_eq!(d.request("ping")["log_file_at_path"], true);
}

#[test]
fn a_second_sigint_during_shutdown_exits_at_once() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--shutdown-timeout-ms", "60000"]);
    // A client that floods requests and never reads keeps its connection
    // (and so the graceful shutdown) busy for the whole grace period.
    let hog = d.connect();
    hog.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut hog = Client::new(hog);
    let flood = b"ping\n".repeat(20_000);
    for _ in 0..50 {
        if std::io::Write::write_all(hog.writer(), &flood).is_err() {
            break;
        }
    }
    d.request(r#"{"op":"log","job":{"kept":true},"ack":true}"#);
    d.signal(libc::SIGINT);
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let log = d.log.clone();
    d.signal(libc::SIGINT);
    let mut d = d;
    let status = {
        let mut child = d.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            assert!(Instant::now() < deadline, "second SIGINT did not stop it");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    assert_eq!(status.code(), Some(130));
    assert!(t0.elapsed() < Duration::from_secs(5));
    // The acknowledged record is there; the file is valid or repairable.
    let d2 = Daemon::start_with(dir.join("s2.sock"), log.clone(), &dir, &[]);
    assert_eq!(wait_for_records(&d2.log, 1)[0]["kept"], true);
    drop(hog);
}

#[test]
fn under_the_journal_log_lines_carry_no_timestamp_of_their_own() {
    let dir = TempDir::new();
    let run = |journal: bool| -> String {
        let child = Command::new(bin())
            .arg("--socket")
            .arg(dir.join("j.sock"))
            .arg("--log-file")
            .arg(dir.join("j.json"))
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .envs(journal.then_some(("JOURNAL_STREAM", "8:12345")))
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(dir.join("j.sock")).is_err() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(10));
        }
        // SAFETY: kill(2) on our child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let plain = run(false);
    let journal = run(true);
    let first = |s: &str| s.lines().next().unwrap_or("").to_string();
    assert!(first(&plain).starts_with("20"), "timestamped: {plain}");
    assert!(
        first(&journal).starts_with(" INFO") || first(&journal).starts_with("INFO"),
        "no timestamp: {journal}"
    );
    assert!(!journal.contains('\x1b'), "no colours in the journal");
}

#[test]
fn a_deleted_socket_file_is_reported_and_sighup_binds_it_again() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let mut open = Client::new(d.connect());
    fs::remove_file(&d.socket).unwrap();
    assert!(std::os::unix::net::UnixStream::connect(&d.socket).is_err());
    // The daemon lives on; an open connection still works and says so.
    open.send("ping");
    let p = open.reply();
    assert_eq!(p["socket_at_path"], false, "{p}");
    d.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::os::unix::net::UnixStream::connect(&d.socket).is_err() {
        assert!(Instant::now() < deadline, "not bound again:\n{}", d.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(d.request("ping")["socket_at_path"], true);
    assert_eq!(
        d.request(r#"{"op":"log","job":{"after":"rebind"},"ack":true}"#)["ok"],
        true
    );
    assert_eq!(read_log(&d.log).len(), 1);
}

/// SIGHUP binds a deleted socket again while every connection slot is
/// taken: the re-bind used to wait for a free slot.
#[test]
fn sighup_binds_the_socket_again_while_every_slot_is_taken() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--max-connections", "1"]);
    let mut open = Client::new(d.connect());
    open.send("ping");
    assert_eq!(open.reply()["ok"], true);
    fs::remove_file(&d.socket).unwrap();
    d.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fs::symlink_metadata(&d.socket)
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
    {
        assert!(Instant::now() < deadline, "not bound again:\n{}", d.logs());
        std::thread::sleep(Duration::from_millis(20));
    }
    // A client queued meanwhile is served once the slot is free.
    let mut waiting = Client::new(d.connect());
    waiting.send(r#"{"op":"log","job":{"after":"rebind"},"ack":true}"#);
    drop(open);
    assert_eq!(waiting.reply()["ok"], true);
}

#[test]
fn a_deleted_log_file_is_reported_and_sighup_starts_a_fresh_one() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    d.request(r#"{"op":"log","job":{"n":1},"ack":true}"#);
    fs::remove_file(&d.log).unwrap();
    // No crash; ping says the path no longer holds the file being written.
    let p = d.request("ping");
    assert_eq!(p["ok"], true);
    assert_eq!(p["log_file_at_path"], false, "{p}");
    d.signal(libc::SIGHUP);
    crate::util::wait_until("a new log file after SIGHUP", || d.log.exists());
    d.request(r#"{"op":"log","job":{"n":2},"ack":true}"#);
    let new: Vec<i64> = read_log(&d.log)
        .iter()
        .map(|r| r["n"].as_i64().unwrap())
        .collect();
    assert_eq!(new, vec![2]);
    assert_eq!(d.request("ping")["log_file_at_path"], true);
}

#[test]
fn clear_never_moves_a_file_the_daemon_is_not_writing() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    d.request(r#"{"op":"log","job":{"n":1},"ack":true}"#);
    // Renamed underneath (logrotate before its reload), and someone put
    // another file at the path.
    let rotated = dir.join("log.json.1");
    fs::rename(&d.log, &rotated).unwrap();
    fs::write(&d.log, "[{\"someone\": \"else\"}]").unwrap();
    let r = d.request(r#"{"op":"clear","confirm":true}"#);
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["code"], "write_failed", "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("SIGHUP"),
        "{r}"
    );
    assert_eq!(
        fs::read_to_string(&d.log).unwrap(),
        "[{\"someone\": \"else\"}]",
        "the other file is left alone"
    );
    assert!(crate::util::files_containing(dir.path(), "log.20").is_empty());
    assert_eq!(read_log(&rotated).len(), 1);
    // The daemon goes on writing its own file.
    d.request(r#"{"op":"log","job":{"n":2},"ack":true}"#);
    assert_eq!(read_log(&rotated).len(), 2);
    // Once reopened (the other file is taken over), clear works again.
    fs::remove_file(&d.log).unwrap();
    d.signal(libc::SIGHUP);
    crate::util::wait_until("a new log file after SIGHUP", || d.log.exists());
    let r = d.request(r#"{"op":"clear","confirm":true}"#);
    assert_eq!(r["ok"], true, "{r}");
}
