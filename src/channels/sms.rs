//! SMS through a provider with the Messages API shape:
//! `POST {base}/2010-04-01/Accounts/{sid}/Messages.json` with form fields `To`, `From` or
//! `MessagingServiceSid`, and `Body`, authenticated with HTTP Basic (sid and token).

use std::time::Duration;

use async_trait::async_trait;

use super::{Driver, Outgoing, Receipt, SendError, send_http};
use crate::config::channels::SmsSettings;
use crate::message::Message;

pub struct SmsDriver {
    client: reqwest::Client,
    url: String,
    settings: SmsSettings,
    from: Option<String>,
    timeout: Duration,
}

impl SmsDriver {
    pub fn new(
        settings: &SmsSettings,
        client: reqwest::Client,
        from: Option<String>,
        timeout: Duration,
    ) -> SmsDriver {
        SmsDriver {
            client,
            url: format!(
                "{}/2010-04-01/Accounts/{}/Messages.json",
                settings.base_url, settings.account_sid
            ),
            settings: settings.clone(),
            from: from.or_else(|| settings.from.clone()),
            timeout,
        }
    }
}

#[async_trait]
impl Driver for SmsDriver {
    async fn send(&self, outgoing: &Outgoing<'_>) -> Result<Receipt, SendError> {
        let Message::Sms(sms) = outgoing.message else {
            return Err(SendError::permanent(
                "an sms channel can only send SMS messages",
            ));
        };
        let mut form = vec![("To", sms.to.as_str()), ("Body", sms.body.as_str())];
        match (&self.settings.messaging_service_sid, &self.from) {
            (Some(service), _) => form.push(("MessagingServiceSid", service)),
            (None, Some(from)) => form.push(("From", from)),
            (None, None) => {
                return Err(SendError::permanent(
                    "the sms channel has neither from nor messaging_service_sid",
                ));
            }
        }
        let request = self
            .client
            .post(&self.url)
            .basic_auth(
                &self.settings.account_sid,
                Some(&self.settings.auth_token.0),
            )
            .header(
                "I-Twilio-Idempotency-Token",
                format!("herald-{}-{}", outgoing.instance_id, outgoing.delivery_id),
            )
            .timeout(self.timeout)
            .form(&form);
        send_http(request, |body| {
            body.get("sid")
                .and_then(|sid| sid.as_str())
                .map(str::to_string)
        })
        .await
    }
}
