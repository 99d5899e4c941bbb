//! Local wall-clock time, formatted as Python's `datetime.now().isoformat()`
//! prints it, which is what the Python logger stored in `logged_at`:
//! `2025-10-17T09:33:10.187500` (local time, no offset, microseconds omitted
//! when zero). libc's `localtime_r` applies the system time zone (and `TZ`)
//! the same way Python's `datetime.now()` does; no time-zone crate needed.

use std::time::{SystemTime, UNIX_EPOCH};

/// Broken-down local time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalTime {
    pub year: i32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub micros: u32,
}

impl LocalTime {
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self::from_unix(since.as_secs() as i64, since.subsec_micros())
    }

    /// Converts seconds since the epoch to local time.
    pub fn from_unix(secs: i64, micros: u32) -> Self {
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
    pub fn iso_quoted(&self) -> String {
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
