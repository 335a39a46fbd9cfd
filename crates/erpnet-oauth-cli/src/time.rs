//! Times as RFC 3339 text, for the JSON outputs (`token --json`).

/// `unix` seconds as RFC 3339 in UTC, `2022-06-12T18:15:24Z` (the proleptic Gregorian calendar; days
/// from the epoch to a civil date by Howard Hinnant's `civil_from_days`).
pub fn rfc3339(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Shifted to start on 0000-03-01, so that the leap day ends each 400-year era.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3_600, secs % 3_600 / 60, secs % 60)
}

#[cfg(test)]
mod tests {
    use super::rfc3339;

    #[test]
    fn known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        // The seed's `iat`.
        assert_eq!(rfc3339(1_655_057_724), "2022-06-12T18:15:24Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(951_868_799), "2000-02-29T23:59:59Z");
        assert_eq!(rfc3339(4_107_542_400), "2100-03-01T00:00:00Z");
        assert_eq!(rfc3339(253_402_300_799), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn every_day_follows_the_last() {
        // Day by day over 1970-2400: the date parts advance by one day, months and years roll over.
        let mut last = (1969u64, 12u64, 31u64);
        for day in 0..(430 * 366) {
            let text = rfc3339(day * 86_400 + 86_399);
            let y: u64 = text[0..4].parse().unwrap();
            let m: u64 = text[5..7].parse().unwrap();
            let d: u64 = text[8..10].parse().unwrap();
            assert!(text.ends_with("T23:59:59Z"), "{text}");
            let leap = |y: u64| y.is_multiple_of(4) && (!y.is_multiple_of(100) || y.is_multiple_of(400));
            let days_in = |y: u64, m: u64| match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            let expected = if last.2 < days_in(last.0, last.1) {
                (last.0, last.1, last.2 + 1)
            } else if last.1 < 12 {
                (last.0, last.1 + 1, 1)
            } else {
                (last.0 + 1, 1, 1)
            };
            assert_eq!((y, m, d), expected, "{text}");
            last = (y, m, d);
        }
    }
}
