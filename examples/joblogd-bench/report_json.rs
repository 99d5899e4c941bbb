//! The results as JSON (`joblogd-bench.json` with `--out-dir`): the text
//! report's figures and the samples behind them, under stable keys.

use serde_json::{Value, json};

use crate::bench::Bench;
use crate::report::Results;
use crate::throughput::TpRow;

/// A section's JSON: its figures, its error, or null when it did not run.
fn outcome<T>(r: Option<&Result<T, String>>, figures: impl FnOnce(&T) -> Value) -> Value {
    match r {
        Some(Ok(v)) => figures(v),
        Some(Err(e)) => json!({"error": e}),
        None => Value::Null,
    }
}

pub(crate) fn results_json(b: &Bench, machine: Value, command: &str, r: &Results) -> Value {
    let err = |e: &String| json!({"error": e});
    json!({
        "command": command,
        "machine": machine,
        "quick": b.plan.small_total < 400_000,
        "daemon": b.bin.display().to_string(),
        "mean_line_bytes": {"small": r.line_sizes.0, "seed": r.line_sizes.1},
        "throughput": r.tp.iter().map(TpRow::to_json).collect::<Vec<_>>(),
        "throughput_errors": r.tp_err,
        "peers": r.peers.iter().map(crate::procs::PeerRow::to_json).collect::<Vec<_>>(),
        "peers_errors": r.peers_err,
        "growth": outcome(r.growth.as_ref(), crate::growth::GrowthStats::to_json),
        "forward": outcome(r.forward.as_ref(), crate::forward::ForwardStats::to_json),
        "sections": r.sections.iter().map(|s| s.name()).collect::<Vec<_>>(),
        "single_record_writes": match &r.single {
            Some(Ok(s)) => json!({"records": s.records, "client_ns_per_record": s.client_ns_per_record, "total_seconds": s.total_secs}),
            Some(Err(e)) => err(e),
            None => Value::Null,
        },
        "ack_latency_us": r.acks.iter().map(|a| match a {
            Ok(a) => json!({"clients": a.clients, "latency": a.latency_us.to_json(), "acks_per_s": a.acks_per_s}),
            Err(e) => err(e),
        }).collect::<Vec<_>>(),
        "python_client_log_job_us": match &r.python {
            Some(Ok(p)) => json!({
                "records": p.records,
                "pipelined": {"median": p.pipelined_us.median, "min": p.pipelined_us.min, "max": p.pipelined_us.max},
                "durable": {"median": p.durable_us.median, "min": p.durable_us.min, "max": p.durable_us.max},
            }),
            Some(Err(e)) => err(e),
            None => Value::Null,
        },
        "fsync_floor_us": match &r.floor { Some(Ok(l)) => l.to_json(), Some(Err(e)) => err(e), None => Value::Null },
        "flush_vs_size": r.flush.iter().map(|f| match f {
            Ok(f) => json!({
                "label": f.label, "file_bytes": f.file_bytes, "file_records": f.file_records,
                "cold_scan_ms": f.cold_took_ms, "warm_scan_ms": f.warm_took_ms,
                "cold_accept_ms": f.cold_accept_ms, "warm_accept_ms": f.warm_accept_ms,
                "flush_ms": f.flush_ms.to_json(),
            }),
            Err(e) => err(e),
        }).collect::<Vec<_>>(),
        "index": match &r.index {
            Some(Ok(ix)) => json!({
                "records": ix.records,
                "failed": ix.failed,
                "distinct_videos": ix.videos,
                "file_bytes": ix.file_bytes,
                "round_trips": {
                    "ping": ix.ping.to_json(),
                    "stats": ix.stats.to_json(),
                    "failed_limit_100": ix.failed_100.to_json(),
                    "jobs_sort_duration_desc_limit_5": ix.sort_5.to_json(),
                    "stats_subject_ai": ix.stats_ai.to_json(),
                    "report": ix.report.to_json(),
                    "report_subject_ai": ix.report_ai.to_json(),
                },
                "joblogctl_report_html_ms": match &ix.report_html_ms {
                    Ok(l) => l.to_json(),
                    Err(e) => err(e),
                },
                "memory": {
                    "rss_empty_bytes": ix.rss_empty,
                    "hwm_empty_bytes": ix.hwm_empty,
                    "index_bytes_empty": ix.index_bytes_empty,
                    "rss_full_bytes": ix.rss_full,
                    "hwm_full_bytes": ix.hwm_full,
                    "rss_after_queries_bytes": ix.rss_after,
                    "index_bytes": ix.index_bytes,
                    "rss_bytes_per_record": ix.rss_per_record(),
                    "index_bytes_per_record": ix.index_bytes_per_record(),
                },
                "startup_scan": ix.scan.to_json(),
            }),
            Some(Err(e)) => err(e),
            None => Value::Null,
        },
        "seed_startup_scan": match &r.seed_scan {
            Some(Ok(s)) => s.to_json(),
            Some(Err(e)) => err(e),
            None => Value::Null,
        },
        "problems": b.problems,
        "total_seconds": b.started.elapsed().as_secs_f64(),
    })
}
