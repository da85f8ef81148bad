//! Configuration reloads on SIGHUP in a running `herald serve`: a good change applies to the
//! next request, and a bad one leaves the previous generation serving, with every error
//! logged by file, line and key and counted in `herald_config_reloads_total`.
//!
//! Every test starts its own process with a copy of the repository's configuration and the
//! file outbox, so each delivered message can be read back from the data folder.

use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::herald::{ConfigDir, Herald, Options, file_outbox_email, file_outbox_record};
use crate::support::payloads::{PublicUser, minutes_from_now, platform_time};

/// Upper bound for anything that happens eventually: a reload, a delivery.
const WAIT: Duration = Duration::from_secs(15);

const RELOADED: &str = "Configuration reloaded";
const RELOAD_FAILED: &str = "Configuration reload failed; still serving the previous generation";
const RELOADING: &str = "Reloading configuration (SIGHUP)";
const CONFIG_ERROR: &str = "Configuration error";

const FAILURES: &str = "herald_config_reloads_total{result=\"failure\"}";
const SUCCESSES: &str = "herald_config_reloads_total{result=\"success\"}";
const GENERATION: &str = "herald_config_generation";

/// The zone of `PublicUser`'s RecipientTimeZone, "Pacific Standard Time".
const RECIPIENT_ZONE: &str = "America/Los_Angeles";

/// A running herald with its own configuration and data folders.
struct Served {
    config: ConfigDir,
    data: TempDir,
    herald: Herald,
}

async fn start() -> Served {
    let config = ConfigDir::defaults();
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start(Options::new(config.path(), data.path())).await;
    Served {
        config,
        data,
        herald,
    }
}

/// The e-mail subject and SMS text of one delivered invite.
#[derive(Debug, PartialEq)]
struct DeliveredInvite {
    subject: String,
    sms: String,
}

/// Formats the session time in the recipient's zone with a strftime format.
fn local(session: Timestamp, format: &str) -> String {
    session
        .in_tz(RECIPIENT_ZONE)
        .unwrap()
        .strftime(format)
        .to_string()
}

/// Returns the invite that the repository's templates render for a session.
fn default_invite(session: Timestamp) -> DeliveredInvite {
    DeliveredInvite {
        subject: format!(
            "Your video visit with Dr. Ada Example on {}",
            local(session, "%B %-d at %-I:%M %p %Z")
        ),
        sms: format!(
            "Your Clinic: video visit with Dr. Ada Example on {}. Join at https://portal.clinic.example",
            local(session, "%b %-d at %-I:%M %p %Z")
        ),
    }
}

/// POSTs an invite with this ID for a session three days from now, waits until the file
/// outbox has written its e-mail and SMS, and returns them with the session time. Each call
/// needs its own ID, because herald returns `duplicate` for a repeated event.
async fn deliver_invite(served: &Served, id: i64) -> (DeliveredInvite, Timestamp) {
    let session = minutes_from_now(3 * 24 * 60);
    let payload = PublicUser::new("Invite", 3 * 24 * 60)
        .id(id)
        .with("SessionTimeUtc", &platform_time(session))
        .json();

    let reply = served.herald.post(&payload).await;
    assert_eq!(reply.status, 202, "invite {id}: {}", reply.text);
    assert_eq!(
        reply.body["status"], "accepted",
        "invite {id}: {}",
        reply.text
    );
    let delivery_id = |channel: &str| {
        reply.body["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|delivery| delivery["channel"] == channel)
            .and_then(|delivery| delivery["id"].as_i64())
            .unwrap_or_else(|| panic!("invite {id}: no {channel} delivery in {}", reply.text))
    };
    let email_id = delivery_id("email");
    let sms_id = delivery_id("sms");

    for delivery in [email_id, sms_id] {
        served
            .herald
            .wait_for_log("Delivered", &[("delivery_id", json!(delivery))], WAIT)
            .await;
    }
    let email = file_outbox_email(served.data.path(), "email", email_id);
    let sms = file_outbox_record(served.data.path(), "sms", sms_id);
    let delivered = DeliveredInvite {
        subject: email
            .decoded_header("Subject")
            .expect("the e-mail has a Subject"),
        sms: sms["body"]
            .as_str()
            .expect("the SMS record has a body")
            .to_string(),
    };
    (delivered, session)
}

/// Replaces the invite's subject and SMS templates with ones that name `version`.
fn write_invite_version(config: &ConfigDir, version: u32) {
    config.write(
        "templates/invite/email.subject.txt",
        &format!("Version {version}: visit with {{{{ fields.host_name }}}}\n"),
    );
    config.write(
        "templates/invite/sms.txt",
        &format!(
            "Version {version}: {{{{ vars.clinic_name }}}} visit with {{{{ fields.host_name }}}}\n"
        ),
    );
}

fn versioned_invite(version: u32) -> DeliveredInvite {
    DeliveredInvite {
        subject: format!("Version {version}: visit with Dr. Ada Example"),
        sms: format!("Version {version}: Your Clinic visit with Dr. Ada Example"),
    }
}

#[tokio::test]
async fn template_change_applies_to_next_invite() {
    let served = start().await;
    let (before, session) = deliver_invite(&served, 7001).await;
    assert_eq!(before, default_invite(session), "invite before the reload");

    write_invite_version(&served.config, 2);
    served.herald.signal("HUP");
    let reloaded = served.herald.wait_for_log(RELOADED, &[], WAIT).await;

    assert_eq!(reloaded["generation"], 2, "generation in {reloaded}");
    assert_eq!(reloaded["rules"], 8, "rules in {reloaded}");
    let (after, _) = deliver_invite(&served, 7002).await;
    assert_eq!(after, versioned_invite(2), "invite after the reload");
    assert_eq!(
        served.herald.metric(SUCCESSES).await,
        Some(1.0),
        "{SUCCESSES}"
    );
    assert_eq!(served.herald.metric(FAILURES).await, None, "{FAILURES}");
    assert_eq!(
        served.herald.metric(GENERATION).await,
        Some(2.0),
        "{GENERATION}"
    );
}

#[tokio::test]
async fn drop_rule_applies_to_next_invite() {
    let served = start().await;
    served.config.replace(
        "rules.yaml",
        "rules:\n",
        "rules:\n  - name: hold-invites\n    match:\n      type: NOTIFY_PUBLIC_USER\n      status: Invite\n    drop: invites are on hold during the migration\n\n",
    );

    served.herald.signal("HUP");
    let reloaded = served.herald.wait_for_log(RELOADED, &[], WAIT).await;
    let reply = served
        .herald
        .post(&PublicUser::new("Invite", 3 * 24 * 60).json())
        .await;

    assert_eq!(reloaded["rules"], 9, "rules in {reloaded}");
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert_eq!(reply.body["status"], "ignored", "{}", reply.text);
    assert_eq!(
        reply.body["reason"],
        "dropped by rule hold-invites: invites are on hold during the migration",
        "{}",
        reply.text
    );
    assert_eq!(reply.body["deliveries"], json!([]), "{}", reply.text);
}

/// Where a logged configuration error must point. `file` is relative to the configuration
/// folder, and `line` is `None` for an error about a whole file.
struct ExpectedError {
    file: &'static str,
    line: Option<u64>,
    key: &'static str,
    /// The exact error text.
    error: &'static str,
}

/// Applies a good change (a new invite SMS text) together with `break_config` and sends
/// SIGHUP. Then checks that the reload fails with every expected error logged, that the next
/// invite still gets the previous generation's messages, and that the metrics count the
/// failure. Returns every logged configuration error, so that a test can check their number.
async fn assert_reload_rejected(
    break_config: fn(&ConfigDir),
    expected: &[ExpectedError],
) -> Vec<Value> {
    let served = start().await;
    served.config.write(
        "templates/invite/sms.txt",
        "A new text that must not be sent\n",
    );
    break_config(&served.config);

    served.herald.signal("HUP");
    let failed = served.herald.wait_for_log(RELOAD_FAILED, &[], WAIT).await;
    let errors: Vec<Value> = served
        .herald
        .log_records()
        .into_iter()
        .filter(|record| record["message"] == CONFIG_ERROR)
        .collect();

    assert_eq!(failed["generation"], 1, "kept generation in {failed}");
    assert_eq!(failed["result"], "failure", "result in {failed}");
    assert_eq!(
        failed["reason"],
        format!("{} configuration error(s)", errors.len()),
        "reason in {failed}"
    );
    for expected_error in expected {
        let file = served
            .config
            .path()
            .join(expected_error.file)
            .display()
            .to_string();
        let found = errors.iter().find(|record| {
            record["file"] == file.as_str()
                && record.get("line").and_then(Value::as_u64) == expected_error.line
                && record["key"] == expected_error.key
        });
        let Some(record) = found else {
            panic!(
                "no {CONFIG_ERROR:?} for {file} line {:?} key {:?} among:\n{}",
                expected_error.line,
                expected_error.key,
                errors
                    .iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
        };
        let text = record["error"].as_str().unwrap_or_default();
        assert_eq!(text, expected_error.error, "error text of {record}");
    }

    let (invite, session) = deliver_invite(&served, 7101).await;
    assert_eq!(
        invite,
        default_invite(session),
        "invite after the failed reload"
    );
    assert_eq!(
        served.herald.metric(FAILURES).await,
        Some(1.0),
        "{FAILURES}"
    );
    assert_eq!(served.herald.metric(SUCCESSES).await, None, "{SUCCESSES}");
    assert_eq!(
        served.herald.metric(GENERATION).await,
        Some(1.0),
        "{GENERATION}"
    );
    assert_eq!(
        served.herald.count_logs(RELOADED),
        0,
        "{RELOADED:?} records"
    );
    errors
}

#[tokio::test]
async fn reload_rejects_yaml_syntax_error() {
    let errors = assert_reload_rejected(
        |config| {
            config.replace(
                "rules.yaml",
                "    send: [email, sms]\n    template: invite\n",
                "    send: [email, sms\n    template: invite\n",
            )
        },
        &[ExpectedError {
            file: "rules.yaml",
            line: Some(71),
            key: "rules[1].template",
            error: "illegal placement of ':' indicator",
        }],
    )
    .await;

    assert_eq!(errors.len(), 1, "configuration errors");
}

#[tokio::test]
async fn reload_rejects_missing_template_set() {
    let errors = assert_reload_rejected(
        |config| config.replace("rules.yaml", "    template: invite\n", "    template: invitation\n"),
        &[ExpectedError {
            file: "rules.yaml",
            line: Some(71),
            key: "rules[1].template",
            error: "unknown template \"invitation\": no folder templates/invitation/ (known: cancellation, declined-proposal, invite, long-reminder, short-reminder, update, welcome)",
        }],
    )
    .await;

    assert_eq!(errors.len(), 1, "configuration errors");
}

#[tokio::test]
async fn reload_rejects_unknown_channel() {
    let errors = assert_reload_rejected(
        |config| {
            config.replace(
                "rules.yaml",
                "    send: [email, sms]\n    template: invite\n",
                "    send: [email, fax]\n    template: invite\n",
            )
        },
        &[ExpectedError {
            file: "rules.yaml",
            line: Some(70),
            key: "rules[1].send[1]",
            error: "unknown channel \"fax\" (known: email, sms)",
        }],
    )
    .await;

    assert_eq!(errors.len(), 1, "configuration errors");
}

#[tokio::test]
async fn reload_rejects_empty_rules_file() {
    let errors = assert_reload_rejected(
        |config| config.write("rules.yaml", ""),
        &[ExpectedError {
            file: "rules.yaml",
            line: None,
            key: "",
            error: "the file is empty: it needs channels and rules (an empty file is never read as \"no rules\")",
        }],
    )
    .await;

    assert_eq!(errors.len(), 1, "configuration errors");
}

#[tokio::test]
async fn reload_rejects_truncated_rules_file() {
    // The file ends in the middle of the update rule, as a half-written save would leave it.
    let errors = assert_reload_rejected(
        |config| {
            let text = config.read("rules.yaml");
            let cut = "  - name: update\n    match:\n      type: NOTIFY_PUBLIC_USER\n      status: Up";
            let end = text.find(cut).expect("rules.yaml has the update rule") + cut.len();
            config.write("rules.yaml", &text[..end]);
        },
        &[
            ExpectedError {
                file: "rules.yaml",
                line: Some(79),
                key: "rules[2].match.status",
                error: "unknown status \"Up\" for NOTIFY_PUBLIC_USER: schemas/NOTIFY_PUBLIC_USER.json allows Invite, Update, LongReminder, ShortReminder, Cancellation, DeclinedOrExpiredProposal, Welcome",
            },
            ExpectedError {
                file: "rules.yaml",
                line: Some(76),
                key: "rules[2]",
                error: "a rule needs exactly one of send, first_of or drop",
            },
        ],
    )
    .await;

    assert_eq!(errors.len(), 2, "configuration errors");
}

#[tokio::test]
async fn reload_rejects_template_syntax_error() {
    // NOTE: herald also logs that the invite set "has no email.subject.txt", although the file
    // exists (see check_template_syntax_error_reported_once in cli.rs), so the number of
    // errors is not checked here.
    assert_reload_rejected(
        |config| {
            config.write(
                "templates/invite/email.subject.txt",
                "Hello {{ fields.name }\n",
            )
        },
        &[ExpectedError {
            file: "templates/invite/email.subject.txt",
            line: Some(1),
            key: "",
            error: "syntax error: unexpected `}`, expected end of variable block",
        }],
    )
    .await;
}

/// Returns `rules` with `count` more rules that drop invented webhook types, so that each
/// version of rules.yaml has its own number of rules and the "Configuration reloaded" record
/// that loaded it can be identified.
fn with_audit_rules(rules: &str, count: usize) -> String {
    let mut text = rules.to_string();
    for index in 0..count {
        text.push_str(&format!(
            "\n  - name: audit-{index}\n    match:\n      type: AUDIT_{index}\n    drop: audit events need no message\n"
        ));
    }
    text
}

#[tokio::test]
async fn successive_reloads_end_on_newest_files() {
    let served = start().await;
    let original_rules = served.config.read("rules.yaml");

    // One SIGHUP at a time: good, bad, good.
    write_invite_version(&served.config, 2);
    served.herald.signal("HUP");
    served.herald.wait_for_logs(RELOADED, 1, WAIT).await;
    served.config.write("rules.yaml", "rules: [\n");
    served.herald.signal("HUP");
    served.herald.wait_for_logs(RELOAD_FAILED, 1, WAIT).await;
    served.config.write("rules.yaml", &original_rules);
    write_invite_version(&served.config, 3);
    served.herald.signal("HUP");
    let third = served.herald.wait_for_logs(RELOADED, 2, WAIT).await;

    assert_eq!(
        third[1]["generation"], 3,
        "generation after good, bad, good: {}",
        third[1]
    );
    let (invite, _) = deliver_invite(&served, 7201).await;
    assert_eq!(invite, versioned_invite(3), "invite after good, bad, good");

    // Three changes with a SIGHUP each and no wait in between. Signals that arrive during a
    // reload may be merged, and a reload may read a file while it is being written and fail.
    // A reload still starts after the last signal, so the files of version 6 (with 11 rules)
    // must be the ones in use. The loader reads rules.yaml before the templates, and each
    // version writes rules.yaml last, so a reload that logs 11 rules used version 6 throughout.
    for (version, audit_rules) in [(4, 1), (5, 2), (6, 3)] {
        write_invite_version(&served.config, version);
        served.config.write(
            "rules.yaml",
            &with_audit_rules(&original_rules, audit_rules),
        );
        served.herald.signal("HUP");
    }
    served
        .herald
        .wait_for_log(RELOADED, &[("rules", json!(11))], WAIT)
        .await;

    let (invite, _) = deliver_invite(&served, 7202).await;
    assert_eq!(
        invite,
        versioned_invite(6),
        "invite after the burst of SIGHUPs"
    );
    let generation = settled_generation(&served.herald).await;
    let successes = served.herald.count_logs(RELOADED);
    let failures = served.herald.count_logs(RELOAD_FAILED);
    assert!(
        (3..=5).contains(&successes),
        "2 successful reloads before the burst and 1 to 3 during it, got {successes}"
    );
    assert_eq!(
        generation,
        successes as u64 + 1,
        "generation after {successes} successful reloads"
    );
    assert_eq!(
        served.herald.metric(GENERATION).await,
        Some(generation as f64),
        "{GENERATION}"
    );
    assert_eq!(
        served.herald.metric(SUCCESSES).await,
        Some(successes as f64),
        "{SUCCESSES}"
    );
    assert_eq!(
        served.herald.metric(FAILURES).await,
        Some(failures as f64),
        "{FAILURES}"
    );
}

/// Waits until every started reload has finished and `herald_config_generation` equals the
/// generation of the last "Configuration reloaded" record, in two polls in a row, and returns
/// that generation. Panics after `WAIT`.
async fn settled_generation(herald: &Herald) -> u64 {
    let deadline = Instant::now() + WAIT;
    let mut previous = None;
    loop {
        let started = herald.count_logs(RELOADING);
        let finished = herald.count_logs(RELOADED) + herald.count_logs(RELOAD_FAILED);
        let last = herald
            .log_records()
            .into_iter()
            .rev()
            .find(|record| record["message"] == RELOADED)
            .and_then(|record| record["generation"].as_u64());
        let metric = herald.metric(GENERATION).await;
        let settled = started == finished && last.is_some() && metric == last.map(|n| n as f64);
        if settled && previous == Some((started, last)) {
            return last.unwrap_or_default();
        }
        previous = settled.then_some((started, last));
        assert!(
            Instant::now() < deadline,
            "reloads did not settle within {WAIT:?}: {started} started, {finished} finished, last generation {last:?}, {GENERATION} {metric:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
