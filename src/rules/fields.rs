//! Field values of one event: the mapped attributes, checked and normalized once.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::model::{FieldMap, well_known};
use crate::config::Defaults;
use crate::ingest::event::Event;
use crate::message::address::normalize_address;
use crate::phone;
use crate::timezone::{self, Zone};

/// The state of one mapped field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue {
    /// Present, and normalized for well-known fields (an E.164 number, an ASCII-domain
    /// address, an IANA zone, an RFC 3339 time).
    Value(String),
    /// The attribute is present but empty.
    Empty,
    /// The payload has no such attribute.
    Absent,
    /// Present but unusable, with the reason (which never repeats the value).
    Invalid(String),
}

/// One mapped field and the attribute it came from.
#[derive(Clone, Debug)]
pub struct Field {
    pub attribute: String,
    pub value: FieldValue,
}

/// Every mapped field of one event, plus the values the engine derives from them.
#[derive(Clone, Debug, Default)]
pub struct Fields {
    pub fields: BTreeMap<String, Field>,
    /// The recipient's zone; the default zone when the payload's is empty or unknown.
    pub zone: Option<Zone>,
    pub session_time: Option<Timestamp>,
    /// Problems with the payload's values that did not stop the event, such as a time zone
    /// fallback. None of them contains patient data.
    pub warnings: Vec<String>,
}

impl Fields {
    /// The usable value of a field, if it has one.
    pub fn value(&self, name: &str) -> Option<&str> {
        match self.fields.get(name).map(|f| &f.value) {
            Some(FieldValue::Value(value)) => Some(value),
            _ => None,
        }
    }

    /// Why a field has no usable value, as a phrase naming the attribute, such as
    /// "RecipientSmsNumber is empty". `None` when the field has a value.
    pub fn why_unusable(&self, name: &str) -> Option<String> {
        let Some(field) = self.fields.get(name) else {
            return Some(format!("field {name} is not mapped for this webhook type"));
        };
        match &field.value {
            FieldValue::Value(_) => None,
            FieldValue::Empty => Some(format!("{} is empty", field.attribute)),
            FieldValue::Absent => Some(format!("{} is not in the payload", field.attribute)),
            FieldValue::Invalid(reason) => Some(format!("{} {reason}", field.attribute)),
        }
    }
}

/// Resolves the mapped fields of an event.
pub fn resolve(event: &Event, map: Option<&FieldMap>, defaults: &Defaults) -> Fields {
    let mut resolved = Fields::default();
    if let Some(map) = map {
        for (name, attribute) in &map.fields {
            let value = match event.attribute(attribute) {
                None => FieldValue::Absent,
                Some(raw) if raw.trim().is_empty() => FieldValue::Empty,
                Some(raw) => normalize(name, raw, defaults),
            };
            resolved.fields.insert(
                name.clone(),
                Field {
                    attribute: attribute.clone(),
                    value,
                },
            );
        }
    }

    resolved.session_time = resolved
        .value(well_known::SESSION_TIME)
        .and_then(|text| timezone::parse_timestamp(text).ok());

    resolved.zone = match resolved.fields.get(well_known::TIME_ZONE) {
        None => None,
        Some(field) => match &field.value {
            FieldValue::Value(iana) => timezone::resolve(iana).ok(),
            other => {
                let why = match other {
                    FieldValue::Invalid(reason) => reason.clone(),
                    FieldValue::Empty => "is empty".into(),
                    _ => "is not in the payload".into(),
                };
                resolved.warnings.push(format!(
                    "time zone fallback: {} {why}; times are shown in the default zone {}",
                    field.attribute, defaults.time_zone.iana
                ));
                Some(defaults.time_zone.clone())
            }
        },
    };
    if let Some(warning) = check_local_time(&resolved) {
        resolved.warnings.push(warning);
    }
    resolved
}

/// Compares the payload's local session time with the one computed from the UTC time and
/// the zone. The computed time is what templates show; a mismatch only warns.
fn check_local_time(fields: &Fields) -> Option<String> {
    let utc = fields.session_time?;
    let zone = fields.zone.as_ref()?;
    let field = fields.fields.get(well_known::SESSION_TIME_LOCAL)?;
    let FieldValue::Value(text) = &field.value else {
        return None;
    };
    let given: jiff::civil::DateTime = text.trim_end_matches('Z').parse().ok()?;
    let computed = utc.to_zoned(zone.tz.clone()).datetime();
    if given == computed {
        return None;
    }
    let difference = given.duration_since(computed);
    Some(format!(
        "{} differs from the session time computed in the recipient's zone by {}; the computed time is used",
        field.attribute,
        crate::config::duration::format_signed(difference)
    ))
}

fn normalize(name: &str, raw: &str, defaults: &Defaults) -> FieldValue {
    match name {
        well_known::EMAIL => match normalize_address(raw) {
            Ok(address) => FieldValue::Value(address),
            Err(reason) => FieldValue::Invalid(reason),
        },
        well_known::SMS => match phone::normalize(raw, defaults.phone_region) {
            Ok(number) => FieldValue::Value(number),
            Err(error) => FieldValue::Invalid(error.to_string()),
        },
        well_known::TIME_ZONE => match timezone::resolve(raw) {
            Ok(zone) => FieldValue::Value(zone.iana),
            Err(_) => {
                FieldValue::Invalid("is not a known Windows time zone ID or IANA zone name".into())
            }
        },
        well_known::SESSION_TIME_LOCAL => match raw.trim().parse::<jiff::civil::DateTime>() {
            Ok(_) => FieldValue::Value(raw.trim().to_string()),
            Err(_) => FieldValue::Invalid("is not a date and time".into()),
        },
        well_known::SESSION_TIME => match timezone::parse_timestamp(raw) {
            Ok(instant) => FieldValue::Value(timezone::format_utc(instant)),
            Err(_) => FieldValue::Invalid("is not a UTC date and time".into()),
        },
        well_known::LOCALE => FieldValue::Value(crate::templates::normalize_locale(raw)),
        _ => FieldValue::Value(raw.trim().to_string()),
    }
}
