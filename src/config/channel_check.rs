//! Checks one entry under `channels:` and builds its `ChannelConfig`, in steps: the driver
//! and the settings it accepts, `${VAR}` expansion, the transport, the limits, the sender.

use std::path::Path;
use std::time::Duration;

use serde_saphyr::Spanned;

use super::channels::{
    ChannelConfig, FileSettings, MessageKind, Secret, SmsSettings, Transport, WebhookSettings,
    is_identifier, merge_retry, parse_smtp_url, resolve_path,
};
use super::env::{EnvSource, Expanded, expand};
use super::raw::RawChannel;
use super::{ConfigError, RetryPolicy};

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

fn default_concurrency(driver: &str) -> usize {
    match driver {
        "smtp" => 8,
        "file" => 4,
        _ => 16,
    }
}

/// Collects a channel's errors under its key, `channels.<name>`.
struct Problems<'a> {
    file: &'a Path,
    key: String,
    errors: &'a mut Vec<ConfigError>,
    found: usize,
}

impl Problems<'_> {
    fn push(&mut self, line: u64, sub: &str, message: String) {
        let key = if sub.is_empty() {
            self.key.clone()
        } else {
            format!("{}.{sub}", self.key)
        };
        self.errors
            .push(ConfigError::at(self.file, line, key, message));
        self.found += 1;
    }
}

/// A string setting after expansion, with the line it came from.
type Setting = Option<(String, u64)>;

/// Every string setting after `${VAR}` expansion.
#[derive(Default)]
struct ExpandedSettings {
    url: Setting,
    from: Setting,
    reply_to: Setting,
    tls_ca_file: Setting,
    hello_name: Setting,
    account_sid: Setting,
    auth_token: Setting,
    messaging_service_sid: Setting,
    directory: Setting,
    headers: Vec<(String, Secret)>,
    /// Variables that are unset without a default: name, setting, line; in file order.
    missing: Vec<(String, String, u64)>,
}

impl ExpandedSettings {
    fn was_missing(&self, setting: &str) -> bool {
        self.missing.iter().any(|(_, sub, _)| sub == setting)
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
    let channel_line = raw.referenced.line();
    let mut problems = Problems {
        file: context.file,
        key: format!("channels.{name}"),
        errors,
        found: 0,
    };
    if !is_identifier(name) {
        problems.push(
            channel_line,
            "",
            format!("invalid channel name {name:?}: use lowercase letters, digits, - and _"),
        );
    }

    let driver = channel.driver.value.as_str();
    if !DRIVERS.contains(&driver) {
        problems.push(
            channel.driver.referenced.line(),
            "driver",
            format!(
                "unknown driver {driver:?}: expected one of {}",
                DRIVERS.join(", ")
            ),
        );
        return None;
    }
    check_settings_belong(channel, driver, &mut problems);
    let to_file_when_missing = check_on_missing_env(channel, &mut problems);
    let kind = message_kind(channel, driver, channel_line, &mut problems)?;

    // Expand every ${VAR} first, so that one run reports every missing variable.
    let settings = expand_settings(channel, context.env, &mut problems);
    let use_file_outbox = !settings.missing.is_empty() && to_file_when_missing;
    if use_file_outbox {
        let names: Vec<&str> = settings
            .missing
            .iter()
            .map(|(variable, _, _)| variable.as_str())
            .collect();
        notices.push(format!(
            "channel {name} writes {kind} messages to the file outbox because {} {} unset",
            names.join(", "),
            if names.len() == 1 { "is" } else { "are" }
        ));
    } else {
        for (variable, sub, line) in &settings.missing {
            problems.push(
                *line,
                sub,
                format!(
                    "environment variable {variable} is unset or empty: set it, give a default with ${{{variable}:-value}}, or add on_missing_env: file to write to the file outbox instead"
                ),
            );
        }
    }

    let (concurrency, rate_limit) = check_limits(channel, driver, &mut problems);
    let timeout = channel
        .timeout
        .map(|t| t.as_duration())
        .unwrap_or(Duration::from_secs(30));
    let retry = merge_retry(
        context.default_retry,
        channel.retry.as_ref(),
        context.file,
        &problems.key,
        problems.errors,
    );

    let transport = if use_file_outbox || driver == "file" {
        let directory = if driver == "file" {
            settings.directory.clone()
        } else {
            None
        };
        Transport::File(FileSettings {
            directory: match directory {
                Some((dir, _)) => resolve_path(context.data_dir, &dir),
                None => context.data_dir.join("outbox"),
            },
        })
    } else {
        build_transport(
            driver,
            channel,
            &settings,
            channel_line,
            context,
            concurrency,
            &mut problems,
        )?
    };

    let from = settings.from.as_ref().map(|(value, _)| value.clone());
    if kind == MessageKind::Email {
        check_sender(&settings, channel_line, &mut problems);
    }
    if let Some((reply_to, line)) = &settings.reply_to
        && let Err(message) = crate::message::address::parse_mailbox(reply_to)
    {
        problems.push(*line, "reply_to", message);
    }

    if problems.found > 0 {
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
        reply_to: settings.reply_to.map(|(value, _)| value),
    })
}

/// Rejects settings that the chosen driver does not use.
fn check_settings_belong(channel: &RawChannel, driver: &str, problems: &mut Problems<'_>) {
    for (setting, line) in present_settings(channel) {
        if !driver_settings(driver).contains(&setting) {
            problems.push(
                line,
                setting,
                format!(
                    "{setting} is not a setting of driver {driver}; it accepts {} besides driver, on_missing_env, concurrency, rate_limit, timeout and retry",
                    driver_settings(driver).join(", ")
                ),
            );
        }
    }
}

/// Returns whether an unset variable sends the channel to the file outbox
/// (`on_missing_env: file`) instead of failing the load (`error`, the default).
fn check_on_missing_env(channel: &RawChannel, problems: &mut Problems<'_>) -> bool {
    let Some(setting) = &channel.on_missing_env else {
        return false;
    };
    match setting.value.as_str() {
        "error" => false,
        "file" => true,
        other => {
            problems.push(
                setting.referenced.line(),
                "on_missing_env",
                format!("invalid value {other:?}: expected error (the default) or file"),
            );
            false
        }
    }
}

fn message_kind(
    channel: &RawChannel,
    driver: &str,
    channel_line: u64,
    problems: &mut Problems<'_>,
) -> Option<MessageKind> {
    match driver {
        "smtp" => Some(MessageKind::Email),
        "sms" => Some(MessageKind::Sms),
        "webhook" => Some(MessageKind::Webhook),
        _ => {
            let Some(format) = &channel.format else {
                problems.push(
                    channel_line,
                    "format",
                    "missing: a file channel needs format: email, sms or webhook".into(),
                );
                return None;
            };
            let kind = MessageKind::parse(&format.value);
            if kind.is_none() {
                problems.push(
                    format.referenced.line(),
                    "format",
                    format!(
                        "invalid format {:?}: expected email, sms or webhook",
                        format.value
                    ),
                );
            }
            kind
        }
    }
}

fn expand_settings(
    channel: &RawChannel,
    env: &dyn EnvSource,
    problems: &mut Problems<'_>,
) -> ExpandedSettings {
    let mut expanded = ExpandedSettings::default();
    let mut expand_one = |setting: &Option<Spanned<String>>,
                          sub: &str,
                          expanded: &mut ExpandedSettings|
     -> Setting {
        let setting = setting.as_ref()?;
        let line = setting.referenced.line();
        match expand(&setting.value, env) {
            // A setting that expands to nothing, such as ${CA_FILE:-}, counts as not set.
            Ok(Expanded::Value(value)) if value.trim().is_empty() => None,
            Ok(Expanded::Value(value)) => Some((value, line)),
            Ok(Expanded::Missing(names)) => {
                for variable in names {
                    expanded.missing.push((variable, sub.to_string(), line));
                }
                None
            }
            Err(message) => {
                problems.push(line, sub, message);
                None
            }
        }
    };
    expanded.url = expand_one(&channel.url, "url", &mut expanded);
    expanded.from = expand_one(&channel.from, "from", &mut expanded);
    expanded.reply_to = expand_one(&channel.reply_to, "reply_to", &mut expanded);
    expanded.tls_ca_file = expand_one(&channel.tls_ca_file, "tls_ca_file", &mut expanded);
    expanded.hello_name = expand_one(&channel.hello_name, "hello_name", &mut expanded);
    expanded.account_sid = expand_one(&channel.account_sid, "account_sid", &mut expanded);
    expanded.auth_token = expand_one(&channel.auth_token, "auth_token", &mut expanded);
    expanded.messaging_service_sid = expand_one(
        &channel.messaging_service_sid,
        "messaging_service_sid",
        &mut expanded,
    );
    expanded.directory = expand_one(&channel.directory, "directory", &mut expanded);
    if let Some(headers) = &channel.headers {
        for (header, value) in &headers.value {
            let spanned = Some(Spanned::new(
                value.clone(),
                headers.referenced,
                headers.defined,
            ));
            if let Some((value, _)) =
                expand_one(&spanned, &format!("headers.{header}"), &mut expanded)
            {
                expanded.headers.push((header.clone(), Secret(value)));
            }
        }
    }
    expanded.missing.sort_by_key(|(_, _, line)| *line);
    expanded
}

fn check_limits(
    channel: &RawChannel,
    driver: &str,
    problems: &mut Problems<'_>,
) -> (usize, Option<f64>) {
    let concurrency = match &channel.concurrency {
        Some(value) if value.value == 0 => {
            problems.push(
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
            problems.push(
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
    (concurrency, rate_limit)
}

fn build_transport(
    driver: &str,
    channel: &RawChannel,
    settings: &ExpandedSettings,
    channel_line: u64,
    context: &ChannelContext<'_>,
    concurrency: usize,
    problems: &mut Problems<'_>,
) -> Option<Transport> {
    let Some((url, url_line)) = settings.url.clone() else {
        if !settings.was_missing("url") {
            let example = match driver {
                "smtp" => {
                    "an smtp channel needs url, such as smtps://user:password@mail.example.com"
                }
                "sms" => "an sms channel needs url, such as https://api.twilio.com",
                _ => "a webhook channel needs url",
            };
            problems.push(channel_line, "url", format!("missing: {example}"));
        }
        // Report the other missing settings of an SMS channel in the same run.
        if driver == "sms" {
            check_sms(settings, channel_line, problems);
        }
        return None;
    };
    match driver {
        "smtp" => match parse_smtp_url(&url) {
            Ok(mut smtp) => {
                smtp.tls_ca_file = settings
                    .tls_ca_file
                    .as_ref()
                    .map(|(path, _)| resolve_path(context.config_dir, path));
                smtp.hello_name = settings.hello_name.as_ref().map(|(name, _)| name.clone());
                smtp.pool_size = channel
                    .pool_size
                    .as_ref()
                    .map(|p| p.value)
                    .unwrap_or(concurrency as u32)
                    .max(1);
                Some(Transport::Smtp(smtp))
            }
            Err(message) => {
                problems.push(url_line, "url", message);
                None
            }
        },
        "sms" => {
            if let Err(message) = check_http_url(&url, true) {
                problems.push(url_line, "url", message);
            }
            let (account_sid, auth_token) = check_sms(settings, channel_line, problems)?;
            Some(Transport::Sms(SmsSettings {
                base_url: url.trim_end_matches('/').to_string(),
                account_sid,
                auth_token: Secret(auth_token),
                from: settings.from.as_ref().map(|(value, _)| value.clone()),
                messaging_service_sid: settings
                    .messaging_service_sid
                    .as_ref()
                    .map(|(value, _)| value.clone()),
            }))
        }
        _ => {
            if let Err(message) = check_http_url(&url, false) {
                problems.push(url_line, "url", message);
                return None;
            }
            Some(Transport::Webhook(WebhookSettings {
                url,
                headers: settings.headers.clone(),
            }))
        }
    }
}

/// Checks the SMS credentials and sender; returns the account sid and auth token.
fn check_sms(
    settings: &ExpandedSettings,
    channel_line: u64,
    problems: &mut Problems<'_>,
) -> Option<(String, String)> {
    let mut require = |value: &Setting, sub: &str, example: &str| -> Option<String> {
        if value.is_none() && !settings.was_missing(sub) {
            problems.push(
                channel_line,
                sub,
                format!("missing: an sms channel needs {sub}, such as {example}"),
            );
        }
        value.as_ref().map(|(text, _)| text.clone())
    };
    let account_sid = require(&settings.account_sid, "account_sid", "${SMS_ACCOUNT_SID}");
    let auth_token = require(&settings.auth_token, "auth_token", "${SMS_AUTH_TOKEN}");
    if settings.from.is_none()
        && settings.messaging_service_sid.is_none()
        && !settings.was_missing("from")
        && !settings.was_missing("messaging_service_sid")
    {
        problems.push(
            channel_line,
            "from",
            "missing: an sms channel needs from (the sender number) or messaging_service_sid"
                .into(),
        );
        return None;
    }
    Some((account_sid?, auth_token?))
}

fn check_sender(settings: &ExpandedSettings, channel_line: u64, problems: &mut Problems<'_>) {
    match &settings.from {
        None if !settings.was_missing("from") => problems.push(
            channel_line,
            "from",
            "missing: an e-mail channel needs from, such as \"Clinic <no-reply@clinic.example>\""
                .into(),
        ),
        None => {}
        Some((value, line)) => {
            if let Err(message) = crate::message::address::parse_mailbox(value) {
                problems.push(*line, "from", message);
            }
        }
    }
}

fn present_settings(channel: &RawChannel) -> Vec<(&'static str, u64)> {
    let line = |setting: &Option<Spanned<String>>| setting.as_ref().map(|s| s.referenced.line());
    let candidates = [
        ("url", line(&channel.url)),
        ("from", line(&channel.from)),
        ("reply_to", line(&channel.reply_to)),
        ("tls_ca_file", line(&channel.tls_ca_file)),
        ("hello_name", line(&channel.hello_name)),
        (
            "pool_size",
            channel.pool_size.as_ref().map(|s| s.referenced.line()),
        ),
        ("account_sid", line(&channel.account_sid)),
        ("auth_token", line(&channel.auth_token)),
        (
            "messaging_service_sid",
            line(&channel.messaging_service_sid),
        ),
        (
            "headers",
            channel.headers.as_ref().map(|s| s.referenced.line()),
        ),
        ("directory", line(&channel.directory)),
        ("format", line(&channel.format)),
    ];
    candidates
        .into_iter()
        .filter_map(|(name, line)| line.map(|line| (name, line)))
        .collect()
}

/// Checks an http(s) URL. With `carries_secret`, plain http is allowed only to a loopback
/// host, so that a provider token never crosses a network unencrypted.
pub(super) fn check_http_url(text: &str, carries_secret: bool) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
