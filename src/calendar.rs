//! Calendar: the quota day in the reset time zone — which calendar date an instant belongs to,
//! when a date starts, and when the next reset comes (the next local midnight, DST-aware; where a
//! zone skips midnight, the first instant of the day).
//!
//! Pure: no I/O, and no clock — every function takes `now` (or the date) from the caller.

use chrono::{DateTime, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The quota day of `now`: its calendar date in `tz`.
pub fn quota_day_at(tz: Tz, now: DateTime<Utc>) -> NaiveDate {
    now.with_timezone(&tz).date_naive()
}

/// The first instant of local date `day` in `tz`: local midnight, the earlier one if midnight
/// happens twice, the end of the gap if the zone skips midnight.
pub fn start_of_day(tz: Tz, day: NaiveDate) -> DateTime<Tz> {
    let midnight = day.and_time(NaiveTime::MIN);
    match tz.from_local_datetime(&midnight) {
        LocalResult::Single(t) => t,
        LocalResult::Ambiguous(a, b) => a.min(b),
        LocalResult::None => {
            // Midnight falls in a DST gap: the day starts at the first local minute that exists.
            (1..=24 * 60)
                .find_map(|m| {
                    let local = midnight.checked_add_signed(Duration::minutes(m))?;
                    tz.from_local_datetime(&local).earliest()
                })
                .unwrap_or_else(|| tz.from_utc_datetime(&midnight))
        }
    }
}

/// The next reset after `now`: the start of the day after `now`'s quota day.
pub fn next_reset_at(tz: Tz, now: DateTime<Utc>) -> DateTime<Tz> {
    let today = quota_day_at(tz, now);
    start_of_day(tz, today.succ_opt().unwrap_or(today))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::Timelike;

    const LA: Tz = chrono_tz::America::Los_Angeles;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn quota_day_and_reset_around_pacific_midnight() {
        // (now in UTC, expected quota day, expected next reset in UTC)
        let cases = [
            // Winter (PST, UTC-8): Pacific midnight is 08:00 UTC.
            (utc(2026, 11, 23, 7, 59, 59), date(2026, 11, 22), utc(2026, 11, 23, 8, 0, 0)),
            (utc(2026, 11, 23, 8, 0, 0), date(2026, 11, 23), utc(2026, 11, 24, 8, 0, 0)),
            // UTC midnight is not the reset.
            (utc(2026, 11, 23, 0, 0, 0), date(2026, 11, 22), utc(2026, 11, 23, 8, 0, 0)),
            // Summer (PDT, UTC-7): 07:00 UTC.
            (utc(2026, 7, 4, 6, 59, 59), date(2026, 7, 3), utc(2026, 7, 4, 7, 0, 0)),
            (utc(2026, 7, 4, 7, 0, 0), date(2026, 7, 4), utc(2026, 7, 5, 7, 0, 0)),
        ];
        for (now, day, reset) in cases {
            assert_eq!(quota_day_at(LA, now), day, "day at {now}");
            assert_eq!(next_reset_at(LA, now).with_timezone(&Utc), reset, "reset at {now}");
        }
    }

    #[test]
    fn dst_spring_forward_2027() {
        // 2027-03-14: clocks jump from 02:00 PST to 03:00 PDT; the day has 23 hours.
        let start = start_of_day(LA, date(2027, 3, 14));
        let end = start_of_day(LA, date(2027, 3, 15));
        assert_eq!(start.with_timezone(&Utc), utc(2027, 3, 14, 8, 0, 0));
        assert_eq!(end.with_timezone(&Utc), utc(2027, 3, 15, 7, 0, 0));
        assert_eq!((end - start).num_hours(), 23);
        assert_eq!(end.to_rfc3339(), "2027-03-15T00:00:00-07:00");
        // Midnight before the change: one second before it is still 03-13.
        assert_eq!(quota_day_at(LA, utc(2027, 3, 14, 7, 59, 59)), date(2027, 3, 13));
        assert_eq!(quota_day_at(LA, utc(2027, 3, 14, 8, 0, 0)), date(2027, 3, 14));
        // Midnight after the change: 07:00 UTC, not 08:00.
        assert_eq!(quota_day_at(LA, utc(2027, 3, 15, 6, 59, 59)), date(2027, 3, 14));
        assert_eq!(quota_day_at(LA, utc(2027, 3, 15, 7, 0, 0)), date(2027, 3, 15));
        // Not naive: 24 h after the day's start is already 01:00 on the 15th.
        let naive = start + Duration::hours(24);
        assert_eq!(naive.hour(), 1);
        assert_ne!(next_reset_at(LA, utc(2027, 3, 14, 8, 30, 0)), naive);
        assert_eq!(next_reset_at(LA, utc(2027, 3, 14, 8, 30, 0)), end);
        // Just after the jump (03:00 PDT = 10:00 UTC) the reset is the same midnight.
        assert_eq!(next_reset_at(LA, utc(2027, 3, 14, 10, 0, 0)), end);
    }

    #[test]
    fn dst_fall_back_2027() {
        // 2027-11-07: clocks fall from 02:00 PDT to 01:00 PST; the day has 25 hours.
        let start = start_of_day(LA, date(2027, 11, 7));
        let end = start_of_day(LA, date(2027, 11, 8));
        assert_eq!(start.with_timezone(&Utc), utc(2027, 11, 7, 7, 0, 0));
        assert_eq!(end.with_timezone(&Utc), utc(2027, 11, 8, 8, 0, 0));
        assert_eq!((end - start).num_hours(), 25);
        assert_eq!(end.to_rfc3339(), "2027-11-08T00:00:00-08:00");
        assert_eq!(quota_day_at(LA, utc(2027, 11, 7, 6, 59, 59)), date(2027, 11, 6));
        assert_eq!(quota_day_at(LA, utc(2027, 11, 8, 7, 59, 59)), date(2027, 11, 7));
        assert_eq!(quota_day_at(LA, utc(2027, 11, 8, 8, 0, 0)), date(2027, 11, 8));
        // 24 h after the start is 23:00 on the 7th, still the same quota day.
        let naive = start + Duration::hours(24);
        assert_eq!(quota_day_at(LA, naive.with_timezone(&Utc)), date(2027, 11, 7));
        // Both 01:30s of the repeated hour have the same reset.
        let first = utc(2027, 11, 7, 8, 30, 0);
        let second = utc(2027, 11, 7, 9, 30, 0);
        assert_eq!(first.with_timezone(&LA).hour(), 1);
        assert_eq!(second.with_timezone(&LA).hour(), 1);
        assert_eq!(next_reset_at(LA, first), end);
        assert_eq!(next_reset_at(LA, second), end);
    }

    #[test]
    fn zone_that_skips_midnight() {
        // America/Santiago springs forward at 24:00 on 2027-09-04: 2027-09-05 starts at 01:00.
        let tz = chrono_tz::America::Santiago;
        let start = start_of_day(tz, date(2027, 9, 5));
        assert_eq!(start.date_naive(), date(2027, 9, 5));
        assert_eq!(start.hour(), 1);
        assert_eq!(start.with_timezone(&Utc), utc(2027, 9, 5, 4, 0, 0));
        let just_before = start.with_timezone(&Utc) - Duration::seconds(1);
        assert_eq!(quota_day_at(tz, just_before), date(2027, 9, 4));
        assert_eq!(next_reset_at(tz, just_before), start);
    }

    #[test]
    fn utc_and_other_zones() {
        let tz = chrono_tz::UTC;
        assert_eq!(
            next_reset_at(tz, utc(2026, 11, 22, 23, 59, 59)),
            tz.with_ymd_and_hms(2026, 11, 23, 0, 0, 0).unwrap()
        );
        let tokyo = chrono_tz::Asia::Tokyo;
        assert_eq!(quota_day_at(tokyo, utc(2026, 11, 22, 15, 0, 0)), date(2026, 11, 23));
    }
}
