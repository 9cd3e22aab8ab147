//! Human units in and out: durations and times given on the command line
//! (`1s`, `250ms`, `2026-11-22T03:58:24Z`), and the KiB/MiB, ms/s, bit/s and
//! wall-clock renderings of the table output. Kept apart so every report
//! prints numbers the same way.

use crate::usage;

/// Parse a duration such as `1s`, `250ms`, `1m30s`, `10us`, `500ns`, `2h`
/// or a plain number of seconds (`1.5`).
pub fn parse_duration(s: &str) -> anyhow::Result<u64> {
    let t = s.trim();
    let bad = || {
        usage(format!(
            "bad duration {s:?} (use e.g. 1s, 250ms, 1m30s, 10us, 500ns)"
        ))
    };
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<f64>() {
        if !(secs.is_finite() && secs >= 0.0) {
            return Err(bad());
        }
        return Ok((secs * 1e9).round() as u64);
    }
    let mut total: f64 = 0.0;
    let mut rest = t;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_end == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_end].parse().map_err(|_| bad())?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" | "min" => 60e9,
            "h" => 3600e9,
            "d" => 86400e9,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(total.round() as u64)
}

/// A point in time given on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeSpec {
    /// Offset from the start of the recording.
    Relative(u64),
    /// Nanoseconds since the Unix epoch (UTC).
    Wall(i64),
}

/// Parse `--since/--until`: a duration from the recording start (`30s`,
/// `+1m`), an absolute UTC time (`2026-11-22T03:58:24[.5][Z]`, a space may
/// replace the `T`) or `@UNIX_SECONDS`.
pub fn parse_time(s: &str) -> anyhow::Result<TimeSpec> {
    let t = s.trim();
    if let Some(secs) = t.strip_prefix('@') {
        let v: f64 = secs
            .parse()
            .map_err(|_| usage(format!("bad time {s:?}: expected @UNIX_SECONDS")))?;
        return Ok(TimeSpec::Wall((v * 1e9) as i64));
    }
    if t.len() >= 10 && t.as_bytes().get(4) == Some(&b'-') {
        return parse_datetime(t).map(TimeSpec::Wall).ok_or_else(|| {
            usage(format!(
                "bad time {s:?}: expected YYYY-MM-DDTHH:MM:SS[.frac][Z] (UTC)"
            ))
        });
    }
    let d = parse_duration(t.strip_prefix('+').unwrap_or(t)).map_err(|_| {
        usage(format!(
            "bad time {s:?}: use an offset from the recording start (30s, 1m), a UTC time (2026-01-02T03:04:05Z) or @UNIX_SECONDS"
        ))
    })?;
    Ok(TimeSpec::Relative(d))
}

fn parse_datetime(t: &str) -> Option<i64> {
    let t = t.strip_suffix('Z').unwrap_or(t);
    let (date, time) = match t.find(['T', ' ']) {
        Some(i) => (&t[..i], &t[i + 1..]),
        None => (t, "00:00:00"),
    };
    let mut d = date.split('-');
    let y: i64 = d.next()?.parse().ok()?;
    let mo: u32 = d.next()?.parse().ok()?;
    let da: u32 = d.next()?.parse().ok()?;
    if d.next().is_some()
        || !(1..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&da)
    {
        return None;
    }
    let (hms, frac) = match time.find('.') {
        Some(i) => (&time[..i], &time[i..]),
        None => (time, ""),
    };
    let mut p = hms.split(':');
    let h: i64 = p.next()?.parse().ok()?;
    let mi: i64 = p.next().unwrap_or("0").parse().ok()?;
    let se: i64 = p.next().unwrap_or("0").parse().ok()?;
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let frac_ns = if frac.is_empty() {
        0
    } else {
        (frac.parse::<f64>().ok()? * 1e9) as i64
    };
    let days = days_from_civil(y, mo, da);
    // Checked: a year with many digits must be an error, not an overflow.
    days.checked_mul(86400)?
        .checked_add(h * 3600 + mi * 60 + se)?
        .checked_mul(1_000_000_000)?
        .checked_add(frac_ns)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

pub(crate) fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719468;
    let era = if z >= 0 { z } else { z - 146096 } / 146097;
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Wall-clock time (ns since the epoch) as `YYYY-MM-DD HH:MM:SS.ffffff` UTC.
pub fn wall(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let sub = ns.rem_euclid(1_000_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86400));
    let s = secs.rem_euclid(86400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:06}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        sub / 1000
    )
}

/// Wall-clock time of day only, `HH:MM:SS.ffffff` UTC (replay lines).
pub fn wall_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let sub = ns.rem_euclid(1_000_000_000);
    let s = secs.rem_euclid(86400);
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        s / 3600,
        s / 60 % 60,
        s % 60,
        sub / 1000
    )
}

/// Bytes with binary units: `512 B`, `1.5 KiB`, `3.2 MiB`.
pub fn bytes(n: u64) -> String {
    const U: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.1} {}", U[i])
}

/// A duration in ns as `850 ns`, `12.3 µs`, `4.5 ms`, `2.00 s`, `3m 12s`.
pub fn duration(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=999_999 => format!("{:.1} µs", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} ms", ns as f64 / 1e6),
        1_000_000_000..=59_999_999_999 => format!("{:.2} s", ns as f64 / 1e9),
        _ => {
            let s = ns / 1_000_000_000;
            if s < 3600 {
                format!("{}m {:02}s", s / 60, s % 60)
            } else {
                format!("{}h {:02}m", s / 3600, s / 60 % 60)
            }
        }
    }
}

/// A rate in bits per second: `800 bit/s`, `1.2 kbit/s`, `3.4 Mbit/s`.
pub fn rate(bps: f64) -> String {
    const U: [&str; 5] = ["kbit/s", "Mbit/s", "Gbit/s", "Tbit/s", "Pbit/s"];
    if bps < 1000.0 {
        return format!("{bps:.0} bit/s");
    }
    let mut v = bps / 1000.0;
    let mut i = 0;
    while v >= 1000.0 && i + 1 < U.len() {
        v /= 1000.0;
        i += 1;
    }
    format!("{v:.1} {}", U[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1s").unwrap(), 1_000_000_000);
        assert_eq!(parse_duration("250ms").unwrap(), 250_000_000);
        assert_eq!(parse_duration("1m30s").unwrap(), 90_000_000_000);
        assert_eq!(parse_duration("1.5").unwrap(), 1_500_000_000);
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("1x").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_time("30s").unwrap(),
            TimeSpec::Relative(30_000_000_000)
        );
        assert_eq!(
            parse_time("1970-01-02T00:00:01Z").unwrap(),
            TimeSpec::Wall(86_401_000_000_000)
        );
        assert_eq!(parse_time("@1.5").unwrap(), TimeSpec::Wall(1_500_000_000));
        assert_eq!(wall(86_401_000_000_000), "1970-01-02 00:00:01.000000");
        let t = parse_datetime("2026-11-22 03:58:24.25").unwrap();
        assert_eq!(wall(t), "2026-11-22 03:58:24.250000");
    }

    /// A time whose year does not fit is a usage error,
    /// not an arithmetic overflow.
    #[test]
    fn huge_years_are_errors() {
        assert!(parse_time("9223372036854775807-01-01T00:00:00Z").is_err());
        assert!(parse_time("300000000000-01-01T00:00:00Z").is_err());
        assert!(parse_time("0000-01-01T00:00:00Z").is_err());
    }

    #[test]
    fn human() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(duration(1_500_000), "1.5 ms");
        assert_eq!(rate(8_000_000.0), "8.0 Mbit/s");
    }
}
