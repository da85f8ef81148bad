//! Whether a failed send is worth retrying. Each driver turns its error into one of these
//! inputs, so that the rules sit in one table-tested place.

use std::time::Duration;

use jiff::Timestamp;

/// Transient failures are retried with backoff; permanent ones close the delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailureKind {
    Transient,
    Permanent,
}

/// Cause of a failed SMTP send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpFailure {
    /// The server replied with this code.
    Reply(u16),
    Timeout,
    /// Connection refused, reset or closed, or DNS failure.
    Connection,
    Tls,
    /// lettre rejected the message before sending it.
    InvalidMessage,
}

/// SMTP: 4xx replies, timeouts and connection or TLS problems are transient; 5xx replies are
/// permanent. Authentication failures (530, 534, 535, 538) are the exception: they mean the
/// channel's credentials are wrong, which an operator can fix, so the delivery keeps retrying
/// until its attempts or age run out instead of failing at once.
pub fn classify_smtp(failure: SmtpFailure) -> FailureKind {
    match failure {
        SmtpFailure::Reply(530 | 534 | 535 | 538) => FailureKind::Transient,
        SmtpFailure::Reply(code) if (400..500).contains(&code) => FailureKind::Transient,
        SmtpFailure::Reply(_) => FailureKind::Permanent,
        SmtpFailure::Timeout | SmtpFailure::Connection | SmtpFailure::Tls => FailureKind::Transient,
        SmtpFailure::InvalidMessage => FailureKind::Permanent,
    }
}

/// Provider error codes (in a JSON body's `code`) that mean "try again later" even though the
/// HTTP status is a 4xx: 20429 too many requests, 30001 queue overflow (Twilio's codes, which
/// compatible providers reuse).
const TRANSIENT_PROVIDER_CODES: [i64; 2] = [20429, 30001];

/// HTTP: 408, 425, 429 and 5xx are transient, as are 401 and 403 (wrong or revoked
/// credentials, which an operator can fix). Other 4xx statuses are permanent, unless the
/// provider's error code marks the failure as temporary.
pub fn classify_http(status: u16, provider_code: Option<i64>) -> FailureKind {
    if provider_code.is_some_and(|code| TRANSIENT_PROVIDER_CODES.contains(&code)) {
        return FailureKind::Transient;
    }
    match status {
        401 | 403 | 408 | 425 | 429 => FailureKind::Transient,
        400..=499 => FailureKind::Permanent,
        _ => FailureKind::Transient,
    }
}

/// Reads a `Retry-After` header: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = jiff::fmt::rfc2822::parse(value).ok()?;
    let delay = date.timestamp().duration_since(now);
    Some(Duration::try_from(delay).unwrap_or(Duration::ZERO))
}

/// Removes what could be patient data from a provider's error text before it is stored or
/// logged: e-mail addresses, and phone numbers, which are runs of digits, spaces and `+().-/`
/// holding seven or more digits in all.
pub fn scrub(text: &str) -> String {
    let words: Vec<&str> = text.split(' ').collect();
    let mut out: Vec<String> = Vec::with_capacity(words.len());
    let mut index = 0;
    while index < words.len() {
        let word = words[index];
        if word.contains('@') {
            out.push("<address>".into());
            index += 1;
            continue;
        }
        // Extend over neighbouring number-like words, so "+1 415 555 2671" is one number.
        let mut end = index;
        let mut digits = 0;
        while end < words.len() && is_number_part(words[end]) {
            digits += words[end].chars().filter(char::is_ascii_digit).count();
            end += 1;
        }
        if digits >= 7 {
            let trailing: String = words[end - 1]
                .chars()
                .rev()
                .take_while(|c| !c.is_ascii_digit() && !"+()-/".contains(*c))
                .collect();
            out.push(format!(
                "<number>{}",
                trailing.chars().rev().collect::<String>()
            ));
            index = end;
        } else {
            out.push(word.to_string());
            index += 1;
        }
    }
    let joined = out.join(" ");
    let mut trimmed: String = joined.chars().take(300).collect();
    if trimmed.len() < joined.len() {
        trimmed.push('…');
    }
    trimmed
}

/// Returns whether a word is made of digits and the punctuation phone numbers are written
/// with, possibly followed by sentence punctuation.
fn is_number_part(word: &str) -> bool {
    let core = word.trim_end_matches(['.', ',', ';', ':', '\'', '"']);
    !core.is_empty()
        && core.chars().any(|c| c.is_ascii_digit())
        && core
            .chars()
            .all(|c| c.is_ascii_digit() || "+()-./".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use FailureKind::{Permanent, Transient};

    #[test]
    fn smtp_table() {
        let cases = [
            (SmtpFailure::Reply(421), Transient),
            (SmtpFailure::Reply(450), Transient),
            (SmtpFailure::Reply(451), Transient),
            (SmtpFailure::Reply(452), Transient),
            (SmtpFailure::Reply(454), Transient),
            (SmtpFailure::Reply(500), Permanent),
            (SmtpFailure::Reply(550), Permanent),
            (SmtpFailure::Reply(551), Permanent),
            (SmtpFailure::Reply(552), Permanent),
            (SmtpFailure::Reply(553), Permanent),
            (SmtpFailure::Reply(554), Permanent),
            (SmtpFailure::Reply(530), Transient),
            (SmtpFailure::Reply(535), Transient),
            (SmtpFailure::Timeout, Transient),
            (SmtpFailure::Connection, Transient),
            (SmtpFailure::Tls, Transient),
            (SmtpFailure::InvalidMessage, Permanent),
        ];
        for (failure, expected) in cases {
            assert_eq!(classify_smtp(failure), expected, "{failure:?}");
        }
    }

    #[test]
    fn http_table() {
        let cases = [
            (400, None, Permanent),
            (400, Some(21211), Permanent),
            (400, Some(21610), Permanent),
            (400, Some(20429), Transient),
            (401, None, Transient),
            (403, None, Transient),
            (404, None, Permanent),
            (408, None, Transient),
            (410, None, Permanent),
            (413, None, Permanent),
            (422, None, Permanent),
            (425, None, Transient),
            (429, None, Transient),
            (429, Some(20429), Transient),
            (500, None, Transient),
            (502, None, Transient),
            (503, Some(30001), Transient),
            (504, None, Transient),
        ];
        for (status, code, expected) in cases {
            assert_eq!(classify_http(status, code), expected, "{status} {code:?}");
        }
    }

    #[test]
    fn retry_after_forms() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 2026 00:00:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 31 Dec 2025 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn scrub_removes_contacts() {
        assert_eq!(
            scrub("550 5.1.1 <perry@example.com>: Recipient address rejected"),
            "550 5.1.1 <address> Recipient address rejected"
        );
        assert_eq!(
            scrub("The 'To' number +14155552671 is not a valid phone number."),
            "The 'To' number <number> is not a valid phone number."
        );
        assert_eq!(
            scrub("The 'To' number +1 415 555 2671 is not a valid phone number."),
            "The 'To' number <number> is not a valid phone number."
        );
        assert_eq!(scrub("call (415) 555-2671."), "call <number>.");
        assert_eq!(
            scrub("queued as 12345 after 3 tries"),
            "queued as 12345 after 3 tries"
        );
    }
}
