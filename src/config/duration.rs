//! Durations as written in `rules.yaml`: `90s`, `15m`, `2h`, `7d`, `1h30m`, `250ms`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A duration read from the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConfigDuration(pub Duration);

impl ConfigDuration {
    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn as_signed(self) -> jiff::SignedDuration {
        jiff::SignedDuration::try_from(self.0).unwrap_or(jiff::SignedDuration::MAX)
    }
}

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text)
            .map(ConfigDuration)
            .map_err(serde::de::Error::custom)
    }
}

/// Parses a sequence of `<integer><unit>` terms, where the unit is `ms`, `s`, `m`, `h` or `d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(
            "invalid duration \"\": expected a number and a unit, such as 30s, 15m, 2h or 7d"
                .into(),
        );
    }
    let invalid = || {
        format!(
            "invalid duration {text:?}: expected terms such as 30s, 15m, 2h, 7d or 1h30m (units: ms, s, m, h, d)"
        )
    };

    let mut total = Duration::ZERO;
    let mut rest = trimmed;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let value: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit_seconds = match &rest[..unit_len] {
            "ms" => None,
            "s" => Some(1),
            "m" => Some(60),
            "h" => Some(3_600),
            "d" => Some(86_400),
            _ => return Err(invalid()),
        };
        rest = rest[unit_len..].trim_start();
        let term = match unit_seconds {
            None => Duration::from_millis(value),
            Some(seconds) => value
                .checked_mul(seconds)
                .map(Duration::from_secs)
                .ok_or_else(invalid)?,
        };
        total = total.checked_add(term).ok_or_else(invalid)?;
    }
    Ok(total)
}

/// Formats a duration the way `parse_duration` reads it, largest units first.
pub fn format_duration(duration: Duration) -> String {
    let mut seconds = duration.as_secs();
    let millis = duration.subsec_millis();
    if seconds == 0 && millis == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            out.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    if millis > 0 {
        out.push_str(&format!("{millis}ms"));
    }
    out
}

/// Formats a signed duration such as an event age; negative values get a leading `-`, and
/// durations of a second or more are shown to the second.
pub fn format_signed(duration: jiff::SignedDuration) -> String {
    let magnitude = duration.unsigned_abs();
    let magnitude = if magnitude >= Duration::from_secs(1) {
        Duration::from_secs(magnitude.as_secs())
    } else {
        magnitude
    };
    let text = format_duration(magnitude);
    if duration.is_negative() {
        format!("-{text}")
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_single_units() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7_200)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(604_800)));
    }

    #[test]
    fn parse_compound() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5_400)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5_400)));
    }

    #[test]
    fn parse_rejects_bad_text() {
        for text in ["", "5", "m", "5 minutes", "-5m", "1.5h", "5w"] {
            let error = parse_duration(text).unwrap_err();
            assert!(error.starts_with("invalid duration"), "{text}: {error}");
        }
    }

    #[test]
    fn format_round_trips() {
        for text in ["0s", "250ms", "30s", "15m", "2h", "7d", "1h30m", "1d2h3m4s"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
