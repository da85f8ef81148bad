//! JSON Schemas: `schemas/envelope.json` checks every webhook, and `schemas/<WebhookType>.json`
//! checks the types herald knows. Formats are asserted, and the `date-time-utc` format accepts
//! the platform's timestamps, which have no offset.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use jsonschema::error::ValidationErrorKind;
use jsonschema::{ValidationError, Validator};
use serde_json::Value;

use crate::config::ConfigError;
use crate::timezone;

/// The name of the custom format for UTC timestamps with an optional offset.
pub const DATE_TIME_UTC: &str = "date-time-utc";

const ENVELOPE_FILE: &str = "envelope.json";

/// Maximum number of violations reported for one payload.
const MAX_VIOLATIONS: usize = 50;

/// One schema violation: where in the payload, and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Violation {
    /// JSON pointer into the payload, such as `/Attributes/3/AttributeValue`.
    pub pointer: String,
    pub message: String,
}

struct TypeSchema {
    source: Value,
    validator: Validator,
    statuses: Option<Vec<String>>,
    examples: Vec<Value>,
}

/// The compiled schemas of one configuration generation.
pub struct Schemas {
    envelope_source: Value,
    envelope: Validator,
    by_type: HashMap<String, TypeSchema>,
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut types: Vec<&String> = self.by_type.keys().collect();
        types.sort();
        f.debug_struct("Schemas")
            .field("types", &types)
            .finish_non_exhaustive()
    }
}

impl Schemas {
    /// Loads every schema in `dir`; `envelope.json` is required.
    pub fn load(dir: &Path, errors: &mut Vec<ConfigError>) -> Option<Schemas> {
        let mut entries: Vec<_> = match fs::read_dir(dir) {
            Ok(read) => read
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .collect(),
            Err(error) => {
                errors.push(ConfigError::file(
                    dir,
                    format!("cannot read the schemas folder: {error}"),
                ));
                return None;
            }
        };
        entries.sort();

        let mut envelope = None;
        let mut by_type = HashMap::new();
        for path in entries {
            let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if file_name.starts_with('.') {
                continue;
            }
            let Some(stem) = file_name.strip_suffix(".json") else {
                errors.push(ConfigError::file(
                    &path,
                    "unexpected file: the schemas folder holds only .json files",
                ));
                continue;
            };
            let Some((source, validator)) = compile_file(&path, errors) else {
                continue;
            };
            if file_name == ENVELOPE_FILE {
                envelope = Some((source, validator));
                continue;
            }
            let statuses = source
                .pointer("/properties/Status/enum")
                .and_then(Value::as_array)
                .map(|values| {
                    values
                        .iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                });
            let examples = source
                .get("examples")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            for (index, example) in examples.iter().enumerate() {
                if let Err(violations) = check(&validator, &source, example) {
                    errors.push(ConfigError::file(
                        &path,
                        format!(
                            "examples[{index}] does not satisfy its own schema: {}",
                            violations
                                .iter()
                                .map(|v| format!("{} {}", v.pointer, v.message))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ),
                    ));
                }
            }
            by_type.insert(
                stem.to_string(),
                TypeSchema {
                    source,
                    validator,
                    statuses,
                    examples,
                },
            );
        }

        let Some((envelope_source, envelope)) = envelope else {
            errors.push(ConfigError::file(
                &dir.join(ENVELOPE_FILE),
                "missing: every webhook is checked against schemas/envelope.json",
            ));
            return None;
        };
        Some(Schemas {
            envelope_source,
            envelope,
            by_type,
        })
    }

    /// Checks a payload against the envelope and, when the type has one, its own schema.
    /// All violations of both are returned.
    pub fn validate(&self, payload: &Value) -> Result<(), Vec<Violation>> {
        let mut violations = check(&self.envelope, &self.envelope_source, payload)
            .err()
            .unwrap_or_default();
        let webhook_type = payload.get("WebhookType").and_then(Value::as_str);
        if let Some(schema) = webhook_type.and_then(|t| self.by_type.get(t))
            && let Err(more) = check(&schema.validator, &schema.source, payload)
        {
            for violation in more {
                if !violations.contains(&violation) {
                    violations.push(violation);
                }
            }
        }
        violations.truncate(MAX_VIOLATIONS);
        if violations.is_empty() {
            Ok(())
        } else {
            Err(violations)
        }
    }

    pub fn type_count(&self) -> usize {
        self.by_type.len()
    }

    pub fn has_type(&self, webhook_type: &str) -> bool {
        self.by_type.contains_key(webhook_type)
    }

    /// The `Status` values a type's schema enumerates, if it does.
    pub fn statuses(&self, webhook_type: &str) -> Option<&[String]> {
        self.by_type.get(webhook_type)?.statuses.as_deref()
    }

    /// The payloads under a type schema's `examples` keyword.
    pub fn examples(&self) -> Vec<(&str, &Value)> {
        let mut all: Vec<(&str, &Value)> = self
            .by_type
            .iter()
            .flat_map(|(name, schema)| schema.examples.iter().map(move |e| (name.as_str(), e)))
            .collect();
        all.sort_by_key(|(name, _)| *name);
        all
    }
}

fn compile_file(path: &Path, errors: &mut Vec<ConfigError>) -> Option<(Value, Validator)> {
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            errors.push(ConfigError::file(path, format!("cannot read: {error}")));
            return None;
        }
    };
    let source: Value = match serde_json::from_str(&text) {
        Ok(value) => value,
        Err(error) => {
            errors.push(ConfigError::at(
                path,
                error.line() as u64,
                "",
                format!(
                    "invalid JSON: {} (column {})",
                    crate::ingest::json_error_message(&error),
                    error.column()
                ),
            ));
            return None;
        }
    };
    match compile(&source) {
        Ok(validator) => Some((source, validator)),
        Err(error) => {
            errors.push(ConfigError::at(
                path,
                0,
                error.schema_path().as_str(),
                format!("invalid schema: {error}"),
            ));
            None
        }
    }
}

/// Compiles a schema with format assertion on and the `date-time-utc` format registered.
pub fn compile(source: &Value) -> Result<Validator, ValidationError<'static>> {
    jsonschema::options()
        .should_validate_formats(true)
        .with_format(DATE_TIME_UTC, |text: &str| {
            timezone::parse_timestamp(text).is_ok()
        })
        .with_pattern_options(jsonschema::PatternOptions::regex())
        .build(source)
}

fn check(validator: &Validator, source: &Value, payload: &Value) -> Result<(), Vec<Violation>> {
    let violations: Vec<Violation> = validator
        .iter_errors(payload)
        .take(MAX_VIOLATIONS)
        .map(|error| describe(&error, source, payload))
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

/// Words a violation so that an operator can act on it without reading the schema. Values
/// from the payload are never repeated, because they can be patient data.
fn describe(error: &ValidationError<'_>, source: &Value, payload: &Value) -> Violation {
    let pointer = error.instance_path().as_str().to_string();
    let attribute = attribute_name_at(&pointer, payload);
    let message = match error.kind() {
        ValidationErrorKind::Format { format } if format == DATE_TIME_UTC => format!(
            "{} is not a UTC date and time such as 2019-06-26T18:45:00",
            attribute
                .map(|a| format!("attribute {a}"))
                .unwrap_or_else(|| "value".into())
        ),
        ValidationErrorKind::Enum { options } => format!(
            "{} is not one of the allowed values: {}",
            attribute
                .map(|a| format!("attribute {a}"))
                .unwrap_or_else(|| "value".into()),
            options
                .as_array()
                .map(|values| values
                    .iter()
                    .map(|v| v
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string()))
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_else(|| options.to_string())
        ),
        ValidationErrorKind::Contains => match required_attribute(error, source) {
            Some(name) => format!("required attribute {name} is missing"),
            None => error.masked().to_string(),
        },
        _ => match attribute {
            Some(name) => format!("attribute {name}: {}", error.masked()),
            None => error.masked().to_string(),
        },
    };
    Violation { pointer, message }
}

/// For a pointer like `/Attributes/3/AttributeValue`, the `AttributeName` of that item.
fn attribute_name_at(pointer: &str, payload: &Value) -> Option<String> {
    let rest = pointer.strip_prefix("/Attributes/")?;
    let index = rest.split('/').next()?;
    let item = payload.pointer(&format!("/Attributes/{index}"))?;
    item.get("AttributeName")
        .and_then(Value::as_str)
        .map(str::to_string)
}

/// For a failed `contains` whose subschema pins `AttributeName` with `const`, that name.
fn required_attribute(error: &ValidationError<'_>, source: &Value) -> Option<String> {
    let subschema = source.pointer(error.schema_path().as_str())?;
    subschema
        .pointer("/properties/AttributeName/const")
        .and_then(Value::as_str)
        .map(str::to_string)
}
