//! Promise 6: only the users the operator allows can reach the daemon.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use crate::util::{Daemon, TempDir, add_system_user, read_log, run_expect_exit};

fn uid() -> u32 {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() }
}

#[test]
fn a_world_writable_socket_directory_without_sticky_bit_is_refused() {
    let dir = TempDir::new();
    let open = dir.join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    let (st, err) = run_expect_exit(&[
        "--socket",
        open.join("s.sock").to_str().unwrap(),
        "--log-file",
        dir.join("l.json").to_str().unwrap(),
    ]);
    assert_eq!(st.code(), Some(1));
    assert!(err.contains("writable by others and not sticky"), "{err}");
    // With the sticky bit (like /tmp) it is fine.
    fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
    let d = Daemon::start_with(open.join("s.sock"), dir.join("l.json"), &dir, &[]);
    assert_eq!(d.request("ping")["ok"], true);
}

#[test]
fn peers_not_on_the_allow_lists_get_one_error_and_are_closed() {
    let dir = TempDir::new();
    // Allow only a uid and gid that are not ours.
    let d = Daemon::start(&dir, &["--allow-uid", "54321", "--allow-gid", "54321"]);
    if uid() == 0 {
        // Root may always connect: the operator's `sudo joblogctl …`.
        assert_eq!(d.request("ping")["ok"], true);
        assert!(!d.logs().contains("Refused a connection"), "{}", d.logs());
        return;
    }
    let mut c = crate::util::Client::new(d.connect());
    let r = c.reply();
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
    assert_eq!(c.rest(), "", "closed after the error");
    assert!(d.logs().contains("Refused a connection"));
    drop(d);
    // Our own uid is allowed by default.
    let d = Daemon::start(&dir, &[]);
    assert_eq!(d.request("ping")["ok"], true);
}

/// Can this test make users and act as them (root, and `tools` found)?
/// Prints why not.
fn can_act_as_others(tools: &[&str]) -> bool {
    if uid() != 0 {
        eprintln!("SKIPPED: creating a test user needs root");
        return false;
    }
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| Command::new(t).arg("--help").output().is_err())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "SKIPPED: {} needed (passwd, util-linux, socat)",
            missing.join(", ")
        );
        return false;
    }
    true
}

#[test]
fn another_user_is_refused_unless_allowed() {
    if !can_act_as_others(&["useradd", "setpriv"]) {
        return;
    }
    let name = "joblogd-test";
    add_system_user(name, &[]);
    let id = |flag: &str| -> u32 {
        let o = Command::new("id").args([flag, name]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    };
    let (other_uid, other_gid) = (id("-u"), id("-g"));
    let dir = TempDir::new();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    // Mode 0666 so only the peer check stands between that user and us.
    // joblogctl (under the build directory, readable by everyone) as that
    // user: exit 0 with the ping reply, or 1 with the error.
    let ping_as_other = |d: &Daemon| -> (Option<i32>, String) {
        let o = Command::new("setpriv")
            .args([
                &format!("--reuid={other_uid}"),
                &format!("--regid={other_gid}"),
                "--clear-groups",
            ])
            .arg(env!("CARGO_BIN_EXE_joblogctl"))
            .arg("--socket")
            .arg(&d.socket)
            .arg("ping")
            .output()
            .unwrap();
        (
            o.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        )
    };
    let d = Daemon::start(&dir, &["--socket-mode", "0666"]);
    let (code, out) = ping_as_other(&d);
    if out.contains("Permission denied") && out.contains("joblogctl") {
        eprintln!("SKIPPED: the build directory is not readable by another user: {out}");
        return;
    }
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("forbidden"), "{out}");
    drop(d);
    let d = Daemon::start(
        &dir,
        &[
            "--socket-mode",
            "0666",
            "--allow-uid",
            &format!("0,{other_uid}"),
        ],
    );
    let (code, out) = ping_as_other(&d);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("\"records\""), "{out}");
}

#[test]
fn stamp_peer() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &["--stamp-peer"]);
    d.request(r#"{"op":"log","job":{"video_id":"p","logged_at":"t"},"ack":true}"#);
    let recs = read_log(&d.log);
    assert_eq!(recs[0]["peer"]["uid"], uid());
    assert!(recs[0]["peer"]["pid"].as_u64().is_some_and(|p| p > 0));
    let text = fs::read_to_string(&d.log).unwrap();
    assert!(
        text.contains("\"peer\": {\n      \"pid\": "),
        "pretty-printed like the rest:\n{text}"
    );
}

/// By default everyone who may connect may `clear` (it archives, deletes
/// nothing); `--admin-uid` / `--admin-gid` restrict it, never for root.
#[test]
fn clear_is_for_every_client_unless_admin_lists_restrict_it() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    d.request(r#"{"op":"log","job":{"video_id":"p"},"ack":true}"#);
    let r = d.request(r#"{"op":"clear","confirm":true}"#);
    assert_eq!(r["ok"], true, "{r}");
    drop(d);
    let d = Daemon::start(&dir, &["--admin-uid", "54321", "--admin-gid", "54321"]);
    d.request(r#"{"op":"log","job":{"video_id":"q"},"ack":true}"#);
    let r = d.request(r#"{"op":"clear","confirm":true}"#);
    if uid() == 0 {
        assert_eq!(r["ok"], true, "root may always clear: {r}");
    } else {
        assert_eq!(r["error"]["code"], "forbidden", "{r}");
        assert!(
            r["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--admin-uid"),
            "{r}"
        );
        assert_eq!(read_log(&d.log).len(), 1, "nothing cleared");
    }
}

/// A worker let in by a supplementary group (`usermod -aG joblog …`, as
/// the README says) is let in by the groups the kernel recorded when it
/// connected: the daemon used to read them from `/proc/<pid>`, which the
/// shipped unit hides (`ProtectProc=invisible`) and which is gone once a
/// short-lived client has exited before its connection is accepted (here:
/// while the daemon is stopped, as during a restart).
#[test]
fn a_supplementary_group_member_is_let_in_even_after_it_exited() {
    if !can_act_as_others(&["useradd", "groupadd", "setpriv", "socat"]) {
        return;
    }
    let (user, group) = ("joblogd-test", "joblogd-testg");
    let _ = Command::new("groupadd").args(["--system", group]).status();
    add_system_user(user, &[]);
    let id = |args: &[&str]| -> String {
        let o = Command::new(args[0]).args(&args[1..]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    };
    let other_uid = id(&["id", "-u", user]);
    let gid = id(&["getent", "group", group]);
    let gid = gid.split(':').nth(2).unwrap_or_default().to_string();
    assert!(!gid.is_empty(), "group {group} has a gid");
    let dir = TempDir::new();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let d = Daemon::start(
        &dir,
        &[
            "--socket-mode",
            "0666",
            "--allow-uid",
            "0",
            "--allow-gid",
            &gid,
        ],
    );
    d.signal(libc::SIGSTOP);
    let mut client = Command::new("setpriv")
        .args([
            &format!("--reuid={other_uid}"),
            &format!("--regid={other_uid}"),
            &format!("--groups={gid}"),
            "socat",
            "-u",
            "STDIN",
        ])
        .arg(format!("UNIX-CONNECT:{}", d.socket.display()))
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        client.stdin.as_mut().unwrap(),
        b"{\"id\":\"from-a-group-member\"}\n",
    )
    .unwrap();
    drop(client.stdin.take());
    let status = client.wait().unwrap();
    d.signal(libc::SIGCONT);
    assert!(status.success(), "socat as {user} failed");
    // Its connection is served after SIGCONT, on its own task: wait for
    // the record rather than race it with a `flush`.
    let recs = crate::util::wait_for_records(&d.log, 1);
    assert_eq!(recs.len(), 1, "{}", d.logs());
    assert_eq!(recs[0]["id"], "from-a-group-member");
    assert!(!d.logs().contains("Refused a connection"), "{}", d.logs());
}
