//! Quiet hours per rule, in the recipient's local time.
//!
//! The real binary runs `defer`, `drop` and `send` with a window around the current time, and
//! a deferral that would end after the delivery's expiry. `herald explain --now` covers
//! windows across midnight and across daylight saving changes.
//!
//! The live tests use Asia/Kathmandu (UTC+05:45, no daylight saving), so a window that herald
//! read in UTC instead of the recipient's zone would miss the current time.

use std::path::Path;
use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::support::gateway::Gateway;
use crate::support::herald::{ConfigDir, Reply, repo_root, run_cli};
use crate::support::payloads::{PublicUser, minutes_from_now, platform_time};

/// Generous upper bound for a message to arrive once it may be sent.
const WAIT: Duration = Duration::from_secs(10);

/// Time to watch for messages that must not come. The dispatcher checks the outbox at least
/// once a second, so a stray delivery would show up within this time.
const SETTLE: Duration = Duration::from_millis(1500);

const ZONE: &str = "Asia/Kathmandu";

/// A quiet-hours window around the current time, in the recipient's zone.
struct Window {
    /// `HH:MM:SS` local times, as written to `rules.yaml`.
    start: String,
    end: String,
    /// The instant the window ends, in whole seconds.
    end_at: Timestamp,
}

impl Window {
    /// Returns a window that started `started_ago` ago and ends on a whole second between
    /// `ends_in` and `ends_in` plus one second from now.
    fn around_now(started_ago: SignedDuration, ends_in: SignedDuration) -> Window {
        let zone = TimeZone::get(ZONE).unwrap();
        let now = Timestamp::now();
        let start_at = Timestamp::from_second(now.as_second() - started_ago.as_secs()).unwrap();
        let end_at = Timestamp::from_second(now.as_second() + ends_in.as_secs() + 1).unwrap();
        let local = |time: Timestamp| time.to_zoned(zone.clone()).strftime("%H:%M:%S").to_string();
        Window {
            start: local(start_at),
            end: local(end_at),
            end_at,
        }
    }

    /// Returns the end as herald writes instants: RFC 3339 in UTC.
    fn end_utc(&self) -> String {
        self.end_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    }

    /// Returns the text that starts every quiet-hours note and reason, once for each local
    /// minute the intake may have seen between `before` and `after`. herald names the window
    /// and the local time to the minute.
    fn descriptions(&self, before: Timestamp, after: Timestamp) -> Vec<String> {
        let zone = TimeZone::get(ZONE).unwrap();
        let mut minutes: Vec<String> = [before, after]
            .iter()
            .map(|time| time.to_zoned(zone.clone()).strftime("%H:%M").to_string())
            .collect();
        minutes.dedup();
        minutes
            .iter()
            .map(|minute| {
                format!(
                    "quiet hours {}-{} in {ZONE} (local time {minute})",
                    &self.start[..5],
                    &self.end[..5]
                )
            })
            .collect()
    }
}

/// Returns a copy of the repository's configuration in which `rule` has these quiet hours.
fn config_with_quiet_hours(rule: &str, window: &Window, action: &str) -> ConfigDir {
    let config = ConfigDir::defaults();
    config.replace(
        "rules.yaml",
        &format!("    template: {rule}\n"),
        &format!(
            "    template: {rule}\n    quiet_hours: {{start: \"{}\", end: \"{}\", action: {action}}}\n",
            window.start, window.end
        ),
    );
    config
}

/// Returns an Invite to a recipient in Kathmandu for a session in two hours. The local
/// session time is left out, so that herald has no mismatch to note.
fn invite() -> PublicUser {
    PublicUser::new("Invite", 120)
        .with("RecipientTimeZone", ZONE)
        .without("SessionTimeLocal")
}

/// Posts a payload and returns the response with the times just before and just after.
async fn post_timed(gateway: &Gateway, payload: &PublicUser) -> (Reply, Timestamp, Timestamp) {
    let before = Timestamp::now();
    let reply = gateway.herald.post(&payload.json()).await;
    let after = Timestamp::now();
    (reply, before, after)
}

fn first_delivery_id(reply: &Reply, case: &str) -> i64 {
    reply.body["deliveries"][0]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{case}: no delivery id in {}", reply.text))
}

fn string_list(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| item.as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn defer_sends_at_window_end() {
    let case = "defer";
    let window = Window::around_now(SignedDuration::from_secs(60), SignedDuration::from_secs(5));
    let gateway = Gateway::start(config_with_quiet_hours("invite", &window, "defer")).await;
    let payload = invite().with("RecipientSmsNumber", "");

    let (reply, before, after) = post_timed(&gateway, &payload).await;
    assert!(
        after < window.end_at,
        "{case}: the webhook was answered after the window had ended, so this run cannot show a deferral"
    );
    assert_eq!(reply.status, 202, "{case}: HTTP status: {}", reply.text);
    let delivery_id = first_delivery_id(&reply, case);

    // The window ends within 6 seconds of now, and WAIT bounds the send after that.
    gateway
        .smtp
        .wait_for_messages(1, WAIT + Duration::from_secs(6))
        .await;
    let arrived = Timestamp::try_from(gateway.smtp.arrival_times()[0]).unwrap();
    assert!(
        arrived >= window.end_at,
        "{case}: the e-mail arrived at {arrived}, before the window ended at {}",
        window.end_at
    );

    let detail = gateway.delivery(delivery_id);
    assert_eq!(
        detail["not_before"],
        json!(window.end_utc()),
        "{case}: not_before"
    );
    let expected_notes: Vec<Vec<String>> = window
        .descriptions(before, after)
        .into_iter()
        .map(|description| {
            vec![
                "template invite".to_string(),
                format!("{description}: deferred to {}", window.end_utc()),
            ]
        })
        .collect();
    let notes = string_list(&detail["notes"]);
    assert!(
        expected_notes.contains(&notes),
        "{case}: notes {notes:?} are none of {expected_notes:?}"
    );
    let started = detail["attempts"][0]["started_at"]
        .as_str()
        .and_then(|text| text.parse::<Timestamp>().ok())
        .unwrap_or_else(|| panic!("{case}: no first attempt in {detail}"));
    assert!(
        started >= window.end_at,
        "{case}: the first attempt started at {started}, before the window ended at {}",
        window.end_at
    );
    assert_eq!(detail["state"], json!("delivered"), "{case}: state");
}

#[tokio::test]
async fn drop_skips_every_channel() {
    let case = "drop";
    let window = Window::around_now(
        SignedDuration::from_secs(60),
        SignedDuration::from_secs(120),
    );
    let gateway = Gateway::start(config_with_quiet_hours("invite", &window, "drop")).await;

    let (reply, before, after) = post_timed(&gateway, &invite()).await;

    assert_eq!(reply.status, 200, "{case}: HTTP status: {}", reply.text);
    assert_eq!(reply.body["status"], json!("ignored"), "{case}: status");
    assert_eq!(reply.body["deliveries"], json!([]), "{case}: deliveries");
    let expected_skips: Vec<Value> = window
        .descriptions(before, after)
        .into_iter()
        .map(|description| {
            let reason = format!("{description}: dropped");
            json!([
                {"channel": "email", "reason": reason, "rule": "invite"},
                {"channel": "sms", "reason": reason, "rule": "invite"},
            ])
        })
        .collect();
    assert!(
        expected_skips.contains(&reply.body["skipped"]),
        "{case}: skipped {} is none of {expected_skips:?}",
        reply.body["skipped"]
    );

    tokio::time::sleep(SETTLE).await;
    assert_eq!(gateway.smtp.messages().len(), 0, "{case}: e-mails");
    assert_eq!(gateway.sms.requests().len(), 0, "{case}: SMS requests");
}

#[tokio::test]
async fn send_action_sends_at_once() {
    let case = "send";
    let window = Window::around_now(
        SignedDuration::from_secs(60),
        SignedDuration::from_secs(120),
    );
    let gateway = Gateway::start(config_with_quiet_hours("invite", &window, "send")).await;
    let payload = invite().with("RecipientSmsNumber", "");

    let (reply, before, after) = post_timed(&gateway, &payload).await;
    assert_eq!(reply.status, 202, "{case}: HTTP status: {}", reply.text);
    let delivery_id = first_delivery_id(&reply, case);

    gateway.smtp.wait_for_messages(1, WAIT).await;
    let arrived = Timestamp::try_from(gateway.smtp.arrival_times()[0]).unwrap();
    assert!(
        arrived < window.end_at,
        "{case}: the e-mail arrived at {arrived}, after the window ended at {}",
        window.end_at
    );
    let detail = gateway.delivery(delivery_id);
    assert_eq!(detail.get("not_before"), None, "{case}: not_before");
    let expected_notes: Vec<Vec<String>> = window
        .descriptions(before, after)
        .into_iter()
        .map(|description| {
            vec![
                "template invite".to_string(),
                format!("{description}: sent anyway"),
            ]
        })
        .collect();
    let notes = string_list(&detail["notes"]);
    assert!(
        expected_notes.contains(&notes),
        "{case}: notes {notes:?} are none of {expected_notes:?}"
    );
}

#[tokio::test]
async fn defer_past_expiry_never_sends() {
    let case = "deferred past not_after";
    let window = Window::around_now(SignedDuration::from_secs(60), SignedDuration::from_mins(60));
    let gateway = Gateway::start(config_with_quiet_hours("short-reminder", &window, "defer")).await;
    let session = platform_time(minutes_from_now(5));
    let payload = PublicUser::new("ShortReminder", 5)
        .with("RecipientTimeZone", ZONE)
        .with("SessionTimeUtc", &session)
        .without("SessionTimeLocal");

    let (reply, before, after) = post_timed(&gateway, &payload).await;

    assert_eq!(reply.status, 200, "{case}: HTTP status: {}", reply.text);
    assert_eq!(reply.body["status"], json!("ignored"), "{case}: status");
    let delivery_id = first_delivery_id(&reply, case);
    let expected_deliveries: Vec<Value> = window
        .descriptions(before, after)
        .into_iter()
        .map(|description| {
            json!([{
                "channel": "sms",
                "id": delivery_id,
                "reason": format!(
                    "{description}: the window ends at {}, after not_after {session}Z",
                    window.end_utc()
                ),
                "rule": "short-reminder",
                "state": "expired",
            }])
        })
        .collect();
    assert!(
        expected_deliveries.contains(&reply.body["deliveries"]),
        "{case}: deliveries {} are none of {expected_deliveries:?}",
        reply.body["deliveries"]
    );
    assert_eq!(
        reply.body["skipped"],
        json!([{
            "channel": "email",
            "reason": "not needed: sms comes first in first_of and is available",
            "rule": "short-reminder",
        }]),
        "{case}: skipped"
    );

    tokio::time::sleep(SETTLE).await;
    assert_eq!(gateway.sms.requests().len(), 0, "{case}: SMS requests");
    assert_eq!(gateway.smtp.messages().len(), 0, "{case}: e-mails");
    let detail = gateway.delivery(delivery_id);
    assert_eq!(detail["state"], json!("expired"), "{case}: state");
    assert_eq!(detail["attempts"], json!([]), "{case}: attempts");
}

// Windows across midnight, through `herald explain --now`.

fn path_text(path: &Path) -> &str {
    path.to_str().expect("the paths in these tests are UTF-8")
}

/// Returns the repository's Invite example, whose recipient is in "Pacific Standard Time"
/// (America/Los_Angeles), with another EventTs and session time.
fn invite_example(event_ts: &str, session_utc: &str) -> Value {
    let text = std::fs::read_to_string(repo_root().join("examples/invite.json")).unwrap();
    let mut payload: Value = serde_json::from_str(&text).unwrap();
    payload["EventTs"] = json!(event_ts);
    for attribute in payload["Attributes"].as_array_mut().unwrap() {
        if attribute["AttributeName"] == "SessionTimeUtc" {
            attribute["AttributeValue"] = json!(session_utc);
        }
    }
    let attributes = payload["Attributes"].as_array_mut().unwrap();
    attributes.retain(|attribute| attribute["AttributeName"] != "SessionTimeLocal");
    payload
}

/// Explains `payload` at `now` with quiet hours from 22:00 to `end` on the invite rule, and
/// returns the `not before:` lines and the quiet-hours notes of the planned deliveries.
fn explain_overnight(payload: &Value, now: &str, end: &str) -> (Vec<String>, Vec<String>) {
    let config = ConfigDir::defaults();
    config.replace(
        "rules.yaml",
        "    template: invite\n",
        &format!(
            "    template: invite\n    quiet_hours: {{start: \"22:00\", end: \"{end}\", action: defer}}\n"
        ),
    );
    config.write("payload.json", &payload.to_string());
    let data = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_cli(
        &[
            "explain",
            path_text(&config.path().join("payload.json")),
            "--now",
            now,
            "--config-dir",
            path_text(config.path()),
            "--data-dir",
            path_text(data.path()),
        ],
        &[],
    );
    assert_eq!(code, 0, "explain at {now}: exit code; stderr:\n{stderr}");
    let lines_starting = |prefix: &str| -> Vec<String> {
        stdout
            .lines()
            .filter(|line| line.starts_with(prefix))
            .map(str::to_string)
            .collect()
    };
    (
        lines_starting("     not before: "),
        lines_starting("     note: quiet hours"),
    )
}

/// Asserts that with quiet hours from 22:00 to `end`, both deliveries of the Invite are
/// deferred to `not_before`, with the note naming the local time at `now`.
fn assert_overnight_deferral(
    payload: &Value,
    now: &str,
    end: &str,
    local_time: &str,
    not_before: &str,
    case: &str,
) {
    let (not_before_lines, notes) = explain_overnight(payload, now, end);
    let line = format!("     not before: {not_before}");
    assert_eq!(
        not_before_lines,
        [line.clone(), line],
        "{case}: not before lines"
    );
    let note = format!(
        "     note: quiet hours 22:00-{end} in America/Los_Angeles (local time {local_time}): deferred to {not_before}"
    );
    assert_eq!(notes, [note.clone(), note], "{case}: quiet-hours notes");
}

#[test]
fn overnight_window_evening_defers_to_next_morning() {
    // 06:00 UTC on June 14 is 23:00 PDT on June 13, and 06:00 PDT on June 14 is 13:00 UTC.
    let payload = invite_example("2019-06-14T05:52:01", "2019-06-26T18:45:00");
    assert_overnight_deferral(
        &payload,
        "2019-06-14T06:00:00Z",
        "06:00",
        "23:00",
        "2019-06-14T13:00:00Z",
        "23:00 local",
    );
}

#[test]
fn overnight_window_after_midnight_defers_same_morning() {
    // 10:00 UTC on June 14 is 03:00 PDT on June 14.
    let payload = invite_example("2019-06-14T09:55:00", "2019-06-26T18:45:00");
    assert_overnight_deferral(
        &payload,
        "2019-06-14T10:00:00Z",
        "06:00",
        "03:00",
        "2019-06-14T13:00:00Z",
        "03:00 local",
    );
}

#[test]
fn overnight_window_end_is_outside() {
    // 13:00 UTC is 06:00 PDT, the first second after the window.
    let payload = invite_example("2019-06-14T12:55:00", "2019-06-26T18:45:00");
    let (not_before_lines, notes) = explain_overnight(&payload, "2019-06-14T13:00:00Z", "06:00");

    assert_eq!(
        not_before_lines,
        Vec::<String>::new(),
        "06:00 local: not before lines"
    );
    assert_eq!(
        notes,
        Vec::<String>::new(),
        "06:00 local: quiet-hours notes"
    );
}

#[test]
fn overnight_window_into_daylight_time() {
    // On March 10, 2019 Los Angeles moved from PST (UTC-8) to PDT (UTC-7) at 02:00.
    // 06:00 UTC on March 10 is 22:00 PST on March 9, and 06:00 PDT on March 10 is 13:00 UTC.
    let payload = invite_example("2019-03-10T05:55:00", "2019-03-12T18:45:00");
    assert_overnight_deferral(
        &payload,
        "2019-03-10T06:00:00Z",
        "06:00",
        "22:00",
        "2019-03-10T13:00:00Z",
        "night of the change to daylight time",
    );
}

#[test]
fn overnight_window_into_standard_time() {
    // On November 3, 2019 Los Angeles moved from PDT (UTC-7) back to PST (UTC-8) at 02:00.
    // 05:00 UTC on November 3 is 22:00 PDT on November 2, and 06:00 PST is 14:00 UTC.
    let payload = invite_example("2019-11-03T04:55:00", "2019-11-05T18:45:00");
    assert_overnight_deferral(
        &payload,
        "2019-11-03T05:00:00Z",
        "06:00",
        "22:00",
        "2019-11-03T14:00:00Z",
        "night of the change to standard time",
    );
}

#[test]
fn overnight_window_end_in_skipped_hour() {
    // On March 10, 2019 Los Angeles clocks jumped from 02:00 PST to 03:00 PDT, so 02:30 never
    // came. The window 22:00 to 02:30 is over at 03:00 PDT (10:00 UTC), the first instant
    // after it.
    let payload = invite_example("2019-03-10T06:25:00", "2019-03-12T18:45:00");
    assert_overnight_deferral(
        &payload,
        "2019-03-10T06:30:00Z",
        "02:30",
        "22:30",
        "2019-03-10T10:00:00Z",
        "window ending at 02:30 on the night of the change to daylight time",
    );
}

#[test]
fn overnight_window_after_skipped_end_is_outside() {
    // 10:15 UTC on March 10, 2019 is 03:15 PDT, after the window 22:00 to 02:30.
    let payload = invite_example("2019-03-10T10:10:00", "2019-03-12T18:45:00");
    let (not_before_lines, notes) = explain_overnight(&payload, "2019-03-10T10:15:00Z", "02:30");

    assert_eq!(
        not_before_lines,
        Vec::<String>::new(),
        "03:15 PDT: not before lines"
    );
    assert_eq!(notes, Vec::<String>::new(), "03:15 PDT: quiet-hours notes");
}
