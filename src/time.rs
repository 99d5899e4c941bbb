//! Local wall-clock time, formatted as Python's `datetime.now().isoformat()`
//! prints it, which is what the Python logger stored in `logged_at`:
//! `2025-10-17T09:33:10.187500` (local time, no offset, microseconds omitted
//! when zero). libc's `localtime_r` applies the system time zone (and `TZ`)
//! the same way Python's `datetime.now()` does; no time-zone crate needed.
//! And the reverse: `logged_at` and `since`/`until` bounds parsed to
//! microseconds for the index and queries (`parse_time`, `format_time`).

use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

/// Broken-down local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalTime {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micros: u32,
}

impl LocalTime {
    pub(crate) fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::from_unix(since.as_secs() as i64, since.subsec_micros())
    }

    /// Converts seconds since the epoch to local time.
    pub(crate) fn from_unix(secs: i64, micros: u32) -> Self {
        let t: libc::time_t = secs as libc::time_t;
        // SAFETY: `tm` is plain old data; localtime_r only writes into it and
        // is thread-safe (unlike localtime).
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
        if !ok {
            // Out of the C library's range: fall back to the epoch rather
            // than fail a record over its timestamp.
            return Self {
                year: 1970,
                month: 1,
                day: 1,
                hour: 0,
                minute: 0,
                second: 0,
                micros: 0,
            };
        }
        Self {
            year: tm.tm_year + 1900,
            month: (tm.tm_mon + 1) as u32,
            day: tm.tm_mday as u32,
            hour: tm.tm_hour as u32,
            minute: tm.tm_min as u32,
            second: tm.tm_sec as u32,
            micros,
        }
    }

    /// `isoformat()` as Python prints it, inside JSON quotes.
    pub(crate) fn iso_quoted(&self) -> String {
        let mut s = format!(
            "\"{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        );
        if self.micros != 0 {
            s.push_str(&format!(".{:06}", self.micros));
        }
        s.push('"');
        s
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The proleptic Gregorian date `(year, month, day)` of a day number
/// (days since 1970-01-01).
pub(crate) fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Parses `YYYY-MM-DD[THH:MM[:SS[.ffffff]]]` (what Python's isoformat
/// prints; a space may stand for `T`; anything after, such as an offset, is
/// ignored) into naive microseconds since 1970.
pub(crate) fn parse_time(s: &str) -> Option<i64> {
    parse_time_bytes(s.as_bytes())
}

/// [`parse_time`] on bytes (a record's `logged_at` content, not re-checked
/// as UTF-8: only ASCII digits and separators are accepted anyway).
pub(crate) fn parse_time_bytes(b: &[u8]) -> Option<i64> {
    let num = |r: Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        part.iter().try_fold(0i64, |n, &c| {
            c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
        })
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = [
        31,
        if leap { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    if !(1..=12).contains(&mo) || d < 1 || d > month_days[(mo - 1) as usize] {
        return None;
    }
    if b.len() > 10 && b.len() < 16 {
        return None;
    }
    let mut micros = days_from_civil(y, mo, d) * 86_400_000_000;
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b' ') || b.get(13) != Some(&b':') {
            return None;
        }
        let (h, mi) = (num(11..13)?, num(14..16)?);
        let mut sec = 0;
        let mut frac = 0;
        let mut end = 16;
        if b.get(16) == Some(&b':') {
            sec = num(17..19)?;
            end = 19;
            if b.get(19) == Some(&b'.') {
                let digits = b[20..].iter().take_while(|c| c.is_ascii_digit()).count();
                if digits == 0 {
                    return None;
                }
                let mut f = 0i64;
                for k in 0..6 {
                    let d = if k < digits { b[20 + k] - b'0' } else { 0 };
                    f = f * 10 + i64::from(d);
                }
                frac = f;
                end = 20 + digits;
            }
        }
        if h > 23 || mi > 59 || sec > 59 {
            return None;
        }
        // What may follow: nothing, or an offset as Python prints it (`Z`,
        // `+HH:MM[…]`), which a naive comparison ignores.
        let rest = &b[end..];
        let offset_ok = rest.is_empty()
            || rest == b"Z"
            || (rest.len() >= 6
                && matches!(rest[0], b'+' | b'-')
                && rest[1..3].iter().all(u8::is_ascii_digit)
                && rest[3] == b':');
        if !offset_ok {
            return None;
        }
        micros += ((h * 60 + mi) * 60 + sec) * 1_000_000 + frac;
    }
    Some(micros)
}

/// Formats naive microseconds as Python's `isoformat()`.
pub(crate) fn format_time(micros: i64) -> String {
    let days = micros.div_euclid(86_400_000_000);
    let rest = micros.rem_euclid(86_400_000_000);
    let (y, m, d) = civil_from_days(days);
    let secs = rest / 1_000_000;
    let us = rest % 1_000_000;
    let mut s = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    );
    if us != 0 {
        s.push_str(&format!(".{us:06}"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isoformat_matches_python() {
        let t = LocalTime {
            year: 2025,
            month: 10,
            day: 17,
            hour: 9,
            minute: 33,
            second: 10,
            micros: 187_500,
        };
        assert_eq!(t.iso_quoted(), "\"2025-10-17T09:33:10.187500\"");
        let t = LocalTime { micros: 0, ..t };
        assert_eq!(t.iso_quoted(), "\"2025-10-17T09:33:10\"");
        let t = LocalTime { micros: 5, ..t };
        assert_eq!(t.iso_quoted(), "\"2025-10-17T09:33:10.000005\"");
    }
}
