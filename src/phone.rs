//! Phone numbers normalized to E.164 with a default region.
//!
//! phonenumber 0.3 serializes parsing behind a process-wide lock, so results are cached by
//! `(region, text)` and each event's number is parsed once, at intake.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, OnceLock};

use phonenumber::country;
use phonenumber::{Mode, PhoneNumber};

/// Entries kept in the normalization cache before it is cleared.
const CACHE_CAPACITY: usize = 10_000;

/// A default region for numbers written without a country code, such as `US` or `GB`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Region {
    id: country::Id,
    code: [u8; 2],
}

impl Region {
    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).unwrap_or("??")
    }

    /// Whether the region uses the North American Numbering Plan, whose international
    /// prefix is 011 rather than 00.
    fn is_nanp(self) -> bool {
        phonenumber::metadata::DATABASE
            .by_id(self.code())
            .is_some_and(|metadata| metadata.country_code() == 1)
    }
}

impl FromStr for Region {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let upper = text.trim().to_ascii_uppercase();
        let id = upper
            .parse::<country::Id>()
            .ok()
            .filter(|_| upper.len() == 2);
        let bytes = upper.as_bytes();
        id.map(|id| Region {
            id,
            code: [bytes[0], bytes[1]],
        })
        .ok_or_else(|| {
            format!("unknown phone region {text:?}: expected an ISO 3166-1 alpha-2 code such as US or GB")
        })
    }
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a phone number was not accepted. The text never contains the number itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PhoneError {
    Empty,
    NotANumber,
    Invalid { region: Region, reason: String },
}

impl fmt::Display for PhoneError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PhoneError::Empty => f.write_str("is empty"),
            PhoneError::NotANumber => f.write_str("is not a phone number"),
            PhoneError::Invalid { region, reason } => {
                write!(
                    f,
                    "is not a valid phone number with default region {region}: {reason}"
                )
            }
        }
    }
}

/// Normalizes a phone number to E.164 (`+14155552671`).
///
/// Accepts spaces, dots, dashes and brackets, a leading `+`, the international prefixes `00`
/// and `011`, a national trunk `0`, and bare national digits. A number that parses but is not
/// valid for its country (wrong length, unassigned range) is rejected.
pub fn normalize(text: &str, region: Region) -> Result<String, PhoneError> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(PhoneError::Empty);
    }
    let key = (region, trimmed.to_string());
    if let Some(hit) = cache().lock().ok().and_then(|map| map.get(&key).cloned()) {
        return hit;
    }

    let result = normalize_uncached(trimmed, region);
    if let Ok(mut map) = cache().lock() {
        if map.len() >= CACHE_CAPACITY {
            map.clear();
        }
        map.insert(key, result.clone());
    }
    result
}

type Cache = Mutex<HashMap<(Region, String), Result<String, PhoneError>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(|| Mutex::new(HashMap::new()))
}

fn normalize_uncached(text: &str, region: Region) -> Result<String, PhoneError> {
    if !text.chars().any(|c| c.is_ascii_digit()) {
        return Err(PhoneError::NotANumber);
    }
    if text.chars().any(|c| !is_phone_char(c)) {
        return Err(PhoneError::NotANumber);
    }

    let first = parse_valid(text, region);
    if first.is_ok() {
        return first;
    }

    // phonenumber only knows each region's own international prefix, so a number written
    // with the other common one (00 in North America, 011 elsewhere) is retried with a `+`.
    let digits_start = text.trim_start_matches(|c: char| !c.is_ascii_digit() && c != '+');
    let alternative = if region.is_nanp() {
        digits_start.strip_prefix("00")
    } else {
        digits_start.strip_prefix("011")
    };
    if let Some(rest) = alternative {
        let retried = parse_valid(&format!("+{rest}"), region);
        if retried.is_ok() {
            return retried;
        }
    }
    first
}

fn parse_valid(text: &str, region: Region) -> Result<String, PhoneError> {
    let number: PhoneNumber = phonenumber::parse(Some(region.id), text).map_err(|error| {
        let reason = match error {
            phonenumber::ParseError::TooLong => "the number is too long",
            phonenumber::ParseError::TooShortNsn | phonenumber::ParseError::TooShortAfterIdd => {
                "the number is too short"
            }
            phonenumber::ParseError::InvalidCountryCode => "the country code is unknown",
            _ => "no such number range in its country",
        };
        PhoneError::Invalid {
            region,
            reason: reason.to_string(),
        }
    })?;
    if !phonenumber::is_valid(&number) {
        return Err(PhoneError::Invalid {
            region,
            reason: "no such number range in its country".into(),
        });
    }
    Ok(number.format().mode(Mode::E164).to_string())
}

fn is_phone_char(c: char) -> bool {
    c.is_ascii_digit() || matches!(c, ' ' | '.' | '-' | '(' | ')' | '+' | '/' | '\u{a0}')
}

/// Loads phonenumber's metadata, which it otherwise does lazily on the first parse.
pub fn warm_up() {
    let _ = phonenumber::parse(Some(country::Id::US), "+14155552671");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us() -> Region {
        "US".parse().unwrap()
    }

    #[test]
    fn us_shapes() {
        assert_eq!(normalize("4155552671", us()), Ok("+14155552671".into()));
        assert_eq!(normalize("14155552671", us()), Ok("+14155552671".into()));
        assert_eq!(normalize("(415) 555-2671", us()), Ok("+14155552671".into()));
        assert_eq!(normalize("415.555.2671", us()), Ok("+14155552671".into()));
        assert_eq!(
            normalize("+1 415 555 2671", us()),
            Ok("+14155552671".into())
        );
    }

    #[test]
    fn international_prefixes_from_us() {
        assert_eq!(
            normalize("011 44 7911 123456", us()),
            Ok("+447911123456".into())
        );
        assert_eq!(
            normalize("0044 7911 123456", us()),
            Ok("+447911123456".into())
        );
    }

    #[test]
    fn rejections() {
        assert_eq!(normalize("", us()), Err(PhoneError::Empty));
        assert_eq!(normalize("call me", us()), Err(PhoneError::NotANumber));
        assert!(matches!(
            normalize("12345", us()),
            Err(PhoneError::Invalid { .. })
        ));
    }

    /// (text, default region, expected E.164 or the exact rejection).
    const CASES: &[(&str, &str, Result<&str, &str>)] = &[
        ("4155552671", "US", Ok("+14155552671")),
        ("14155552671", "US", Ok("+14155552671")),
        ("(415) 555-2671", "US", Ok("+14155552671")),
        ("415.555.2671", "US", Ok("+14155552671")),
        ("415-555-2671", "US", Ok("+14155552671")),
        ("+1 (415) 555 2671", "US", Ok("+14155552671")),
        ("1-415-555-2671", "US", Ok("+14155552671")),
        ("011 44 7911 123456", "US", Ok("+447911123456")),
        ("0044 7911 123456", "US", Ok("+447911123456")),
        ("07911 123456", "GB", Ok("+447911123456")),
        ("+44 (0)7911 123456", "GB", Ok("+447911123456")),
        ("00 1 415 555 2671", "GB", Ok("+14155552671")),
        ("011 1 415 555 2671", "GB", Ok("+14155552671")),
        ("030 123456", "DE", Ok("+4930123456")),
        ("+49 30 123456", "US", Ok("+4930123456")),
        ("0412 345 678", "AU", Ok("+61412345678")),
        ("6135550123", "CA", Ok("+16135550123")),
        ("", "US", Err("is empty")),
        ("   ", "US", Err("is empty")),
        ("n/a", "US", Err("is not a phone number")),
        ("415-555-2671 ext. 3", "US", Err("is not a phone number")),
        (
            "12345",
            "US",
            Err(
                "is not a valid phone number with default region US: no such number range in its country",
            ),
        ),
        (
            "0000000000",
            "US",
            Err(
                "is not a valid phone number with default region US: no such number range in its country",
            ),
        ),
        (
            "1415555267123456789",
            "US",
            Err("is not a valid phone number with default region US: the number is too long"),
        ),
    ];

    #[test]
    fn normalization_table() {
        for (text, region, expected) in CASES {
            let region: Region = region.parse().unwrap();
            let result = normalize(text, region).map_err(|error| error.to_string());
            let expected = expected.map(str::to_string).map_err(str::to_string);
            assert_eq!(result, expected, "{text:?} in {region}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

        #[test]
        fn never_panics_and_is_idempotent(text in "[0-9 +().\\-]{0,20}|\\PC{0,20}") {
            let region = us();
            if let Ok(number) = normalize(&text, region) {
                proptest::prop_assert_eq!(normalize(&number, region), Ok(number.clone()));
                proptest::prop_assert!(number.starts_with('+'));
            }
        }
    }

    #[test]
    fn region_parse() {
        assert_eq!("gb".parse::<Region>().unwrap().code(), "GB");
        assert!("XX".parse::<Region>().unwrap_err().contains("\"XX\""));
    }
}
