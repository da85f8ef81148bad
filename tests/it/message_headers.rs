//! E-mail headers as the test SMTP server receives them from the real binary.
//!
//! The cases are display names with non-ASCII text, specials, control characters and great
//! length, IDN and plus addresses, and invalid addresses that make the e-mail channel
//! unavailable. Long subjects and body lines must be folded or wrapped within 998 octets,
//! and the Message-ID must stay the same across retries.

use std::time::Duration;

use serde_json::{Value, json};

use crate::support::gateway::Gateway;
use crate::support::herald::{ConfigDir, Reply};
use crate::support::payloads::PublicUser;
use crate::support::smtp::{ReceivedMessage, Stage, parse_mailbox};

/// Upper bound for a message to arrive after herald accepted its webhook.
const WAIT: Duration = Duration::from_secs(10);

/// RFC 5322 section 2.1.1: each line of a message must be at most 998 octets, CRLF excluded.
const MAX_LINE_OCTETS: usize = 998;

const RECIPIENT: &str = "perry@example.com";

/// July 2030, when Los Angeles is on daylight time (UTC-7): 18:45 UTC is 11:45 AM PDT, which
/// the invite subject shows as "July 10 at 11:45 AM PDT".
const SESSION_UTC: &str = "2030-07-10T18:45:00";
const SESSION_LOCAL: &str = "2030-07-10T11:45:00";
const SUBJECT_DATE: &str = "July 10 at 11:45 AM PDT";

/// Returns an Invite to the default recipient in Los Angeles, with no SMS number, so that
/// herald sends one e-mail.
fn invite() -> PublicUser {
    PublicUser::new("Invite", 0)
        .with("SessionTimeUtc", SESSION_UTC)
        .with("SessionTimeLocal", SESSION_LOCAL)
        .with("RecipientSmsNumber", "")
}

/// Starts herald with the repository's configuration, posts `payload`, and returns the gateway
/// and the one e-mail that arrived.
async fn deliver(payload: &PublicUser, case: &str) -> (Gateway, ReceivedMessage) {
    deliver_with(ConfigDir::defaults(), payload, case).await
}

async fn deliver_with(
    config: ConfigDir,
    payload: &PublicUser,
    case: &str,
) -> (Gateway, ReceivedMessage) {
    let gateway = Gateway::start(config).await;
    let reply = gateway.herald.post(&payload.json()).await;
    assert_eq!(reply.status, 202, "{case}: HTTP status: {}", reply.text);
    let message = gateway.smtp.wait_for_messages(1, WAIT).await.remove(0);
    (gateway, message)
}

/// Asserts that every line of the raw message ends in CRLF, that every CR and LF belongs to
/// such a pair, and that no line is longer than 998 octets.
fn assert_raw_lines(message: &ReceivedMessage, case: &str) {
    let data = &message.data;
    assert!(
        data.ends_with(b"\r\n"),
        "{case}: the message does not end in CRLF"
    );
    for (index, line) in data.split_inclusive(|&byte| byte == b'\n').enumerate() {
        let number = index + 1;
        let line = line.strip_suffix(b"\r\n").unwrap_or_else(|| {
            panic!(
                "{case}: line {number} ends in a bare LF: {:?}",
                String::from_utf8_lossy(line)
            )
        });
        assert!(
            !line.contains(&b'\r'),
            "{case}: line {number} contains a bare CR: {:?}",
            String::from_utf8_lossy(line)
        );
        assert!(
            line.len() <= MAX_LINE_OCTETS,
            "{case}: line {number} has {} octets, more than {MAX_LINE_OCTETS}: {:?}...",
            line.len(),
            String::from_utf8_lossy(&line[..80])
        );
    }
}

/// Returns the raw lines of a header field in the message's top-level header: the line that
/// starts with `name:` and its continuation lines.
fn raw_header_lines(message: &ReceivedMessage, name: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&message.data);
    let header = text.split("\r\n\r\n").next().unwrap_or_default();
    let prefix = format!("{}:", name.to_ascii_lowercase());
    let mut lines = Vec::new();
    for line in header.split("\r\n") {
        if lines.is_empty() {
            if line.to_ascii_lowercase().starts_with(&prefix) {
                lines.push(line.to_string());
            }
        } else if line.starts_with([' ', '\t']) {
            lines.push(line.to_string());
        } else {
            break;
        }
    }
    lines
}

/// Asserts that the e-mail went to the default recipient alone, with no added recipient
/// header, and that herald still responds to `/healthz`.
async fn assert_single_recipient(gateway: &Gateway, message: &ReceivedMessage, case: &str) {
    assert_eq!(message.rcpt_to, [RECIPIENT], "{case}: RCPT TO");
    assert_eq!(
        message.headers("To").len(),
        1,
        "{case}: number of To headers"
    );
    assert_eq!(
        message.headers("Cc"),
        Vec::<String>::new(),
        "{case}: Cc headers"
    );
    assert_eq!(
        message.headers("Bcc"),
        Vec::<String>::new(),
        "{case}: Bcc headers"
    );
    assert_eq!(
        gateway.herald.get("/healthz").await.status,
        200,
        "{case}: herald stopped answering"
    );
}

/// Sends an e-mail to a recipient named `raw_name` and asserts that the To header carries
/// `expected` as its display name, decoded.
async fn assert_display_name(raw_name: &str, expected: Option<&str>, case: &str) {
    let payload = invite().with("RecipientName", raw_name);
    let (gateway, message) = deliver(&payload, case).await;

    assert_eq!(
        message.mailbox("To"),
        (expected.map(str::to_string), RECIPIENT.to_string()),
        "{case}: To display name and address"
    );
    assert_raw_lines(&message, case);
    assert_single_recipient(&gateway, &message, case).await;
}

/// Checks the test's own mailbox parser, so that the display-name tests below can fail.
#[test]
fn mailbox_parser_reads_one_mailbox() {
    let valid: &[(&str, Option<&str>, &str)] = &[
        ("perry@example.com", None, "perry@example.com"),
        (
            "\"Perry \\\"P\\\" Public\" <perry@example.com>",
            Some("Perry \"P\" Public"),
            "perry@example.com",
        ),
        (
            "=?utf-8?b?UHVibGljLCBQZXJyeQ==?= <perry@example.com>",
            Some("Public, Perry"),
            "perry@example.com",
        ),
        (
            "Dr. Ada <ada@example.com>",
            Some("Dr. Ada"),
            "ada@example.com",
        ),
    ];
    for (value, name, address) in valid {
        assert_eq!(
            parse_mailbox(value),
            Ok((name.map(str::to_string), address.to_string())),
            "{value:?}"
        );
    }

    let invalid = [
        "Public, Perry <perry@example.com>",
        "\"Perry \"P\" Public\" <perry@example.com>",
        "perry@home <perry@example.com>",
        "Perry <perry@example.com>, victim@evil.example",
    ];
    for value in invalid {
        let parsed = parse_mailbox(value);
        assert!(parsed.is_err(), "{value:?} parsed as {parsed:?}");
    }
}

// Display names.

#[tokio::test]
async fn name_with_accents() {
    assert_display_name("José Müller", Some("José Müller"), "accents").await;
}

#[tokio::test]
async fn name_in_cjk() {
    assert_display_name("山田太郎", Some("山田太郎"), "CJK").await;
}

#[tokio::test]
async fn name_with_double_quotes() {
    assert_display_name(
        "Perry \"P\" Public",
        Some("Perry \"P\" Public"),
        "double quotes",
    )
    .await;
}

#[tokio::test]
async fn name_with_comma_stays_one_mailbox() {
    assert_display_name("Public, Perry", Some("Public, Perry"), "comma").await;
}

#[tokio::test]
async fn name_with_at_sign() {
    assert_display_name("perry@home", Some("perry@home"), "at-sign").await;
}

#[tokio::test]
async fn name_crlf_injection_adds_no_header() {
    let case = "CR/LF injection";
    let payload = invite().with("RecipientName", "Perry\r\nBcc: victim@evil.example");
    let (gateway, message) = deliver(&payload, case).await;

    assert_eq!(
        message.mailbox("To"),
        (
            Some("Perry Bcc: victim@evil.example".to_string()),
            RECIPIENT.to_string()
        ),
        "{case}: To display name and address"
    );
    let header_lines: Vec<String> = String::from_utf8_lossy(&message.data)
        .split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .split("\r\n")
        .filter(|line| line.to_ascii_lowercase().starts_with("bcc:"))
        .map(str::to_string)
        .collect();
    assert_eq!(header_lines, Vec::<String>::new(), "{case}: raw Bcc lines");
    assert_raw_lines(&message, case);
    assert_single_recipient(&gateway, &message, case).await;
}

#[tokio::test]
async fn name_dot_line_stays_in_header() {
    // A line holding only "." ends SMTP DATA, so a name that could produce one would cut the
    // message short and smuggle the rest in as SMTP commands.
    assert_display_name(
        "Perry\r\n.\r\nMAIL FROM:<x@evil.example>",
        Some("Perry . MAIL FROM:<x@evil.example>"),
        "dot line injection",
    )
    .await;
}

#[tokio::test]
async fn name_with_nul_is_cleaned() {
    assert_display_name("Perry\u{0} Public\u{0}", Some("Perry Public"), "NUL").await;
}

#[tokio::test]
async fn name_with_control_characters_is_cleaned() {
    // BEL, ESC, NEL (a C1 control), LINE SEPARATOR and DEL, each next to a space or an end.
    assert_display_name(
        "\u{7}Perry\u{1b}\u{85} \u{2028}Public\u{7f}",
        Some("Perry Public"),
        "BEL, ESC, NEL, U+2028 and DEL",
    )
    .await;
}

#[tokio::test]
async fn name_with_tab_becomes_space() {
    assert_display_name("Perry\tPublic", Some("Perry Public"), "tab").await;
}

#[tokio::test]
async fn name_spaces_trimmed_and_collapsed() {
    assert_display_name(
        "   Perry    Public \t ",
        Some("Perry Public"),
        "leading, trailing and repeated spaces",
    )
    .await;
}

#[tokio::test]
async fn name_of_control_characters_only_is_omitted() {
    assert_display_name("\r\n\t\u{0}", None, "only control characters").await;
}

#[tokio::test]
async fn long_name_is_folded() {
    let case = "long name with spaces";
    let name = "José Müller ".repeat(30);
    let expected = name.trim_end();
    let payload = invite().with("RecipientName", &name);
    let (gateway, message) = deliver(&payload, case).await;

    assert_eq!(
        message.mailbox("To"),
        (Some(expected.to_string()), RECIPIENT.to_string()),
        "{case}: To display name and address"
    );
    let to_lines = raw_header_lines(&message, "To").len();
    assert!(
        to_lines > 1,
        "{case}: the To header of a 359-character name is not folded: {to_lines} line"
    );
    assert_raw_lines(&message, case);
    assert_single_recipient(&gateway, &message, case).await;
}

#[tokio::test]
async fn long_unbroken_name_is_cut() {
    // lettre folds ASCII text only at spaces, so herald cuts a name at a run of more than
    // 200 characters without a space, with an ellipsis; every line stays within 998 octets.
    let name = "Perry-Public-".repeat(80);
    let expected = format!("{}…", &name[..199]);
    assert_display_name(
        &name,
        Some(&expected),
        "1,040-character name without spaces",
    )
    .await;
}

// Addresses.

#[tokio::test]
async fn idn_domain_sent_as_punycode() {
    let case = "IDN domain";
    let payload = invite().with("RecipientEmailAddress", "anna@bücher.example");
    let (gateway, message) = deliver(&payload, case).await;

    assert_eq!(
        message.rcpt_to,
        ["anna@xn--bcher-kva.example"],
        "{case}: RCPT TO"
    );
    assert_eq!(
        message.mailbox("To"),
        (
            Some("Perry Public".to_string()),
            "anna@xn--bcher-kva.example".to_string()
        ),
        "{case}: To display name and address"
    );
    assert!(
        !message
            .mail_parameters
            .iter()
            .any(|parameter| parameter.eq_ignore_ascii_case("SMTPUTF8")),
        "{case}: MAIL FROM asks for SMTPUTF8: {:?}",
        message.mail_parameters
    );
    assert_raw_lines(&message, case);
    assert_eq!(
        gateway.herald.get("/healthz").await.status,
        200,
        "{case}: herald stopped answering"
    );
}

#[tokio::test]
async fn idn_domain_in_capitals_lowercased() {
    let case = "IDN domain in capitals";
    let payload = invite().with("RecipientEmailAddress", "Anna@BÜCHER.Example");
    let (_gateway, message) = deliver(&payload, case).await;

    assert_eq!(
        message.rcpt_to,
        ["Anna@xn--bcher-kva.example"],
        "{case}: RCPT TO keeps the local part and lowercases the domain"
    );
    assert_eq!(
        message.mailbox("To").1,
        "Anna@xn--bcher-kva.example",
        "{case}: To address"
    );
}

#[tokio::test]
async fn plus_address_kept() {
    let case = "plus-addressing";
    let payload = invite().with("RecipientEmailAddress", "perry+visits@example.com");
    let (_gateway, message) = deliver(&payload, case).await;

    assert_eq!(
        message.rcpt_to,
        ["perry+visits@example.com"],
        "{case}: RCPT TO"
    );
    assert_eq!(
        message.mailbox("To"),
        (
            Some("Perry Public".to_string()),
            "perry+visits@example.com".to_string()
        ),
        "{case}: To display name and address"
    );
}

/// Returns the channels of the deliveries in a webhook response, in order.
fn delivery_channels(reply: &Reply) -> Vec<String> {
    reply.body["deliveries"]
        .as_array()
        .map(|deliveries| {
            deliveries
                .iter()
                .map(|delivery| delivery["channel"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Posts an Invite to `address` and asserts that the e-mail channel is skipped with `reason`
/// while the SMS still goes out, and that herald never connects to the SMTP server.
async fn assert_address_rejected(address: &str, reason: &str, case: &str) {
    let gateway = Gateway::start(ConfigDir::defaults()).await;
    let payload = invite()
        .with("RecipientEmailAddress", address)
        .with("RecipientSmsNumber", "4155552671");
    let reply = gateway.herald.post(&payload.json()).await;

    assert_eq!(reply.status, 202, "{case}: HTTP status: {}", reply.text);
    assert_eq!(
        reply.body["skipped"],
        json!([{"channel": "email", "reason": reason, "rule": "invite"}]),
        "{case}: skipped channels"
    );
    assert_eq!(delivery_channels(&reply), ["sms"], "{case}: deliveries");
    gateway.sms.wait_for_requests(1, WAIT).await;
    assert_eq!(
        gateway.smtp.messages().len(),
        0,
        "{case}: e-mails at the SMTP server"
    );
    assert_eq!(
        gateway.smtp.connections_accepted(),
        0,
        "{case}: SMTP connections"
    );
}

#[tokio::test]
async fn address_without_at_sign_rejected() {
    assert_address_rejected(
        "perry.example.com",
        "RecipientEmailAddress is not an e-mail address (no @)",
        "no @",
    )
    .await;
}

#[tokio::test]
async fn address_without_domain_rejected() {
    assert_address_rejected(
        "perry@",
        "RecipientEmailAddress is not an e-mail address (empty local part or domain)",
        "empty domain",
    )
    .await;
}

#[tokio::test]
async fn address_with_space_rejected() {
    assert_address_rejected(
        "pe rry@example.com",
        "RecipientEmailAddress contains whitespace or control characters",
        "space in the local part",
    )
    .await;
}

#[tokio::test]
async fn address_with_non_ascii_local_part_rejected() {
    assert_address_rejected(
        "josé@example.com",
        "RecipientEmailAddress has a non-ASCII local part, which needs SMTPUTF8",
        "non-ASCII local part",
    )
    .await;
}

#[tokio::test]
async fn address_crlf_injection_rejected() {
    assert_address_rejected(
        "perry@example.com\r\nBcc: victim@evil.example",
        "RecipientEmailAddress contains whitespace or control characters",
        "CR/LF in the address",
    )
    .await;
}

// Subjects and bodies.

/// Sends an Invite whose host is `host_name` and asserts the decoded Subject, that the
/// Subject header is folded over several lines, and the raw line limits.
async fn assert_long_subject(host_name: &str, case: &str) {
    let payload = invite().with("SessionHostName", host_name);
    let (gateway, message) = deliver(&payload, case).await;

    assert_eq!(
        message.decoded_header("Subject"),
        Some(format!(
            "Your video visit with {host_name} on {SUBJECT_DATE}"
        )),
        "{case}: decoded Subject"
    );
    let subject_lines = raw_header_lines(&message, "Subject").len();
    assert!(
        subject_lines > 1,
        "{case}: the Subject header is not folded: {subject_lines} line"
    );
    assert_raw_lines(&message, case);
    assert_single_recipient(&gateway, &message, case).await;
}

#[tokio::test]
async fn long_subject_is_folded() {
    let host_name = format!("Dr. {}", ["Ada Example"; 18].join(" "));
    assert_eq!(host_name.len(), 219, "length of the host name");
    assert_long_subject(&host_name, "219-character host name").await;
}

#[tokio::test]
async fn long_cjk_subject_is_folded() {
    let host_name = "山田太郎医師".repeat(35);
    assert_long_subject(&host_name, "210-character CJK host name").await;
}

#[tokio::test]
async fn long_unbroken_subject_is_cut() {
    // lettre folds ASCII text only at spaces, so herald cuts a subject at a run of more than
    // 200 characters without a space, with an ellipsis; every line stays within 998 octets.
    let case = "1,050-character host name without spaces";
    let host_name = "Dr.Ada-Example-".repeat(70);
    let payload = invite().with("SessionHostName", &host_name);
    let (gateway, message) = deliver(&payload, case).await;

    let expected = format!("Your video visit with {}…", &host_name[..199]);
    assert_eq!(
        message.decoded_header("Subject"),
        Some(expected),
        "{case}: decoded Subject"
    );
    assert_raw_lines(&message, case);
    assert_single_recipient(&gateway, &message, case).await;
}

#[tokio::test]
async fn subject_crlf_injection_adds_no_header() {
    let case = "CR/LF in the host name";
    let payload = invite().with("SessionHostName", "Dr. Ada\r\nBcc: victim@evil.example");
    let (gateway, message) = deliver(&payload, case).await;

    assert_eq!(
        message.decoded_header("Subject"),
        Some(format!(
            "Your video visit with Dr. Ada Bcc: victim@evil.example on {SUBJECT_DATE}"
        )),
        "{case}: decoded Subject"
    );
    assert_raw_lines(&message, case);
    assert_single_recipient(&gateway, &message, case).await;
}

#[tokio::test]
async fn long_body_line_is_wrapped() {
    let case = "3,000-character body line";
    let prefix = "https://portal.clinic.example/welcome?token=";
    let token: String = "0123456789abcdef"
        .chars()
        .cycle()
        .take(3000 - prefix.len())
        .collect();
    let long_line = format!("{prefix}{token}");
    assert_eq!(long_line.len(), 3000, "length of the long line");

    let config = ConfigDir::defaults();
    config.write(
        "templates/welcome/email.txt",
        &format!(
            "Hello {{{{ fields.name }}}},\n\n{{{{ vars.portal_url }}}}/welcome?token={token}\n\n{{% include \"_partials/signature.txt\" %}}\n"
        ),
    );
    config.write(
        "templates/welcome/email.html",
        &format!("<p>Hello {{{{ fields.name }}}},</p>\n<p>{long_line}</p>\n"),
    );
    let payload = PublicUser::new("Welcome", 0).with("RecipientSmsNumber", "");
    let (gateway, message) = deliver_with(config, &payload, case).await;

    assert_eq!(
        message.body_text().map(|text| text.trim_end().to_string()),
        Some(format!(
            "Hello Perry Public,\n\n{long_line}\n\nYour Clinic\n(555) 010-0100"
        )),
        "{case}: text part"
    );
    let html = message.body_html().unwrap_or_default();
    assert!(
        html.contains(&format!("<p>{long_line}</p>")),
        "{case}: the HTML part lacks the long line:\n{html}"
    );
    assert_raw_lines(&message, case);
    assert_single_recipient(&gateway, &message, case).await;
}

// Message-ID.

#[tokio::test]
async fn message_id_same_across_retries() {
    let case = "retry after 451";
    let config = ConfigDir::defaults();
    config.replace(
        "rules.yaml",
        "    initial_backoff: 30s\n    max_backoff: 30m\n",
        "    initial_backoff: 1s\n    max_backoff: 2s\n",
    );
    let gateway = Gateway::start(config).await;
    gateway.smtp.fail_next(
        Stage::Data,
        1,
        451,
        "4.3.0 Temporary failure, try again later",
    );

    let reply = gateway.herald.post(&invite().json()).await;
    assert_eq!(reply.status, 202, "{case}: HTTP status: {}", reply.text);
    let delivery_id = reply.body["deliveries"][0]["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{case}: no delivery id in {}", reply.text));
    let delivered = gateway.smtp.wait_for_messages(1, WAIT).await.remove(0);

    let rejected = gateway.smtp.rejected_messages();
    assert_eq!(rejected.len(), 1, "{case}: DATA answered with 451");
    let first_id = rejected[0].header("Message-ID");
    let second_id = delivered.header("Message-ID");
    assert_eq!(first_id, second_id, "{case}: Message-ID of both attempts");
    let message_id = second_id.unwrap_or_default();
    assert!(
        message_id.starts_with("<herald."),
        "{case}: Message-ID {message_id:?} does not start with <herald."
    );
    assert!(
        message_id.ends_with(&format!(".{delivery_id}@clinic.example>")),
        "{case}: Message-ID {message_id:?} does not end with .{delivery_id}@clinic.example>"
    );

    let detail = gateway.delivery(delivery_id);
    let outcomes: Vec<&str> = detail["attempts"]
        .as_array()
        .map(|attempts| {
            attempts
                .iter()
                .map(|attempt| attempt["outcome"].as_str().unwrap_or_default())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        outcomes,
        ["transient", "delivered"],
        "{case}: attempt outcomes"
    );
    assert_eq!(detail["state"], Value::from("delivered"), "{case}: state");
}
