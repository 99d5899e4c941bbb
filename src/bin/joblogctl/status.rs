//! `joblogctl status`: a short summary for a human, like `systemctl
//! status`: is the daemon up and since when, where it listens and writes,
//! what it holds, and whether anything is wrong.

use super::*;

pub(super) fn status(out: &mut impl Write, socket: &Socket) -> Result<(), Fail> {
    let mut c = Conn::open(socket)?;
    let reached =
        c.w.peer_addr()
            .ok()
            .and_then(|a| a.as_pathname().map(|p| p.display().to_string()))
            .unwrap_or_else(|| "-".into());
    let p = c.ask(json!({"op":"ping"}))?;
    let s = c.ask(json!({"op":"stats"}))?;
    let up = p["uptime_s"].as_f64().unwrap_or(0.0) as u64;
    let healthy = p["last_error"].is_null() && p["log_file_at_path"] == true;
    let state = if healthy {
        "running"
    } else {
        "running, with problems"
    };
    writeln!(
        out,
        "{} joblogd {}: {state} for {}",
        if healthy { "●" } else { "×" },
        text(&p["version"]),
        span(up)
    )?;
    let rows = [
        ("Socket", reached),
        ("Log file", text(&p["log_file"])),
        (
            "Records",
            format!(
                "{} on disk, {} pending; {} in the file",
                p["records"],
                p["pending"],
                bytes(p["file_bytes"].as_u64().unwrap_or(0))
            ),
        ),
        (
            "Flushes",
            format!("{} ({} failed)", p["flushes"], p["failed_flushes"]),
        ),
        (
            "Jobs",
            format!(
                "{} successful, {} failed, {} retry candidates",
                s["stats"]["successful"], s["stats"]["failed"], s["stats"]["retry_candidates"]
            ),
        ),
        (
            "Last job",
            match &s["stats"]["last_logged_at"] {
                Value::Null => "-".into(),
                v => text(v),
            },
        ),
        (
            "Last error",
            match &p["last_error"] {
                Value::Null => "none".into(),
                v => text(v),
            },
        ),
    ];
    for (k, v) in rows {
        writeln!(out, "  {:<11} {v}", format!("{k}:"))?;
    }
    if p["log_file_at_path"] == false {
        writeln!(
            out,
            "  {:<11} the log file was renamed or deleted underneath the daemon; send SIGHUP (systemctl reload joblogd)",
            "Warning:"
        )?;
    }
    Ok(())
}

fn span(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3_600 => format!("{}min {}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h {}min", s / 3_600, s / 60 % 60),
        s => format!("{} days {}h", s / 86_400, s / 3_600 % 24),
    }
}

fn bytes(n: u64) -> String {
    match n {
        n if n < 1 << 10 => format!("{n} B"),
        n if n < 1 << 20 => format!("{:.1} KiB", n as f64 / 1024.0),
        n if n < 1 << 30 => format!("{:.1} MiB", n as f64 / (1 << 20) as f64),
        n => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
    }
}
