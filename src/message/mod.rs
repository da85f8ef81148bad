//! Rendered messages, as stored in the outbox and handed to a channel driver.

pub mod address;
pub mod email;

use serde::{Deserialize, Serialize};

/// A message ready to send. It is rendered at intake and never changes afterwards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Message {
    Email(EmailMessage),
    Sms(SmsMessage),
    Webhook(WebhookMessage),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailMessage {
    /// The sender, such as `Clinic <no-reply@clinic.example>`.
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    /// The recipient address, checked and with an ASCII domain.
    pub to: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to_name: Option<String>,
    pub subject: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SmsMessage {
    /// The recipient in E.164 form.
    pub to: String,
    pub body: String,
    /// `GSM-7` or `UCS-2`.
    pub encoding: String,
    pub segments: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookMessage {
    /// The JSON body, as compact text.
    pub body: String,
}

impl Message {
    pub fn kind(&self) -> crate::config::MessageKind {
        match self {
            Message::Email(_) => crate::config::MessageKind::Email,
            Message::Sms(_) => crate::config::MessageKind::Sms,
            Message::Webhook(_) => crate::config::MessageKind::Webhook,
        }
    }

    /// The recipient (an address or number), for masking in operator output.
    pub fn recipient(&self) -> Option<&str> {
        match self {
            Message::Email(email) => Some(&email.to),
            Message::Sms(sms) => Some(&sms.to),
            Message::Webhook(_) => None,
        }
    }
}

/// Hides most of a contact for logs and operator listings: `p***@example.com`, `+1******2671`.
pub fn mask_contact(contact: &str) -> String {
    if let Some((local, domain)) = contact.split_once('@') {
        let first: String = local.chars().take(1).collect();
        return format!("{first}***@{domain}");
    }
    let chars: Vec<char> = contact.chars().collect();
    if chars.len() <= 6 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..2].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_contact("perry@example.com"), "p***@example.com");
        assert_eq!(mask_contact("+14155552671"), "+1******2671");
        assert_eq!(mask_contact("12345"), "*****");
    }
}
