//! `metrics`: the daemon's counters and gauges in Prometheus's text
//! exposition format, version 0.0.4: a JSON line
//! `{"ok":true,"content_type":"text/plain; version=0.0.4","bytes":N}`
//! followed by exactly N bytes of text (as `export_csv` sends its CSV).
//! `joblogctl metrics` prints that text, and `--metrics-textfile` writes
//! it for node_exporter, both from [`render`]: one text, one code.
//!
//! Written by hand (the format is a few lines per metric; a client
//! library would bring a registry and a dependency for it): names start
//! with `joblogd_`, counters end in `_total`, values are in base units
//! (seconds, bytes), each family has its `# HELP` and `# TYPE` lines, and
//! label values are escaped as the format asks (backslash, double quote,
//! newline). The figures are gathered by the connection (`conn::write`),
//! which holds what they come from; this file only writes them.

use super::Request;
use crate::config::tuning::FLUSH_SECONDS_BUCKETS;
use crate::metrics::Sample;
use crate::protocol::{ErrorCode, Fields, ProtocolError, reply_line};

/// The exposition format's content type, as its HTTP header gives it.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

pub(crate) fn parse<'a>(_: &Fields<'a, '_>) -> Result<Request<'a>, ProtocolError> {
    Ok(Request::Metrics)
}

/// The whole reply: the JSON line announcing the text, then the text.
pub(crate) fn reply(sample: &Sample) -> Vec<u8> {
    let text = render(sample);
    let mut out = reply_line(&serde_json::json!({
        "ok": true,
        "content_type": CONTENT_TYPE,
        "bytes": text.len(),
    }));
    out.extend_from_slice(text.as_bytes());
    out
}

/// The exposition text of `s`.
pub(crate) fn render(s: &Sample) -> String {
    let mut t = Text(String::with_capacity(8 << 10));
    let c = &s.counters;
    t.head(
        "joblogd_build_info",
        "gauge",
        "Always 1: the version of joblogd running is its label.",
    );
    t.sample("joblogd_build_info", &[("version", s.version)], 1.0);
    t.gauge(
        "joblogd_start_time_seconds",
        "When the daemon started, in Unix seconds.",
        c.started_at,
    );
    t.gauge(
        "joblogd_uptime_seconds",
        "Seconds since the daemon started.",
        s.uptime,
    );
    records(&mut t, s);
    stages(&mut t, s);
    flushes(&mut t, s);
    the_log(&mut t, s);
    connections(&mut t, s);
    t.0
}

/// The live log, what waits to be written to it, the memory it takes,
/// the logs put aside.
fn the_log(t: &mut Text, s: &Sample) {
    let gauges = [
        (
            "joblogd_log_records",
            "Records in the live log file, durable.",
            s.records,
        ),
        (
            "joblogd_pending_records",
            "Records accepted and not yet durable.",
            s.pending_records,
        ),
        (
            "joblogd_pending_bytes",
            "Bytes of records accepted and not yet durable.",
            s.pending_bytes,
        ),
        (
            "joblogd_pending_bytes_limit",
            "--max-pending-bytes: past it the daemon stops reading from clients until a flush catches up.",
            s.pending_bytes_limit,
        ),
        (
            "joblogd_log_file_bytes",
            "Size of the live log file.",
            s.file_bytes,
        ),
        (
            "joblogd_index_bytes",
            "Memory held by the in-memory index of the live log.",
            s.index_bytes,
        ),
        (
            "joblogd_record_ids_bytes",
            "Memory held by the record_ids kept to answer duplicates.",
            s.record_ids_bytes,
        ),
    ];
    for (name, help, v) in gauges {
        t.gauge(name, help, v as f64);
    }
    if let Some((count, bytes)) = s.archives {
        let help = "Logs put aside beside the live log (by clear or a rotation).";
        t.gauge("joblogd_archives", help, count as f64);
        let help = "Bytes of the logs put aside beside the live log.";
        t.gauge("joblogd_archive_bytes", help, bytes as f64);
    }
    let c = &s.counters;
    let help = "Automatic rotations of the live log (--rotate-at-bytes, --rotate-at-records).";
    t.counter("joblogd_rotations_total", help, c.rotations);
    let help = "Archives removed by retention (--keep-archives*).";
    t.counter("joblogd_archives_removed_total", help, c.archives_removed);
    let help = "Archives past the retention limits kept at the last look, because a consumer (the forwarder) has not read them.";
    t.gauge(
        "joblogd_archives_held_for_consumers",
        help,
        c.archives_held as f64,
    );
}

/// Connections served now, accepted and refused since start.
fn connections(t: &mut Text, s: &Sample) {
    let c = &s.counters;
    let help = "Client connections being served.";
    t.gauge("joblogd_connections", help, s.connections_open as f64);
    let help = "Client connections accepted, those refused included.";
    t.counter("joblogd_connections_total", help, c.connections);
    let help = "Client connections refused: the peer is not allowed (--allow-uid, --allow-gid).";
    t.counter(
        "joblogd_connections_refused_total",
        help,
        c.connections_refused,
    );
}

/// Records accepted, written, refused and deduplicated.
fn records(t: &mut Text, s: &Sample) {
    let c = &s.counters;
    t.counter(
        "joblogd_records_accepted_total",
        "Records accepted to be written (not those dropped as duplicates).",
        c.records_accepted,
    );
    t.counter(
        "joblogd_records_written_total",
        "Records written to the log file and synced.",
        c.records_written,
    );
    t.head(
        "joblogd_records_rejected_total",
        "counter",
        "Lines refused with an error reply as they were read (a record not logged, a request not taken), by error code.",
    );
    for (code, n) in ErrorCode::ALL.iter().zip(c.rejected) {
        t.sample(
            "joblogd_records_rejected_total",
            &[("code", code.as_str())],
            n as f64,
        );
    }
    t.counter(
        "joblogd_records_duplicate_total",
        "Records not written because their record_id was already logged.",
        s.duplicates,
    );
}

/// Jobs accepted since start by stage and outcome.
fn stages(t: &mut Text, s: &Sample) {
    let families = [
        (
            "joblogd_jobs_succeeded_total",
            "successful (success truthy)",
            true,
        ),
        (
            "joblogd_jobs_failed_total",
            "failed (success not truthy)",
            false,
        ),
    ];
    for (name, which, ok) in families {
        let help = format!(
            "Jobs accepted since start that {which}, by stage; the first {} stage names have a label \
             of their own, later ones count under stage=\"other\".",
            crate::config::tuning::METRICS_STAGES
        );
        t.head(name, "counter", &help);
        for st in &s.stages {
            let n = if ok { st.succeeded } else { st.failed };
            t.sample(name, &[("stage", &st.stage)], n as f64);
        }
    }
}

/// Flushes: how many, how long, how many failed and why, bytes, the last.
fn flushes(t: &mut Text, s: &Sample) {
    let c = &s.counters;
    let flushes: u64 = c.flush_buckets.iter().sum();
    t.counter(
        "joblogd_flushes_total",
        "Batches written to the log file and synced.",
        flushes,
    );
    t.counter(
        "joblogd_flush_failures_total",
        "Batch writes that failed (each is retried, nothing is acknowledged before it succeeds).",
        c.flush_failures,
    );
    t.counter(
        "joblogd_fsync_failures_total",
        "Batch writes that failed at their sync (the log's fdatasync, or the commit synced with it).",
        c.fsync_failures,
    );
    let name = "joblogd_flush_duration_seconds";
    t.head(
        name,
        "histogram",
        "Time to write and sync a batch, successful flushes.",
    );
    let mut below = 0;
    for (le, n) in FLUSH_SECONDS_BUCKETS.iter().zip(c.flush_buckets) {
        below += n;
        t.sample(
            &format!("{name}_bucket"),
            &[("le", &number(*le))],
            below as f64,
        );
    }
    t.sample(&format!("{name}_bucket"), &[("le", "+Inf")], flushes as f64);
    t.sample(&format!("{name}_sum"), &[], c.flush_seconds);
    t.sample(&format!("{name}_count"), &[], flushes as f64);
    t.counter(
        "joblogd_written_bytes_total",
        "Bytes of records written to the log file and synced.",
        c.bytes_written,
    );
    t.gauge(
        "joblogd_last_flush_timestamp_seconds",
        "When a batch was last written and synced, in Unix seconds (the start time before the first).",
        c.last_flush,
    );
}

/// The text being written.
struct Text(String);

impl Text {
    /// A family's `# HELP` and `# TYPE` lines.
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        self.0
            .push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    }

    /// One sample line.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
                .collect();
            self.0.push('{');
            self.0.push_str(&pairs.join(","));
            self.0.push('}');
        }
        self.0.push(' ');
        self.0.push_str(&number(value));
        self.0.push('\n');
    }

    fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.head(name, "counter", help);
        self.sample(name, &[], value as f64);
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) {
        self.head(name, "gauge", help);
        self.sample(name, &[], value);
    }
}

/// A label value as the format escapes it: `\` as `\\`, `"` as `\"`, a
/// newline as `\n`; everything else (UTF-8) as it is.
fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            _ => out.push(ch),
        }
    }
    out
}

/// A value as the format writes it: Go's float syntax, which Rust's
/// shortest round-trip `Display` is a subset of (no exponent, so never
/// `1e-5`), and `+Inf`, `-Inf`, `NaN`. Counts up to 2^53 are exact.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, StageCount};

    fn sample() -> Sample {
        let m = Metrics::new();
        m.accepted(3);
        m.flushed(3, 300, std::time::Duration::from_millis(3));
        m.rejected(ErrorCode::InvalidJson);
        Sample {
            version: "0.1.0",
            uptime: 1.5,
            counters: m.counters(),
            duplicates: 0,
            stages: vec![
                StageCount {
                    stage: "a \"quoted\"\\stage\nwith a newline".into(),
                    succeeded: 2,
                    failed: 1,
                },
                StageCount {
                    stage: "other".into(),
                    succeeded: 0,
                    failed: 0,
                },
            ],
            connections_open: 1,
            records: 3,
            pending_records: 0,
            pending_bytes: 0,
            pending_bytes_limit: 64 << 20,
            file_bytes: 310,
            index_bytes: 1000,
            record_ids_bytes: 0,
            archives: Some((0, 0)),
        }
    }

    #[test]
    fn label_values_are_escaped_as_the_format_asks() {
        let text = render(&sample());
        assert!(
            text.contains(
                "joblogd_jobs_failed_total{stage=\"a \\\"quoted\\\"\\\\stage\\nwith a newline\"} 1\n"
            ),
            "{text}"
        );
        // Every line is a comment or a sample: no raw newline got through.
        for line in text.lines() {
            assert!(
                line.starts_with("# ") || line.starts_with("joblogd_"),
                "{line}"
            );
        }
    }

    #[test]
    fn the_histogram_is_cumulative_and_its_count_is_its_inf_bucket() {
        let text = render(&sample());
        assert!(text.contains("joblogd_flush_duration_seconds_bucket{le=\"0.0025\"} 0\n"));
        assert!(text.contains("joblogd_flush_duration_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(text.contains("joblogd_flush_duration_seconds_bucket{le=\"10\"} 1\n"));
        assert!(text.contains("joblogd_flush_duration_seconds_bucket{le=\"+Inf\"} 1\n"));
        assert!(text.contains("joblogd_flush_duration_seconds_count 1\n"));
        assert!(text.contains("joblogd_flush_duration_seconds_sum 0.003\n"));
        assert!(text.contains("joblogd_records_rejected_total{code=\"invalid_json\"} 1\n"));
        assert!(text.contains("joblogd_build_info{version=\"0.1.0\"} 1\n"));
    }

    #[test]
    fn numbers_are_written_in_go_float_syntax() {
        assert_eq!(number(0.0005), "0.0005");
        assert_eq!(number(1.0), "1");
        assert_eq!(number(1e-7), "0.0000001");
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(f64::NAN), "NaN");
        assert_eq!(number(1_700_000_000.123), "1700000000.123");
    }
}
