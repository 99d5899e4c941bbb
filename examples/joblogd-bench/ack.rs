//! Section 4: `ack` latency, 1 or 8 clients each with one acknowledged
//! `log` request in flight (the disk floor it is read against is in
//! `peers.rs`).

use std::io;
use std::sync::Barrier;
use std::thread;
use std::time::{Duration, Instant};

use crate::bench::Bench;
use crate::daemon::Client;
use crate::records::Kind;
use crate::stats::{Latency, latency};
use crate::util::{join, other};

pub(crate) struct AckStats {
    pub(crate) clients: usize,
    pub(crate) latency_us: Latency,
    pub(crate) acks_per_s: f64,
}

impl Bench {
    /// Section 4: `clients` clients each sending `per_client` acked logs
    /// one at a time. Latencies in microseconds.
    pub(crate) fn ack_latency(
        &mut self,
        clients: usize,
        per_client: usize,
    ) -> io::Result<AckStats> {
        let reqs: Vec<Vec<Vec<u8>>> = (0..clients)
            .map(|c| {
                (0..per_client)
                    .map(|i| {
                        let mut line = br#"{"op":"log","job":"#.to_vec();
                        let id = format!("ack{clients}c{c:02}x{i:06}");
                        self.rg.record(&mut line, Kind::Small, &id, c, i as u64);
                        line.extend_from_slice(b",\"ack\":true}\n");
                        line
                    })
                    .collect()
            })
            .collect();
        let (d, log) = self.start_daemon("ack")?;
        let result = (|| {
            let barrier = Barrier::new(clients + 1);
            let socket = d.socket();
            let (samples, took) = thread::scope(|s| -> io::Result<(Vec<f64>, Duration)> {
                let handles: Vec<_> = reqs
                    .iter()
                    .map(|lines| {
                        let barrier = &barrier;
                        s.spawn(move || -> io::Result<Vec<f64>> {
                            let client = Client::connect(socket);
                            barrier.wait();
                            let mut client = client?;
                            let mut lat = Vec::with_capacity(lines.len());
                            for line in lines {
                                let t = Instant::now();
                                client.send(line)?;
                                let reply = client.read_line()?;
                                lat.push(t.elapsed().as_secs_f64() * 1e6);
                                if !reply.contains(r#""ok":true"#) {
                                    return Err(other(format!("ack failed: {reply}")));
                                }
                            }
                            Ok(lat)
                        })
                    })
                    .collect();
                barrier.wait();
                let t0 = Instant::now();
                let results: Vec<_> = handles.into_iter().map(join).collect();
                let took = t0.elapsed();
                let mut all = Vec::new();
                for r in results {
                    all.extend(r?);
                }
                Ok((all, took))
            })?;
            Client::connect(socket)?.verify((clients * per_client) as u64)?;
            Ok(AckStats {
                clients,
                latency_us: latency(&samples),
                acks_per_s: samples.len() as f64 / took.as_secs_f64(),
            })
        })();
        self.stop_daemon(d, &log, &format!("ack latency x{clients}"));
        result
    }
}
