//! Cron schedules as kube's CronJob controller parses them (robfig/cron v3 `ParseStandard`):
//! five fields — minute, hour, day of month, month (1-12 or `jan`…`dec`), day of week (0-6 or
//! `sun`…`sat`) — each a list of `*`, `?`, `N`, `N-M`, with an optional `/step`; the
//! descriptors `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`,
//! `@hourly`. As robfig's, when both day fields are restricted a day matching either runs.
//! Times are computed in a time zone (the CronJob's `timeZone`, else the host's).

use jiff::civil::{date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

/// A parsed schedule: one bit per allowed value, and whether each day field was a `*`.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    dom_star: bool,
    dow_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn value(s: &str, names: &[&str], offset: u32) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + offset);
    }
    s.parse().map_err(|_| {
        format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax")
    })
}

/// One field: its bits and whether it was a bare `*`/`?`.
fn field(
    expr: &str,
    min: u32,
    max: u32,
    names: &[&str],
    offset: u32,
) -> Result<(u64, bool), String> {
    let mut bits = 0u64;
    let mut star = false;
    for part in expr.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                Some(
                    s.parse::<u32>()
                        .map_err(|_| format!("failed to parse int from {s}"))?,
                ),
            ),
            None => (part, None),
        };
        let (start, mut end, mut is_star) = if range == "*" || range == "?" {
            (min, max, true)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, names, offset)?, value(b, names, offset)?, false)
        } else {
            let v = value(range, names, offset)?;
            (v, v, false)
        };
        let step = step.unwrap_or(1);
        if step == 0 {
            return Err(format!("step of range should be a positive number: {part}"));
        }
        if step > 1 {
            if !range.contains('-') && !is_star {
                end = max; // "N/step" means "N-max/step"
            }
            is_star = false;
        }
        if start < min {
            return Err(format!(
                "beginning of range ({start}) below minimum ({min}): {part}"
            ));
        }
        if end > max {
            return Err(format!(
                "end of range ({end}) above maximum ({max}): {part}"
            ));
        }
        if start > end {
            return Err(format!(
                "beginning of range ({start}) beyond end of range ({end}): {part}"
            ));
        }
        let mut v = start;
        while v <= end {
            bits |= 1 << v;
            v += step;
        }
        star |= is_star;
    }
    Ok((bits, star))
}

impl Schedule {
    /// Parses a standard five-field spec or a descriptor; errors worded as robfig's.
    pub fn parse(spec: &str) -> Result<Schedule, String> {
        let spec = spec.trim();
        let expanded = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            s if s.starts_with('@') => return Err(format!("unrecognized descriptor: {s}")),
            s => s,
        };
        let f: Vec<&str> = expanded.split_whitespace().collect();
        if f.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: {spec}",
                f.len()
            ));
        }
        let (minute, _) = field(f[0], 0, 59, &[], 0)?;
        let (hour, _) = field(f[1], 0, 23, &[], 0)?;
        let (dom, dom_star) = field(f[2], 1, 31, &[], 0)?;
        let (month, _) = field(f[3], 1, 12, &MONTHS, 1)?;
        let (dow, dow_star) = field(f[4], 0, 6, &DAYS, 0)?;
        Ok(Schedule {
            minute,
            hour,
            dom,
            month,
            dow,
            dom_star,
            dow_star,
        })
    }

    fn day_matches(&self, dt: DateTime) -> bool {
        let dom = self.dom & (1 << dt.day()) != 0;
        let dow = self.dow & (1 << dt.weekday().to_sunday_zero_offset()) != 0;
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first activation strictly after `t` in `tz` (None within five years: never).
    pub fn next(&self, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = tz.to_datetime(t);
        let mut dt = date(start.year(), start.month(), start.day())
            .at(start.hour(), start.minute(), 0, 0)
            .checked_add(1.minute())
            .ok()?;
        let limit = start.year() + 5;
        while dt.year() <= limit {
            if self.month & (1 << dt.month()) == 0 {
                dt = dt
                    .date()
                    .first_of_month()
                    .checked_add(1.month())
                    .ok()?
                    .at(0, 0, 0, 0);
                continue;
            }
            if !self.day_matches(dt) {
                dt = dt.date().checked_add(1.day()).ok()?.at(0, 0, 0, 0);
                continue;
            }
            if self.hour & (1 << dt.hour()) == 0 {
                dt = dt
                    .date()
                    .at(dt.hour(), 0, 0, 0)
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if self.minute & (1 << dt.minute()) == 0 {
                dt = dt.checked_add(1.minute()).ok()?;
                continue;
            }
            let ts = tz.to_ambiguous_timestamp(dt).compatible().ok()?;
            if ts > t {
                return Some(ts);
            }
            dt = dt.checked_add(1.minute()).ok()?;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn steps_ranges_names_and_descriptors() {
        let s = Schedule::parse("*/15 9-17 * * mon-fri").unwrap();
        let utc = TimeZone::UTC;
        // 2026-12-05 is a Saturday: the next run is Monday 09:00.
        assert_eq!(
            s.next(ts("2026-12-05T10:00:00Z"), &utc),
            Some(ts("2026-12-07T09:00:00Z"))
        );
        assert_eq!(
            s.next(ts("2026-12-07T09:00:00Z"), &utc),
            Some(ts("2026-12-07T09:15:00Z"))
        );
        let every = Schedule::parse("*/1 * * * *").unwrap();
        assert_eq!(
            every.next(ts("2026-12-05T10:00:30Z"), &utc),
            Some(ts("2026-12-05T10:01:00Z"))
        );
        assert_eq!(
            Schedule::parse("@daily").unwrap(),
            Schedule::parse("0 0 * * *").unwrap()
        );
        let y = Schedule::parse("@yearly").unwrap();
        assert_eq!(
            y.next(ts("2026-12-05T10:00:00Z"), &utc),
            Some(ts("2027-01-01T00:00:00Z"))
        );
        assert!(Schedule::parse("* * * *").is_err());
        assert!(Schedule::parse("61 * * * *").is_err());
        assert!(Schedule::parse("@every 5m").is_err());
    }

    #[test]
    fn restricted_day_fields_are_ored() {
        // The 1st of the month or any Monday.
        let s = Schedule::parse("0 0 1 * 1").unwrap();
        let utc = TimeZone::UTC;
        assert_eq!(
            s.next(ts("2026-12-01T00:00:00Z"), &utc),
            Some(ts("2026-12-07T00:00:00Z"))
        );
        assert_eq!(
            s.next(ts("2026-12-28T00:00:00Z"), &utc),
            Some(ts("2027-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn time_zones() {
        let paris = TimeZone::get("Europe/Paris").unwrap();
        let s = Schedule::parse("30 8 * * *").unwrap();
        // 08:30 in Paris is 07:30 UTC in winter.
        assert_eq!(
            s.next(ts("2026-12-05T10:00:00Z"), &paris),
            Some(ts("2026-12-06T07:30:00Z"))
        );
    }
}
