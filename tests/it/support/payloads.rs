//! Webhook payloads for tests, with times relative to now so that the default rules' age and
//! expiry checks pass.

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

/// A UTC time in the platform's format (no offset, whole seconds).
pub fn platform_time(time: Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%S").to_string()
}

pub fn minutes_from_now(minutes: i64) -> Timestamp {
    Timestamp::now()
        .checked_add(SignedDuration::from_mins(minutes))
        .unwrap()
}

/// A `NOTIFY_PUBLIC_USER` payload: event now, session `session_in_minutes` from now.
pub struct PublicUser {
    pub id: i64,
    pub status: String,
    pub event_ts: Timestamp,
    pub attributes: Vec<(String, String)>,
}

impl PublicUser {
    pub fn new(status: &str, session_in_minutes: i64) -> PublicUser {
        let session = minutes_from_now(session_in_minutes);
        let mut user = PublicUser {
            id: 183765,
            status: status.to_string(),
            event_ts: Timestamp::now(),
            attributes: vec![
                ("RecipientName".into(), "Perry Public".into()),
                ("RecipientEmailAddress".into(), "perry@example.com".into()),
                ("RecipientSmsNumber".into(), "4155552671".into()),
                ("RecipientTimeZone".into(), "Pacific Standard Time".into()),
            ],
        };
        if status != "Welcome" {
            user.attributes.extend([
                ("SessionHostUserId".into(), "24403".into()),
                ("SessionHostName".into(), "Dr. Ada Example".into()),
                ("SessionTimeUtc".into(), platform_time(session)),
                ("SessionTimeLocal".into(), platform_time(session)),
            ]);
        }
        user
    }

    /// Sets (or adds) an attribute.
    pub fn with(mut self, name: &str, value: &str) -> PublicUser {
        match self.attributes.iter_mut().find(|(n, _)| n == name) {
            Some(attribute) => attribute.1 = value.to_string(),
            None => self.attributes.push((name.to_string(), value.to_string())),
        }
        self
    }

    pub fn without(mut self, name: &str) -> PublicUser {
        self.attributes.retain(|(n, _)| n != name);
        self
    }

    pub fn event_ts(mut self, time: Timestamp) -> PublicUser {
        self.event_ts = time;
        self
    }

    pub fn id(mut self, id: i64) -> PublicUser {
        self.id = id;
        self
    }

    pub fn json(&self) -> Value {
        json!({
            "WebhookType": "NOTIFY_PUBLIC_USER",
            "ID": self.id,
            "Status": self.status,
            "EventTs": platform_time(self.event_ts),
            "Attributes": self.attributes.iter().map(|(name, value)| json!({"AttributeName": name, "AttributeValue": value})).collect::<Vec<_>>(),
        })
    }
}
