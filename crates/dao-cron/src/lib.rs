//! Standard five-field cron schedules, as upstream's parser (robfig/cron) reads them:
//! minute, hour, day of month, month, day of week; `*`/`?`, lists, ranges, steps, month and
//! weekday names; and the macros `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//! `@midnight`, `@hourly`. When both day fields are restricted a day matching either one
//! matches (cron's rule); when either is `*`, both must match.
//!
//! Shared by the API server (which validates `spec.schedule` with it, giving robfig/cron's
//! messages) and the CronJob controller (which runs schedules with it).

use jiff::Timestamp;
use jiff::civil::{DateTime, date};
use jiff::tz::TimeZone;

#[derive(Clone, Debug)]
pub struct Schedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_star: bool,
    weekdays_star: bool,
    pub tz: TimeZone,
}

struct Field {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    min: 0,
    max: 23,
    names: &[],
};
const DAY: Field = Field {
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const WEEKDAY: Field = Field {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Go's `strconv.Atoi` error, as robfig/cron quotes it.
fn atoi_error(s: &str) -> String {
    let all_digits = {
        let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    };
    let why = if all_digits {
        "value out of range"
    } else {
        "invalid syntax"
    };
    format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: {why}")
}

/// A number, as robfig/cron's `mustParseInt`: no negatives.
fn number(s: &str) -> Result<u32, String> {
    let n: i64 = s.parse().map_err(|_| atoi_error(s))?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {s}"));
    }
    u32::try_from(n).map_err(|_| atoi_error(s))
}

impl Field {
    /// A month or weekday name, or a number.
    fn value(&self, s: &str) -> Result<u32, String> {
        let lower = s.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            return Ok(self.min + i as u32);
        }
        number(s)
    }

    /// The field's bits, and whether it is an unrestricted `*`; robfig/cron's checks and
    /// messages, in its order.
    fn parse(&self, expr: &str) -> Result<(u64, bool), String> {
        let mut bits = 0u64;
        let mut star = false;
        for part in expr.split(',') {
            let range_and_step: Vec<&str> = part.split('/').collect();
            let bounds: Vec<&str> = range_and_step[0].split('-').collect();
            let single = bounds.len() == 1;
            let (start, mut end, is_star) = if matches!(bounds[0], "*" | "?") {
                (self.min, self.max, true)
            } else {
                let start = self.value(bounds[0])?;
                let end = match bounds.len() {
                    1 => start,
                    2 => self.value(bounds[1])?,
                    _ => return Err(format!("too many hyphens: {part}")),
                };
                (start, end, false)
            };
            let step = match range_and_step.len() {
                1 => 1,
                2 => {
                    let step = number(range_and_step[1])?;
                    // "N/step" means "N-max/step".
                    if single && !is_star {
                        end = self.max;
                    }
                    step
                }
                _ => return Err(format!("too many slashes: {part}")),
            };
            if start < self.min {
                return Err(format!(
                    "beginning of range ({start}) below minimum ({}): {part}",
                    self.min
                ));
            }
            if end > self.max {
                return Err(format!(
                    "end of range ({end}) above maximum ({}): {part}",
                    self.max
                ));
            }
            if start > end {
                return Err(format!(
                    "beginning of range ({start}) beyond end of range ({end}): {part}"
                ));
            }
            if step == 0 {
                return Err(format!("step of range should be a positive number: {part}"));
            }
            if is_star && step == 1 {
                star = true;
            }
            let mut v = start;
            while v <= end {
                bits |= 1 << v;
                v += step;
            }
        }
        Ok((bits, star))
    }
}

/// Whether `spec` is a schedule this parser reads; robfig/cron's message if not.
pub fn check(spec: &str) -> Result<(), String> {
    Schedule::parse(spec, TimeZone::UTC).map(|_| ())
}

/// A zone of the system's tz database (`$ZONEINFO`, then `/usr/share/zoneinfo`, Debian's
/// `tzdata`), as Go's `time.LoadLocation` finds one; "UTC" (and "") always work. `None` for a
/// zone that is not there or a name that is not a tz database path.
pub fn time_zone(name: &str) -> Option<TimeZone> {
    if matches!(name, "" | "UTC" | "Etc/UTC") {
        return Some(TimeZone::UTC);
    }
    if name.starts_with('/')
        || name
            .split('/')
            .any(|p| p == ".." || p == "." || p.is_empty())
    {
        return None;
    }
    let dirs = std::env::var("ZONEINFO")
        .ok()
        .into_iter()
        .chain(["/usr/share/zoneinfo".to_owned()]);
    for dir in dirs {
        if let Ok(data) = std::fs::read(std::path::Path::new(&dir).join(name))
            && let Ok(tz) = TimeZone::tzif(name, &data)
        {
            return Some(tz);
        }
    }
    None
}

/// Whether a CronJob's `spec.timeZone` is one the API takes; upstream's message if not (its
/// `validateTimeZone`: tz database naming rules, no `Local`, and the zone must exist).
pub fn check_time_zone(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("timeZone must be nil or non-empty string".into());
    }
    // Each path component: 1 to 14 of letters, digits, '.', '-', '_', '+', not starting with
    // '-', and not '.' or '..'.
    let component_ok = |p: &str| {
        (1..=14).contains(&p.len())
            && p != "."
            && p != ".."
            && !p.starts_with('-')
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'+'))
    };
    if !name.split('/').all(component_ok) {
        return Err(format!("unknown time zone {name}"));
    }
    if name.eq_ignore_ascii_case("Local") {
        // Go loads "Local" (the process's own zone), so this is the only complaint about it.
        return Err(
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"
                .into(),
        );
    }
    match time_zone(name) {
        Some(_) => Ok(()),
        None => Err(format!("unknown time zone {name}")),
    }
}

fn has(bits: u64, v: i8) -> bool {
    (0..64).contains(&v) && bits & (1 << v) != 0
}

impl Schedule {
    pub fn parse(spec: &str, tz: TimeZone) -> Result<Schedule, String> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err("empty spec string".into());
        }
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            return Err("time zones in the schedule are not supported; use spec.timeZone".into());
        }
        let expanded = if spec.starts_with('@') {
            match spec.to_ascii_lowercase().as_str() {
                "@yearly" | "@annually" => "0 0 1 1 *",
                "@monthly" => "0 0 1 * *",
                "@weekly" => "0 0 * * 0",
                "@daily" | "@midnight" => "0 0 * * *",
                "@hourly" => "0 * * * *",
                _ => return Err(format!("unrecognized descriptor: {spec}")),
            }
        } else {
            spec
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "expected exactly 5 fields, found {}: [{}]",
                fields.len(),
                fields.join(" ")
            ));
        }
        let (minutes, _) = MINUTE.parse(fields[0])?;
        let (hours, _) = HOUR.parse(fields[1])?;
        let (days, days_star) = DAY.parse(fields[2])?;
        let (months, _) = MONTH.parse(fields[3])?;
        let (weekdays, weekdays_star) = WEEKDAY.parse(fields[4])?;
        Ok(Schedule {
            minutes,
            hours,
            days,
            months,
            weekdays,
            days_star,
            weekdays_star,
            tz,
        })
    }

    fn day_matches(&self, dt: DateTime) -> bool {
        let dom = has(self.days, dt.day());
        let dow = has(self.weekdays, dt.weekday().to_sunday_zero_offset());
        if self.days_star || self.weekdays_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first schedule time strictly after `after`; `None` if there is none within
    /// five years (e.g. February 30).
    pub fn next(&self, after: Timestamp) -> Option<Timestamp> {
        let local = self.tz.to_datetime(after);
        let mut dt = local
            .date()
            .at(local.hour(), local.minute(), 0, 0)
            .checked_add(jiff::Span::new().minutes(1))
            .ok()?;
        let last_year = dt.year() + 5;
        loop {
            if dt.year() > last_year {
                return None;
            }
            if !has(self.months, dt.month()) {
                let first = dt.date().first_of_month();
                let next = if first.month() == 12 {
                    date(first.year().checked_add(1)?, 1, 1)
                } else {
                    date(first.year(), first.month() + 1, 1)
                };
                dt = next.at(0, 0, 0, 0);
                continue;
            }
            if !self.day_matches(dt) {
                dt = dt.date().tomorrow().ok()?.at(0, 0, 0, 0);
                continue;
            }
            if !has(self.hours, dt.hour()) {
                dt = dt
                    .date()
                    .at(dt.hour(), 0, 0, 0)
                    .checked_add(jiff::Span::new().hours(1))
                    .ok()?;
                continue;
            }
            if !has(self.minutes, dt.minute()) {
                dt = dt.checked_add(jiff::Span::new().minutes(1)).ok()?;
                continue;
            }
            let t = self.tz.to_timestamp(dt).ok()?;
            if t > after {
                return Some(t);
            }
            dt = dt.checked_add(jiff::Span::new().minutes(1)).ok()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn time_zones_from_the_tz_database() {
        // Needs Debian's tzdata (scripts/setup installs it).
        assert!(time_zone("UTC").is_some());
        assert!(time_zone("Etc/UTC").is_some());
        assert!(time_zone("../etc/passwd").is_none());
        assert!(time_zone("/etc/passwd").is_none());
        assert!(time_zone("Not/AZone").is_none());
        let tz = time_zone("America/New_York").expect("tzdata has America/New_York");
        let s = Schedule::parse("0 9 * * *", tz).unwrap();
        // Daylight saving time in May: UTC-4.
        assert_eq!(
            s.next(ts("2024-05-01T00:00:00Z")),
            Some(ts("2024-05-01T13:00:00Z"))
        );
    }

    #[test]
    fn time_zone_checks_in_upstreams_words() {
        for ok in [
            "UTC",
            "Europe/Berlin",
            "America/Argentina/Buenos_Aires",
            "Etc/GMT+5",
        ] {
            assert_eq!(check_time_zone(ok), Ok(()), "{ok}");
        }
        for (zone, want) in [
            ("", "timeZone must be nil or non-empty string"),
            ("Mars/Olympus", "unknown time zone Mars/Olympus"),
            ("../../etc/passwd", "unknown time zone ../../etc/passwd"),
            ("Europe//Berlin", "unknown time zone Europe//Berlin"),
            ("America/-York", "unknown time zone America/-York"),
            ("America/New York", "unknown time zone America/New York"),
            (
                "Antarctica/DumontDUrvilleX",
                "unknown time zone Antarctica/DumontDUrvilleX",
            ),
            (
                "local",
                "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
            ),
        ] {
            assert_eq!(check_time_zone(zone), Err(want.to_owned()), "{zone:?}");
        }
    }

    #[test]
    fn next_times() {
        for (spec, after, want) in [
            ("* * * * *", "2024-05-01T10:00:00Z", "2024-05-01T10:01:00Z"),
            ("* * * * *", "2024-05-01T10:00:30Z", "2024-05-01T10:01:00Z"),
            (
                "*/15 * * * *",
                "2024-05-01T10:07:00Z",
                "2024-05-01T10:15:00Z",
            ),
            (
                "*/15 * * * *",
                "2024-05-01T10:45:00Z",
                "2024-05-01T11:00:00Z",
            ),
            (
                "5/20 * * * *",
                "2024-05-01T10:26:00Z",
                "2024-05-01T10:45:00Z",
            ),
            (
                "0 9-17/4 * * *",
                "2024-05-01T13:00:00Z",
                "2024-05-01T17:00:00Z",
            ),
            ("0 0 * * *", "2024-12-31T23:59:59Z", "2025-01-01T00:00:00Z"),
            (
                "30 2 1,15 * *",
                "2024-05-02T00:00:00Z",
                "2024-05-15T02:30:00Z",
            ),
            (
                "0 0 * * mon",
                "2024-05-01T00:00:00Z",
                "2024-05-06T00:00:00Z",
            ),
            (
                "0 0 * * MON-FRI",
                "2024-05-04T00:00:00Z",
                "2024-05-06T00:00:00Z",
            ),
            ("0 0 * * 0", "2024-05-01T00:00:00Z", "2024-05-05T00:00:00Z"),
            (
                "0 0 1 feb *",
                "2024-03-01T00:00:00Z",
                "2025-02-01T00:00:00Z",
            ),
            ("0 0 29 2 *", "2024-03-01T00:00:00Z", "2028-02-29T00:00:00Z"),
            // Both day fields restricted: either matches (the 13th or a Friday).
            ("0 0 13 * 5", "2024-05-01T00:00:00Z", "2024-05-03T00:00:00Z"),
            ("0 0 13 * 5", "2024-05-10T00:00:00Z", "2024-05-13T00:00:00Z"),
            // One day field `*`: both must match (every Friday).
            ("0 0 * * 5", "2024-05-10T00:00:00Z", "2024-05-17T00:00:00Z"),
            // `*/2` is a restriction, not `*`: the 1st, 3rd, ... or a Sunday.
            (
                "0 0 */2 * 0",
                "2024-05-03T12:00:00Z",
                "2024-05-05T00:00:00Z",
            ),
            ("@hourly", "2024-05-01T10:00:00Z", "2024-05-01T11:00:00Z"),
            ("@daily", "2024-05-01T10:00:00Z", "2024-05-02T00:00:00Z"),
            ("@midnight", "2024-05-01T10:00:00Z", "2024-05-02T00:00:00Z"),
            ("@weekly", "2024-05-01T10:00:00Z", "2024-05-05T00:00:00Z"),
            ("@monthly", "2024-05-01T10:00:00Z", "2024-06-01T00:00:00Z"),
            ("@yearly", "2024-05-01T10:00:00Z", "2025-01-01T00:00:00Z"),
            ("@annually", "2024-05-01T10:00:00Z", "2025-01-01T00:00:00Z"),
            (
                "0,30 * * jan,jul *",
                "2024-05-01T10:00:00Z",
                "2024-07-01T00:00:00Z",
            ),
            ("? ? ? ? ?", "2024-05-01T10:00:00Z", "2024-05-01T10:01:00Z"),
        ] {
            let s = Schedule::parse(spec, TimeZone::UTC).unwrap();
            assert_eq!(s.next(ts(after)), Some(ts(want)), "{spec} after {after}");
        }
    }

    #[test]
    fn impossible_schedule_has_no_next() {
        let s = Schedule::parse("0 0 30 2 *", TimeZone::UTC).unwrap();
        assert_eq!(s.next(ts("2024-01-01T00:00:00Z")), None);
    }

    #[test]
    fn rejects_bad_schedules_in_robfig_crons_words() {
        for (spec, message) in [
            ("", "empty spec string"),
            ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
            (
                "* * * * * *",
                "expected exactly 5 fields, found 6: [* * * * * *]",
            ),
            ("@reboot", "unrecognized descriptor: @reboot"),
            ("61 * * * *", "end of range (61) above maximum (59): 61"),
            ("* 24 * * *", "end of range (24) above maximum (23): 24"),
            ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
            ("* * * 13 *", "end of range (13) above maximum (12): 13"),
            ("* * * * 7", "end of range (7) above maximum (6): 7"),
            (
                "*/0 * * * *",
                "step of range should be a positive number: */0",
            ),
            (
                "5-1 * * * *",
                "beginning of range (5) beyond end of range (1): 5-1",
            ),
            ("1-2-3 * * * *", "too many hyphens: 1-2-3"),
            ("1/2/3 * * * *", "too many slashes: 1/2/3"),
            (
                "a * * * *",
                "failed to parse int from a: strconv.Atoi: parsing \"a\": invalid syntax",
            ),
            (
                "* * * foo *",
                "failed to parse int from foo: strconv.Atoi: parsing \"foo\": invalid syntax",
            ),
            ("*/-1 * * * *", "negative number (-1) not allowed: -1"),
            (
                "0,-1 * * * *",
                "failed to parse int from : strconv.Atoi: parsing \"\": invalid syntax",
            ),
        ] {
            assert_eq!(
                Schedule::parse(spec, TimeZone::UTC).unwrap_err(),
                message,
                "{spec:?}"
            );
        }
        for spec in ["@every 5m", "TZ=UTC * * * * *"] {
            assert!(
                Schedule::parse(spec, TimeZone::UTC).is_err(),
                "{spec:?} should be rejected"
            );
        }
    }

    #[test]
    fn fixed_offset_zone() {
        let tz = TimeZone::fixed(jiff::tz::offset(2));
        let s = Schedule::parse("0 9 * * *", tz).unwrap();
        assert_eq!(
            s.next(ts("2024-05-01T08:00:00Z")),
            Some(ts("2024-05-02T07:00:00Z"))
        );
    }
}
