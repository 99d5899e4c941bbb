//! `--since` / `--until` as journalctl takes them: an ISO time (local, as
//! `logged_at` is written), `today`, `yesterday`, `now`, or a time ago
//! (`-1h`, `30m ago`, `2 days ago`). Turned into the ISO local time the
//! daemon compares `logged_at` with, before anything is sent; anything
//! else is a usage error (exit 2).

/// The `value_parser` of `--since` and `--until`.
pub(super) fn parse_when(s: &str) -> Result<String, String> {
    let t = s.trim();
    let now = now_secs();
    match t {
        "now" => return Ok(local_iso(now)),
        "today" => return Ok(midnight(now, 0)),
        "yesterday" => return Ok(midnight(now, 1)),
        "tomorrow" => return Ok(midnight(now, -1)),
        _ => {}
    }
    if let Some(ago) = ago_secs(t) {
        return Ok(local_iso(now - ago));
    }
    if is_iso(t) {
        return Ok(t.replacen(' ', "T", 1));
    }
    Err(format!(
        "{s:?} is not a time: give an ISO local time (2026-12-07 or 2026-12-07T09:30), \
         today, yesterday, now, or a time ago (-1h, 30m ago, 2 days ago)"
    ))
}

/// `-1h`, `-30m`, `1h ago`, `2 days ago`, `90 s ago` → seconds.
fn ago_secs(t: &str) -> Option<i64> {
    let spec = match t.strip_prefix('-') {
        Some(rest) => rest.trim(),
        None => t.strip_suffix("ago")?.trim(),
    };
    let digits = spec.bytes().take_while(u8::is_ascii_digit).count();
    let n: i64 = spec[..digits].parse().ok()?;
    let unit = match spec[digits..].trim() {
        "s" | "sec" | "secs" | "second" | "seconds" => 1,
        "m" | "min" | "mins" | "minute" | "minutes" => 60,
        "h" | "hour" | "hours" => 3_600,
        "d" | "day" | "days" => 86_400,
        "w" | "week" | "weeks" => 7 * 86_400,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// `YYYY-MM-DD`, optionally `[T ]HH:MM[:SS[.f…]]`.
fn is_iso(t: &str) -> bool {
    let b = t.as_bytes();
    let d = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    let date = b.len() >= 10
        && (0..4).all(d)
        && b[4] == b'-'
        && d(5)
        && d(6)
        && b[7] == b'-'
        && d(8)
        && d(9);
    if !date {
        return false;
    }
    let rest = &b[10..];
    if rest.is_empty() {
        return true;
    }
    let hm = rest.len() >= 6
        && matches!(rest[0], b'T' | b' ')
        && rest[1..3].iter().all(u8::is_ascii_digit)
        && rest[3] == b':'
        && rest[4..6].iter().all(u8::is_ascii_digit);
    let tail = &rest[6.min(rest.len())..];
    hm && (tail.is_empty()
        || (tail.len() >= 3
            && tail[0] == b':'
            && tail[1..3].iter().all(u8::is_ascii_digit)
            && (tail.len() == 3
                || (tail[3] == b'.'
                    && tail.len() > 4
                    && tail[4..].iter().all(u8::is_ascii_digit)))))
}

/// The local time now, as `logged_at` is written (to the second).
pub(super) fn now_iso() -> String {
    local_iso(now_secs())
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

fn local_tm(secs: i64) -> libc::tm {
    // SAFETY: an all-zero `tm` is valid; localtime_r only writes `out`.
    let mut out: libc::tm = unsafe { std::mem::zeroed() };
    let t = secs as libc::time_t;
    // SAFETY: both pointers are valid for the call.
    unsafe { libc::localtime_r(&t, &mut out) };
    out
}

/// Seconds since the epoch as local time, `isoformat()` without
/// microseconds.
fn local_iso(secs: i64) -> String {
    let tm = local_tm(secs);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// Local midnight `days_back` days before today's.
fn midnight(now: i64, days_back: i64) -> String {
    // Noon steps avoid a day that is 23 or 25 hours long.
    let tm = local_tm(now);
    let noon = now - i64::from(tm.tm_hour - 12) * 3_600 - i64::from(tm.tm_min) * 60;
    let day = local_tm(noon - days_back * 86_400);
    format!(
        "{:04}-{:02}-{:02}T00:00:00",
        day.tm_year + 1900,
        day.tm_mon + 1,
        day.tm_mday
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_read_as_journalctl_reads_them() {
        assert_eq!(parse_when("2026-12-07").as_deref(), Ok("2026-12-07"));
        assert_eq!(
            parse_when("2026-12-07 09:30").as_deref(),
            Ok("2026-12-07T09:30")
        );
        assert_eq!(
            parse_when("2026-12-07T09:30:05.25").as_deref(),
            Ok("2026-12-07T09:30:05.25")
        );
        assert_eq!(ago_secs("-1h"), Some(3_600));
        assert_eq!(ago_secs("30m ago"), Some(1_800));
        assert_eq!(ago_secs("2 days ago"), Some(172_800));
        assert!(parse_when("today").is_ok_and(|t| t.ends_with("T00:00:00")));
        assert!(parse_when("-15m").is_ok_and(|t| t.len() == 19));
        for bad in [
            "soon",
            "2026-12",
            "12/07/2026",
            "-1 fortnight",
            "2026-12-07T9:30",
            "",
        ] {
            assert!(parse_when(bad).is_err(), "{bad}");
        }
    }
}
