//! A webhook payload that passed its schema, read into a typed event.

use jiff::Timestamp;
use serde_json::Value;

use crate::timezone;

/// One name/value pair of the payload's `Attributes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: String,
}

/// A received webhook.
#[derive(Clone, Debug)]
pub struct Event {
    pub webhook_type: String,
    /// The payload's `ID`: the recipient's user id for `NOTIFY_*` types, the session id for
    /// `SESSION_STATUS`.
    pub id: i64,
    pub status: String,
    pub event_ts: Option<Timestamp>,
    pub attributes: Vec<Attribute>,
    pub payload: Value,
}

impl Event {
    /// Reads the envelope fields. The schemas have already checked the shape; this repeats
    /// the checks the engine relies on so that a permissive operator schema cannot crash it.
    pub fn from_payload(payload: Value) -> Result<Event, String> {
        let webhook_type = payload
            .get("WebhookType")
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
            .ok_or("WebhookType is missing or not a non-empty string")?
            .to_string();
        let id = payload
            .get("ID")
            .and_then(Value::as_i64)
            .ok_or("ID is missing or not an integer")?;
        let status = payload
            .get("Status")
            .and_then(Value::as_str)
            .ok_or("Status is missing or not a string")?
            .to_string();
        let event_ts = match payload.get("EventTs") {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(timezone::parse_timestamp(text).map_err(|_| {
                "EventTs is not a UTC date and time such as 2019-06-14T05:52:01".to_string()
            })?),
            Some(_) => return Err("EventTs is not a string".into()),
        };
        let attributes = read_attributes(payload.get("Attributes"))?;
        Ok(Event {
            webhook_type,
            id,
            status,
            event_ts,
            attributes,
            payload,
        })
    }

    /// The value of the first attribute with this name.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|attribute| attribute.name == name)
            .map(|attribute| attribute.value.as_str())
    }
}

fn read_attributes(value: Option<&Value>) -> Result<Vec<Attribute>, String> {
    let items = match value {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(items)) => items,
        Some(_) => return Err("Attributes is not an array".into()),
    };
    let mut attributes: Vec<Attribute> = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let name = item
            .get("AttributeName")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                format!("Attributes[{index}].AttributeName is missing or not a string")
            })?;
        let value = match item.get("AttributeValue") {
            Some(Value::String(text)) => text.clone(),
            None | Some(Value::Null) => String::new(),
            Some(_) => {
                return Err(format!(
                    "Attributes[{index}].AttributeValue ({name}) is not a string"
                ));
            }
        };
        if let Some(earlier) = attributes.iter().find(|a| a.name == name) {
            if earlier.value != value {
                return Err(format!(
                    "attribute {name} appears twice with different values; send each attribute once"
                ));
            }
            continue;
        }
        attributes.push(Attribute {
            name: name.to_string(),
            value,
        });
    }
    Ok(attributes)
}
