//! Intake: from the raw request body to an event and the engine's decision. The HTTP handler
//! and `herald explain` both go through `parse_body` and `decide`.

pub mod event;
pub mod schema;

use std::fmt;

use jiff::Timestamp;
use serde_json::Value;

use crate::config::Generation;
use crate::rules::{self, Decision, EngineError};
use event::Event;
use schema::Violation;

/// Why a webhook was not accepted. Each variant maps to one HTTP status.
#[derive(Debug)]
pub enum IntakeError {
    /// 415: a content type other than JSON.
    UnsupportedMediaType(String),
    /// 400: the body is not UTF-8 JSON.
    InvalidJson {
        message: String,
        line: usize,
        column: usize,
    },
    /// 422: the payload violates a schema.
    Schema(Vec<Violation>),
    /// 422: the payload passed the schemas but cannot be read as an event.
    InvalidEvent(String),
    /// 422: a template or expression failed for this event.
    Engine(EngineError),
}

impl fmt::Display for IntakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntakeError::UnsupportedMediaType(found) => write!(
                f,
                "unsupported content type {found:?}: send the webhook as application/json"
            ),
            IntakeError::InvalidJson { message, .. } => {
                write!(f, "the body is not valid JSON: {message}")
            }
            IntakeError::Schema(violations) => write!(
                f,
                "the payload does not match its schema ({} error{})",
                violations.len(),
                if violations.len() == 1 { "" } else { "s" }
            ),
            IntakeError::InvalidEvent(message) => write!(f, "invalid event: {message}"),
            IntakeError::Engine(error) => {
                write!(f, "cannot render the messages for this event: {error}")
            }
        }
    }
}

impl std::error::Error for IntakeError {}

/// Checks the content type and parses the body as JSON. A missing content type is accepted;
/// a UTF-8 byte order mark is skipped.
pub fn parse_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, IntakeError> {
    if let Some(content_type) = content_type
        && !is_json_content_type(content_type)
    {
        return Err(IntakeError::UnsupportedMediaType(content_type.to_string()));
    }
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(IntakeError::InvalidJson {
            message: "the body is empty".into(),
            line: 1,
            column: 0,
        });
    }
    serde_json::from_slice(body).map_err(|error| IntakeError::InvalidJson {
        message: json_error_message(&error),
        line: error.line(),
        column: error.column(),
    })
}

/// serde_json's message without its trailing "at line L column C", which the caller reports
/// separately.
pub fn json_error_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    let suffix = format!(" at line {} column {}", error.line(), error.column());
    text.strip_suffix(&suffix)
        .map(str::to_string)
        .unwrap_or(text)
}

/// `application/json` or any `+json` type, with or without parameters such as charset. A
/// charset other than UTF-8 is rejected, because JSON on the wire is UTF-8.
fn is_json_content_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let media_type = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let json = media_type == "application/json"
        || (media_type.starts_with("application/") && media_type.ends_with("+json"));
    let charset_ok = parts.all(|parameter| match parameter.split_once('=') {
        Some((name, charset)) if name.trim().eq_ignore_ascii_case("charset") => {
            let charset = charset.trim().trim_matches('"');
            charset.eq_ignore_ascii_case("utf-8") || charset.eq_ignore_ascii_case("utf8")
        }
        _ => true,
    });
    json && charset_ok
}

/// Checks a payload against the schemas and runs it through the rules.
pub fn decide(
    generation: &Generation,
    payload: Value,
    now: Timestamp,
) -> Result<(Event, Decision), IntakeError> {
    generation
        .schemas
        .validate(&payload)
        .map_err(IntakeError::Schema)?;
    let event = Event::from_payload(payload).map_err(IntakeError::InvalidEvent)?;
    let decision = rules::evaluate(generation, &event, now).map_err(IntakeError::Engine)?;
    Ok((event, decision))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("application/json; charset=utf-8"));
        assert!(is_json_content_type("Application/JSON;charset=\"UTF-8\""));
        assert!(is_json_content_type("application/vnd.platform+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type("application/x-www-form-urlencoded"));
        assert!(!is_json_content_type("application/json; charset=latin1"));
    }

    #[test]
    fn body_with_bom_parses() {
        let value = parse_body(None, b"\xEF\xBB\xBF{\"a\": 1}").unwrap();
        assert_eq!(value["a"], 1);
    }

    #[test]
    fn invalid_json_has_position() {
        let Err(IntakeError::InvalidJson { line, column, .. }) =
            parse_body(Some("application/json"), b"{\n  \"a\": }")
        else {
            panic!("expected InvalidJson");
        };
        assert_eq!((line, column), (2, 8));
    }
}
