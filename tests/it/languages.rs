//! Language variants with the real binary.
//!
//! The repository's Spanish templates (`templates/*/es/`) are chosen by the payload's
//! `RecipientLanguage`, by a rule's fixed `locale` and by `defaults.locale`. A region tag falls
//! back to its language and an unknown language to the English default. A variant that lacks
//! a part never mixes two languages in one message. `herald check` renders the Spanish
//! variants of the schema examples too.

use std::path::Path;
use std::time::Duration;

use crate::support::gateway::Gateway;
use crate::support::herald::{ConfigDir, repo_root, run_cli};
use crate::support::payloads::PublicUser;
use crate::support::smtp::ReceivedMessage;

/// Upper bound for a message to arrive after herald accepted its webhook.
const WAIT: Duration = Duration::from_secs(10);

/// June 2030, when Los Angeles is on daylight time (UTC-7): 18:45 UTC is 11:45 PDT. The
/// expected dates were worked out by hand and checked with GNU `date`.
const SESSION_UTC: &str = "2030-06-26T18:45:00";
const SESSION_LOCAL: &str = "2030-06-26T11:45:00";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Language {
    English,
    Spanish,
}

impl Language {
    fn subject(self) -> &'static str {
        match self {
            Language::English => "Your video visit with Dr. Ada Example on June 26 at 11:45 AM PDT",
            Language::Spanish => "Su videoconsulta con Dr. Ada Example el 26/06/2030, 11:45 PDT",
        }
    }

    fn text(self) -> &'static str {
        match self {
            Language::English => {
                "Hello Perry Public,\n\n\
                 You have a video visit with Dr. Ada Example.\n\n\
                 When: Wednesday, June 26, 2030 at 11:45 AM PDT\n\n\
                 To join, sign in at https://portal.clinic.example a few minutes before the visit and choose \"Join visit\". You need a device with a camera and a microphone.\n\n\
                 Your Clinic\n(555) 010-0100"
            }
            Language::Spanish => {
                "Hola Perry Public:\n\n\
                 Tiene una videoconsulta con Dr. Ada Example.\n\n\
                 Cuándo: 26/06/2030, 11:45 PDT\n\n\
                 Para unirse, inicie sesión en https://portal.clinic.example unos minutos antes de la consulta y elija \"Join visit\". Necesita un dispositivo con cámara y micrófono.\n\n\
                 Your Clinic\n(555) 010-0100"
            }
        }
    }

    /// Returns a paragraph of the HTML part that only this language's template contains.
    fn html_paragraph(self) -> &'static str {
        match self {
            Language::English => "<p>You have a video visit with Dr. Ada Example.</p>",
            Language::Spanish => "<p>Tiene una videoconsulta con Dr. Ada Example.</p>",
        }
    }

    fn html_lang(self) -> &'static str {
        match self {
            Language::English => "<html lang=\"en\">",
            Language::Spanish => "<html lang=\"es\">",
        }
    }

    fn sms(self) -> &'static str {
        match self {
            Language::English => {
                "Your Clinic: video visit with Dr. Ada Example on Jun 26 at 11:45 AM PDT. Join at https://portal.clinic.example"
            }
            Language::Spanish => {
                "Your Clinic: videoconsulta con Dr. Ada Example el 26/06/2030, 11:45 PDT. Entre en https://portal.clinic.example"
            }
        }
    }
}

/// Returns an Invite to the default recipient in Los Angeles, without `RecipientLanguage`.
fn invite() -> PublicUser {
    PublicUser::new("Invite", 0)
        .with("SessionTimeUtc", SESSION_UTC)
        .with("SessionTimeLocal", SESSION_LOCAL)
}

/// Starts herald with `config`, posts `payload`, and returns the e-mail and the SMS text.
async fn send(config: ConfigDir, payload: &PublicUser, case: &str) -> (ReceivedMessage, String) {
    let gateway = Gateway::start(config).await;
    let reply = gateway.herald.post(&payload.json()).await;
    assert_eq!(reply.status, 202, "{case}: HTTP status: {}", reply.text);
    let email = gateway.smtp.wait_for_messages(1, WAIT).await.remove(0);
    let sms = gateway.sms.wait_for_requests(1, WAIT).await.remove(0);
    let body = sms
        .form_value("Body")
        .unwrap_or_else(|| panic!("{case}: the SMS request has no Body"));
    (email, body)
}

/// Asserts the subject, text part and HTML part of an Invite e-mail in `language`.
fn assert_email(email: &ReceivedMessage, language: Language, case: &str) {
    assert_eq!(
        email.decoded_header("Subject").as_deref(),
        Some(language.subject()),
        "{case}: Subject"
    );
    assert_eq!(
        email.body_text().as_deref().map(str::trim_end),
        Some(language.text()),
        "{case}: text part"
    );
    let html = email.body_html().unwrap_or_default();
    assert!(
        html.contains(language.html_paragraph()),
        "{case}: the HTML part lacks {:?}:\n{html}",
        language.html_paragraph()
    );
}

/// Sends an Invite and asserts the language of the e-mail and of the SMS.
async fn assert_languages(
    config: ConfigDir,
    payload: &PublicUser,
    email_language: Language,
    sms_language: Language,
    case: &str,
) {
    let (email, sms) = send(config, payload, case).await;
    assert_email(&email, email_language, case);
    assert_eq!(sms, sms_language.sms(), "{case}: SMS text");
}

#[tokio::test]
async fn spanish_attribute_gets_spanish() {
    let payload = invite().with("RecipientLanguage", "es");
    assert_languages(
        ConfigDir::defaults(),
        &payload,
        Language::Spanish,
        Language::Spanish,
        "RecipientLanguage es",
    )
    .await;
}

#[tokio::test]
async fn spanish_email_declares_spanish() {
    let case = "RecipientLanguage es";
    let payload = invite().with("RecipientLanguage", "es");
    let (email, _) = send(ConfigDir::defaults(), &payload, case).await;
    let html = email.body_html().unwrap_or_default();
    assert!(
        html.contains(Language::Spanish.html_lang()),
        "{case}: the HTML part does not declare Spanish:\n{html}"
    );
}

#[tokio::test]
async fn region_tag_falls_back_to_language() {
    let payload = invite().with("RecipientLanguage", "es-MX");
    assert_languages(
        ConfigDir::defaults(),
        &payload,
        Language::Spanish,
        Language::Spanish,
        "RecipientLanguage es-MX",
    )
    .await;
}

#[tokio::test]
async fn language_tag_case_is_ignored() {
    let payload = invite().with("RecipientLanguage", "ES");
    assert_languages(
        ConfigDir::defaults(),
        &payload,
        Language::Spanish,
        Language::Spanish,
        "RecipientLanguage ES",
    )
    .await;
}

#[tokio::test]
async fn unknown_language_falls_back_to_english() {
    let payload = invite().with("RecipientLanguage", "fr");
    assert_languages(
        ConfigDir::defaults(),
        &payload,
        Language::English,
        Language::English,
        "RecipientLanguage fr",
    )
    .await;
}

#[tokio::test]
async fn english_fallback_declares_english() {
    // Templates see `locale` only when a variant was chosen, so the layout's
    // `<html lang="{{ locale or "en" }}">` labels the English fallback as English.
    let case = "RecipientLanguage fr";
    let payload = invite().with("RecipientLanguage", "fr");
    let (email, _) = send(ConfigDir::defaults(), &payload, case).await;
    let html = email.body_html().unwrap_or_default();
    assert!(
        html.contains(Language::English.html_lang()),
        "{case}: the HTML part of the English e-mail does not declare English:\n{html}"
    );
}

#[tokio::test]
async fn no_language_gets_english() {
    assert_languages(
        ConfigDir::defaults(),
        &invite(),
        Language::English,
        Language::English,
        "no RecipientLanguage",
    )
    .await;
}

#[tokio::test]
async fn empty_language_gets_english() {
    let payload = invite().with("RecipientLanguage", "");
    assert_languages(
        ConfigDir::defaults(),
        &payload,
        Language::English,
        Language::English,
        "empty RecipientLanguage",
    )
    .await;
}

/// Returns a copy of the repository's configuration whose invite rule has `locale: es`.
fn config_with_rule_locale() -> ConfigDir {
    let config = ConfigDir::defaults();
    config.replace(
        "rules.yaml",
        "    template: invite\n",
        "    template: invite\n    locale: es\n",
    );
    config
}

#[tokio::test]
async fn rule_locale_without_attribute() {
    assert_languages(
        config_with_rule_locale(),
        &invite(),
        Language::Spanish,
        Language::Spanish,
        "rule locale es, no RecipientLanguage",
    )
    .await;
}

#[tokio::test]
async fn rule_locale_beats_attribute() {
    let payload = invite().with("RecipientLanguage", "fr");
    assert_languages(
        config_with_rule_locale(),
        &payload,
        Language::Spanish,
        Language::Spanish,
        "rule locale es, RecipientLanguage fr",
    )
    .await;
}

#[tokio::test]
async fn default_locale_without_attribute() {
    let config = ConfigDir::defaults();
    config.replace(
        "rules.yaml",
        "  phone_region: US\n",
        "  phone_region: US\n  locale: es\n",
    );
    assert_languages(
        config,
        &invite(),
        Language::Spanish,
        Language::Spanish,
        "defaults.locale es, no RecipientLanguage",
    )
    .await;
}

#[tokio::test]
async fn variant_without_sms_sends_english_sms() {
    let config = ConfigDir::defaults();
    config.remove("templates/invite/es/sms.txt");
    let payload = invite().with("RecipientLanguage", "es");
    assert_languages(
        config,
        &payload,
        Language::Spanish,
        Language::English,
        "es variant without sms.txt",
    )
    .await;
}

#[tokio::test]
async fn variant_without_html_sends_spanish_text_only() {
    let case = "es variant without email.html";
    let config = ConfigDir::defaults();
    config.remove("templates/invite/es/email.html");
    let payload = invite().with("RecipientLanguage", "es");
    let (email, sms) = send(config, &payload, case).await;

    assert_eq!(
        email.decoded_header("Subject").as_deref(),
        Some(Language::Spanish.subject()),
        "{case}: Subject"
    );
    assert_eq!(email.content_type(), "text/plain", "{case}: Content-Type");
    assert_eq!(
        email.body_text().as_deref().map(str::trim_end),
        Some(Language::Spanish.text()),
        "{case}: text part"
    );
    assert_eq!(email.body_html(), None, "{case}: HTML part");
    assert_eq!(sms, Language::Spanish.sms(), "{case}: SMS text");
}

// herald check.

fn path_text(path: &Path) -> &str {
    path.to_str().expect("the paths in these tests are UTF-8")
}

fn check(config_dir: &Path) -> (i32, String, String) {
    let data = tempfile::tempdir().unwrap();
    run_cli(
        &[
            "check",
            "--config-dir",
            path_text(config_dir),
            "--data-dir",
            path_text(data.path()),
        ],
        &[],
    )
}

#[test]
fn check_renders_spanish_examples() {
    let (code, stdout, stderr) = check(&repo_root());

    assert_eq!(code, 0, "exit code; stderr:\n{stderr}");
    assert!(
        stdout.ends_with(
            "configuration OK: 8 rules, 2 channels, 7 template sets, 2 webhook types with a schema, 7 example payloads rendered\n"
        ),
        "last line of stdout:\n{stdout}"
    );
    let warnings: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("warning:"))
        .collect();
    assert_eq!(warnings, Vec::<&str>::new(), "warnings");
    assert_eq!(stderr, "", "stderr");
}

#[test]
fn check_names_spanish_template_line() {
    let config = ConfigDir::defaults();
    config.replace(
        "templates/welcome/es/email.txt",
        "{{ vars.clinic_name }}",
        "{{ vars.clinic_nombre }}",
    );

    let (code, stdout, stderr) = check(config.path());

    assert_eq!(code, 2, "exit code; stderr:\n{stderr}");
    assert_eq!(
        stderr,
        "error: schemas/NOTIFY_PUBLIC_USER.json examples[6] (Welcome, locale es): rule welcome: \
         welcome/es/email.txt:3: undefined value (`vars.clinic_nombre` is undefined): the payload \
         or the context has no such value; guard optional values with {% if name is defined %}\n\
         configuration invalid: 1 error rendering the schemas' example payloads\n",
        "stderr"
    );
    assert!(
        !stdout.contains("configuration OK"),
        "stdout reports success:\n{stdout}"
    );
}
