//! A webhook type that herald has never seen, added by files alone: a schema, a field
//! mapping, a template set and a rule, picked up by SIGHUP in the same running process.

use std::time::Duration;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::support::herald::{ConfigDir, Herald, Options, file_outbox_email};
use crate::support::payloads::{minutes_from_now, platform_time};

const WAIT: Duration = Duration::from_secs(15);

const HOST_ADDRESS: &str = "ada.example@clinic.example";

/// Attributes of an invented `NOTIFY_HOST` invite: the host who is to join a session.
fn host_attributes(session: Timestamp) -> Vec<(&'static str, String)> {
    vec![
        ("HostName", "Dr. Ada Example".to_string()),
        ("HostEmailAddress", HOST_ADDRESS.to_string()),
        ("HostTimeZone", "Eastern Standard Time".to_string()),
        ("SessionTimeUtc", platform_time(session)),
        ("PatientDisplayName", "Perry Public".to_string()),
    ]
}

fn host_payload(id: i64, attributes: &[(&str, String)]) -> Value {
    json!({
        "WebhookType": "NOTIFY_HOST",
        "ID": id,
        "Status": "Invite",
        "EventTs": platform_time(Timestamp::now()),
        "Attributes": attributes
            .iter()
            .map(|(name, value)| json!({"AttributeName": name, "AttributeValue": value}))
            .collect::<Vec<_>>(),
    })
}

const HOST_SCHEMA: &str = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "title": "NOTIFY_HOST",
  "description": "A message for the host of a session.",
  "type": "object",
  "required": ["WebhookType", "ID", "Status", "EventTs", "Attributes"],
  "properties": {
    "WebhookType": {"const": "NOTIFY_HOST"},
    "ID": {"type": "integer"},
    "Status": {"enum": ["Invite", "Cancellation"]},
    "EventTs": {"type": "string", "format": "date-time-utc"},
    "Attributes": {
      "type": "array",
      "allOf": [
        {"contains": {"properties": {"AttributeName": {"const": "HostName"}}}},
        {"contains": {"properties": {"AttributeName": {"const": "HostEmailAddress"}}}},
        {"contains": {"properties": {"AttributeName": {"const": "SessionTimeUtc"}}}}
      ]
    }
  }
}
"#;

const HOST_FIELDS: &str = "fields:
  NOTIFY_HOST:
    name: HostName
    email: HostEmailAddress
    time_zone: HostTimeZone
    session_time: SessionTimeUtc
    patient_name: PatientDisplayName
";

const HOST_RULE: &str = "
  - name: host-invite
    match:
      type: NOTIFY_HOST
      status: Invite
    send: [email]
    template: host-invite
    not_after: fields.session_time
";

const HOST_SUBJECT: &str = "Video visit with {{ fields.patient_name }} on {{ fields.session_time | local_time(fields.time_zone, \"%Y-%m-%d %H:%M %Z\") }}\n";

const HOST_TEXT: &str = "Hello {{ fields.name }},

{{ fields.patient_name }} has a video visit with you.

When: {{ fields.session_time | local_time(fields.time_zone) }}

{% include \"_partials/signature.txt\" %}
";

/// Writes the schema, field mapping, template set and rule for `NOTIFY_HOST`.
fn add_host_type(config: &ConfigDir) {
    config.write("schemas/NOTIFY_HOST.json", HOST_SCHEMA);
    config.replace("rules.yaml", "fields:\n", HOST_FIELDS);
    let mut rules = config.read("rules.yaml");
    rules.push_str(HOST_RULE);
    config.write("rules.yaml", &rules);
    config.write("templates/host-invite/email.subject.txt", HOST_SUBJECT);
    config.write("templates/host-invite/email.txt", HOST_TEXT);
}

#[tokio::test]
async fn new_webhook_type_added_by_files() {
    let config = ConfigDir::defaults();
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start(Options::new(config.path(), data.path())).await;
    let session = minutes_from_now(3 * 24 * 60);
    let attributes = host_attributes(session);
    let without_address: Vec<(&str, String)> = attributes
        .iter()
        .filter(|(name, _)| *name != "HostEmailAddress")
        .cloned()
        .collect();

    // Before: only the envelope schema applies, and no rule matches.
    let unknown = herald.post(&host_payload(24403, &attributes)).await;
    let unchecked = herald.post(&host_payload(24404, &without_address)).await;

    assert_eq!(unknown.status, 200, "{}", unknown.text);
    assert_eq!(unknown.body["status"], "ignored", "{}", unknown.text);
    assert_eq!(
        unknown.body["reason"], "no rule matched webhook type NOTIFY_HOST with status Invite",
        "{}",
        unknown.text
    );
    assert_eq!(unknown.body["deliveries"], json!([]), "{}", unknown.text);
    assert_eq!(
        unchecked.status, 200,
        "without a schema for the type: {}",
        unchecked.text
    );

    add_host_type(&config);
    herald.signal("HUP");
    let reloaded = herald
        .wait_for_log("Configuration reloaded", &[], WAIT)
        .await;

    assert_eq!(reloaded["generation"], 2, "generation in {reloaded}");
    assert_eq!(reloaded["rules"], 9, "rules in {reloaded}");

    // After: the same process accepts the type, delivers the e-mail and checks the schema.
    let accepted = herald.post(&host_payload(24405, &attributes)).await;
    let rejected = herald.post(&host_payload(24406, &without_address)).await;

    assert_eq!(accepted.status, 202, "{}", accepted.text);
    assert_eq!(accepted.body["status"], "accepted", "{}", accepted.text);
    let deliveries = accepted.body["deliveries"].as_array().expect("deliveries");
    assert_eq!(deliveries.len(), 1, "{}", accepted.text);
    assert_eq!(deliveries[0]["channel"], "email", "{}", accepted.text);
    assert_eq!(deliveries[0]["rule"], "host-invite", "{}", accepted.text);
    let delivery_id = deliveries[0]["id"].as_i64().expect("delivery id");
    herald
        .wait_for_log("Delivered", &[("delivery_id", json!(delivery_id))], WAIT)
        .await;
    let email = file_outbox_email(data.path(), "email", delivery_id);
    let local_session = session.in_tz("America/New_York").unwrap();
    assert_eq!(
        email.decoded_header("To").as_deref(),
        Some(format!("\"Dr. Ada Example\" <{HOST_ADDRESS}>").as_str()),
        "To, with the name quoted because of its period (RFC 5322 phrase)"
    );
    assert_eq!(
        email.decoded_header("Subject"),
        Some(format!(
            "Video visit with Perry Public on {}",
            local_session.strftime("%Y-%m-%d %H:%M %Z")
        )),
        "Subject"
    );
    let text = email.body_text().expect("a text/plain part");
    assert!(
        text.contains("Hello Dr. Ada Example,\n\nPerry Public has a video visit with you."),
        "greeting in the text part:\n{text}"
    );

    assert_eq!(rejected.status, 422, "{}", rejected.text);
    assert_eq!(
        rejected.body["violations"],
        json!([{"pointer": "/Attributes", "message": "required attribute HostEmailAddress is missing"}]),
        "{}",
        rejected.text
    );
    assert_eq!(
        herald.count_logs("herald started"),
        1,
        "the process was not restarted"
    );
}
