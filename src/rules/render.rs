//! Renders the message a rule sends through one channel.

use minijinja::context;

use super::engine::{EngineError, Evaluation};
use super::model::{Rule, well_known};
use crate::config::{ChannelConfig, MessageKind};
use crate::message::address::{MAX_DISPLAY_NAME_CHARS, MAX_SUBJECT_CHARS, header_text};
use crate::message::{EmailMessage, Message, SmsMessage, WebhookMessage};
use crate::sms_encoding::{self, LimitOutcome};
use crate::templates::{Part, RenderError, TemplateSet};

pub(super) struct RenderedMessage {
    pub message: Message,
    pub notes: Vec<String>,
}

/// Renders the message. The outer error is a template failure; the inner one is a reason to
/// skip this channel (an SMS over its segment limit under the reject policy).
pub(super) fn render_message(
    rule: &Rule,
    channel: &ChannelConfig,
    evaluation: &Evaluation<'_>,
) -> Result<Result<RenderedMessage, String>, EngineError> {
    let templates = &evaluation.generation.templates;
    let set_name = rule
        .template
        .as_deref()
        .expect("the loader requires a template on rules that send");
    let set = templates
        .set(set_name)
        .expect("the loader checked that the template set exists");
    let fail = |error: RenderError| EngineError {
        rule: rule.name.clone(),
        error,
    };

    let locale = rule
        .locale
        .clone()
        .or_else(|| {
            evaluation
                .fields
                .value(well_known::LOCALE)
                .map(str::to_string)
        })
        .or_else(|| evaluation.generation.defaults.locale.clone());
    let primary = match channel.kind {
        MessageKind::Email => Part::EmailSubject,
        MessageKind::Sms => Part::Sms,
        MessageKind::Webhook => Part::Webhook,
    };
    let variant = set.choose_variant(locale.as_deref(), primary);
    let mut notes = vec![variant_note(set, variant, locale.as_deref())];

    let context = context! {
        rule => rule.name.clone(),
        channel => channel.name.clone(),
        // The language of the files used: the variant's, or none for the default files, so
        // that `{{ locale or "en" }}` names the language the message is really in.
        locale => (!variant.is_empty()).then(|| variant.to_string()),
        ..evaluation.context.clone()
    };
    let render = |part: Part| {
        templates
            .render(&set.template_name(variant, part), &context)
            .map_err(fail)
    };

    let message = match channel.kind {
        MessageKind::Email => {
            let to = evaluation
                .fields
                .value(well_known::EMAIL)
                .expect("the engine checked that the e-mail field has a value")
                .to_string();
            let html = if set.has(variant, Part::EmailHtml) {
                Some(render(Part::EmailHtml)?)
            } else {
                None
            };
            Message::Email(EmailMessage {
                from: channel.from.clone().unwrap_or_default(),
                reply_to: channel.reply_to.clone(),
                to,
                to_name: evaluation
                    .fields
                    .value(well_known::NAME)
                    .map(|name| header_text(name, MAX_DISPLAY_NAME_CHARS)),
                subject: header_text(&render(Part::EmailSubject)?, MAX_SUBJECT_CHARS),
                text: render(Part::EmailText)?,
                html,
            })
        }
        MessageKind::Sms => {
            let to = evaluation
                .fields
                .value(well_known::SMS)
                .expect("the engine checked that the sms field has a value")
                .to_string();
            let body = render(Part::Sms)?.trim().to_string();
            let body = match &rule.sms_segment_limit {
                None => body,
                Some(limit) => {
                    match sms_encoding::enforce_limit(&body, limit.max_segments, limit.policy) {
                        Ok(LimitOutcome::Fits(_)) => body,
                        Ok(LimitOutcome::Transliterated { text, .. }) => {
                            notes.push(format!(
                                "transliterated to GSM-7 to fit {} segment(s)",
                                limit.max_segments
                            ));
                            text
                        }
                        Ok(LimitOutcome::Truncated { text, .. }) => {
                            notes.push(format!(
                                "truncated to fit {} segment(s)",
                                limit.max_segments
                            ));
                            text
                        }
                        Err(exceeded) => return Ok(Err(exceeded.to_string())),
                    }
                }
            };
            let info = sms_encoding::analyze(&body);
            Message::Sms(SmsMessage {
                to,
                body,
                encoding: info.encoding.to_string(),
                segments: info.segments,
            })
        }
        MessageKind::Webhook => {
            let text = render(Part::Webhook)?;
            let parsed: serde_json::Value = serde_json::from_str(&text).map_err(|error| {
                fail(RenderError {
                    template: set.template_name(variant, Part::Webhook),
                    line: Some(error.line()),
                    message: format!("the rendered body is not JSON: {error}"),
                })
            })?;
            Message::Webhook(WebhookMessage {
                body: parsed.to_string(),
            })
        }
    };
    Ok(Ok(RenderedMessage { message, notes }))
}

fn variant_note(set: &TemplateSet, variant: &str, locale: Option<&str>) -> String {
    match (variant, locale) {
        ("", None) => format!("template {}", set.name),
        ("", Some(locale)) => format!(
            "template {}, default variant (no variant for locale {locale})",
            set.name
        ),
        (variant, _) => format!("template {}, variant {variant}", set.name),
    }
}
