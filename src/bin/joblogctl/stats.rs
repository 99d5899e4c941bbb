//! `joblogctl stats`.

use super::*;

pub(super) fn stats(out: &mut impl Write, socket: &Socket, a: StatsArgs) -> Result<(), Fail> {
    if a.format == Some(Format::Csv) {
        return Err(Fail(
            2,
            "joblogctl: stats has no CSV form (-o table|json|ndjson); the records as CSV: \
             joblogctl export-csv - (or jobs -o csv)"
                .into(),
        ));
    }
    let mut q = json!({"op":"stats"});
    if a.pending {
        q["include_pending"] = json!(true);
    }
    for (key, _, v) in a.filter.given() {
        q[key] = json!(v);
    }
    let mut c = Conn::open(socket)?;
    c.send(&q)?;
    let (v, line) = c.reply_raw()?;
    let bad = |e: String| Fail(1, format!("joblogctl: bad reply: {e}"));
    // The reply as sent, for what a `Value` would reorder: `error_types`
    // and `stages` come in the order first seen, as the old logger gave.
    let raw: RawStats<'_> = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
    let format = if a.json { Some(Format::Json) } else { a.format };
    if format == Some(Format::Json) {
        let mut text = Vec::new();
        joblogd::Formatter::new()
            .pretty(raw.stats.get().as_bytes(), &mut text)
            .map_err(|e| bad(e.to_string()))?;
        out.write_all(&text)?;
        writeln!(out)?;
    } else if format == Some(Format::Ndjson) {
        writeln!(out, "{}", raw.stats.get())?;
    } else {
        let order: Order = serde_json::from_str(raw.stats.get()).map_err(|e| bad(e.to_string()))?;
        print_stats(out, &v["stats"], &order)?;
    }
    Ok(())
}

#[derive(serde::Deserialize)]
struct RawStats<'a> {
    #[serde(borrow)]
    stats: &'a serde_json::value::RawValue,
}

/// The two objects whose order matters, in the order sent.
#[derive(Default, serde::Deserialize)]
pub(super) struct Order {
    #[serde(default)]
    error_types: Ordered,
    #[serde(default)]
    stages: Ordered,
}

/// A JSON object's members in the order they come.
#[derive(Default)]
pub(super) struct Ordered(pub(super) Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut m: M,
            ) -> Result<Ordered, M::Error> {
                let mut v = Vec::new();
                while let Some(kv) = m.next_entry::<String, Value>()? {
                    v.push(kv);
                }
                Ok(Ordered(v))
            }
        }
        d.deserialize_map(Members)
    }
}

pub(super) fn print_stats(out: &mut impl Write, s: &Value, order: &Order) -> io::Result<()> {
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
    for (title, m) in [("Errors", &order.error_types), ("Stages", &order.stages)] {
        if !m.0.is_empty() {
            writeln!(out, "\n{}", bold(title))?;
            let rows: Vec<Vec<String>> =
                m.0.iter()
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
