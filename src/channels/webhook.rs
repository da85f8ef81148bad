//! Outbound webhooks: POST the rendered JSON body to a URL with the configured headers.

use std::time::Duration;

use async_trait::async_trait;

use super::{Driver, Outgoing, Receipt, SendError, send_http};
use crate::config::channels::WebhookSettings;
use crate::message::Message;

pub struct WebhookDriver {
    client: reqwest::Client,
    settings: WebhookSettings,
    timeout: Duration,
}

impl WebhookDriver {
    pub fn new(
        settings: &WebhookSettings,
        client: reqwest::Client,
        timeout: Duration,
    ) -> WebhookDriver {
        WebhookDriver {
            client,
            settings: settings.clone(),
            timeout,
        }
    }
}

#[async_trait]
impl Driver for WebhookDriver {
    async fn send(&self, outgoing: &Outgoing<'_>) -> Result<Receipt, SendError> {
        let Message::Webhook(webhook) = outgoing.message else {
            return Err(SendError::permanent(
                "a webhook channel can only send webhook messages",
            ));
        };
        let mut request = self
            .client
            .post(&self.settings.url)
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(
                "Idempotency-Key",
                format!("herald-{}-{}", outgoing.instance_id, outgoing.delivery_id),
            )
            .body(webhook.body.clone());
        for (name, value) in &self.settings.headers {
            request = request.header(name.as_str(), value.0.as_str());
        }
        send_http(request, |body| {
            body.get("id")
                .and_then(|id| id.as_str())
                .map(str::to_string)
        })
        .await
    }
}
