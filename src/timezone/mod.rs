//! Time zones and timestamps: Windows zone IDs mapped to IANA zones, the platform's timestamp
//! format, and local-time rendering with the abbreviation in force at an instant.

mod windows_zones;

use jiff::tz::TimeZone;
use jiff::{Timestamp, civil};

pub use windows_zones::WINDOWS_ZONES;

/// The format used when a template does not pass one: `Wednesday, June 26, 2019 at 11:45 AM PDT`.
pub const DEFAULT_FORMAT: &str = "%A, %B %-d, %Y at %-I:%M %p %Z";

/// A zone resolved from the name a payload or a template gave.
#[derive(Clone, Debug)]
pub struct Zone {
    /// The IANA name, such as `America/Los_Angeles`.
    pub iana: String,
    pub tz: TimeZone,
}

/// Looks up a Windows time zone ID, ignoring ASCII case and surrounding whitespace.
pub fn windows_to_iana(windows_id: &str) -> Option<&'static str> {
    let wanted = windows_id.trim();
    WINDOWS_ZONES
        .iter()
        .find(|(windows, _)| windows.eq_ignore_ascii_case(wanted))
        .map(|(_, iana)| *iana)
}

/// Resolves a Windows time zone ID or an IANA zone name.
///
/// Windows IDs are tried first because some of them ("UTC") are also IANA names, and
/// CLDR's mapping is what the sending platform means by them.
pub fn resolve(name: &str) -> Result<Zone, String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err("the time zone is empty".into());
    }
    let iana = windows_to_iana(trimmed).unwrap_or(trimmed);
    match TimeZone::get(iana) {
        Ok(tz) => Ok(Zone {
            iana: iana.to_string(),
            tz,
        }),
        Err(_) => Err(format!(
            "unknown time zone {trimmed:?}: expected a Windows time zone ID such as \"Pacific Standard Time\" or an IANA name such as \"America/Los_Angeles\""
        )),
    }
}

/// Parses a UTC timestamp as the platform writes it (`2019-06-14T05:52:01`), also accepting a
/// fraction of a second and a trailing `Z` or UTC offset. A value without an offset is UTC.
pub fn parse_timestamp(text: &str) -> Result<Timestamp, String> {
    let trimmed = text.trim();
    let invalid = || {
        format!(
            "invalid timestamp {text:?}: expected a UTC date and time such as 2019-06-14T05:52:01, optionally with a fraction and a Z or an offset"
        )
    };
    if !looks_like_timestamp(trimmed) {
        return Err(invalid());
    }
    if has_offset(trimmed) {
        return trimmed.parse::<Timestamp>().map_err(|_| invalid());
    }
    let datetime: civil::DateTime = trimmed.parse().map_err(|_| invalid())?;
    datetime
        .to_zoned(TimeZone::UTC)
        .map(|zoned| zoned.timestamp())
        .map_err(|_| invalid())
}

/// Checks the exact shape `YYYY-MM-DDTHH:MM:SS[.f+][Z|±HH:MM]`, so that looser ISO 8601 forms
/// that jiff accepts (a space separator, a missing seconds field) are rejected.
fn looks_like_timestamp(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        bytes
            .get(range.clone())
            .is_some_and(|part| part.iter().all(u8::is_ascii_digit))
    };
    let shape = bytes.len() >= 19
        && digits(0..4)
        && bytes[4] == b'-'
        && digits(5..7)
        && bytes[7] == b'-'
        && digits(8..10)
        && (bytes[10] == b'T' || bytes[10] == b't')
        && digits(11..13)
        && bytes[13] == b':'
        && digits(14..16)
        && bytes[16] == b':'
        && digits(17..19);
    if !shape {
        return false;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let count = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if count == 0 || count > 9 {
            return false;
        }
        rest = &fraction[count..];
    }
    match rest.as_bytes() {
        [] | [b'Z'] | [b'z'] => true,
        [sign, h1, h2, b':', m1, m2] => {
            (*sign == b'+' || *sign == b'-') && [h1, h2, m1, m2].iter().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

fn has_offset(text: &str) -> bool {
    let tail = &text[19..];
    tail.ends_with('Z') || tail.ends_with('z') || tail.contains('+') || tail.contains('-')
}

/// Formats an instant as RFC 3339 in UTC with a `Z`, to the second when there is no fraction.
pub fn format_utc(timestamp: Timestamp) -> String {
    timestamp.strftime("%Y-%m-%dT%H:%M:%S%.fZ").to_string()
}

/// Formats an instant as RFC 3339 in UTC, to the second.
pub fn format_utc_seconds(timestamp: Timestamp) -> String {
    timestamp.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Renders an instant in a zone with a strftime format (jiff's directives; `%Z` is the
/// abbreviation in force at that instant, such as PDT or PST).
pub fn format_local(timestamp: Timestamp, zone: &TimeZone, format: &str) -> Result<String, String> {
    let zoned = timestamp.to_zoned(zone.clone());
    jiff::fmt::strtime::format(format, &zoned)
        .map_err(|error| format!("invalid time format {format:?}: {error}"))
}

#[cfg(test)]
mod tests;
