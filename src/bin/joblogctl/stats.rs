//! `joblogctl stats`.

use super::*;

pub(super) fn stats(out: &mut impl Write, socket: &Socket, a: StatsArgs) -> Result<(), Fail> {
    let mut q = json!({"op":"stats"});
    if a.pending {
        q["include_pending"] = json!(true);
    }
    for (k, v) in [
        ("subject", a.subject),
        ("worker_id", a.worker),
        ("since", a.since),
        ("until", a.until),
    ] {
        if let Some(v) = v {
            q[k] = json!(v);
        }
    }
    let v = Conn::open(socket)?.ask(q)?;
    let s = &v["stats"];
    if a.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(s).unwrap_or_default()
        )?;
    } else {
        print_stats(out, s)?;
    }
    Ok(())
}

pub(super) fn print_stats(out: &mut impl Write, s: &Value) -> io::Result<()> {
    let pct = s["success_rate"].as_f64().unwrap_or(0.0) * 100.0;
    writeln!(out, "{}", bold("Processing Report"))?;
    writeln!(out, "Total jobs:        {}", s["total_jobs"])?;
    writeln!(out, "Successful:        {} ({pct:.1}%)", s["successful"])?;
    writeln!(out, "Failed:            {}", s["failed"])?;
    match s["average_duration"].as_f64() {
        Some(d) => writeln!(out, "Average duration:  {d:.1}s")?,
        None => writeln!(out, "Average duration:  -")?,
    }
    writeln!(out, "Files created:     {}", s["total_files_created"])?;
    writeln!(out, "Retry candidates:  {}", s["retry_candidates"])?;
    for (title, key) in [("Errors", "error_types"), ("Stages", "stages")] {
        if let Some(m) = s[key].as_object().filter(|m| !m.is_empty()) {
            writeln!(out, "\n{}", bold(title))?;
            let rows: Vec<Vec<String>> = m
                .iter()
                .map(|(k, v)| vec![v.to_string(), safe(k)])
                .collect();
            write!(out, "{}", table(&["count".into(), "".into()], &rows))?;
        }
    }
    if let Some(m) = s["timings"].as_object().filter(|m| !m.is_empty()) {
        writeln!(out, "\n{}", bold("Timings (successful jobs, s)"))?;
        let headers: Vec<String> = ["stage", "count", "mean", "p50", "p95", "max"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let f = |v: &Value| v.as_f64().map(|x| format!("{x:.2}")).unwrap_or_default();
        let rows: Vec<Vec<String>> = m
            .iter()
            .map(|(k, t)| {
                vec![
                    safe(k),
                    t["count"].to_string(),
                    f(&t["mean"]),
                    f(&t["p50"]),
                    f(&t["p95"]),
                    f(&t["max"]),
                ]
            })
            .collect();
        write!(out, "{}", table(&headers, &rows))?;
    }
    Ok(())
}
