//! Channels: the `channels:` section checked into driver settings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::RawRetry;
use super::{ConfigError, RetryPolicy};

/// What a channel sends; this decides the template parts and the contact it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageKind {
    Email,
    Sms,
    Webhook,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Email => "email",
            MessageKind::Sms => "sms",
            MessageKind::Webhook => "webhook",
        }
    }

    pub fn parse(text: &str) -> Option<MessageKind> {
        match text {
            "email" => Some(MessageKind::Email),
            "sms" => Some(MessageKind::Sms),
            "webhook" => Some(MessageKind::Webhook),
            _ => None,
        }
    }

    /// Returns the mapped field that contains this kind's contact, if it needs one.
    pub fn contact_field(self) -> Option<&'static str> {
        match self {
            MessageKind::Email => Some("email"),
            MessageKind::Sms => Some("sms"),
            MessageKind::Webhook => None,
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A setting that must not appear in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// Protection of an SMTP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// Plain SMTP, upgraded with STARTTLS when the server offers it (`smtp://`).
    Opportunistic,
    /// STARTTLS, and the send fails if the server does not offer it (`smtp://...?tls=required`).
    Required,
    /// TLS from the first byte (`smtps://`).
    Implicit,
    /// Never TLS (`smtp://...?tls=none`), for a relay on the same host.
    None,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub security: SmtpSecurity,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// A PEM file of extra certificates to trust, such as a private relay's CA.
    pub tls_ca_file: Option<PathBuf>,
    pub hello_name: Option<String>,
    /// Idle connections kept open for reuse.
    pub pool_size: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub struct SmsSettings {
    /// Scheme, host and port of the provider, such as `https://api.twilio.com`.
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: Secret,
    pub from: Option<String>,
    pub messaging_service_sid: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WebhookSettings {
    pub url: String,
    pub headers: Vec<(String, Secret)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FileSettings {
    pub directory: PathBuf,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Transport {
    Smtp(SmtpSettings),
    Sms(SmsSettings),
    Webhook(WebhookSettings),
    File(FileSettings),
}

impl Transport {
    pub fn driver_name(&self) -> &'static str {
        match self {
            Transport::Smtp(_) => "smtp",
            Transport::Sms(_) => "sms",
            Transport::Webhook(_) => "webhook",
            Transport::File(_) => "file",
        }
    }
}

/// One checked channel.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelConfig {
    pub name: String,
    pub kind: MessageKind,
    pub transport: Transport,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// Sends per second, when limited.
    pub rate_limit: Option<f64>,
    /// Time one send may take before it counts as a transient failure.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// The sender of e-mails (`Clinic <no-reply@clinic.example>`), or the SMS sender number.
    pub from: Option<String>,
    pub reply_to: Option<String>,
}

/// Parses `smtp://[user[:password]@]host[:port][?tls=required|opportunistic|none]` or
/// `smtps://...`. User and password are percent-decoded.
pub fn parse_smtp_url(text: &str) -> Result<SmtpSettings, String> {
    let url = url::Url::parse(text).map_err(|error| {
        format!(
            "invalid SMTP URL: {error}; expected smtp://host:port or smtps://user:password@host"
        )
    })?;
    let mut security = match url.scheme() {
        "smtp" => SmtpSecurity::Opportunistic,
        "smtps" => SmtpSecurity::Implicit,
        other => {
            return Err(format!(
                "invalid SMTP URL scheme {other:?}: expected smtp or smtps"
            ));
        }
    };
    for (key, value) in url.query_pairs() {
        match (key.as_ref(), value.as_ref(), security) {
            ("tls", "required", SmtpSecurity::Opportunistic) => security = SmtpSecurity::Required,
            ("tls", "opportunistic", SmtpSecurity::Opportunistic) => {}
            ("tls", "none", SmtpSecurity::Opportunistic) => security = SmtpSecurity::None,
            ("tls", other, SmtpSecurity::Implicit) => {
                return Err(format!(
                    "tls={other} does not apply to smtps://, which always uses TLS"
                ));
            }
            ("tls", other, _) => {
                return Err(format!(
                    "invalid tls={other}: expected required, opportunistic or none"
                ));
            }
            (other, _, _) => {
                return Err(format!(
                    "unknown SMTP URL parameter {other:?}: the only one is tls"
                ));
            }
        }
    }
    let host = url
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| "the SMTP URL has no host".to_string())?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url.port().unwrap_or(match security {
        SmtpSecurity::Implicit => 465,
        SmtpSecurity::Required => 587,
        _ => 25,
    });
    let decode = |part: &str| {
        percent_decode(part).ok_or_else(|| {
            "the SMTP URL's user or password is not valid percent-encoded UTF-8".to_string()
        })
    };
    let username = (!url.username().is_empty())
        .then(|| decode(url.username()))
        .transpose()?;
    let password = url.password().map(decode).transpose()?.map(Secret);
    if username.is_some() && security == SmtpSecurity::Opportunistic {
        return Err("credentials over opportunistic STARTTLS could be sent unencrypted: add ?tls=required, use smtps://, or ?tls=none for a relay on the same host".into());
    }
    Ok(SmtpSettings {
        host,
        port,
        security,
        username,
        password,
        tls_ca_file: None,
        hello_name: None,
        pool_size: 4,
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = text.get(index + 1..index + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            out.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(out).ok()
}

pub(super) fn merge_retry(
    base: &RetryPolicy,
    raw: Option<&RawRetry>,
    file: &Path,
    key: &str,
    errors: &mut Vec<ConfigError>,
) -> RetryPolicy {
    let Some(raw) = raw else {
        return base.clone();
    };
    let mut policy = base.clone();
    if let Some(attempts) = &raw.max_attempts {
        if attempts.value == 0 {
            errors.push(ConfigError::at(
                file,
                attempts.referenced.line(),
                format!("{key}.retry.max_attempts"),
                "must be at least 1",
            ));
        }
        policy.max_attempts = attempts.value.max(1);
    }
    if let Some(value) = raw.initial_backoff {
        policy.initial_backoff = value.as_duration();
    }
    if let Some(value) = raw.max_backoff {
        policy.max_backoff = value.as_duration();
    }
    if let Some(value) = raw.max_age {
        policy.max_age = value.as_duration();
    }
    if policy.initial_backoff.is_zero() || policy.max_backoff < policy.initial_backoff {
        errors.push(ConfigError::file(file, format!(
            "{key}.retry: initial_backoff must be positive and not above max_backoff (got {} and {})",
            super::duration::format_duration(policy.initial_backoff),
            super::duration::format_duration(policy.max_backoff)
        )));
    }
    policy
}

pub(super) fn merge_default_retry(
    raw: Option<&RawRetry>,
    file: &Path,
    errors: &mut Vec<ConfigError>,
) -> RetryPolicy {
    merge_retry(&RetryPolicy::default(), raw, file, "defaults", errors)
}

pub(super) fn resolve_path(base: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Names of channels, rules and fields: lowercase ASCII letters, digits, `-` and `_`, starting
/// with a letter.
pub fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Returns the channel names, for error messages.
pub fn known_names<V>(map: &BTreeMap<String, V>) -> String {
    if map.is_empty() {
        "none are defined".into()
    } else {
        map.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smtp_url_forms() {
        let plain = parse_smtp_url("smtp://127.0.0.1:2525").unwrap();
        assert_eq!(
            (plain.host.as_str(), plain.port, plain.security),
            ("127.0.0.1", 2525, SmtpSecurity::Opportunistic)
        );

        let required = parse_smtp_url("smtp://u%40x:p%2Fw@mail.example?tls=required").unwrap();
        assert_eq!(required.port, 587);
        assert_eq!(required.security, SmtpSecurity::Required);
        assert_eq!(required.username.as_deref(), Some("u@x"));
        assert_eq!(required.password, Some(Secret("p/w".into())));

        let implicit = parse_smtp_url("smtps://mail.example").unwrap();
        assert_eq!(
            (implicit.port, implicit.security),
            (465, SmtpSecurity::Implicit)
        );

        let none = parse_smtp_url("smtp://u:p@127.0.0.1:25?tls=none").unwrap();
        assert_eq!(none.security, SmtpSecurity::None);
    }

    #[test]
    fn smtp_url_rejections() {
        assert!(
            parse_smtp_url("smtp://u:p@mail.example")
                .unwrap_err()
                .starts_with("credentials over opportunistic STARTTLS")
        );
        assert!(
            parse_smtp_url("http://mail.example")
                .unwrap_err()
                .starts_with("invalid SMTP URL scheme")
        );
        assert!(
            parse_smtp_url("smtp://mail.example?tls=maybe")
                .unwrap_err()
                .starts_with("invalid tls=maybe")
        );
        assert!(
            parse_smtp_url("smtps://mail.example?tls=none")
                .unwrap_err()
                .contains("does not apply")
        );
        assert!(
            parse_smtp_url("smtp://mail.example?port=1")
                .unwrap_err()
                .starts_with("unknown SMTP URL parameter")
        );
    }
}
