//! `logged_at` to UTC. The daemon (as the Python logger did) writes the
//! host's local time without an offset; the central store needs one
//! instant, so the forwarder converts with the host's time zone (the
//! process's `TZ`, else `/etc/localtime`) when it forwards.
//!
//! In the hour that repeats when clocks go back (the fold), a local time
//! names two instants and the text cannot tell which: it is read as the
//! first (the earlier, still in summer time). A time that never was
//! (the hour skipped when clocks go forward) is read as the C library's
//! `mktime` normalises it, an hour later. A time with an offset or `Z`
//! (written by a client that adds one) is converted by that offset.

/// `logged_at` as `YYYY-MM-DD HH:MM:SS.ffffff+00`, or `None` when it does
/// not read as a time.
pub(super) fn to_utc(logged_at: &str) -> Option<String> {
    let (fields, offset) = parse(logged_at)?;
    let naive = days_from_civil(fields.y, fields.mo, fields.d) * 86_400
        + i64::from(fields.h) * 3_600
        + i64::from(fields.mi) * 60
        + i64::from(fields.s);
    let offset = match offset {
        Some(off) => off,
        None => local_offset(&fields)?,
    };
    let secs = naive - offset;
    // PostgreSQL takes no year before 1 (`datetime.min` in a zone east of
    // UTC is one): such a time is stored as NULL, not refused with its batch.
    let year = civil_from_days(secs.div_euclid(86_400)).0;
    (1..=9999)
        .contains(&year)
        .then(|| format_utc(secs, fields.micros))
}

/// Local minutes already converted, and their offsets from UTC. Asking
/// the C library costs about 34 µs a record (two `mktime`s, each reading
/// the zone again); records come in time order, so a handful of minutes
/// cover a batch. Offsets change on whole minutes in every zone there is.
type MinuteKey = (i64, u32, u32, u32, u32);

thread_local! {
    static OFFSETS: std::cell::RefCell<std::collections::HashMap<MinuteKey, Option<i64>>> =
        std::cell::RefCell::new(std::collections::HashMap::new());
}

/// The offset east of UTC of the local time `f` (its minute), by the
/// rules of [`local_to_epoch`].
fn local_offset(f: &Fields) -> Option<i64> {
    let key = (f.y, f.mo, f.d, f.h, f.mi);
    OFFSETS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some(known) = cache.get(&key) {
            return *known;
        }
        let minute = Fields {
            s: 0,
            micros: 0,
            ..*f
        };
        let naive = days_from_civil(f.y, f.mo, f.d) * 86_400
            + i64::from(f.h) * 3_600
            + i64::from(f.mi) * 60;
        let offset = local_to_epoch(&minute).map(|t| naive - t);
        // Bounded: a log spanning years of distinct minutes starts over.
        if cache.len() >= 100_000 {
            cache.clear();
        }
        cache.insert(key, offset);
        offset
    })
}

/// A broken-down time as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fields {
    y: i64,
    mo: u32,
    d: u32,
    h: u32,
    mi: u32,
    s: u32,
    micros: u32,
}

fn digits(s: &[u8], at: usize, n: usize) -> Option<u32> {
    let part = s.get(at..at + n)?;
    part.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// `YYYY-MM-DD[T ]HH:MM:SS[.f{1,9}][Z|±HH:MM]` → the fields and the
/// offset in seconds east of UTC, if one is written.
fn parse(text: &str) -> Option<(Fields, Option<i64>)> {
    let b = text.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let f = Fields {
        y: i64::from(digits(b, 0, 4)?),
        mo: digits(b, 5, 2)?,
        d: digits(b, 8, 2)?,
        h: digits(b, 11, 2)?,
        mi: digits(b, 14, 2)?,
        s: digits(b, 17, 2)?,
        micros: 0,
    };
    if !(1..=12).contains(&f.mo) || !(1..=31).contains(&f.d) || f.h > 23 || f.mi > 59 || f.s > 60 {
        return None;
    }
    let mut at = 19;
    let mut micros = 0u32;
    if b.get(at) == Some(&b'.') {
        at += 1;
        let start = at;
        while at < b.len() && b[at].is_ascii_digit() {
            if at - start < 6 {
                micros = micros * 10 + u32::from(b[at] - b'0');
            }
            at += 1;
        }
        let n = at - start;
        if n == 0 {
            return None;
        }
        for _ in n..6 {
            micros *= 10;
        }
    }
    let offset = match b.get(at) {
        None => None,
        Some(b'Z') if at + 1 == b.len() => Some(0),
        Some(&sign @ (b'+' | b'-')) if b.len() == at + 6 && b[at + 3] == b':' => {
            let off =
                i64::from(digits(b, at + 1, 2)?) * 3_600 + i64::from(digits(b, at + 4, 2)?) * 60;
            Some(if sign == b'-' { -off } else { off })
        }
        Some(_) => return None,
    };
    Some((Fields { micros, ..f }, offset))
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn format_utc(secs: i64, micros: u32) -> String {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let t = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}.{micros:06}+00",
        t / 3_600,
        t / 60 % 60,
        t % 60
    )
}

/// The local time `f` (seconds precision) as seconds since the epoch,
/// the first of two in a fold.
fn local_to_epoch(f: &Fields) -> Option<i64> {
    let try_with = |isdst: i32| -> Option<i64> {
        // SAFETY: an all-zero `tm` is a valid value for every field.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        tm.tm_year = i32::try_from(f.y - 1900).ok()?;
        tm.tm_mon = f.mo as i32 - 1;
        tm.tm_mday = f.d as i32;
        tm.tm_hour = f.h as i32;
        tm.tm_min = f.mi as i32;
        tm.tm_sec = f.s as i32;
        tm.tm_isdst = isdst;
        // SAFETY: `tm` is a valid, initialised struct that mktime may
        // normalise in place.
        let t = unsafe { libc::mktime(&mut tm) };
        (t != -1 || (f.y, f.mo, f.d, f.h, f.mi, f.s) == (1969, 12, 31, 23, 59, 59)).then_some(t)
    };
    let reads_back = |t: i64| -> bool {
        // SAFETY: as above; localtime_r only writes `out`.
        let mut out: libc::tm = unsafe { std::mem::zeroed() };
        let tt = t as libc::time_t;
        // SAFETY: both pointers are valid for the call.
        if unsafe { libc::localtime_r(&tt, &mut out) }.is_null() {
            return false;
        }
        (
            i64::from(out.tm_year) + 1900,
            (out.tm_mon + 1) as u32,
            out.tm_mday as u32,
            out.tm_hour as u32,
            out.tm_min as u32,
            out.tm_sec as u32,
        ) == (f.y, f.mo, f.d, f.h, f.mi, f.s)
    };
    let candidates: Vec<i64> = [1, 0]
        .into_iter()
        .filter_map(try_with)
        .filter(|&t| reads_back(t))
        .collect();
    candidates.into_iter().min().or_else(|| try_with(-1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_offsets_and_fractions() {
        assert_eq!(
            to_utc("2026-03-29T02:30:00.5+02:00").as_deref(),
            Some("2026-03-29 00:30:00.500000+00")
        );
        assert_eq!(
            to_utc("2024-02-29T23:59:59.123456-01:00").as_deref(),
            Some("2024-03-01 00:59:59.123456+00")
        );
        assert_eq!(
            to_utc("1969-12-31T23:00:00Z").as_deref(),
            Some("1969-12-31 23:00:00.000000+00")
        );
        assert_eq!(to_utc("0001-01-01T00:30:00+01:00"), None, "year 0");
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00",
            "2026-01-01T00:00:00+2",
            "2026-01-01T00:00:00.",
        ] {
            assert_eq!(to_utc(bad), None, "{bad}");
        }
    }

    #[test]
    fn days_round_trip() {
        for z in [-800_000, -1, 0, 1, 19_000, 20_818, 2_932_896] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }
}
