//! Sizes and durations as Docker spells them, with Docker's error messages.
//!
//! - [`ram_in_bytes`]: `go-units`' `RAMInBytes` — binary multiples (`64m` = 64 MiB). Used for
//!   memory limits, `--shm-size`, tmpfs `size=`, BuildKit mount sizes.
//! - [`from_human_size`]: `go-units`' `FromHumanSize` — decimal multiples (`10m` = 10,000,000
//!   bytes). Used for the json-file log driver's `max-size`
//!   (moby `daemon/logger/jsonfilelog/jsonfilelog.go`).
//! - [`parse_go_duration`]: Go's `time.ParseDuration` (`1h2m3.5s`, `-1.5h`, `300ms`) in
//!   nanoseconds, as docker's `--health-interval`, `--stop-timeout`-like flags and the
//!   Dockerfile `HEALTHCHECK` options take them.
//!
//! Source: <https://github.com/docker/go-units/blob/master/size.go>,
//! <https://pkg.go.dev/time#ParseDuration>.

use std::fmt;

/// A size or duration that does not parse; `Display` is Docker's/Go's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitsError {
    /// `invalid size: '<input>'` (no number, a negative one, or a malformed number).
    InvalidSize(String),
    /// `invalid suffix: '<suffix>'` (the number is followed by an unknown unit).
    InvalidSuffix(String),
    /// Go's `time: …` messages, e.g. `time: invalid duration "x"`.
    InvalidDuration(String),
}

impl fmt::Display for UnitsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UnitsError::InvalidSize(s) => write!(f, "invalid size: '{s}'"),
            UnitsError::InvalidSuffix(s) => write!(f, "invalid suffix: '{s}'"),
            UnitsError::InvalidDuration(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for UnitsError {}

const BINARY: u64 = 1024;
const DECIMAL: u64 = 1000;

/// `RAMInBytes`: `"64m"` → 67108864. Units `k m g t p` (case-insensitive) are powers of 1024,
/// optionally followed by `b` or `ib`; a bare number or `b` is bytes; one space may separate
/// the number and the unit. Fractions are truncated after multiplying (`1.5k` = 1536).
pub fn ram_in_bytes(s: &str) -> Result<i64, UnitsError> {
    parse_size(s, BINARY)
}

/// `FromHumanSize`: `"10m"` → 10000000 (powers of 1000; otherwise as [`ram_in_bytes`]).
pub fn from_human_size(s: &str) -> Result<i64, UnitsError> {
    parse_size(s, DECIMAL)
}

fn parse_size(s: &str, base: u64) -> Result<i64, UnitsError> {
    let invalid = || UnitsError::InvalidSize(s.to_string());
    // The number ends at the last digit, dot or space (go-units' LastIndexAny("0123456789. ")).
    let sep = s
        .rfind(|c: char| c.is_ascii_digit() || c == '.' || c == ' ')
        .ok_or_else(invalid)?;
    let (num, sfx) = if s.as_bytes()[sep] == b' ' {
        (&s[..sep], &s[sep + 1..])
    } else {
        (&s[..sep + 1], &s[sep + 1..])
    };
    // Go's ParseFloat: digits with an optional fraction (and sign), nothing else.
    let plain = !num.is_empty()
        && num
            .trim_start_matches(['+', '-'])
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.')
        && num.chars().any(|c| c.is_ascii_digit());
    let size: f64 = if plain {
        num.parse().map_err(|_| invalid())?
    } else {
        return Err(invalid());
    };
    if size < 0.0 {
        return Err(invalid());
    }
    let bad_suffix = || UnitsError::InvalidSuffix(sfx.to_string());
    if sfx.is_empty() {
        return Ok(size as i64);
    }
    if sfx.len() > 3 {
        return Err(bad_suffix());
    }
    let lower = sfx.to_ascii_lowercase();
    let b = lower.as_bytes();
    if b[0] == b'b' {
        return if b.len() == 1 {
            Ok(size as i64)
        } else {
            Err(bad_suffix())
        };
    }
    let power = match b[0] {
        b'k' => 1,
        b'm' => 2,
        b'g' => 3,
        b't' => 4,
        b'p' => 5,
        _ => return Err(bad_suffix()),
    };
    match (b.len(), &lower[1..]) {
        (1, _) | (2, "b") | (3, "ib") => {}
        _ => return Err(bad_suffix()),
    }
    // Go converts with int64(float64): saturating at the range's ends.
    Ok((size * base.pow(power) as f64) as i64)
}

/// Go's `time.ParseDuration`, in nanoseconds: a signed sequence of decimal numbers, each with
/// an optional fraction and a unit (`ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`); `"0"` alone
/// needs no unit. Errors carry Go's messages (`time: invalid duration "x"`,
/// `time: missing unit in duration "1"`, `time: unknown unit "d" in duration "1d"`).
pub fn parse_go_duration(s: &str) -> Result<i64, UnitsError> {
    let quoted = format!("\"{s}\"");
    let invalid = || UnitsError::InvalidDuration(format!("time: invalid duration {quoted}"));
    let mut rest = s;
    let neg = rest.starts_with('-');
    if rest.starts_with(['-', '+']) {
        rest = &rest[1..];
    }
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_end = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let (int, after) = rest.split_at(int_end);
        let (frac, after) = match after.strip_prefix('.') {
            Some(a) => {
                let e = a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len());
                (&a[..e], &a[e..])
            }
            None => ("", after),
        };
        if int.is_empty() && frac.is_empty() {
            return Err(invalid());
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let unit = &after[..unit_end];
        if unit.is_empty() {
            return Err(UnitsError::InvalidDuration(format!(
                "time: missing unit in duration {quoted}"
            )));
        }
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(UnitsError::InvalidDuration(format!(
                    "time: unknown unit \"{unit}\" in duration {quoted}"
                )))
            }
        };
        let whole: u128 = if int.is_empty() {
            0
        } else {
            int.parse().map_err(|_| invalid())?
        };
        let mut v = whole.checked_mul(scale).ok_or_else(invalid)?;
        // The fraction, truncated to whole nanoseconds as Go does.
        let mut unit_frac = scale;
        for d in frac.bytes().take(30) {
            unit_frac /= 10;
            v += u128::from(d - b'0') * unit_frac;
        }
        total = total.checked_add(v).ok_or_else(invalid)?;
        if total > i64::MAX as u128 + u128::from(neg) {
            return Err(invalid());
        }
        rest = &after[unit_end..];
    }
    Ok(if neg {
        (total as i128).wrapping_neg() as i64
    } else {
        total as i64
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_in_bytes_as_go_units() {
        for (s, v) in [
            ("32", 32),
            ("32b", 32),
            ("32B", 32),
            ("32k", 32 * 1024),
            ("32K", 32 * 1024),
            ("32kb", 32 * 1024),
            ("32Kib", 32 * 1024),
            ("32Mb", 32 * 1024 * 1024),
            ("32Gb", 32 << 30),
            ("32Tb", 32 << 40),
            ("32PB", 32 << 50),
            ("32.3", 32),
            ("32.3 mb", (32.3 * 1048576.0) as i64),
            ("1.5k", 1536),
            ("0", 0),
        ] {
            assert_eq!(ram_in_bytes(s), Ok(v), "{s}");
        }
        for s in [
            "", "hello", "-32", " 32 ", "32b.9", "32m-", ".", "--1", "32bb", "32 mb mb",
        ] {
            assert!(ram_in_bytes(s).is_err(), "{s}");
        }
        assert_eq!(
            ram_in_bytes("10x").unwrap_err().to_string(),
            "invalid suffix: 'x'"
        );
        assert_eq!(
            ram_in_bytes("x").unwrap_err().to_string(),
            "invalid size: 'x'"
        );
        assert_eq!(ram_in_bytes("32mib"), Ok(32 << 20));
        assert_eq!(
            ram_in_bytes("32mbb").unwrap_err().to_string(),
            "invalid suffix: 'mbb'"
        );
    }

    #[test]
    fn from_human_size_is_decimal() {
        assert_eq!(from_human_size("10m"), Ok(10_000_000));
        assert_eq!(from_human_size("1kB"), Ok(1000));
        assert_eq!(from_human_size("1KiB"), Ok(1000));
        assert_eq!(from_human_size("3g"), Ok(3_000_000_000));
        assert_eq!(from_human_size("100"), Ok(100));
    }

    #[test]
    fn go_durations() {
        for (s, v) in [
            ("0", 0i64),
            ("5s", 5_000_000_000),
            ("1m30s", 90_000_000_000),
            ("1h2m3.5s", 3_723_500_000_000),
            ("300ms", 300_000_000),
            ("1.5h", 5_400_000_000_000),
            ("-2s", -2_000_000_000),
            ("+2s", 2_000_000_000),
            ("10us", 10_000),
            ("10µs", 10_000),
            (".5s", 500_000_000),
            ("1.000000001s", 1_000_000_001),
            ("2562047h47m16.854775807s", i64::MAX),
        ] {
            assert_eq!(parse_go_duration(s), Ok(v), "{s}");
        }
        assert_eq!(
            parse_go_duration("1").unwrap_err().to_string(),
            "time: missing unit in duration \"1\""
        );
        assert_eq!(
            parse_go_duration("1d").unwrap_err().to_string(),
            "time: unknown unit \"d\" in duration \"1d\""
        );
        for s in [
            "",
            "s",
            "-",
            ".s",
            "x1s",
            "2562047h47m16.854775808s",
            "99999999999999999999h",
        ] {
            assert!(parse_go_duration(s).is_err(), "{s}");
        }
    }
}
