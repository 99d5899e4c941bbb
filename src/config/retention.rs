//! Retention, as an operator sets it: when the live log is rotated on its
//! own (`--rotate-at-*`, an automatic `clear`) so that the file and the
//! index stay bounded, and which archives are removed (`--keep-archives*`).
//! Without any of these nothing is ever rotated or removed, as before.

use std::time::Duration;

use super::ConfigError;

/// The retention flags, flattened into [`super::Args`].
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RetentionArgs {
    /// Rotate the live log once it holds this many bytes (as `clear` does:
    /// archived beside it, an empty one started), so the file and the
    /// index stay bounded; K, M, G, T suffixes (powers of 1024) [default:
    /// never].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub rotate_at_bytes: Option<u64>,

    /// Rotate the live log once it holds this many records [default: never].
    #[arg(long, value_name = "N")]
    pub rotate_at_records: Option<u64>,

    /// Keep at most this many archives (made by `clear`, a rotation, or
    /// logrotate with a SIGHUP); the oldest are removed, each removal
    /// logged. An archive the central forwarder has not drained is never
    /// removed [default: keep all].
    #[arg(long, value_name = "N")]
    pub keep_archives: Option<usize>,

    /// Keep archives taking at most this many bytes together (K, M, G, T
    /// suffixes); the oldest are removed first [default: no limit].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub keep_archives_bytes: Option<u64>,

    /// Remove archives older than this many days (counted from when they
    /// stopped being the live log: their last write) [default: no limit].
    #[arg(long, value_name = "DAYS")]
    pub keep_archives_days: Option<u64>,
}

/// Validated retention settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retention {
    pub rotate_at_bytes: Option<u64>,
    pub rotate_at_records: Option<u64>,
    pub keep: Keep,
}

/// Which archives are kept; `None` is no limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keep {
    pub count: Option<usize>,
    pub bytes: Option<u64>,
    pub age: Option<Duration>,
}

impl Keep {
    /// Whether any limit is set (else nothing is ever removed).
    pub fn limits(&self) -> bool {
        self.count.is_some() || self.bytes.is_some() || self.age.is_some()
    }
}

/// Smallest `--rotate-at-bytes`: a smaller one would rotate after nearly
/// every batch, leaving a file per flush.
const MIN_ROTATE_BYTES: u64 = 64 << 10;

impl RetentionArgs {
    pub(super) fn validate(&self) -> Result<Retention, ConfigError> {
        if let Some(b) = self.rotate_at_bytes
            && b < MIN_ROTATE_BYTES
        {
            return Err(ConfigError(format!(
                "--rotate-at-bytes ({b}) must be at least {MIN_ROTATE_BYTES} (64K)"
            )));
        }
        if self.rotate_at_records == Some(0) {
            return Err(ConfigError(
                "--rotate-at-records must be greater than 0".into(),
            ));
        }
        let age = match self.keep_archives_days {
            Some(0) => {
                return Err(ConfigError(
                    "--keep-archives-days must be greater than 0 (to keep none, use --keep-archives 0)"
                        .into(),
                ));
            }
            Some(d) => Some(Duration::from_secs(d.saturating_mul(86_400))),
            None => None,
        };
        Ok(Retention {
            rotate_at_bytes: self.rotate_at_bytes,
            rotate_at_records: self.rotate_at_records,
            keep: Keep {
                count: self.keep_archives,
                bytes: self.keep_archives_bytes,
                age,
            },
        })
    }
}

/// A size in bytes: digits, optionally followed by K, M, G or T (powers of
/// 1024, as journald's `SystemMaxUse=` reads them; a trailing `B`, `iB`
/// or lower case accepted).
fn parse_size(s: &str) -> Result<u64, String> {
    let lower = s.trim().to_ascii_lowercase();
    let t = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(format!("{s:?}: the suffix must be K, M, G or T")),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: not a size (digits, then K, M, G or T)"))?;
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?}: too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_journald_reads_them() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("64K"), Ok(64 << 10));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("3mb"), Ok(3 << 20));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("12X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn limits_are_checked() {
        let ok = RetentionArgs {
            rotate_at_bytes: Some(1 << 20),
            keep_archives_days: Some(7),
            ..Default::default()
        };
        let r = ok.validate().unwrap();
        assert_eq!(r.keep.age, Some(Duration::from_secs(7 * 86_400)));
        assert!(r.keep.limits());
        assert!(!RetentionArgs::default().validate().unwrap().keep.limits());
        for bad in [
            RetentionArgs {
                rotate_at_bytes: Some(100),
                ..Default::default()
            },
            RetentionArgs {
                rotate_at_records: Some(0),
                ..Default::default()
            },
            RetentionArgs {
                keep_archives_days: Some(0),
                ..Default::default()
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }
}
