//! Section 3: the client-side cost of one `write_all` per small record on
//! one connection, and the end-to-end rate until a `flush` returns.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::time::Instant;

use crate::bench::Bench;
use crate::daemon::{Client, IO_TIMEOUT};
use crate::records::Kind;
use crate::util::other;

pub(crate) struct SingleStats {
    pub(crate) records: u64,
    pub(crate) client_ns_per_record: f64,
    pub(crate) total_secs: f64,
}

impl Bench {
    /// Section 3: one `write_all` per small record.
    pub(crate) fn single_writes(&mut self) -> io::Result<SingleStats> {
        let n = self.plan.single_records;
        let mut buf = Vec::with_capacity(n * 1_300);
        let mut ends = Vec::with_capacity(n);
        for i in 0..n {
            self.rg
                .line(&mut buf, Kind::Small, &format!("one{i:08}"), 0, i as u64);
            ends.push(buf.len());
        }
        let (d, log) = self.start_daemon("one")?;
        let result = (|| {
            let mut ctl = Client::connect(d.socket())?;
            let mut conn = UnixStream::connect(d.socket())?;
            conn.set_read_timeout(Some(IO_TIMEOUT))?;
            conn.set_write_timeout(Some(IO_TIMEOUT))?;
            let t0 = Instant::now();
            let mut start = 0;
            for &end in &ends {
                conn.write_all(&buf[start..end])?;
                start = end;
            }
            let client = t0.elapsed();
            conn.shutdown(Shutdown::Write)?;
            let mut replies = String::new();
            conn.read_to_string(&mut replies)?;
            ctl.flush()?;
            let total = t0.elapsed();
            if !replies.is_empty() {
                return Err(other(format!("unexpected replies: {replies}")));
            }
            ctl.verify(n as u64)?;
            Ok(SingleStats {
                records: n as u64,
                client_ns_per_record: client.as_nanos() as f64 / n as f64,
                total_secs: total.as_secs_f64(),
            })
        })();
        self.stop_daemon(d, &log, "single-record writes");
        result
    }
}
