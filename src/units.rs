//! Human units for the binary's own output (sizes, durations, wall times),
//! so `snoop info` reads like `ls -lh`, not like a hex dump.

/// Bytes as B, KiB, MiB, GiB.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// A duration in ns as ns, µs, ms, s or h:mm:ss.
pub fn duration(ns: u64) -> String {
    match ns {
        0..=999 => format!("{ns} ns"),
        1_000..=999_999 => format!("{:.1} µs", ns as f64 / 1e3),
        1_000_000..=999_999_999 => format!("{:.1} ms", ns as f64 / 1e6),
        _ if ns < 3_600_000_000_000 => format!("{:.3} s", ns as f64 / 1e9),
        _ => {
            let s = ns / 1_000_000_000;
            format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
        }
    }
}

/// ns since the Unix epoch as `YYYY-MM-DD HH:MM:SS.mmm UTC`.
pub fn wall(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let ms = ns.rem_euclid(1_000_000_000) / 1_000_000;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{ms:03} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn wall_clock_formatting() {
        assert_eq!(super::wall(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(
            super::wall(1_795_000_000_123_000_000),
            "2026-11-18 11:06:40.123 UTC"
        );
    }

    #[test]
    fn units() {
        assert_eq!(super::bytes(1536), "1.5 KiB");
        assert_eq!(super::duration(1_500_000), "1.5 ms");
    }
}
