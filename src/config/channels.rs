//! Channels: the `channels:` section checked into driver settings.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::Spanned;

use super::env::{EnvSource, Expanded, expand};
use super::raw::{RawChannel, RawRetry};
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

    /// The mapped field that holds this kind's contact, if it needs one.
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

/// How an SMTP connection is protected.
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

/// Everything `check_channel` needs besides the raw channel.
pub(super) struct ChannelContext<'a> {
    pub file: &'a Path,
    pub env: &'a dyn EnvSource,
    pub data_dir: &'a Path,
    pub config_dir: &'a Path,
    pub default_retry: &'a RetryPolicy,
}

const DRIVERS: [&str; 4] = ["smtp", "sms", "webhook", "file"];

/// Settings each driver accepts, besides the common ones.
fn driver_settings(driver: &str) -> &'static [&'static str] {
    match driver {
        "smtp" => &[
            "url",
            "from",
            "reply_to",
            "tls_ca_file",
            "hello_name",
            "pool_size",
        ],
        "sms" => &[
            "url",
            "account_sid",
            "auth_token",
            "from",
            "messaging_service_sid",
        ],
        "webhook" => &["url", "headers"],
        "file" => &["directory", "format", "from", "reply_to"],
        _ => &[],
    }
}

/// Checks one channel. Errors go to `errors`; notices (such as a substitution by the file
/// outbox) to `notices`.
pub(super) fn check_channel(
    name: &str,
    raw: &Spanned<RawChannel>,
    context: &ChannelContext<'_>,
    errors: &mut Vec<ConfigError>,
    notices: &mut Vec<String>,
) -> Option<ChannelConfig> {
    let channel = &raw.value;
    let key = format!("channels.{name}");
    let error_count = errors.len();
    let err = |errors: &mut Vec<ConfigError>, line: u64, sub: &str, message: String| {
        let key = if sub.is_empty() {
            key.clone()
        } else {
            format!("{key}.{sub}")
        };
        errors.push(ConfigError::at(context.file, line, key, message));
    };

    if !is_identifier(name) {
        err(
            errors,
            raw.referenced.line(),
            "",
            format!("invalid channel name {name:?}: use lowercase letters, digits, - and _"),
        );
    }

    let driver = channel.driver.value.as_str();
    if !DRIVERS.contains(&driver) {
        err(
            errors,
            channel.driver.referenced.line(),
            "driver",
            format!(
                "unknown driver {driver:?}: expected one of {}",
                DRIVERS.join(", ")
            ),
        );
        return None;
    }

    for (setting, line) in present_settings(channel) {
        if !driver_settings(driver).contains(&setting) {
            err(
                errors,
                line,
                setting,
                format!(
                    "{setting} is not a setting of driver {driver}; it accepts {} besides driver, on_missing_env, concurrency, rate_limit, timeout and retry",
                    driver_settings(driver).join(", ")
                ),
            );
        }
    }

    let on_missing_env = match channel
        .on_missing_env
        .as_ref()
        .map(|s| (s.value.as_str(), s.referenced.line()))
    {
        None | Some(("error", _)) => OnMissingEnv::Error,
        Some(("file", _)) => OnMissingEnv::File,
        Some((other, line)) => {
            err(
                errors,
                line,
                "on_missing_env",
                format!("invalid value {other:?}: expected error (the default) or file"),
            );
            OnMissingEnv::Error
        }
    };

    let kind = match driver {
        "smtp" => MessageKind::Email,
        "sms" => MessageKind::Sms,
        "webhook" => MessageKind::Webhook,
        _ => match &channel.format {
            Some(format) => match MessageKind::parse(&format.value) {
                Some(kind) => kind,
                None => {
                    err(
                        errors,
                        format.referenced.line(),
                        "format",
                        format!(
                            "invalid format {:?}: expected email, sms or webhook",
                            format.value
                        ),
                    );
                    return None;
                }
            },
            None => {
                err(
                    errors,
                    raw.referenced.line(),
                    "format",
                    "missing: a file channel needs format: email, sms or webhook".into(),
                );
                return None;
            }
        },
    };

    // Expand every ${VAR} first, so that one run reports every missing variable.
    let mut missing_env = Vec::new();
    let mut expand_setting = |setting: &Option<Spanned<String>>,
                              sub: &str,
                              errors: &mut Vec<ConfigError>|
     -> Option<(String, u64)> {
        let setting = setting.as_ref()?;
        match expand(&setting.value, context.env) {
            // A setting that expands to nothing, such as ${CA_FILE:-}, counts as not set.
            Ok(Expanded::Value(value)) if value.trim().is_empty() => None,
            Ok(Expanded::Value(value)) => Some((value, setting.referenced.line())),
            Ok(Expanded::Missing(names)) => {
                for name in names {
                    missing_env.push((name, sub.to_string(), setting.referenced.line()));
                }
                None
            }
            Err(message) => {
                err(errors, setting.referenced.line(), sub, message);
                None
            }
        }
    };
    let url = expand_setting(&channel.url, "url", errors);
    let from = expand_setting(&channel.from, "from", errors);
    let reply_to = expand_setting(&channel.reply_to, "reply_to", errors);
    let tls_ca_file = expand_setting(&channel.tls_ca_file, "tls_ca_file", errors);
    let hello_name = expand_setting(&channel.hello_name, "hello_name", errors);
    let account_sid = expand_setting(&channel.account_sid, "account_sid", errors);
    let auth_token = expand_setting(&channel.auth_token, "auth_token", errors);
    let messaging_service_sid = expand_setting(
        &channel.messaging_service_sid,
        "messaging_service_sid",
        errors,
    );
    let directory = expand_setting(&channel.directory, "directory", errors);
    let mut headers = Vec::new();
    if let Some(raw_headers) = &channel.headers {
        for (header, value) in &raw_headers.value {
            let spanned = Some(Spanned::new(
                value.clone(),
                raw_headers.referenced,
                raw_headers.defined,
            ));
            if let Some((value, _)) = expand_setting(&spanned, &format!("headers.{header}"), errors)
            {
                headers.push((header.clone(), Secret(value)));
            }
        }
    }

    let mut use_file_outbox = false;
    missing_env.sort_by_key(|(_, _, line)| *line);
    if !missing_env.is_empty() {
        let names: Vec<&str> = missing_env
            .iter()
            .map(|(name, _, _)| name.as_str())
            .collect();
        match on_missing_env {
            OnMissingEnv::File => {
                use_file_outbox = true;
                notices.push(format!(
                    "channel {name} writes {kind} messages to the file outbox because {} {} unset",
                    names.join(", "),
                    if names.len() == 1 { "is" } else { "are" }
                ));
            }
            OnMissingEnv::Error => {
                for (variable, sub, line) in &missing_env {
                    err(
                        errors,
                        *line,
                        sub,
                        format!(
                            "environment variable {variable} is unset or empty: set it, give a default with ${{{variable}:-value}}, or add on_missing_env: file to write to the file outbox instead"
                        ),
                    );
                }
            }
        }
    }

    let concurrency = match &channel.concurrency {
        Some(value) if value.value == 0 => {
            err(
                errors,
                value.referenced.line(),
                "concurrency",
                "must be at least 1".into(),
            );
            1
        }
        Some(value) => value.value as usize,
        None => default_concurrency(driver),
    };
    let rate_limit = match &channel.rate_limit {
        Some(value) if !(value.value > 0.0 && value.value.is_finite()) => {
            err(
                errors,
                value.referenced.line(),
                "rate_limit",
                format!(
                    "invalid rate {}: give messages per second as a positive number, such as 10 or 0.5",
                    value.value
                ),
            );
            None
        }
        Some(value) => Some(value.value),
        None => None,
    };
    let timeout = channel
        .timeout
        .map(|t| t.as_duration())
        .unwrap_or(Duration::from_secs(30));
    let retry = merge_retry(
        context.default_retry,
        channel.retry.as_ref(),
        context.file,
        &key,
        errors,
    );

    let file_settings = |directory: Option<(String, u64)>| FileSettings {
        directory: match directory {
            Some((dir, _)) => resolve_path(context.data_dir, &dir),
            None => context.data_dir.join("outbox"),
        },
    };

    let transport = if use_file_outbox || driver == "file" {
        Transport::File(file_settings(if driver == "file" {
            directory
        } else {
            None
        }))
    } else {
        match driver {
            "smtp" => {
                let Some((url, line)) = url else {
                    if !missing_env.iter().any(|(_, sub, _)| sub == "url") {
                        err(errors, raw.referenced.line(), "url", "missing: an smtp channel needs url, such as smtps://user:password@mail.example.com".into());
                    }
                    return None;
                };
                let pool_size = channel
                    .pool_size
                    .as_ref()
                    .map(|p| p.value)
                    .unwrap_or(4)
                    .max(1);
                match parse_smtp_url(&url) {
                    Ok(mut settings) => {
                        settings.tls_ca_file =
                            tls_ca_file.map(|(path, _)| resolve_path(context.config_dir, &path));
                        settings.hello_name = hello_name.map(|(name, _)| name);
                        settings.pool_size = pool_size;
                        Transport::Smtp(settings)
                    }
                    Err(message) => {
                        err(errors, line, "url", message);
                        return None;
                    }
                }
            }
            "sms" => {
                let settings = check_sms(
                    url,
                    account_sid,
                    auth_token,
                    from.clone(),
                    messaging_service_sid,
                    raw.referenced.line(),
                    &missing_env,
                    &mut |line, sub, message| err(errors, line, sub, message),
                );
                Transport::Sms(settings?)
            }
            _ => {
                let Some((url, line)) = url else {
                    if !missing_env.iter().any(|(_, sub, _)| sub == "url") {
                        err(
                            errors,
                            raw.referenced.line(),
                            "url",
                            "missing: a webhook channel needs url".into(),
                        );
                    }
                    return None;
                };
                if let Err(message) = check_http_url(&url, false) {
                    err(errors, line, "url", message);
                    return None;
                }
                Transport::Webhook(WebhookSettings { url, headers })
            }
        }
    };

    let from = from.map(|(value, _)| value);
    if kind == MessageKind::Email {
        match &from {
            None => err(errors, raw.referenced.line(), "from", "missing: an e-mail channel needs from, such as \"Clinic <no-reply@clinic.example>\"".into()),
            Some(value) => {
                if let Err(message) = crate::message::address::parse_mailbox(value) {
                    err(errors, channel.from.as_ref().map(|f| f.referenced.line()).unwrap_or(0), "from", message);
                }
            }
        }
    }
    let reply_to = reply_to.map(|(value, line)| {
        if let Err(message) = crate::message::address::parse_mailbox(&value) {
            err(errors, line, "reply_to", message);
        }
        value
    });

    if errors.len() > error_count {
        return None;
    }
    Some(ChannelConfig {
        name: name.to_string(),
        kind,
        transport,
        concurrency,
        rate_limit,
        timeout,
        retry,
        from,
        reply_to,
    })
}

#[derive(Clone, Copy)]
enum OnMissingEnv {
    Error,
    File,
}

fn default_concurrency(driver: &str) -> usize {
    match driver {
        "smtp" => 8,
        "file" => 4,
        _ => 16,
    }
}

fn present_settings(channel: &RawChannel) -> Vec<(&'static str, u64)> {
    let mut present = Vec::new();
    let mut add = |name: &'static str, value: Option<u64>| {
        if let Some(line) = value {
            present.push((name, line));
        }
    };
    let line = |s: &Option<Spanned<String>>| s.as_ref().map(|s| s.referenced.line());
    add("url", line(&channel.url));
    add("from", line(&channel.from));
    add("reply_to", line(&channel.reply_to));
    add("tls_ca_file", line(&channel.tls_ca_file));
    add("hello_name", line(&channel.hello_name));
    add(
        "pool_size",
        channel.pool_size.as_ref().map(|s| s.referenced.line()),
    );
    add("account_sid", line(&channel.account_sid));
    add("auth_token", line(&channel.auth_token));
    add(
        "messaging_service_sid",
        line(&channel.messaging_service_sid),
    );
    add(
        "headers",
        channel.headers.as_ref().map(|s| s.referenced.line()),
    );
    add("directory", line(&channel.directory));
    add("format", line(&channel.format));
    present
}

#[allow(clippy::too_many_arguments)]
fn check_sms(
    url: Option<(String, u64)>,
    account_sid: Option<(String, u64)>,
    auth_token: Option<(String, u64)>,
    from: Option<(String, u64)>,
    messaging_service_sid: Option<(String, u64)>,
    channel_line: u64,
    missing_env: &[(String, String, u64)],
    err: &mut dyn FnMut(u64, &str, String),
) -> Option<SmsSettings> {
    let was_missing = |sub: &str| missing_env.iter().any(|(_, s, _)| s == sub);
    let mut ok = true;
    let mut require = |value: &Option<(String, u64)>, sub: &str, example: &str| {
        if value.is_none() && !was_missing(sub) {
            err(
                channel_line,
                sub,
                format!("missing: an sms channel needs {sub}, such as {example}"),
            );
            ok = false;
        }
    };
    require(&url, "url", "https://api.twilio.com");
    require(&account_sid, "account_sid", "${SMS_ACCOUNT_SID}");
    require(&auth_token, "auth_token", "${SMS_AUTH_TOKEN}");
    if from.is_none()
        && messaging_service_sid.is_none()
        && !was_missing("from")
        && !was_missing("messaging_service_sid")
    {
        err(
            channel_line,
            "from",
            "missing: an sms channel needs from (the sender number) or messaging_service_sid"
                .into(),
        );
        ok = false;
    }
    if let Some((url, line)) = &url
        && let Err(message) = check_http_url(url, true)
    {
        err(*line, "url", message);
        ok = false;
    }
    if !ok {
        return None;
    }
    let (url, _) = url?;
    Some(SmsSettings {
        base_url: url.trim_end_matches('/').to_string(),
        account_sid: account_sid?.0,
        auth_token: Secret(auth_token?.0),
        from: from.map(|(value, _)| value),
        messaging_service_sid: messaging_service_sid.map(|(value, _)| value),
    })
}

/// Checks an http(s) URL. With `carries_secret`, plain http is allowed only to a loopback
/// host, so that a provider token never crosses a network unencrypted.
fn check_http_url(text: &str, carries_secret: bool) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|error| format!("invalid URL {text:?}: {error}"))?;
    match url.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = matches!(url.host_str(), Some("localhost" | "127.0.0.1" | "[::1]"));
            if carries_secret && !loopback {
                Err(format!(
                    "plain http to {} would send the auth token unencrypted: use https (http is accepted only for 127.0.0.1 and localhost)",
                    url.host_str().unwrap_or_default()
                ))
            } else {
                Ok(())
            }
        }
        other => Err(format!(
            "invalid URL scheme {other:?}: expected https or http"
        )),
    }
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

fn merge_retry(
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

fn resolve_path(base: &Path, path: &str) -> PathBuf {
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

/// The channel names, for error messages.
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

    #[test]
    fn http_url_secret_rule() {
        assert!(check_http_url("https://api.example.com", true).is_ok());
        assert!(check_http_url("http://127.0.0.1:8081", true).is_ok());
        assert!(
            check_http_url("http://api.example.com", true)
                .unwrap_err()
                .contains("unencrypted")
        );
        assert!(check_http_url("http://hooks.example.com", false).is_ok());
        assert!(check_http_url("ftp://x", false).is_err());
    }
}
