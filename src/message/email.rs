//! Builds the RFC 5322 message for an e-mail delivery.

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, MultiPart, SinglePart};

use super::EmailMessage;
use super::address::{MAX_SUBJECT_CHARS, header_text, mailbox, parse_mailbox};

/// Builds the message with its `Message-ID` and a `Date` of now. The text part is sent as
/// `text/plain`, and with an HTML body both go as `multipart/alternative`. lettre encodes
/// non-ASCII header text per RFC 2047 and picks a transfer encoding that keeps every body
/// line within 998 octets.
pub fn build(email: &EmailMessage, message_id: &str) -> Result<lettre::Message, String> {
    let from: Mailbox = parse_mailbox(&email.from)?;
    let to = mailbox(email.to_name.as_deref(), &email.to)
        .map_err(|reason| format!("the recipient address {reason}"))?;
    let mut builder = lettre::Message::builder()
        .from(from)
        .to(to)
        .subject(header_text(&email.subject, MAX_SUBJECT_CHARS))
        .message_id(Some(message_id.to_string()))
        .date_now();
    if let Some(reply_to) = &email.reply_to {
        builder = builder.reply_to(parse_mailbox(reply_to)?);
    }
    let text = SinglePart::builder()
        .header(ContentType::TEXT_PLAIN)
        .body(email.text.clone());
    let result = match &email.html {
        Some(html) => builder.multipart(
            MultiPart::alternative().singlepart(text).singlepart(
                SinglePart::builder()
                    .header(ContentType::TEXT_HTML)
                    .body(html.clone()),
            ),
        ),
        None => builder.singlepart(text),
    };
    result.map_err(|error| format!("cannot build the e-mail: {error}"))
}

/// A `Message-ID` that stays the same across retries of one delivery, so that receivers can
/// drop a copy that a retry after a lost reply sends twice.
pub fn message_id(instance: &str, delivery_id: i64, from: &str) -> String {
    let domain = from
        .rsplit_once('@')
        .map(|(_, rest)| rest.trim_end_matches('>').trim())
        .filter(|d| !d.is_empty())
        .unwrap_or("herald.invalid");
    format!("<herald.{instance}.{delivery_id}@{domain}>")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> EmailMessage {
        EmailMessage {
            from: "Clinic <no-reply@clinic.example>".into(),
            reply_to: None,
            to: "perry@example.com".into(),
            to_name: Some("Perry \"P\" Public, Jr.".into()),
            subject: "Your visit\r\nBcc: x@evil.example".into(),
            text: "Hello".into(),
            html: Some("<p>Hello</p>".into()),
        }
    }

    #[test]
    fn headers_and_parts() {
        let built = build(&sample(), "<herald.a.1@clinic.example>").unwrap();
        let text = String::from_utf8(built.formatted()).unwrap();
        assert!(
            text.contains("Message-ID: <herald.a.1@clinic.example>"),
            "{text}"
        );
        assert!(text.contains("Date: "), "{text}");
        assert!(
            text.contains("Subject: Your visit Bcc: x@evil.example\r\n"),
            "{text}"
        );
        assert!(!text.contains("\r\nBcc:"), "{text}");
        assert!(text.contains("multipart/alternative"), "{text}");
    }

    #[test]
    fn header_lines_stay_within_998_octets() {
        let long_run = "x".repeat(1_000);
        for (name, subject) in [
            (format!("é{long_run}"), format!("é{long_run}")),
            (long_run.clone(), long_run.clone()),
            ("山田".repeat(400), "山田".repeat(400)),
        ] {
            let mut email = sample();
            email.to_name = Some(name);
            email.subject = subject;
            let text = String::from_utf8(
                build(&email, "<herald.a.1@clinic.example>")
                    .unwrap()
                    .formatted(),
            )
            .unwrap();
            for line in text.split("\r\n") {
                assert!(line.len() <= 998, "a line of {} octets", line.len());
            }
        }
    }

    #[test]
    fn message_id_uses_sender_domain() {
        assert_eq!(
            message_id("abc", 42, "Clinic <no-reply@clinic.example>"),
            "<herald.abc.42@clinic.example>"
        );
    }
}
