//! Section 4's Python client row: the time of one `log_job` of the Python
//! client (`clients/python`, run by a child `python3`) against the daemon
//! under test, pipelined (the default: the call returns once its request
//! is written) and `durable=True` (it returns after the durable ack).

use std::io;
use std::process::Command;

use crate::bench::Bench;
use crate::stats::{Spread, spread};
use crate::util::other;

/// Timed in the child: `n` calls of `log_job` with a small record, after a
/// warm-up and a `flush()`; prints the microseconds per call, then flushes
/// (so every record is on disk before the daemon is stopped).
const TIMED: &str = r#"
import sys, time
sys.path.insert(0, sys.argv[1])
from joblog_client import JobLogger
sock, n, durable, spool = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1", sys.argv[5]
lg = JobLogger(socket_path=sock, spool_dir=spool, durable=durable)
rec = {"video_id": "", "url": "https://www.youtube.com/watch?v=dQw4w9WgXcQ", "success": True,
       "stage": "completed", "subject": "physics", "processing_duration": 12.5}
for i in range(200):
    lg.log_job(dict(rec, video_id=f"warm{i}"))
lg.flush()
jobs = [dict(rec, video_id=f"v{i}") for i in range(n)]
t = time.perf_counter()
for job in jobs:
    lg.log_job(job)
took = time.perf_counter() - t
lg.flush()
print(took / n * 1e6)
"#;

pub(crate) struct PyStats {
    pub(crate) records: usize,
    /// Microseconds per `log_job`, median of the runs with their range.
    pub(crate) pipelined_us: Spread,
    pub(crate) durable_us: Spread,
}

impl Bench {
    /// `reps` runs of each mode, each its own python3 against its own daemon.
    pub(crate) fn python_client(&mut self) -> io::Result<PyStats> {
        let records = self.plan.python_records;
        let client = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/python");
        let mut pipelined = Vec::new();
        let mut durable = Vec::new();
        for rep in 0..self.plan.reps {
            for (flag, out) in [("0", &mut pipelined), ("1", &mut durable)] {
                let name = format!("python{rep}{flag}");
                let (d, log) = self.start_daemon(&name)?;
                let spool = self.dir.join(format!("{name}.spool"));
                let r = (|| -> io::Result<f64> {
                    std::fs::create_dir_all(&spool)?;
                    let o = Command::new("python3")
                        .args(["-c", TIMED, client])
                        .arg(d.socket())
                        .args([&records.to_string(), flag])
                        .arg(&spool)
                        .output()?;
                    let text = String::from_utf8_lossy(&o.stdout);
                    if !o.status.success() {
                        return Err(other(format!(
                            "python3 failed ({}): {}",
                            o.status,
                            String::from_utf8_lossy(&o.stderr)
                        )));
                    }
                    text.trim()
                        .parse()
                        .map_err(|e| other(format!("python3 printed {text:?}: {e}")))
                })();
                self.stop_daemon(d, &log, &format!("python client {name}"));
                let _ = std::fs::remove_dir_all(&spool);
                out.push(r?);
            }
        }
        Ok(PyStats {
            records,
            pipelined_us: spread(&pipelined),
            durable_us: spread(&durable),
        })
    }
}
