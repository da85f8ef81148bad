//! Filters herald adds to minijinja: local time in a recipient's zone, E.164 phone numbers and
//! timestamp arithmetic.

use minijinja::{Environment, Error, ErrorKind};

use super::FilterSettings;
use crate::config::duration::parse_duration;
use crate::phone;
use crate::timezone;

pub(super) fn register(env: &mut Environment<'static>, settings: &FilterSettings) {
    let default_zone = settings.default_zone.clone();
    env.add_filter(
        "local_time",
        move |value: &str, zone: Option<&str>, format: Option<&str>| -> Result<String, Error> {
            let instant = timezone::parse_timestamp(value).map_err(invalid)?;
            let zone = match zone {
                Some(name) => timezone::resolve(name).map_err(invalid)?,
                None => default_zone.clone(),
            };
            let format = format.unwrap_or(timezone::DEFAULT_FORMAT);
            timezone::format_local(instant, &zone.tz, format).map_err(invalid)
        },
    );

    let region = settings.phone_region;
    env.add_filter(
        "e164",
        move |value: &str, region_override: Option<&str>| -> Result<String, Error> {
            let region = match region_override {
                Some(code) => code.parse().map_err(invalid)?,
                None => region,
            };
            phone::normalize(value, region)
                .map_err(|error| invalid(format!("the phone number {error}")))
        },
    );

    env.add_filter(
        "add_duration",
        |value: &str, duration: &str| -> Result<String, Error> {
            let instant = timezone::parse_timestamp(value).map_err(invalid)?;
            let (negative, text) = match duration.trim().strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, duration.trim().trim_start_matches('+')),
            };
            let amount = parse_duration(text).map_err(invalid)?;
            let signed =
                jiff::SignedDuration::try_from(amount).map_err(|e| invalid(e.to_string()))?;
            let shifted = if negative {
                instant.checked_sub(signed)
            } else {
                instant.checked_add(signed)
            }
            .map_err(|error| invalid(error.to_string()))?;
            Ok(timezone::format_utc(shifted))
        },
    );
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}
