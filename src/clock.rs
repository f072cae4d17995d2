//! Wall-clock time in the one format the API speaks: RFC 3339, UTC, milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// `2026-11-22T06:12:34.123Z`: fixed width, so string order is time order.
pub fn format_ms(ms: i64) -> String {
    let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return "1970-01-01T00:00:00.000Z".to_owned();
    };
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

pub fn now_rfc3339() -> String {
    format_ms(now_ms())
}

/// Parses any RFC 3339 timestamp and returns it in canonical form, so stored
/// datetimes compare correctly as strings.
pub fn normalize_rfc3339(text: &str) -> Option<String> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    let ms = at.to_offset(UtcOffset::UTC).unix_timestamp_nanos() / 1_000_000;
    Some(format_ms(i64::try_from(ms).ok()?))
}

/// Parses a canonical timestamp back to epoch milliseconds.
pub fn parse_ms(text: &str) -> Option<i64> {
    let at = OffsetDateTime::parse(text, &Rfc3339).ok()?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Durations in settings and retention: `90`, `90s`, `15m`, `1h`, `7d`.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let amount: u64 = digits.parse().ok()?;
    let seconds = match unit.trim() {
        "" | "s" => amount,
        "ms" => return Some(std::time::Duration::from_millis(amount)),
        "m" => amount.checked_mul(60)?,
        "h" => amount.checked_mul(3600)?,
        "d" => amount.checked_mul(86_400)?,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(seconds))
}

/// The shortest exact text for a duration in the units `parse_duration`
/// reads, so a setting shown to a user reads back to the same value.
pub fn format_duration(duration: std::time::Duration) -> String {
    let ms = duration.as_millis();
    if ms % 1000 != 0 {
        return format!("{ms}ms");
    }
    let seconds = ms / 1000;
    for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if seconds > 0 && seconds % size == 0 {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_format_is_fixed_width_utc() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_ms(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn normalizes_offsets_to_utc() {
        assert_eq!(
            normalize_rfc3339("2024-01-01T02:00:00+02:00").as_deref(),
            Some("2024-01-01T00:00:00.000Z")
        );
        assert_eq!(normalize_rfc3339("yesterday"), None);
        assert_eq!(parse_ms("1970-01-01T00:00:01.500Z"), Some(1500));
    }

    #[test]
    fn durations_format_back_to_themselves() {
        for text in ["90s", "15m", "1h", "30d", "250ms", "0s", "25h"] {
            let duration = parse_duration(text).unwrap();
            assert_eq!(parse_duration(&format_duration(duration)), Some(duration));
        }
        assert_eq!(format_duration(std::time::Duration::from_secs(7200)), "2h");
        assert_eq!(format_duration(std::time::Duration::from_secs(90)), "90s");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("7d").map(|d| d.as_secs()), Some(604_800));
        assert_eq!(parse_duration("90").map(|d| d.as_secs()), Some(90));
        assert_eq!(parse_duration("1h").map(|d| d.as_secs()), Some(3600));
        assert_eq!(parse_duration("250ms").map(|d| d.as_millis()), Some(250));
        assert_eq!(parse_duration("7 weeks"), None);
        assert_eq!(parse_duration(""), None);
    }
}
