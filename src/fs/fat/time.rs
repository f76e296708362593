//! FAT timestamps. A FAT directory entry stores wall-clock readings without a zone: the
//! last write as date and time (2 s resolution), the creation as date, time and
//! hundredths (10 ms), the last access as a bare date. Which zone the guest's clock was
//! in is not recorded anywhere, so the user says it ([`FatTimeZone`]).

use std::fmt;
use std::str::FromStr;
use std::sync::Once;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The zone the guest's clock was in when it wrote FAT timestamps.
///
/// FAT times are shown as if they were UTC unless told otherwise (the default, like
/// Linux's `tz=UTC` mount option); `--fat-time-zone` says what zone the guest used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FatTimeZone {
    #[default]
    Utc,
    /// The zone of the machine ckptfs runs on, with its daylight-saving rules, applied
    /// at each timestamp's own date.
    Local,
    /// A fixed offset, in seconds east of UTC (`+01:00` is 3600).
    Offset(i32),
}

impl FromStr for FatTimeZone {
    type Err = String;

    /// `utc`, `local`, or an offset: `+01:00`, `-05:30`, `+0100`, `+01`.
    fn from_str(s: &str) -> Result<Self, String> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("z") {
            return Ok(FatTimeZone::Utc);
        }
        if t.eq_ignore_ascii_case("local") {
            return Ok(FatTimeZone::Local);
        }
        parse_offset(t)
            .map(FatTimeZone::Offset)
            .ok_or_else(|| format!("{s:?} is not a time zone: use utc, local, or an offset such as +01:00 or -05:30"))
    }
}

fn parse_offset(t: &str) -> Option<i32> {
    let (sign, rest) = match t.as_bytes().first()? {
        b'+' => (1, &t[1..]),
        b'-' => (-1, &t[1..]),
        _ => return None,
    };
    let (h, m) = match rest.split_once(':') {
        Some(hm) => hm,
        None if rest.len() == 4 => rest.split_at(2),
        None => (rest, "00"),
    };
    let digits = |s: &str, max_len| !s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(h, 2) || !digits(m, 2) || m.len() != 2 {
        return None;
    }
    let (h, m): (i32, i32) = (h.parse().ok()?, m.parse().ok()?);
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

impl fmt::Display for FatTimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            FatTimeZone::Utc => f.write_str("utc"),
            FatTimeZone::Local => f.write_str("local"),
            FatTimeZone::Offset(s) => {
                let sign = if s < 0 { '-' } else { '+' };
                let a = s.unsigned_abs();
                write!(f, "{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
            }
        }
    }
}

impl FatTimeZone {
    /// The instant that a FAT date, time and hundredths denote in this zone.
    pub(crate) fn instant(self, date: u16, time: u16, hundredths: u8) -> SystemTime {
        let wall = wall_seconds(date, time);
        let secs = wall - self.offset_at(wall) + i64::from(hundredths / 100);
        let nanos = u32::from(hundredths % 100) * 10_000_000;
        system_time(secs, nanos)
    }

    /// Seconds east of UTC in force at wall-clock reading `wall`.
    fn offset_at(self, wall: i64) -> i64 {
        match self {
            FatTimeZone::Utc => 0,
            FatTimeZone::Offset(s) => i64::from(s),
            // The offset in force at the instant, not at the wall-clock reading read as
            // UTC: a second pass corrects the first across a daylight-saving change.
            FatTimeZone::Local => {
                let first = local_offset(wall);
                local_offset(wall - first)
            }
        }
    }
}

/// Seconds since 1970 of a FAT date and time read as UTC, by the Linux kernel's formula
/// (`fat_time_fat2unix`), leniency included: month 0 counts as January, day 0 as the
/// 1st, months 13-15 add no days, hours up to 31 and minutes up to 63 are taken as they
/// are. Dates that no FAT driver writes still get the instant the kernel shows.
pub(crate) fn wall_seconds(date: u16, time: u16) -> i64 {
    // Days from January 1st to the 1st of each month (index 1 = January) in a common
    // year; 13-15 are invalid months that the kernel maps to 0.
    const DAYS_BEFORE: [i64; 16] = [0, 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334, 0, 0, 0];
    // 1970-01-01 to 1980-01-01, with the leap days of 1972 and 1976.
    const DAYS_1970_TO_1980: i64 = 365 * 10 + 2;
    // 2100 (year 120 of FAT's epoch) is the one year in range divisible by 4 that is
    // not a leap year.
    const YEAR_2100: i64 = 120;
    let year = i64::from(date >> 9);
    let month = i64::from((date >> 5) & 0xF).max(1);
    let day = i64::from(date & 0x1F).max(1) - 1;
    let mut leap_days = (year + 3) / 4;
    if year > YEAR_2100 {
        leap_days -= 1;
    }
    if year % 4 == 0 && year != YEAR_2100 && month > 2 {
        leap_days += 1;
    }
    let seconds = i64::from(time & 0x1F) * 2 + i64::from((time >> 5) & 0x3F) * 60 + i64::from(time >> 11) * 3600;
    seconds + (year * 365 + leap_days + DAYS_BEFORE[month as usize] + day + DAYS_1970_TO_1980) * 86400
}

pub(crate) fn system_time(secs: i64, nanos: u32) -> SystemTime {
    let base = if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    };
    base + Duration::from_nanos(u64::from(nanos))
}

extern "C" {
    // POSIX; not in the libc crate for every target.
    fn tzset();
}

/// Seconds east of UTC of this machine's zone at instant `t`.
fn local_offset(t: i64) -> i64 {
    static TZSET: Once = Once::new();
    // localtime_r, unlike localtime, need not read TZ itself.
    // SAFETY: tzset has no arguments; Once keeps it from racing with itself.
    TZSET.call_once(|| unsafe { tzset() });
    let Some(t) = libc::time_t::try_from(t).ok() else {
        return 0;
    };
    // SAFETY: an all-zero `tm` is a valid value of a plain C struct (its one pointer,
    // tm_zone, may be null), and localtime_r writes only into the `tm` passed to it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if ok {
        // c_long: 32 bits on some targets.
        #[allow(clippy::useless_conversion)]
        i64::from(tm.tm_gmtoff)
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(y: u16, m: u16, d: u16) -> u16 {
        ((y - 1980) << 9) | (m << 5) | d
    }

    fn time(h: u16, m: u16, s: u16) -> u16 {
        (h << 11) | (m << 5) | (s / 2)
    }

    fn secs(t: SystemTime) -> (i64, u32) {
        let d = t.duration_since(UNIX_EPOCH).unwrap();
        (d.as_secs() as i64, d.subsec_nanos())
    }

    #[test]
    fn wall_clock_readings_as_utc() {
        // 1980-01-01 00:00:00, FAT's epoch.
        assert_eq!(wall_seconds(date(1980, 1, 1), 0), 315_532_800);
        // 2024-02-29 12:34:56 (a leap day), `date -u -d ... +%s`.
        assert_eq!(wall_seconds(date(2024, 2, 29), time(12, 34, 56)), 1_709_210_096);
        // 2024-03-01, the day after.
        assert_eq!(wall_seconds(date(2024, 3, 1), 0), 1_709_251_200);
        // 2100 is not a leap year: 2100-03-01 follows 2100-02-28.
        assert_eq!(
            wall_seconds(date(2100, 3, 1), 0) - wall_seconds(date(2100, 2, 28), 0),
            86400
        );
        assert_eq!(wall_seconds(date(2100, 3, 1), 0), 4_107_542_400);
        // The last representable second: 2107-12-31 23:59:58.
        assert_eq!(wall_seconds(date(2107, 12, 31), time(23, 59, 58)), 4_354_819_198);
    }

    #[test]
    fn two_second_resolution_and_hundredths() {
        // The 5-bit seconds field counts pairs: an odd second cannot be stored.
        assert_eq!(time(10, 0, 59) & 0x1F, 29);
        let t = FatTimeZone::Utc.instant(date(2020, 6, 1), time(10, 0, 59), 0);
        assert_eq!(secs(t).0 % 60, 58);
        // The creation time's hundredths add up to 1.99 s, in 10 ms steps.
        let c = FatTimeZone::Utc.instant(date(2020, 6, 1), time(10, 0, 58), 199);
        assert_eq!(secs(c), (secs(t).0 + 1, 990_000_000));
        let c = FatTimeZone::Utc.instant(date(2020, 6, 1), time(10, 0, 58), 5);
        assert_eq!(secs(c), (secs(t).0, 50_000_000));
    }

    #[test]
    fn out_of_range_fields_follow_the_kernel() {
        // Month 0 and day 0 read as January 1st.
        assert_eq!(wall_seconds(0, 0), wall_seconds(date(1980, 1, 1), 0));
        // Month 13 adds no days (the kernel's table has 0 there)...
        assert_eq!(
            wall_seconds((1 << 9) | (13 << 5) | 1, 0),
            wall_seconds(date(1981, 1, 1), 0)
        );
        // ... but counts as after February for the leap day of a leap year.
        assert_eq!(wall_seconds((13 << 5) | 1, 0), wall_seconds(date(1980, 1, 2), 0));
        // Hour 31, minute 63, second 62: taken as they are.
        assert_eq!(
            wall_seconds(date(1980, 1, 1), 0xFFFF),
            315_532_800 + 31 * 3600 + 63 * 60 + 62
        );
    }

    #[test]
    fn zones_shift_the_instant() {
        let (d, t) = (date(2023, 7, 14), time(12, 0, 0));
        let utc = secs(FatTimeZone::Utc.instant(d, t, 0)).0;
        // 12:00 at +01:00 is 11:00 UTC; 12:00 at -05:30 is 17:30 UTC.
        assert_eq!(secs(FatTimeZone::Offset(3600).instant(d, t, 0)).0, utc - 3600);
        assert_eq!(secs(FatTimeZone::Offset(-19800).instant(d, t, 0)).0, utc + 19800);
        // Before 1970 is representable too (an offset east of UTC at FAT's epoch).
        let early = FatTimeZone::Offset(14 * 3600).instant(date(1980, 1, 1), 0, 0);
        assert_eq!(secs(early).0, 315_532_800 - 14 * 3600);
    }

    #[test]
    fn local_zone_uses_the_rules_in_force_at_each_date() {
        // Whatever zone this machine is in, Local must agree with localtime_r on both
        // sides of a daylight-saving change.
        for (d, t) in [(date(2023, 1, 15), time(12, 0, 0)), (date(2023, 7, 15), time(12, 0, 0))] {
            let got = secs(FatTimeZone::Local.instant(d, t, 0)).0;
            let wall = wall_seconds(d, t);
            assert_eq!(got + local_offset(got), wall);
        }
    }

    #[test]
    fn parses_and_prints_zones() {
        assert_eq!("utc".parse(), Ok(FatTimeZone::Utc));
        assert_eq!("UTC".parse(), Ok(FatTimeZone::Utc));
        assert_eq!("local".parse(), Ok(FatTimeZone::Local));
        assert_eq!("+01:00".parse(), Ok(FatTimeZone::Offset(3600)));
        assert_eq!("-05:30".parse(), Ok(FatTimeZone::Offset(-19800)));
        assert_eq!("+0545".parse(), Ok(FatTimeZone::Offset(20700)));
        assert_eq!("-03".parse(), Ok(FatTimeZone::Offset(-10800)));
        assert_eq!("+00:00".parse(), Ok(FatTimeZone::Offset(0)));
        for bad in [
            "",
            "+",
            "01:00",
            "+1:0",
            "+24:00",
            "+01:60",
            "+01:00:00",
            "cet",
            "+0a:00",
            "++01",
        ] {
            assert!(bad.parse::<FatTimeZone>().is_err(), "{bad:?} parsed");
        }
        for z in [
            FatTimeZone::Utc,
            FatTimeZone::Local,
            FatTimeZone::Offset(3600),
            FatTimeZone::Offset(-19800),
        ] {
            assert_eq!(z.to_string().parse(), Ok(z));
        }
        assert_eq!(FatTimeZone::Offset(-19800).to_string(), "-05:30");
        assert_eq!(FatTimeZone::default(), FatTimeZone::Utc);
    }
}
