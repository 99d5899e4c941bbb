//! `joblogctl report --html`: the page's figures against `stats --json`
//! for the same log and filters, text from records escaped, and the page
//! as headless Chromium renders it (not blank, light and dark, printable,
//! no request and no console error).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{Daemon, TempDir};

fn ctl(d: &Daemon, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_joblogctl"))
        .arg("--socket")
        .arg(&d.socket)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run joblogctl");
    assert!(
        out.status.success(),
        "joblogctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Records whose text a page must never take for markup: in an error
/// (and so an error type), a title, a subject, a worker, a stage, a
/// timing name and a URL; and one without a readable `logged_at`.
const HOSTILE: &[&str] = &[
    r#"{"video_id":"h1","url":"javascript:alert(1)","subject":"<b>AI & \"ML\"</b>","worker_id":"w<1>","stage":"<img src=x onerror=alert(1)>","success":false,"error":"<script>alert('boom')</script>: in notes","video_title":"</title><script>alert(2)</script>","processing_duration":3,"logged_at":"2025-10-17T12:00:00"}"#,
    r#"{"video_id":"h2","subject":"AI","worker_id":7,"stage":"completed","success":true,"timings":{"<svg onload=alert(3)>":1.5},"processing_duration":2,"total_files":1,"logged_at":"2025-10-17T12:30:00"}"#,
    r#"{"video_id":"h3","url":"https://x.test/a?b=1&c=<2>","subject":"AI","success":false,"error":null,"logged_at":"not a time"}"#,
];

/// A daemon holding the demo log (`examples/demo_log.py`, 1,500 records
/// over two days) and [`HOSTILE`]; returns it with the input's lines.
fn demo_daemon(dir: &TempDir) -> (Daemon, Vec<Value>) {
    let d = Daemon::start(dir, &[]);
    let out = Command::new("python3")
        .args(["examples/demo_log.py", "--records", "1500", "--days", "2"])
        .output()
        .expect("python3 is required by the test suite (see README)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut text = String::from_utf8(out.stdout).expect("utf-8");
    for h in HOSTILE {
        text.push_str(h);
        text.push('\n');
    }
    let input = dir.join("in.ndjson");
    std::fs::write(&input, &text).expect("write input");
    ctl(&d, &["log", "--ack", input.to_str().expect("utf-8 path")]);
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("a record"))
        .collect();
    (d, lines)
}

/// `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&#39;` and `&nbsp;` decoded: what
/// the page writes and what a browser writes back when it serializes.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// The page's figures: each element's `data-k` (a path in `stats
/// --json`) and the text it shows.
pub fn figures(html: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = html;
    while let Some(at) = rest.find("data-k=\"") {
        rest = &rest[at + 8..];
        let Some(end) = rest.find('"') else { break };
        let key = unescape(&rest[..end]);
        let text_at = rest.find('>').map_or(rest.len(), |i| i + 1);
        let text_end = rest[text_at..]
            .find('<')
            .map_or(rest.len(), |i| text_at + i);
        out.insert(key, unescape(&rest[text_at..text_end]));
        rest = &rest[text_at..];
    }
    out
}

fn int(text: &str) -> u64 {
    text.replace(',', "")
        .parse()
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

/// Every figure of `stats` the page shows is on it, as shown there
/// (integers with separators, shares to 0.1%, seconds to 0.01 s); returns
/// how many were compared.
pub fn check_figures(page: &str, stats: &Value) -> usize {
    let figs = figures(page);
    let get = |k: &str| -> &str { figs.get(k).unwrap_or_else(|| panic!("no figure {k}")) };
    let mut n = 0;
    for k in [
        "total_jobs",
        "successful",
        "failed",
        "retry_candidates",
        "total_files_created",
    ] {
        assert_eq!(Some(int(get(k))), stats[k].as_u64(), "{k}");
        n += 1;
    }
    let rate = stats["success_rate"].as_f64().expect("rate");
    assert_eq!(get("success_rate"), format!("{:.1}%", rate * 100.0));
    let avg = stats["average_duration"]
        .as_f64()
        .map_or("—".to_string(), |a| format!("{a:.1} s"));
    assert_eq!(get("average_duration"), avg);
    for k in ["first_logged_at", "last_logged_at"] {
        let t = stats[k]
            .as_str()
            .map_or("—".to_string(), |t| t[..19].replacen('T', " ", 1));
        assert_eq!(get(k), t, "{k}");
        n += 1;
    }
    let counts = |path: &str| stats[path].as_object().cloned().unwrap_or_default();
    for (e, c) in counts("error_types") {
        assert_eq!(
            Some(int(get(&format!("error_types/{e}")))),
            c.as_u64(),
            "{e}"
        );
        n += 1;
    }
    let shown_errors = figs
        .keys()
        .filter(|k| k.starts_with("error_types/"))
        .count();
    assert_eq!(shown_errors, counts("error_types").len());
    for group in ["by_subject", "by_worker"] {
        for (name, t) in counts(group) {
            for k in ["total", "failed"] {
                let shown = int(get(&format!("{group}/{name}/{k}")));
                assert_eq!(Some(shown), t[k].as_u64(), "{group}/{name}/{k}");
                n += 1;
            }
        }
    }
    let close = |k: &str, v: &Value| match v.as_f64() {
        Some(v) => {
            let shown: f64 = get(k).parse().unwrap_or_else(|e| panic!("{k}: {e}"));
            assert!(
                (shown - v).abs() <= 0.005 + 1e-9,
                "{k}: {shown} shown, {v} in stats"
            );
        }
        None => assert_eq!(get(k), "—", "{k}"),
    };
    for (name, t) in counts("timings") {
        assert_eq!(
            Some(int(get(&format!("timings/{name}/count")))),
            t["count"].as_u64()
        );
        for k in ["mean", "p50", "p95", "max"] {
            close(&format!("timings/{name}/{k}"), &t[k]);
            n += 1;
        }
    }
    for k in ["p50", "p95", "max"] {
        close(&format!("duration/{k}"), &stats["duration"][k]);
        n += 1;
    }
    n
}

/// The report's figures equal `stats --json`'s, unfiltered and filtered;
/// text from records is escaped wherever it appears (no element but the
/// page's own), and only web addresses become links.
#[test]
fn the_report_shows_the_figures_of_stats_and_escapes_record_text() {
    let dir = TempDir::new();
    let (d, _) = demo_daemon(&dir);
    let page = dir.join("report.html");
    let out = ctl(&d, &["report", "--html", page.to_str().expect("utf-8")]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrote the report of 1,503 jobs"));
    let html = std::fs::read_to_string(&page).expect("the page");
    let stats: Value =
        serde_json::from_slice(&ctl(&d, &["stats", "--json"]).stdout).expect("stats");
    assert!(check_figures(&html, &stats) > 60);
    for markup in ["<script", "<img", "<svg onload", "<b>", "href=\"javascript"] {
        assert!(!html.contains(markup), "{markup} in the page");
    }
    for escaped in [
        "&lt;script&gt;alert(&#39;boom&#39;)&lt;/script&gt;",
        "&lt;/title&gt;&lt;script&gt;alert(2)&lt;/script&gt;",
        "&lt;b&gt;AI &amp; &quot;ML&quot;&lt;/b&gt;",
        "&lt;svg onload=alert(3)&gt;",
        "href=\"https://x.test/a?b=1&amp;c=&lt;2&gt;\"",
    ] {
        assert!(html.contains(escaped), "{escaped} not in the page");
    }
    assert!(html.contains("Content-Security-Policy\" content=\"default-src 'none'"));
    assert!(html.contains("Not in the chart: 1 of the 1,503 jobs"));
    // Filtered as stats is, and to standard output.
    for filter in [
        &["--subject", "AI"][..],
        &["--worker", "3", "--since", "2025-10-17T00:00:00"],
        &["--until", "2025-10-16T12:00:00"],
        &["--subject", "no such subject"],
    ] {
        let report = [&["report", "--html", "-"][..], filter].concat();
        let html = String::from_utf8(ctl(&d, &report).stdout).expect("utf-8");
        let stats = [&["stats", "--json"][..], filter].concat();
        let stats: Value = serde_json::from_slice(&ctl(&d, &stats).stdout).expect("stats");
        check_figures(&html, &stats);
    }
}

/// The failures per stage and over time add up to the input's.
#[test]
fn failures_per_stage_and_over_time_add_up_to_the_log() {
    let dir = TempDir::new();
    let (d, input) = demo_daemon(&dir);
    let mut c = d.connect();
    c.write_all(b"{\"op\":\"report\",\"recent_failures\":5}\n")
        .expect("send");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(c), &mut line).expect("reply");
    let r: Value = serde_json::from_str(&line).expect("one JSON line");
    let truthy = |v: &Value| v.as_bool().unwrap_or(false);
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for rec in input.iter().filter(|r| !truthy(&r["success"])) {
        let stage = rec["stage"].as_str().unwrap_or("null").to_string();
        *want.entry(stage).or_default() += 1;
    }
    let got: BTreeMap<String, u64> = r["failures_by_stage"]
        .as_array()
        .expect("stages")
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap_or("").into(),
                s["failed"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(got, want);
    let series = &r["time_series"];
    assert_eq!(series["unit"], "hour");
    let sum = |k: &str| -> u64 {
        let buckets = series["buckets"].as_array().expect("buckets");
        buckets.iter().map(|b| b[k].as_u64().unwrap_or(0)).sum()
    };
    let failed = input.iter().filter(|r| !truthy(&r["success"])).count() as u64;
    assert_eq!(
        sum("failed") + series["undated"].as_u64().unwrap_or(0),
        failed
    );
    assert_eq!(sum("successful") + sum("failed") + 1, input.len() as u64);
    let recent = r["recent_failures"].as_array().expect("recent");
    assert_eq!(recent.len(), 5);
    assert_eq!(recent[0]["video_id"], "h3");
    assert_eq!(
        recent[1]["error"],
        "<script>alert('boom')</script>: in notes"
    );
}

/// An empty log makes a page too: zeros, and a note in place of each
/// chart.
#[test]
fn an_empty_log_makes_a_page_of_zeros() {
    let dir = TempDir::new();
    let d = Daemon::start(&dir, &[]);
    let html = String::from_utf8(ctl(&d, &["report", "--html", "-"]).stdout).expect("utf-8");
    let stats: Value =
        serde_json::from_slice(&ctl(&d, &["stats", "--json"]).stdout).expect("stats");
    check_figures(&html, &stats);
    assert!(html.contains("No record has a readable logged_at."));
    assert!(html.contains("No failures."));
    assert!(!html.contains("<svg"), "no chart without data");
}

// ---------------------------------------------------------------- Chromium

/// Debian's Chromium, or `None` with the reason printed.
fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    if found.is_none() {
        eprintln!(
            "SKIPPED: Chromium is not installed (no /usr/bin/chromium); .ci/run installs \
             Debian's chromium package"
        );
    }
    found
}

/// Headless Chromium on `page` with `args`, a fresh profile, its log on
/// stderr; killed after 120 s. Returns stdout and stderr.
fn render(browser: &Path, dir: &TempDir, page: &Path, args: &[&str]) -> (String, String) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let profile = dir.join(&format!("profile-{n}"));
    let mut child = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium {args:?} took over 120 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("chromium output");
    assert!(
        out.status.success(),
        "chromium {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The page's own complaints in Chromium's log: console messages (a
/// blocked request or script is one, by the page's CSP) and failed loads.
/// The browser's own start-up noise (D-Bus, GPU, sandbox) is not the
/// page's.
fn page_errors(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| {
            l.contains(":CONSOLE")
                || l.contains("net::ERR")
                || l.contains("Failed to load")
                || l.contains("Content Security Policy")
        })
        .collect()
}

/// A screenshot's size, its number of distinct colours, the share of its
/// pixels unlike the top-left one (the background), and that pixel's
/// luminance.
fn look_at(png_path: &Path) -> (u32, u32, usize, f64, f64) {
    let file = std::fs::File::open(png_path).expect("screenshot");
    let mut decoder = png::Decoder::new(std::io::BufReader::new(file));
    decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let bg = pixels[0];
    let colours: std::collections::HashSet<&[u8]> = pixels.iter().copied().collect();
    let differ = pixels.iter().filter(|p| p[..3] != bg[..3]).count();
    let lum = 0.2126 * f64::from(bg[0]) + 0.7152 * f64::from(bg[1]) + 0.0722 * f64::from(bg[2]);
    (
        info.width,
        info.height,
        colours.len(),
        differ as f64 / pixels.len() as f64,
        lum,
    )
}

/// Chromium opens the page with no request and no console error, the
/// page it builds shows the figures of `stats --json`, a screenshot is
/// far from blank in the light scheme and dark in the dark one, and the
/// page prints.
#[test]
fn chromium_renders_the_report_without_requests_or_errors() {
    let Some(browser) = chromium() else { return };
    let dir = TempDir::new();
    let (d, _) = demo_daemon(&dir);
    let page = dir.join("report.html");
    ctl(&d, &["report", "--html", page.to_str().expect("utf-8")]);
    let stats: Value =
        serde_json::from_slice(&ctl(&d, &["stats", "--json"]).stdout).expect("stats");

    let (dom, log) = render(&browser, &dir, &page, &["--dump-dom"]);
    assert_eq!(page_errors(&log), Vec::<&str>::new(), "dump-dom");
    assert!(
        dom.contains("<h1>Job log report</h1>"),
        "{}",
        &dom[..dom.len().min(500)]
    );
    assert!(
        !dom.contains("<script"),
        "a script element in the page as built"
    );
    assert!(check_figures(&dom, &stats) > 60);

    let light = dir.join("light.png");
    let shot = format!("--screenshot={}", light.display());
    let (_, log) = render(&browser, &dir, &page, &[&shot, "--window-size=1280,2400"]);
    assert_eq!(page_errors(&log), Vec::<&str>::new(), "screenshot");
    let (w, h, colours, busy, bg) = look_at(&light);
    eprintln!("light: {colours} colours, {busy:.2} unlike the background, luminance {bg:.0}");
    assert_eq!((w, h), (1280, 2400));
    assert!(colours > 200, "{colours} colours: blank?");
    assert!(
        busy > 0.25,
        "{:.0}% of the pixels differ from the background",
        busy * 100.0
    );
    assert!(bg > 200.0, "light background's luminance {bg}");

    let dark = dir.join("dark.png");
    let shot = format!("--screenshot={}", dark.display());
    let args = [&shot[..], "--window-size=1280,2400", "--force-dark-mode"];
    let (_, log) = render(&browser, &dir, &page, &args);
    assert_eq!(page_errors(&log), Vec::<&str>::new(), "dark screenshot");
    let (_, _, colours, _, bg) = look_at(&dark);
    eprintln!("dark: {colours} colours, background luminance {bg:.0}");
    assert!(colours > 200, "{colours} colours in the dark scheme");
    assert!(bg < 60.0, "dark background's luminance {bg}");

    let pdf = dir.join("report.pdf");
    let print = format!("--print-to-pdf={}", pdf.display());
    let (_, log) = render(&browser, &dir, &page, &[&print, "--no-pdf-header-footer"]);
    assert_eq!(page_errors(&log), Vec::<&str>::new(), "print");
    let bytes = std::fs::read(&pdf).expect("the PDF");
    assert!(
        bytes.starts_with(b"%PDF") && bytes.len() > 20_000,
        "{} bytes",
        bytes.len()
    );
}
