//! Channel drivers: one implementation of `Driver` per `driver:` value in `rules.yaml`.

pub mod classify;
mod file;
mod set;
mod sms;
mod smtp;
mod webhook;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

pub use classify::FailureKind;
pub use set::{ChannelRuntime, ChannelSet, RateLimiter};

use crate::config::{ChannelConfig, Transport};
use crate::message::Message;

/// One message for a driver to send.
#[derive(Debug)]
pub struct Outgoing<'a> {
    pub delivery_id: i64,
    /// The attempt number, starting at 1.
    pub attempt: u32,
    pub message: &'a Message,
    /// The outbox's instance id, which makes `Message-ID` and idempotency keys unique
    /// across databases.
    pub instance_id: &'a str,
}

/// Result of a successful send.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipt {
    /// The provider's id for the message, or the SMTP server's reply.
    pub provider_id: Option<String>,
}

/// A failed send. The message never contains patient data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendError {
    pub kind: FailureKind,
    pub message: String,
    /// How long the provider asked to wait (`Retry-After`).
    pub retry_after: Option<Duration>,
}

impl SendError {
    pub fn permanent(message: impl Into<String>) -> SendError {
        SendError {
            kind: FailureKind::Permanent,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn transient(message: impl Into<String>) -> SendError {
        SendError {
            kind: FailureKind::Transient,
            message: message.into(),
            retry_after: None,
        }
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Sends messages of one channel.
#[async_trait]
pub trait Driver: Send + Sync {
    async fn send(&self, outgoing: &Outgoing<'_>) -> Result<Receipt, SendError>;
}

/// Builds the driver for a channel. `http` is the shared client for HTTP-based drivers.
pub fn build_driver(
    config: &ChannelConfig,
    http: &reqwest::Client,
) -> Result<Arc<dyn Driver>, String> {
    Ok(match &config.transport {
        Transport::Smtp(settings) => Arc::new(smtp::SmtpDriver::new(settings, config.timeout)?),
        Transport::Sms(settings) => Arc::new(sms::SmsDriver::new(
            settings,
            http.clone(),
            config.from.clone(),
            config.timeout,
        )),
        Transport::Webhook(settings) => Arc::new(webhook::WebhookDriver::new(
            settings,
            http.clone(),
            config.timeout,
        )),
        Transport::File(settings) => {
            Arc::new(file::FileDriver::new(&settings.directory, &config.name)?)
        }
    })
}

/// Builds the client every HTTP driver shares: no proxy from the environment, no redirects,
/// bounded connection pools.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(20))
        .pool_max_idle_per_host(64)
        .user_agent(concat!("herald/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| format!("cannot build the HTTP client: {error}"))
}

/// Sends a request and turns its result into a receipt or a classified error. `read_id` picks
/// the provider's message id out of a successful response body.
pub(crate) async fn send_http(
    request: reqwest::RequestBuilder,
    read_id: fn(&serde_json::Value) -> Option<String>,
) -> Result<Receipt, SendError> {
    let response = request.send().await.map_err(|error| {
        let what = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "connection failed"
        } else {
            "request failed"
        };
        SendError::transient(format!("{what}: {}", classify::scrub(&error_chain(&error))))
    })?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| classify::parse_retry_after(value, jiff::Timestamp::now()));
    let body = response.bytes().await.unwrap_or_default();
    let json: Option<serde_json::Value> = serde_json::from_slice(&body).ok();
    if (200..300).contains(&status) {
        return Ok(Receipt {
            provider_id: json.as_ref().and_then(read_id),
        });
    }
    let provider_code = json
        .as_ref()
        .and_then(|j| j.get("code"))
        .and_then(serde_json::Value::as_i64);
    let provider_message = json
        .as_ref()
        .and_then(|j| j.get("message"))
        .and_then(serde_json::Value::as_str)
        .map(classify::scrub);
    let mut message = format!("HTTP {status}");
    if let Some(code) = provider_code {
        message.push_str(&format!(", provider code {code}"));
    }
    if let Some(text) = provider_message {
        message.push_str(&format!(": {text}"));
    }
    Err(SendError {
        kind: classify::classify_http(status, provider_code),
        message,
        retry_after,
    })
}

/// An error with its causes, leaving out a cause whose text the message already contains
/// (lettre, for one, repeats its source in its own message).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
