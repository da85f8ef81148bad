//! `herald check` and `herald explain` as an operator runs them: the real binary with a clean
//! environment, so that both channels fall back to the file outbox.
//!
//! The expected `explain` output lives in `tests/fixtures/explain/<fixture>.txt`. After a
//! deliberate change, regenerate a fixture by running `herald explain` by hand with the time
//! from `EXPLAINED_EXAMPLES`, such as `env -i target/debug/herald explain
//! examples/invite.json --now 2019-06-14T06:00:00Z --config-dir .`, and read the difference
//! before committing it.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use crate::support::herald::{ConfigDir, repo_root, run_cli};

/// Runs `herald` with no environment variables besides `PATH`.
fn herald(args: &[&str]) -> (i32, String, String) {
    run_cli(args, &[])
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("the paths in these tests are UTF-8")
}

/// Runs `herald check` on a configuration folder, with the data folder in a fresh temporary
/// folder.
fn check(config_dir: &Path) -> (i32, String, String) {
    let data = tempfile::tempdir().unwrap();
    herald(&[
        "check",
        "--config-dir",
        path_text(config_dir),
        "--data-dir",
        path_text(data.path()),
    ])
}

#[test]
fn check_repository_config_passes() {
    let root = repo_root();
    let (code, stdout, stderr) = check(&root);

    assert_eq!(code, 0, "exit code; stderr:\n{stderr}");
    assert_eq!(
        stdout,
        "note: channel email writes email messages to the file outbox because SMTP_URL is unset\n\
         note: channel sms writes sms messages to the file outbox because SMS_API_URL, SMS_ACCOUNT_SID, SMS_AUTH_TOKEN, SMS_FROM are unset\n\
         configuration OK: 8 rules, 2 channels, 7 template sets, 2 webhook types with a schema, 7 example payloads rendered\n",
        "stdout"
    );
    assert_eq!(stderr, "", "stderr");
}

/// A copy of the repository's configuration with one mistake, and every error line that
/// `herald check` must print for it. The test replaces `{dir}` with the configuration folder.
struct BrokenConfig {
    name: &'static str,
    change: fn(&ConfigDir),
    errors: &'static [&'static str],
}

/// Adds a channel at the top of the `channels:` section.
fn add_channel(config: &ConfigDir, channel: &str) {
    config.replace(
        "rules.yaml",
        "channels:\n",
        &format!("channels:\n{channel}"),
    );
}

const BROKEN_CONFIGS: &[BrokenConfig] = &[
    BrokenConfig {
        name: "unknown channel driver",
        change: |config| add_channel(config, "  pager:\n    driver: pigeon\n"),
        errors: &[
            "{dir}/rules.yaml:29: channels.pager.driver: unknown driver \"pigeon\": expected one of smtp, sms, webhook, file",
        ],
    },
    BrokenConfig {
        name: "setting the driver does not accept",
        change: |config| {
            add_channel(
                config,
                "  alerts:\n    driver: webhook\n    url: http://127.0.0.1:9/alerts\n    from: Clinic <no-reply@clinic.example>\n",
            )
        },
        errors: &[
            "{dir}/rules.yaml:31: channels.alerts.from: from is not a setting of driver webhook; it accepts url, headers besides driver, on_missing_env, concurrency, rate_limit, timeout and retry",
        ],
    },
    BrokenConfig {
        name: "channel env var missing without on_missing_env",
        change: |config| {
            add_channel(
                config,
                "  alerts:\n    driver: webhook\n    url: ${ALERTS_URL}\n",
            )
        },
        errors: &[
            "{dir}/rules.yaml:30: channels.alerts.url: environment variable ALERTS_URL is unset or empty: set it, give a default with ${ALERTS_URL:-value}, or add on_missing_env: file to write to the file outbox instead",
        ],
    },
    BrokenConfig {
        name: "vars env var missing without default",
        change: |config| {
            config.replace(
                "rules.yaml",
                "${CLINIC_NAME:-Your Clinic}",
                "${CLINIC_NAME}",
            )
        },
        errors: &[
            "{dir}/rules.yaml:23: vars.clinic_name: environment variable CLINIC_NAME is unset or empty: set it or give a default with ${CLINIC_NAME:-value}",
        ],
    },
    BrokenConfig {
        name: "SMTP URL without scheme",
        change: |config| {
            add_channel(
                config,
                "  relay:\n    driver: smtp\n    url: mail.example.com:587\n    from: Clinic <no-reply@clinic.example>\n",
            )
        },
        errors: &[
            "{dir}/rules.yaml:30: channels.relay.url: invalid SMTP URL scheme \"mail.example.com\": expected smtp or smtps",
        ],
    },
    BrokenConfig {
        name: "SMTP URL with credentials over opportunistic TLS",
        change: |config| {
            add_channel(
                config,
                "  relay:\n    driver: smtp\n    url: smtp://user:secret@127.0.0.1:2525\n    from: Clinic <no-reply@clinic.example>\n",
            )
        },
        errors: &[
            "{dir}/rules.yaml:30: channels.relay.url: credentials over opportunistic STARTTLS could be sent unencrypted: add ?tls=required, use smtps://, or ?tls=none for a relay on the same host",
        ],
    },
    BrokenConfig {
        name: "duplicate rule name",
        change: |config| config.replace("rules.yaml", "  - name: update\n", "  - name: invite\n"),
        errors: &[
            "{dir}/rules.yaml:76: rules[2].name: duplicate rule name \"invite\": rule names must be unique",
        ],
    },
    BrokenConfig {
        name: "rule with both send and drop",
        change: |config| {
            config.replace(
                "rules.yaml",
                "    drop: session status changes need no patient message\n",
                "    drop: session status changes need no patient message\n    send: [email]\n",
            )
        },
        errors: &[
            "{dir}/rules.yaml:61: rules[0]: a rule needs exactly one of send, first_of or drop",
        ],
    },
    BrokenConfig {
        name: "unknown status for a typed rule",
        change: |config| {
            config.replace(
                "rules.yaml",
                "      status: Welcome\n",
                "      status: Welcomed\n",
            )
        },
        errors: &[
            "{dir}/rules.yaml:128: rules[7].match.status: unknown status \"Welcomed\" for NOTIFY_PUBLIC_USER: schemas/NOTIFY_PUBLIC_USER.json allows Invite, Update, LongReminder, ShortReminder, Cancellation, DeclinedOrExpiredProposal, Welcome",
        ],
    },
    BrokenConfig {
        name: "unknown fields in present and missing",
        change: |config| {
            config.replace(
                "rules.yaml",
                "      status: Welcome\n",
                "      status: Welcome\n      present: [phone]\n      missing: [email, fax]\n",
            )
        },
        errors: &[
            "{dir}/rules.yaml:129: rules[7].match.present: unknown field \"phone\": fields.NOTIFY_PUBLIC_USER maps email, host_id, host_name, locale, name, session_time, session_time_local, sms, time_zone",
            "{dir}/rules.yaml:130: rules[7].match.missing: unknown field \"fax\": fields.NOTIFY_PUBLIC_USER maps email, host_id, host_name, locale, name, session_time, session_time_local, sms, time_zone",
        ],
    },
    BrokenConfig {
        name: "invalid when expression",
        change: |config| {
            config.replace(
                "rules.yaml",
                "      status: Welcome\n",
                "      status: Welcome\n      when: fields.name ==\n",
            )
        },
        errors: &[
            "{dir}/rules.yaml:129: rules[7].match.when: invalid expression: syntax error: unexpected end of input, expected expression",
        ],
    },
    BrokenConfig {
        name: "not_after expression syntax error",
        change: |config| {
            config.replace(
                "rules.yaml",
                "    not_after: fields.session_time\n",
                "    not_after: fields.session_time +* 2\n",
            )
        },
        errors: &[
            "{dir}/rules.yaml:72: rules[1].not_after: invalid expression: syntax error: unexpected `*`",
        ],
    },
    BrokenConfig {
        name: "rule sends through an unknown channel",
        change: |config| {
            config.replace(
                "rules.yaml",
                "    send: [email, sms]\n    template: invite\n",
                "    send: [email, fax]\n    template: invite\n",
            )
        },
        errors: &[
            "{dir}/rules.yaml:70: rules[1].send[1]: unknown channel \"fax\" (known: email, sms)",
        ],
    },
    BrokenConfig {
        name: "rule names a missing template set",
        change: |config| {
            config.replace(
                "rules.yaml",
                "    template: invite\n",
                "    template: invitation\n",
            )
        },
        errors: &[
            "{dir}/rules.yaml:71: rules[1].template: unknown template \"invitation\": no folder templates/invitation/ (known: cancellation, declined-proposal, invite, long-reminder, short-reminder, update, welcome)",
        ],
    },
    BrokenConfig {
        name: "template set missing a part a channel needs",
        change: |config| config.remove("templates/welcome/email.subject.txt"),
        errors: &[
            "{dir}/rules.yaml:130: rules[7].template: template welcome has no email.subject.txt, which channel email (email messages) needs: add templates/welcome/email.subject.txt",
        ],
    },
    BrokenConfig {
        name: "empty rules.yaml",
        change: |config| config.write("rules.yaml", ""),
        errors: &[
            "{dir}/rules.yaml: the file is empty: it needs channels and rules (an empty file is never read as \"no rules\")",
        ],
    },
    BrokenConfig {
        name: "missing envelope schema",
        change: |config| config.remove("schemas/envelope.json"),
        errors: &[
            "{dir}/schemas/envelope.json: missing: every webhook is checked against schemas/envelope.json",
        ],
    },
    BrokenConfig {
        name: "invalid JSON in a schema",
        change: |config| {
            config.write(
                "schemas/SESSION_STATUS.json",
                "{\n  \"type\": \"object\",\n  \"properties\": {\n    \"Status\": {\"enum\": [\"STARTED\",]}\n  }\n}\n",
            )
        },
        errors: &["{dir}/schemas/SESSION_STATUS.json:4: invalid JSON: trailing comma (column 35)"],
    },
];

#[test]
fn check_reports_each_broken_config() {
    for case in BROKEN_CONFIGS {
        let config = ConfigDir::defaults();
        (case.change)(&config);
        let dir = path_text(config.path());

        let (code, stdout, stderr) = check(config.path());

        let mut expected = String::new();
        for error in case.errors {
            expected.push_str(&format!("error: {}\n", error.replace("{dir}", dir)));
        }
        let plural = if case.errors.len() == 1 { "" } else { "s" };
        expected.push_str(&format!(
            "configuration invalid: {} error{plural}\n",
            case.errors.len()
        ));
        assert_eq!(code, 2, "{}: exit code; stderr:\n{stderr}", case.name);
        assert_eq!(stderr, expected, "{}: stderr", case.name);
        assert_eq!(stdout, "", "{}: stdout", case.name);
    }
}

/// A broken configuration whose error text comes partly from a library (the YAML parser, the
/// regex compiler or minijinja), so only herald's location prefix and the stable part of the
/// message are checked.
struct LocatedError {
    name: &'static str,
    change: fn(&ConfigDir),
    /// `file:line: key: ` as herald prints it after `error: `, with `{dir}` for the
    /// configuration folder.
    location: &'static str,
    fragments: &'static [&'static str],
}

const LOCATED_ERRORS: &[LocatedError] = &[
    LocatedError {
        name: "unknown top-level key",
        change: |config| config.replace("rules.yaml", "\nvars:\n", "\ncolors: red\nvars:\n"),
        location: "{dir}/rules.yaml:22: colors: ",
        fragments: &[
            "unknown field `colors`, expected one of defaults, vars, channels, fields, rules",
        ],
    },
    LocatedError {
        name: "wrong type",
        change: |config| {
            config.replace(
                "rules.yaml",
                "    max_attempts: 10\n",
                "    max_attempts: ten\n",
            )
        },
        location: "{dir}/rules.yaml:16: defaults.retry.max_attempts: ",
        fragments: &["invalid value: expected a whole number"],
    },
    LocatedError {
        name: "duplicate key",
        change: |config| {
            config.replace(
                "rules.yaml",
                "  phone_region: US\n",
                "  phone_region: US\n  phone_region: CA\n",
            )
        },
        location: "{dir}/rules.yaml:7: defaults.phone_region: ",
        fragments: &["duplicate mapping key: phone_region"],
    },
    LocatedError {
        name: "YAML syntax error",
        change: |config| {
            config.replace(
                "rules.yaml",
                "    send: [email, sms]\n    template: invite\n",
                "    send: [email, sms\n    template: invite\n",
            )
        },
        location: "{dir}/rules.yaml:71: rules[1].template: ",
        fragments: &["illegal placement of ':' indicator"],
    },
    LocatedError {
        name: "invalid regex",
        change: |config| {
            config.replace(
                "rules.yaml",
                "      status: Welcome\n",
                "      status: Welcome\n      attributes:\n        RecipientName: {regex: \"([a-z\"}\n",
            )
        },
        location: "{dir}/rules.yaml:130: rules[7].match.attributes.RecipientName: ",
        fragments: &["invalid regex: ", "unclosed character class"],
    },
    LocatedError {
        name: "template syntax error",
        change: |config| {
            config.write(
                "templates/invite/email.subject.txt",
                "Hello {{ fields.name }\n",
            )
        },
        location: "{dir}/templates/invite/email.subject.txt:1: ",
        fragments: &["syntax error: unexpected `}`, expected end of variable block"],
    },
];

#[test]
fn check_locates_library_errors() {
    for case in LOCATED_ERRORS {
        let config = ConfigDir::defaults();
        (case.change)(&config);
        let location = case.location.replace("{dir}", path_text(config.path()));

        let (code, stdout, stderr) = check(config.path());

        assert_eq!(code, 2, "{}: exit code; stderr:\n{stderr}", case.name);
        assert!(
            stderr.starts_with(&format!("error: {location}")),
            "{}: stderr does not start with error: {location}\n{stderr}",
            case.name
        );
        for fragment in case.fragments {
            assert!(
                stderr.contains(fragment),
                "{}: stderr lacks {fragment:?}:\n{stderr}",
                case.name
            );
        }
        assert!(
            stderr
                .lines()
                .last()
                .unwrap_or_default()
                .starts_with("configuration invalid: "),
            "{}: last line of stderr:\n{stderr}",
            case.name
        );
        assert_eq!(stdout, "", "{}: stdout", case.name);
    }
}

#[test]
fn check_yaml_error_is_one_line() {
    let config = ConfigDir::defaults();
    config.replace("rules.yaml", "\nvars:\n", "\ncolors: red\nvars:\n");
    let dir = path_text(config.path());

    let (code, _, stderr) = check(config.path());

    assert_eq!(code, 2, "exit code");
    assert_eq!(
        stderr,
        format!(
            "error: {dir}/rules.yaml:22: colors: unknown field `colors`, expected one of defaults, vars, channels, fields, rules\n\
             configuration invalid: 1 error\n"
        ),
        "stderr"
    );
}

#[test]
fn check_type_error_names_key() {
    let config = ConfigDir::defaults();
    config.replace(
        "rules.yaml",
        "    max_attempts: 10\n",
        "    max_attempts: ten\n",
    );

    let (code, _, stderr) = check(config.path());

    assert_eq!(code, 2, "exit code");
    assert!(
        stderr.contains("defaults.retry.max_attempts"),
        "the error names the key:\n{stderr}"
    );
    assert!(
        !stderr.contains("u32"),
        "the error names the expected value in operator terms, not a Rust type:\n{stderr}"
    );
}

#[test]
fn check_duplicate_key_advice_for_operators() {
    let config = ConfigDir::defaults();
    config.replace(
        "rules.yaml",
        "  phone_region: US\n",
        "  phone_region: US\n  phone_region: CA\n",
    );

    let (code, _, stderr) = check(config.path());

    assert_eq!(code, 2, "exit code");
    assert!(
        stderr.contains("duplicate mapping key: phone_region"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("DuplicateKeyPolicy"),
        "the advice is for the parser's API, not for the operator:\n{stderr}"
    );
}

#[test]
fn check_regex_error_is_one_line() {
    let config = ConfigDir::defaults();
    config.replace(
        "rules.yaml",
        "      status: Welcome\n",
        "      status: Welcome\n      attributes:\n        RecipientName: {regex: \"([a-z\"}\n",
    );

    let (code, _, stderr) = check(config.path());

    assert_eq!(code, 2, "exit code");
    assert_eq!(
        stderr.lines().count(),
        2,
        "one line for the error and one for the summary:\n{stderr}"
    );
}

#[test]
fn check_broken_channel_not_unknown() {
    let config = ConfigDir::defaults();
    config.replace("rules.yaml", "    driver: sms\n", "    driver: pigeon\n");

    let (code, _, stderr) = check(config.path());

    assert_eq!(code, 2, "exit code");
    assert!(
        stderr.contains("channels.sms.driver: unknown driver \"pigeon\""),
        "{stderr}"
    );
    assert!(
        !stderr.contains("unknown channel \"sms\""),
        "channel sms is defined in rules.yaml, so the rules using it should not call it unknown:\n{stderr}"
    );
}

#[test]
fn check_template_syntax_error_reported_once() {
    let config = ConfigDir::defaults();
    config.write(
        "templates/invite/email.subject.txt",
        "Hello {{ fields.name }\n",
    );
    let dir = path_text(config.path());

    let (code, _, stderr) = check(config.path());

    assert_eq!(code, 2, "exit code");
    assert_eq!(
        stderr,
        format!(
            "error: {dir}/templates/invite/email.subject.txt:1: syntax error: unexpected `}}`, expected end of variable block\n\
             configuration invalid: 1 error\n"
        ),
        "stderr"
    );
}

#[test]
fn check_comment_only_rules_is_empty() {
    let config = ConfigDir::defaults();
    config.write("rules.yaml", "# nothing yet\n");
    let dir = path_text(config.path());

    let (code, _, stderr) = check(config.path());

    assert_eq!(code, 2, "exit code");
    assert_eq!(
        stderr,
        format!(
            "error: {dir}/rules.yaml: the file is empty: it needs channels and rules (an empty file is never read as \"no rules\")\n\
             configuration invalid: 1 error\n"
        ),
        "stderr"
    );
}

/// Every payload in `examples/`, the time to explain it at, and the file under
/// `tests/fixtures/explain/` with the expected output. Each time lies shortly after the
/// example's EventTs, so that the age checks pass. The time of `short-reminder-late` is past
/// the session, so its delivery starts expired.
const EXPLAINED_EXAMPLES: &[(&str, &str, &str)] = &[
    ("cancellation", "2019-06-20T12:00:30Z", "cancellation"),
    (
        "declined-proposal",
        "2019-06-12T08:00:30Z",
        "declined-proposal",
    ),
    ("invite", "2019-06-14T06:00:00Z", "invite"),
    ("long-reminder", "2019-06-27T15:31:00Z", "long-reminder"),
    ("session-status", "2019-06-14T06:00:00Z", "session-status"),
    ("short-reminder", "2019-06-27T17:21:00Z", "short-reminder"),
    (
        "short-reminder",
        "2019-06-27T17:31:00Z",
        "short-reminder-late",
    ),
    ("unknown-type", "2019-06-14T06:00:00Z", "unknown-type"),
    ("update", "2019-06-15T09:11:00Z", "update"),
    ("welcome", "2019-06-10T14:05:00Z", "welcome"),
];

/// Runs `herald explain` on a file with the repository's configuration.
fn explain(payload: &Path, extra: &[&str]) -> (i32, String, String) {
    let root = repo_root();
    let data = tempfile::tempdir().unwrap();
    let mut args = vec![
        "explain",
        path_text(payload),
        "--config-dir",
        path_text(&root),
        "--data-dir",
        path_text(data.path()),
    ];
    args.extend_from_slice(extra);
    herald(&args)
}

fn example(name: &str) -> std::path::PathBuf {
    repo_root().join("examples").join(format!("{name}.json"))
}

#[test]
fn explain_covers_every_example() {
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo_root().join("examples"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|name| name.strip_suffix(".json").map(str::to_string))
        .collect();
    let explained: BTreeSet<String> = EXPLAINED_EXAMPLES
        .iter()
        .map(|(name, _, _)| name.to_string())
        .collect();

    assert_eq!(explained, on_disk, "examples/*.json and EXPLAINED_EXAMPLES");
}

#[test]
fn explain_examples_match_fixtures() {
    for (name, now, fixture) in EXPLAINED_EXAMPLES {
        let expected_path = repo_root()
            .join("tests/fixtures/explain")
            .join(format!("{fixture}.txt"));
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|error| panic!("read {}: {error}", expected_path.display()));

        let (code, stdout, stderr) = explain(&example(name), &["--now", now]);

        assert_eq!(code, 0, "{fixture}: exit code; stderr:\n{stderr}");
        assert_eq!(stderr, "", "{fixture}: stderr");
        assert_eq!(
            stdout,
            expected,
            "{fixture}: stdout differs from {}",
            expected_path.display()
        );
    }
}

#[test]
fn explain_json_reports_invite_decision() {
    let (code, stdout, stderr) = explain(
        &example("invite"),
        &["--now", "2019-06-14T06:00:00Z", "--format", "json"],
    );
    assert_eq!(code, 0, "exit code; stderr:\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("stdout is JSON");

    assert_eq!(report["result"], "accepted");
    assert_eq!(report["event"]["webhook_type"], "NOTIFY_PUBLIC_USER");
    assert_eq!(report["event"]["status"], "Invite");
    assert_eq!(report["event"]["age"], "7m59s");
    let decision = &report["decision"];
    assert_eq!(decision["evaluated_at"], "2019-06-14T06:00:00Z");
    assert_eq!(decision["rules"][1]["rule"], "invite");
    assert_eq!(decision["rules"][1]["verdict"], "matched");
    assert_eq!(decision["rules"][1]["line"], 66);
    assert_eq!(decision["rules"][2]["verdict"], "not_evaluated");
    let planned = decision["planned"].as_array().expect("planned is an array");
    assert_eq!(planned.len(), 2, "planned deliveries");
    let email = &planned[0];
    assert_eq!(email["channel"], "email");
    assert_eq!(email["state"], "pending");
    assert_eq!(email["not_after"], "2019-06-26T18:45:00Z");
    assert_eq!(email["supersede_key"], "183765/24403");
    assert_eq!(email["message"]["to"], "perry@example.com");
    assert_eq!(
        email["message"]["subject"],
        "Your video visit with Dr. Ada Example on June 26 at 11:45 AM PDT"
    );
    let sms = &planned[1];
    assert_eq!(sms["channel"], "sms");
    assert_eq!(sms["message"]["to"], "+14155552671");
    assert_eq!(sms["message"]["segments"], 1);
    assert_eq!(decision["skipped"], serde_json::json!([]));
}

#[test]
fn explain_lists_schema_violations() {
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("invalid.json");
    std::fs::write(
        &payload,
        r#"{"WebhookType":"NOTIFY_PUBLIC_USER","ID":"183765","Status":"Invited","EventTs":"yesterday",
            "Attributes":[{"AttributeName":"RecipientName","AttributeValue":"Perry Public"},
                          {"AttributeName":"SessionTimeUtc","AttributeValue":"soon"}]}"#,
    )
    .unwrap();

    let (code, stdout, stderr) = explain(&payload, &["--now", "2019-06-14T06:00:00Z"]);

    assert_eq!(code, 1, "exit code; stderr:\n{stderr}");
    assert_eq!(
        stdout,
        "Rejected (422): the payload does not match its schema (7 errors)\n\
         \x20 /EventTs: value is not a UTC date and time such as 2019-06-26T18:45:00\n\
         \x20 /ID: value is not of type \"integer\"\n\
         \x20 /Attributes/1/AttributeValue: attribute SessionTimeUtc is not a UTC date and time such as 2019-06-26T18:45:00\n\
         \x20 /Attributes: required attribute RecipientEmailAddress is missing\n\
         \x20 /Attributes: required attribute RecipientSmsNumber is missing\n\
         \x20 /Attributes: required attribute RecipientTimeZone is missing\n\
         \x20 /Status: value is not one of the allowed values: Invite, Update, LongReminder, ShortReminder, Cancellation, DeclinedOrExpiredProposal, Welcome\n",
        "stdout"
    );
    assert_eq!(stderr, "", "stderr");
}

#[test]
fn explain_rejects_invalid_json() {
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("broken.json");
    std::fs::write(&payload, "{\n  \"WebhookType\": \"X\",\n  \"ID\": 1,,\n}").unwrap();

    let (code, stdout, stderr) = explain(&payload, &[]);

    assert_eq!(code, 1, "exit code; stderr:\n{stderr}");
    assert_eq!(
        stdout,
        "Rejected (400): the body is not valid JSON: key must be a string\n\
         \x20 at line 3, column 11\n",
        "stdout"
    );
    assert_eq!(stderr, "", "stderr");
}

#[test]
fn explain_rejects_invalid_now() {
    let (code, stdout, stderr) = explain(&example("invite"), &["--now", "yesterday"]);

    assert_eq!(code, 2, "exit code");
    assert_eq!(
        stderr,
        "error: --now: invalid timestamp \"yesterday\": expected a UTC date and time such as 2019-06-14T05:52:01, optionally with a fraction and a Z or an offset\n",
        "stderr"
    );
    assert_eq!(stdout, "", "stdout");
}

#[test]
fn explain_reports_missing_payload() {
    let dir = tempfile::tempdir().unwrap();
    let payload = dir.path().join("absent.json");

    let (code, stdout, stderr) = explain(&payload, &[]);

    assert_eq!(code, 1, "exit code");
    let prefix = format!("error: cannot read {}: ", payload.display());
    assert!(
        stderr.starts_with(&prefix),
        "stderr starts with {prefix:?}:\n{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line on stderr:\n{stderr}");
    assert_eq!(stdout, "", "stdout");
}

#[test]
fn explain_stale_event_reason_names_age() {
    let (code, stdout, _) = explain(
        &example("declined-proposal"),
        &["--now", "2019-06-14T06:00:00Z"],
    );

    assert_eq!(code, 0, "exit code");
    let result = stdout
        .lines()
        .find(|line| line.starts_with("Result: "))
        .expect("a Result line");
    assert!(
        result.contains("max_event_age"),
        "rule declined-proposal matches type and status and fails only on the age, so the summary should say so: {result}"
    );
}

#[test]
fn explain_long_reminder_across_midnight() {
    // The reminder goes out at 22:30 PDT on June 27 for a session at 00:30 PDT on June 28.
    let mut payload: Value =
        serde_json::from_str(&std::fs::read_to_string(example("long-reminder")).unwrap()).unwrap();
    payload["EventTs"] = "2019-06-28T05:30:00".into();
    for attribute in payload["Attributes"].as_array_mut().unwrap() {
        match attribute["AttributeName"].as_str() {
            Some("SessionTimeUtc") => attribute["AttributeValue"] = "2019-06-28T07:30:00".into(),
            Some("SessionTimeLocal") => attribute["AttributeValue"] = "2019-06-28T00:30:00".into(),
            _ => {}
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("late-night.json");
    std::fs::write(&path, payload.to_string()).unwrap();

    let (code, stdout, stderr) = explain(
        &path,
        &["--now", "2019-06-28T05:31:00Z", "--format", "json"],
    );

    assert_eq!(code, 0, "exit code; stderr:\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).expect("stdout is JSON");
    let sms = report["decision"]["planned"]
        .as_array()
        .unwrap()
        .iter()
        .find(|delivery| delivery["channel"] == "sms")
        .expect("an SMS delivery");
    let body = sms["message"]["body"].as_str().unwrap();
    assert!(
        !body.contains(" today at "),
        "the session is on June 28 local time and the reminder goes out on June 27: {body}"
    );
}
