//! The real binary with the default configuration, sending e-mail to the test SMTP server and
//! SMS to the HTTP recorder: what each `NOTIFY_PUBLIC_USER` status sends, which events send
//! nothing, and that patient data stays out of the log.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use lettre::message::Mailbox;
use regex::Regex;
use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::herald::{ConfigDir, Herald, Options, Reply};
use crate::support::http_recorder::{HttpRecorder, RecordedRequest, ScriptedResponse};
use crate::support::payloads::{PublicUser, platform_time};
use crate::support::smtp::{ReceivedMessage, SmtpConfig, SmtpServer, Stage};

/// Upper bound for a message to arrive after herald accepted its webhook.
const WAIT: Duration = Duration::from_secs(10);

/// Time to watch for extra messages after the expected ones arrived. The dispatcher checks the
/// outbox at least once a second, so a stray delivery would show up within this time.
const SETTLE: Duration = Duration::from_millis(1500);

const SMS_ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
const SMS_AUTH_TOKEN: &str = "test-auth-token";
const SMS_FROM: &str = "+15005550006";

/// The sender and the template vars when `EMAIL_FROM`, `CLINIC_NAME`, `CLINIC_PHONE` and
/// `PORTAL_URL` are unset, as `rules.yaml` defines them.
const DEFAULT_FROM_NAME: &str = "Your Clinic";
const DEFAULT_FROM_ADDRESS: &str = "no-reply@clinic.example";
const SIGNATURE: &str = "Your Clinic\n(555) 010-0100";

/// The recipient and host of `PublicUser::new`.
const RECIPIENT_NAME: &str = "Perry Public";
const RECIPIENT_EMAIL: &str = "perry@example.com";
const RECIPIENT_E164: &str = "+14155552671";
const HOST_NAME: &str = "Dr. Ada Example";

/// A session time with its local rendering in the recipient's zone ("Pacific Standard Time",
/// which CLDR maps to America/Los_Angeles). The texts were worked out by hand from the US
/// daylight saving rules and checked with GNU `date`, not with herald's code.
struct Session {
    utc: &'static str,
    local: &'static str,
    /// `%A, %B %-d, %Y at %-I:%M %p %Z`, the format templates get when they pass none.
    long: &'static str,
    /// `%B %-d at %-I:%M %p %Z`, as in e-mail subjects.
    subject_date: &'static str,
    /// `%b %-d at %-I:%M %p %Z`, as in SMS texts.
    sms_date: &'static str,
    /// `%-I:%M %p %Z`, as in reminders.
    clock: &'static str,
}

// NOTE: both sessions assume the US daylight saving rules in jiff's bundled time zone
// database. If those rules change for 2030 or 2031, the expected abbreviations change too.

/// July 2030: Los Angeles is on daylight time (UTC-7), so 18:45 UTC is 11:45 AM PDT.
const SUMMER: Session = Session {
    utc: "2030-07-10T18:45:00",
    local: "2030-07-10T11:45:00",
    long: "Wednesday, July 10, 2030 at 11:45 AM PDT",
    subject_date: "July 10 at 11:45 AM PDT",
    sms_date: "Jul 10 at 11:45 AM PDT",
    clock: "11:45 AM PDT",
};

/// January 2031: Los Angeles is on standard time (UTC-8), so 19:45 UTC is 11:45 AM PST.
const WINTER: Session = Session {
    utc: "2031-01-15T19:45:00",
    local: "2031-01-15T11:45:00",
    long: "Wednesday, January 15, 2031 at 11:45 AM PST",
    subject_date: "January 15 at 11:45 AM PST",
    sms_date: "Jan 15 at 11:45 AM PST",
    clock: "11:45 AM PST",
};

/// herald with the repository's configuration, its e-mail channel pointed at a test SMTP
/// server and its SMS channel at an HTTP recorder. Fields drop in order, so herald stops
/// before the servers it sends to.
struct Gateway {
    herald: Herald,
    smtp: SmtpServer,
    sms: HttpRecorder,
    _config: ConfigDir,
    data: TempDir,
}

impl Gateway {
    /// Starts herald with `SMTP_URL=smtp://127.0.0.1:PORT` on a plain SMTP server.
    async fn start() -> Gateway {
        let smtp = SmtpServer::start(SmtpConfig::default()).await;
        let url = format!("smtp://127.0.0.1:{}", smtp.port());
        Gateway::start_with(smtp, url, false).await
    }

    /// Starts herald against `smtp` with this `SMTP_URL`. With `trust_certificate`, herald
    /// also gets `SMTP_CA_FILE` naming a file that contains the server's certificate.
    async fn start_with(smtp: SmtpServer, smtp_url: String, trust_certificate: bool) -> Gateway {
        let config = ConfigDir::defaults();
        let data = tempfile::tempdir().unwrap();
        let sms = HttpRecorder::start().await;
        sms.set_default_response(ScriptedResponse::sms_accepted());

        let mut options = Options::new(config.path(), data.path())
            .env("SMTP_URL", smtp_url)
            .env("SMS_API_URL", sms.url())
            .env("SMS_ACCOUNT_SID", SMS_ACCOUNT_SID)
            .env("SMS_AUTH_TOKEN", SMS_AUTH_TOKEN)
            .env("SMS_FROM", SMS_FROM);
        if trust_certificate {
            let path = smtp.write_certificate_pem(config.path());
            options = options.env("SMTP_CA_FILE", path.display().to_string());
        }
        let herald = Herald::start(options).await;
        Gateway {
            herald,
            smtp,
            sms,
            _config: config,
            data,
        }
    }

    /// Reads the channel, state and attempt count of every delivery in herald's outbox
    /// database, in the order herald stored them.
    fn stored_deliveries(&self) -> Vec<(String, String, i64)> {
        let path = self.data.path().join("herald.sqlite3");
        let connection = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap_or_else(|error| panic!("opening {} failed: {error}", path.display()));
        let mut statement = connection
            .prepare("SELECT channel, state, attempts FROM deliveries ORDER BY id")
            .unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    /// Waits `SETTLE`, then asserts that exactly this many e-mails and SMS arrived in all.
    async fn assert_totals(&self, emails: usize, sms: usize, case: &str) {
        tokio::time::sleep(SETTLE).await;
        let received = self.smtp.messages();
        assert_eq!(
            received.len(),
            emails,
            "{case}: e-mails at the SMTP server: {:#?}",
            received
                .iter()
                .map(|m| m.header("Subject"))
                .collect::<Vec<_>>()
        );
        let requests = self.sms.requests();
        assert_eq!(
            requests.len(),
            sms,
            "{case}: requests at the SMS recorder: {:#?}",
            requests
                .iter()
                .map(|r| r.form_value("Body"))
                .collect::<Vec<_>>()
        );
    }
}

/// Returns a payload with the default recipient and host, a fixed session time and an
/// EventTs of now.
fn patient(status: &str, session: &Session) -> PublicUser {
    PublicUser::new(status, 0)
        .with("SessionTimeUtc", session.utc)
        .with("SessionTimeLocal", session.local)
}

/// The e-mail that a status sends: the exact subject and text part, and fragments
/// that the HTML part must contain.
struct ExpectedEmail {
    subject: String,
    text: String,
    html_fragments: Vec<String>,
}

/// Parses an address header that contains one mailbox into its display name and address, so that
/// quoting the name or not makes no difference.
fn header_mailbox(message: &ReceivedMessage, name: &str, case: &str) -> (Option<String>, String) {
    let value = message
        .decoded_header(name)
        .unwrap_or_else(|| panic!("{case}: the e-mail has no {name} header"));
    let mailbox: Mailbox = value.parse().unwrap_or_else(|error| {
        panic!("{case}: {name} header {value:?} is not a mailbox: {error}")
    });
    (mailbox.name, mailbox.email.to_string())
}

/// Asserts the envelope, headers and parts of one e-mail to the default recipient.
fn assert_email(message: &ReceivedMessage, expected: &ExpectedEmail, case: &str) {
    assert_eq!(message.mail_from, DEFAULT_FROM_ADDRESS, "{case}: MAIL FROM");
    assert_eq!(
        message.rcpt_to,
        vec![RECIPIENT_EMAIL.to_string()],
        "{case}: RCPT TO"
    );
    assert_eq!(
        header_mailbox(message, "To", case),
        (
            Some(RECIPIENT_NAME.to_string()),
            RECIPIENT_EMAIL.to_string()
        ),
        "{case}: To header"
    );
    assert_eq!(
        header_mailbox(message, "From", case),
        (
            Some(DEFAULT_FROM_NAME.to_string()),
            DEFAULT_FROM_ADDRESS.to_string()
        ),
        "{case}: From header"
    );
    assert_eq!(
        message.decoded_header("Subject").as_deref(),
        Some(expected.subject.as_str()),
        "{case}: Subject"
    );

    let message_id = message.header("Message-ID").unwrap_or_default();
    assert!(
        message_id.starts_with('<') && message_id.ends_with("@clinic.example>"),
        "{case}: Message-ID {message_id:?} is not <...@clinic.example>"
    );
    let date = message.header("Date").unwrap_or_default();
    assert!(
        jiff::fmt::rfc2822::parse(&date).is_ok(),
        "{case}: Date {date:?} is not an RFC 5322 date"
    );

    assert_eq!(
        message.content_type(),
        "multipart/alternative",
        "{case}: Content-Type"
    );
    let text = message.body_text().unwrap_or_default();
    assert_eq!(text.trim_end(), expected.text, "{case}: text part");
    let html = message.body_html().unwrap_or_default();
    for fragment in &expected.html_fragments {
        assert!(
            html.contains(fragment.as_str()),
            "{case}: HTML part lacks {fragment:?}:\n{html}"
        );
    }
}

/// Asserts one request to the SMS provider: path, Basic auth and the form fields.
fn assert_sms(request: &RecordedRequest, body: &str, case: &str) {
    assert_eq!(request.method, "POST", "{case}: SMS method");
    assert_eq!(
        request.path,
        format!("/2010-04-01/Accounts/{SMS_ACCOUNT_SID}/Messages.json"),
        "{case}: SMS path"
    );
    assert_eq!(
        request.basic_auth(),
        Some((SMS_ACCOUNT_SID.to_string(), SMS_AUTH_TOKEN.to_string())),
        "{case}: SMS Basic auth"
    );
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded"),
        "{case}: SMS content type"
    );
    let mut names: Vec<String> = request.form().into_iter().map(|(name, _)| name).collect();
    names.sort();
    assert_eq!(names, ["Body", "From", "To"], "{case}: SMS form fields");
    assert_eq!(
        request.form_value("To").as_deref(),
        Some(RECIPIENT_E164),
        "{case}: SMS To"
    );
    assert_eq!(
        request.form_value("From").as_deref(),
        Some(SMS_FROM),
        "{case}: SMS From"
    );
    assert_eq!(
        request.form_value("Body").as_deref(),
        Some(body),
        "{case}: SMS Body"
    );
}

/// Returns the channels of the deliveries in an accepted webhook's response, in order.
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

/// Asserts that no log line contains the recipient's name, e-mail address or phone number,
/// the host's name or the session's date.
fn assert_log_free_of_patient_data(herald: &Herald, session_dates: &[&str]) {
    // The number as written in the payload, in E.164, or with spaces, dots, dashes or brackets.
    let phone = Regex::new(r"(?:\+?1[\s.\-]*)?\(?415\)?[\s.\-]*555[\s.\-]*2671").unwrap();
    let lines = herald.logs();
    assert!(!lines.is_empty(), "herald wrote no log lines");
    for line in &lines {
        let lower = line.to_lowercase();
        assert!(
            !lower.contains("perry"),
            "log line contains the recipient's name or address: {line}"
        );
        assert!(
            !line.contains(RECIPIENT_EMAIL),
            "log line contains the recipient's address: {line}"
        );
        assert!(
            !phone.is_match(line),
            "log line contains the recipient's phone number: {line}"
        );
        assert!(
            !lower.contains("ada example"),
            "log line contains the host's name: {line}"
        );
        for date in session_dates {
            assert!(
                !line.contains(date),
                "log line contains the session time {date}: {line}"
            );
        }
    }
}

// What each status sends.

/// Sends one webhook, and asserts that exactly `email` arrives at the SMTP server and exactly
/// `sms` at the recorder, and that the log contains no patient data.
async fn assert_status_sends(
    payload: PublicUser,
    email: Option<ExpectedEmail>,
    sms: Option<String>,
    case: &str,
) {
    let gateway = Gateway::start().await;
    let reply = gateway.herald.post(&payload.json()).await;

    assert_eq!(reply.status, 202, "{case}: HTTP status: {}", reply.text);
    assert_eq!(reply.body["status"], "accepted", "{case}: response status");
    let mut expected_channels = Vec::new();
    if email.is_some() {
        expected_channels.push("email".to_string());
    }
    if sms.is_some() {
        expected_channels.push("sms".to_string());
    }
    assert_eq!(
        delivery_channels(&reply),
        expected_channels,
        "{case}: planned deliveries"
    );

    if let Some(expected) = &email {
        let messages = gateway.smtp.wait_for_messages(1, WAIT).await;
        assert_email(&messages[0], expected, case);
    }
    if let Some(body) = &sms {
        let requests = gateway.sms.wait_for_requests(1, WAIT).await;
        assert_sms(&requests[0], body, case);
    }
    gateway
        .assert_totals(
            usize::from(email.is_some()),
            usize::from(sms.is_some()),
            case,
        )
        .await;
    assert_log_free_of_patient_data(
        &gateway.herald,
        &[SUMMER.utc, SUMMER.local, WINTER.utc, WINTER.local],
    );
}

#[tokio::test]
async fn invite_sends_email_and_sms() {
    let session = &SUMMER;
    let email = ExpectedEmail {
        subject: format!(
            "Your video visit with {HOST_NAME} on {}",
            session.subject_date
        ),
        text: format!(
            "Hello {RECIPIENT_NAME},\n\n\
             You have a video visit with {HOST_NAME}.\n\n\
             When: {}\n\n\
             To join, sign in at https://portal.clinic.example a few minutes before the visit and choose \"Join visit\". You need a device with a camera and a microphone.\n\n\
             {SIGNATURE}",
            session.long
        ),
        html_fragments: vec![
            format!("<p>Hello {RECIPIENT_NAME},</p>"),
            format!("<p>You have a video visit with {HOST_NAME}.</p>"),
            format!("<p><strong>When:</strong> {}</p>", session.long),
        ],
    };
    let sms = format!(
        "Your Clinic: video visit with {HOST_NAME} on {}. Join at https://portal.clinic.example",
        session.sms_date
    );
    assert_status_sends(patient("Invite", session), Some(email), Some(sms), "Invite").await;
}

#[tokio::test]
async fn update_sends_email_and_sms() {
    let session = &WINTER;
    let email = ExpectedEmail {
        subject: format!(
            "New time for your video visit with {HOST_NAME}: {}",
            session.subject_date
        ),
        text: format!(
            "Hello {RECIPIENT_NAME},\n\n\
             Your video visit with {HOST_NAME} has moved.\n\n\
             New time: {}\n\n\
             Please disregard any earlier time. To join, sign in at https://portal.clinic.example a few minutes before the visit and choose \"Join visit\".\n\n\
             {SIGNATURE}",
            session.long
        ),
        html_fragments: vec![
            format!("<p>Hello {RECIPIENT_NAME},</p>"),
            format!("<p>Your video visit with {HOST_NAME} has moved.</p>"),
            format!("<p><strong>New time:</strong> {}</p>", session.long),
        ],
    };
    let sms = format!(
        "Your Clinic: your video visit with {HOST_NAME} moved to {}. Join at https://portal.clinic.example",
        session.sms_date
    );
    assert_status_sends(patient("Update", session), Some(email), Some(sms), "Update").await;
}

#[tokio::test]
async fn long_reminder_sends_email_and_sms() {
    let session = &SUMMER;
    let email = ExpectedEmail {
        subject: format!(
            "Reminder: video visit with {HOST_NAME} on {}",
            session.sms_date
        ),
        text: format!(
            "Hello {RECIPIENT_NAME},\n\n\
             This is a reminder of your video visit with {HOST_NAME}.\n\n\
             When: {}\n\n\
             Sign in at https://portal.clinic.example a few minutes early and choose \"Join visit\".\n\n\
             {SIGNATURE}",
            session.long
        ),
        html_fragments: vec![
            format!("<p>This is a reminder of your video visit with {HOST_NAME}.</p>"),
            format!("<p><strong>When:</strong> {}</p>", session.long),
        ],
    };
    let sms = format!(
        "Your Clinic reminder: video visit with {HOST_NAME} on {}. Join at https://portal.clinic.example",
        session.sms_date
    );
    assert_status_sends(
        patient("LongReminder", session),
        Some(email),
        Some(sms),
        "LongReminder",
    )
    .await;
}

#[tokio::test]
async fn short_reminder_sends_only_sms() {
    let session = &WINTER;
    let sms = format!(
        "Your Clinic: your video visit with {HOST_NAME} starts at {}. Join now at https://portal.clinic.example",
        session.clock
    );
    assert_status_sends(
        patient("ShortReminder", session),
        None,
        Some(sms),
        "ShortReminder with a number",
    )
    .await;
}

#[tokio::test]
async fn short_reminder_without_number_sends_email() {
    let session = &SUMMER;
    let email = ExpectedEmail {
        subject: format!(
            "Your video visit with {HOST_NAME} starts at {}",
            session.clock
        ),
        text: format!(
            "Hello {RECIPIENT_NAME},\n\n\
             Your video visit with {HOST_NAME} starts soon, at {}.\n\n\
             Join now: sign in at https://portal.clinic.example and choose \"Join visit\".\n\n\
             {SIGNATURE}",
            session.clock
        ),
        html_fragments: vec![format!(
            "<p>Your video visit with {HOST_NAME} starts soon, at {}.</p>",
            session.clock
        )],
    };
    let payload = patient("ShortReminder", session).with("RecipientSmsNumber", "");
    assert_status_sends(payload, Some(email), None, "ShortReminder without a number").await;
}

#[tokio::test]
async fn cancellation_sends_email_and_sms() {
    let session = &WINTER;
    let email = ExpectedEmail {
        subject: format!(
            "Cancelled: video visit with {HOST_NAME} on {}",
            session.subject_date
        ),
        text: format!(
            "Hello {RECIPIENT_NAME},\n\n\
             Your video visit with {HOST_NAME} on {} has been cancelled.\n\n\
             To book a new time, sign in at https://portal.clinic.example or call us at (555) 010-0100.\n\n\
             {SIGNATURE}",
            session.long
        ),
        html_fragments: vec![format!(
            "<p>Your video visit with {HOST_NAME} on {} has been cancelled.</p>",
            session.long
        )],
    };
    let sms = format!(
        "Your Clinic: your video visit with {HOST_NAME} on {} is cancelled. To rebook call (555) 010-0100",
        session.sms_date
    );
    assert_status_sends(
        patient("Cancellation", session),
        Some(email),
        Some(sms),
        "Cancellation",
    )
    .await;
}

#[tokio::test]
async fn declined_proposal_sends_email_and_sms() {
    let session = &SUMMER;
    let email = ExpectedEmail {
        subject: "We could not confirm your requested video visit".to_string(),
        text: format!(
            "Hello {RECIPIENT_NAME},\n\n\
             We could not confirm the video visit you requested for {}. No provider was available at that time, or the request expired.\n\n\
             Please request another time at https://portal.clinic.example or call us at (555) 010-0100.\n\n\
             {SIGNATURE}",
            session.long
        ),
        html_fragments: vec![format!(
            "<p>We could not confirm the video visit you requested for {}. No provider was available at that time, or the request expired.</p>",
            session.long
        )],
    };
    let sms = format!(
        "Your Clinic: we could not confirm your requested visit for {}. Please request another time at https://portal.clinic.example",
        session.sms_date
    );
    assert_status_sends(
        patient("DeclinedOrExpiredProposal", session),
        Some(email),
        Some(sms),
        "DeclinedOrExpiredProposal",
    )
    .await;
}

fn welcome_email() -> ExpectedEmail {
    ExpectedEmail {
        subject: "Welcome to Your Clinic video visits".to_string(),
        text: format!(
            "Hello {RECIPIENT_NAME},\n\n\
             An account for video visits with Your Clinic has been created for you.\n\n\
             To sign in, go to https://portal.clinic.example and choose \"Forgot password?\" with this e-mail address to set your password. After that you can see and join your visits there.\n\n\
             {SIGNATURE}"
        ),
        html_fragments: vec![
            format!("<p>Hello {RECIPIENT_NAME},</p>"),
            "<p>An account for video visits with Your Clinic has been created for you.</p>"
                .to_string(),
        ],
    }
}

#[tokio::test]
async fn welcome_sends_email_and_sms() {
    let sms = "Welcome to Your Clinic video visits. Sign in at https://portal.clinic.example to set your password and see your visits.";
    let payload = PublicUser::new("Welcome", 0);
    assert_status_sends(
        payload,
        Some(welcome_email()),
        Some(sms.to_string()),
        "Welcome",
    )
    .await;
}

#[tokio::test]
async fn welcome_without_number_sends_email() {
    let payload = PublicUser::new("Welcome", 0).with("RecipientSmsNumber", "");
    assert_status_sends(
        payload,
        Some(welcome_email()),
        None,
        "Welcome without a number",
    )
    .await;
}

// TLS.

#[tokio::test]
async fn starttls_required_delivers_over_tls() {
    let smtp = SmtpServer::start(SmtpConfig {
        require_tls: true,
        ..SmtpConfig::tls()
    })
    .await;
    let url = format!("smtp://localhost:{}?tls=required", smtp.port());
    let gateway = Gateway::start_with(smtp, url, true).await;

    let reply = gateway
        .herald
        .post(&patient("Invite", &SUMMER).json())
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);

    let messages = gateway.smtp.wait_for_messages(1, WAIT).await;
    assert!(messages[0].tls, "the message did not arrive over TLS");
    assert_eq!(gateway.smtp.starttls_upgrades(), 1, "STARTTLS handshakes");
    assert_eq!(
        messages[0].decoded_header("Subject").as_deref(),
        Some("Your video visit with Dr. Ada Example on July 10 at 11:45 AM PDT")
    );
    gateway.sms.wait_for_requests(1, WAIT).await;
    gateway.assert_totals(1, 1, "STARTTLS").await;
    assert_log_free_of_patient_data(&gateway.herald, &[SUMMER.utc, SUMMER.local]);
}

#[tokio::test]
async fn starttls_untrusted_certificate_sends_nothing() {
    let smtp = SmtpServer::start(SmtpConfig::tls()).await;
    let url = format!("smtp://localhost:{}?tls=required", smtp.port());
    let gateway = Gateway::start_with(smtp, url, false).await;

    let reply = gateway
        .herald
        .post(&patient("Invite", &SUMMER).json())
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);

    let retry = gateway
        .herald
        .wait_for_log(
            "Delivery failed; will retry",
            &[("channel", json!("email"))],
            WAIT,
        )
        .await;
    let error = retry["error"].as_str().unwrap_or_default();
    assert!(error.starts_with("SMTP: "), "retry error: {error}");
    assert!(
        error.contains("invalid peer certificate: UnknownIssuer"),
        "retry error: {error}"
    );
    gateway.sms.wait_for_requests(1, WAIT).await;
    gateway
        .assert_totals(0, 1, "STARTTLS without SMTP_CA_FILE")
        .await;
    assert_eq!(gateway.smtp.starttls_upgrades(), 0, "STARTTLS handshakes");
    assert_log_free_of_patient_data(&gateway.herald, &[SUMMER.utc, SUMMER.local]);
}

// Events that send nothing.

/// Asserts a 200 `ignored` response with a reason, and returns the reason.
fn assert_ignored(reply: &Reply, case: &str) -> String {
    assert_eq!(reply.status, 200, "{case}: HTTP status: {}", reply.text);
    assert_eq!(
        reply.body["status"], "ignored",
        "{case}: response status: {}",
        reply.text
    );
    let reason = reply.body["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        !reason.is_empty(),
        "{case}: the response has no reason: {}",
        reply.text
    );
    reason
}

fn minutes_ago(minutes: i64) -> Timestamp {
    Timestamp::now()
        .checked_sub(SignedDuration::from_mins(minutes))
        .unwrap()
}

#[tokio::test]
async fn stale_long_reminder_is_ignored() {
    let gateway = Gateway::start().await;
    let payload = patient("LongReminder", &SUMMER).event_ts(minutes_ago(3 * 60));
    let reply = gateway.herald.post(&payload.json()).await;

    assert_ignored(&reply, "LongReminder 3 hours old");
    assert_eq!(
        delivery_channels(&reply),
        Vec::<String>::new(),
        "deliveries"
    );
    gateway
        .assert_totals(0, 0, "LongReminder 3 hours old")
        .await;
    assert_log_free_of_patient_data(&gateway.herald, &[SUMMER.utc, SUMMER.local]);
}

#[tokio::test]
async fn stale_short_reminder_is_ignored() {
    let gateway = Gateway::start().await;
    let payload = patient("ShortReminder", &SUMMER).event_ts(minutes_ago(30));
    let reply = gateway.herald.post(&payload.json()).await;

    assert_ignored(&reply, "ShortReminder 30 minutes old");
    assert_eq!(
        delivery_channels(&reply),
        Vec::<String>::new(),
        "deliveries"
    );
    gateway
        .assert_totals(0, 0, "ShortReminder 30 minutes old")
        .await;
    assert_log_free_of_patient_data(&gateway.herald, &[SUMMER.utc, SUMMER.local]);
}

#[tokio::test]
async fn stale_reminder_reason_names_age() {
    let gateway = Gateway::start().await;
    let payload = patient("LongReminder", &SUMMER).event_ts(minutes_ago(3 * 60));
    let reply = gateway.herald.post(&payload.json()).await;

    let reason = assert_ignored(&reply, "LongReminder 3 hours old");
    assert!(
        !reason.starts_with("no rule matched"),
        "the long-reminder rule matches type and status, but the reason is {reason:?}"
    );
    assert!(
        reason.contains("max_age 2h"),
        "the reason does not name the age limit: {reason:?}"
    );
}

#[tokio::test]
async fn unknown_webhook_type_is_ignored() {
    let gateway = Gateway::start().await;
    let payload = json!({
        "WebhookType": "NOTIFY_HOST_USER",
        "ID": 24403,
        "Status": "Invite",
        "EventTs": platform_time(Timestamp::now()),
    });
    let reply = gateway.herald.post(&payload).await;

    let reason = assert_ignored(&reply, "unknown webhook type");
    assert_eq!(
        reason, "no rule matched webhook type NOTIFY_HOST_USER with status Invite",
        "unknown webhook type: reason"
    );
    gateway.assert_totals(0, 0, "unknown webhook type").await;
}

#[tokio::test]
async fn session_status_without_event_ts_ignored() {
    let gateway = Gateway::start().await;
    let payload = json!({"WebhookType": "SESSION_STATUS", "ID": 5521, "Status": "STARTED"});
    let reply = gateway.herald.post(&payload).await;

    let reason = assert_ignored(&reply, "SESSION_STATUS without EventTs");
    assert_eq!(
        reason, "dropped by rule session-status: session status changes need no patient message",
        "SESSION_STATUS without EventTs: reason"
    );
    gateway
        .assert_totals(0, 0, "SESSION_STATUS without EventTs")
        .await;
}

#[tokio::test]
async fn reminder_after_session_start_expires() {
    let gateway = Gateway::start().await;
    let started = platform_time(minutes_ago(10));
    let payload = PublicUser::new("LongReminder", 0)
        .with("SessionTimeUtc", &started)
        .with("SessionTimeLocal", &started);
    let reply = gateway.herald.post(&payload.json()).await;

    let reason = assert_ignored(&reply, "reminder after the session started");
    assert!(reason.contains("not_after"), "reason: {reason}");
    let deliveries = reply.body["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(deliveries.len(), 2, "deliveries: {}", reply.text);
    for delivery in &deliveries {
        assert_eq!(delivery["state"], "expired", "delivery: {delivery}");
    }
    assert_eq!(
        delivery_channels(&reply),
        ["email", "sms"],
        "delivery channels"
    );
    gateway
        .assert_totals(0, 0, "reminder after the session started")
        .await;
    assert_eq!(
        gateway.stored_deliveries(),
        [
            ("email".to_string(), "expired".to_string(), 0),
            ("sms".to_string(), "expired".to_string(), 0),
        ],
        "stored deliveries: (channel, state, attempts)"
    );
    assert_log_free_of_patient_data(&gateway.herald, &[&started]);
}

// Patient data in the log when sends fail.

/// Makes the SMTP server reject the recipient with `smtp_reply` and the SMS provider reject
/// the number with `sms_message`. Asserts that both deliveries fail permanently and that the
/// log, where both error texts appear, contains no patient data.
async fn assert_failure_log_clean(smtp_reply: &str, sms_message: &str) {
    let gateway = Gateway::start().await;
    gateway.smtp.fail_all(Stage::Rcpt, 550, smtp_reply);
    gateway.sms.set_default_response(ScriptedResponse::json(
        400,
        &json!({"code": 21211, "message": sms_message, "status": 400}),
    ));

    let reply = gateway
        .herald
        .post(&patient("Invite", &SUMMER).json())
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    for channel in ["email", "sms"] {
        let record = gateway
            .herald
            .wait_for_log(
                "Delivery failed permanently",
                &[("channel", json!(channel))],
                WAIT,
            )
            .await;
        assert!(
            record.get("error").is_some_and(Value::is_string),
            "{channel}: {record}"
        );
    }
    gateway.assert_totals(0, 1, "failed sends").await;
    assert_log_free_of_patient_data(&gateway.herald, &[SUMMER.utc, SUMMER.local]);
}

#[tokio::test]
async fn failure_log_has_no_patient_data() {
    assert_failure_log_clean(
        "5.1.1 <perry@example.com>: Recipient address rejected: User unknown",
        "The 'To' number +14155552671 is not a valid phone number.",
    )
    .await;
}

#[tokio::test]
async fn failure_log_scrubs_spaced_number() {
    assert_failure_log_clean(
        "5.1.1 perry@example.com: Recipient address rejected: User unknown",
        "The 'To' number +1 415 555 2671 is not a valid phone number.",
    )
    .await;
}
