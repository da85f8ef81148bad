//! Renders every template with the example payloads stored in the schemas (their `examples`
//! keyword), through the same engine `serve` uses, and reports what would go wrong at intake:
//! undefined variables, SMS texts over their segment limit, and HTML bodies whose words
//! differ from the text body's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use crate::config::Generation;
use crate::ingest::{self, IntakeError};
use crate::message::Message;
use crate::rules::decision::Decision;
use crate::rules::well_known;

/// SMS texts longer than this many segments get a warning when their rule sets no limit.
const SMS_SEGMENT_WARNING: usize = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found while rendering an example.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub severity: Severity,
    /// Which example, such as `schemas/NOTIFY_PUBLIC_USER.json examples[2] (LongReminder, locale es)`.
    pub source: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.source, self.message)
    }
}

/// Renders each example once per language variant found in the templates.
pub fn check_examples(generation: &Generation) -> Vec<Finding> {
    let locales = variant_locales(generation);
    let mut findings = Vec::new();
    let mut indexes: BTreeMap<&str, usize> = BTreeMap::new();
    for (webhook_type, example) in generation.schemas.examples() {
        let index = indexes.entry(webhook_type).or_default();
        let status = example
            .get("Status")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string();
        let locale_attribute = generation
            .field_map(webhook_type)
            .and_then(|map| map.fields.get(well_known::LOCALE))
            .cloned();
        let variants: Vec<Option<&str>> = match &locale_attribute {
            Some(_) => std::iter::once(None)
                .chain(locales.iter().map(|l| Some(l.as_str())))
                .collect(),
            None => vec![None],
        };
        for locale in variants {
            let payload = match (locale, &locale_attribute) {
                (Some(locale), Some(attribute)) => with_attribute(example, attribute, locale),
                _ => example.clone(),
            };
            let source = match locale {
                Some(locale) => format!(
                    "schemas/{webhook_type}.json examples[{index}] ({status}, locale {locale})"
                ),
                None => format!("schemas/{webhook_type}.json examples[{index}] ({status})"),
            };
            check_one(generation, payload, &source, &mut findings);
        }
        *index += 1;
    }
    findings
}

fn check_one(generation: &Generation, payload: Value, source: &str, findings: &mut Vec<Finding>) {
    // Evaluate at the example's own EventTs, so that age limits and expiries hold and every
    // rule the example should reach renders.
    let now = payload
        .get("EventTs")
        .and_then(Value::as_str)
        .and_then(|text| crate::timezone::parse_timestamp(text).ok())
        .unwrap_or_else(jiff::Timestamp::now);
    let decision = match ingest::decide(generation, payload, now) {
        Ok((_, decision)) => decision,
        Err(IntakeError::Engine(error)) => {
            findings.push(error_finding(source, error.to_string()));
            return;
        }
        Err(error) => {
            findings.push(error_finding(source, error.to_string()));
            return;
        }
    };
    check_decision(generation, &decision, source, findings);
}

fn check_decision(
    generation: &Generation,
    decision: &Decision,
    source: &str,
    findings: &mut Vec<Finding>,
) {
    for skipped in &decision.skipped {
        if skipped.reason.starts_with("SMS text needs") {
            findings.push(error_finding(
                source,
                format!(
                    "rule {}: {} skipped: {}",
                    skipped.rule, skipped.channel, skipped.reason
                ),
            ));
        }
    }
    for planned in &decision.planned {
        let rule = generation.rules.iter().find(|r| r.name == planned.rule);
        match &planned.message {
            Message::Sms(sms) => {
                let limited = rule.is_some_and(|r| r.sms_segment_limit.is_some());
                if !limited && sms.segments > SMS_SEGMENT_WARNING {
                    findings.push(warning(source, format!(
                        "rule {}: the {} text needs {} {} segments; set sms_segment_limit on the rule or shorten templates/{}/sms.txt",
                        planned.rule, planned.channel, sms.segments, sms.encoding, rule.and_then(|r| r.template.as_deref()).unwrap_or("?")
                    )));
                }
                for note in &planned.notes {
                    if note.starts_with("transliterated") || note.starts_with("truncated") {
                        findings.push(warning(
                            source,
                            format!(
                                "rule {}: the {} text was {note}",
                                planned.rule, planned.channel
                            ),
                        ));
                    }
                }
            }
            Message::Email(email) => {
                if let Some(html) = &email.html {
                    let (only_html, only_text) =
                        word_difference(&html_words(html), &text_words(&email.text));
                    if !only_html.is_empty() || !only_text.is_empty() {
                        findings.push(warning(source, format!(
                            "rule {}: the HTML and text bodies of the {} message differ (only in HTML: {}; only in text: {})",
                            planned.rule,
                            planned.channel,
                            sample(&only_html),
                            sample(&only_text)
                        )));
                    }
                }
            }
            Message::Webhook(_) => {}
        }
    }
}

fn error_finding(source: &str, message: String) -> Finding {
    Finding {
        severity: Severity::Error,
        source: source.to_string(),
        message,
    }
}

fn warning(source: &str, message: String) -> Finding {
    Finding {
        severity: Severity::Warning,
        source: source.to_string(),
        message,
    }
}

/// Every language variant in any template set.
fn variant_locales(generation: &Generation) -> BTreeSet<String> {
    generation
        .templates
        .sets()
        .values()
        .flat_map(|set| set.variants.keys())
        .filter(|name| !name.is_empty())
        .cloned()
        .collect()
}

fn with_attribute(payload: &Value, attribute: &str, value: &str) -> Value {
    let mut payload = payload.clone();
    if let Some(attributes) = payload.get_mut("Attributes").and_then(Value::as_array_mut) {
        attributes.retain(|a| a.get("AttributeName").and_then(Value::as_str) != Some(attribute));
        attributes.push(serde_json::json!({"AttributeName": attribute, "AttributeValue": value}));
    }
    payload
}

fn sample(words: &[String]) -> String {
    if words.is_empty() {
        return "nothing".into();
    }
    let mut shown: Vec<&str> = words.iter().take(6).map(String::as_str).collect();
    if words.len() > 6 {
        shown.push("…");
    }
    shown.join(" ")
}

/// Words that appear more often in one list than in the other.
fn word_difference(html: &[String], text: &[String]) -> (Vec<String>, Vec<String>) {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for word in html {
        *counts.entry(word).or_default() += 1;
    }
    for word in text {
        *counts.entry(word).or_default() -= 1;
    }
    let only_html = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(w, _)| w.to_string())
        .collect();
    let only_text = counts
        .iter()
        .filter(|(_, n)| **n < 0)
        .map(|(w, _)| w.to_string())
        .collect();
    (only_html, only_text)
}

/// Lowercase words (runs of letters and digits) of a text.
pub fn text_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|word| !word.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The words a reader sees in an HTML body: the `<head>`, `<style>` and `<script>` contents
/// and all tags are removed and character references decoded.
pub fn html_words(html: &str) -> Vec<String> {
    let mut visible = String::with_capacity(html.len());
    let lower = html.to_ascii_lowercase();
    let mut position = 0;
    while position < html.len() {
        let rest = &lower[position..];
        if let Some(skip) = ["<head", "<style", "<script"]
            .iter()
            .find(|tag| rest.starts_with(**tag))
        {
            let closing = format!("</{}>", &skip[1..]);
            position = match rest.find(&closing) {
                Some(end) => position + end + closing.len(),
                None => html.len(),
            };
            continue;
        }
        if rest.starts_with('<') {
            position = match rest.find('>') {
                Some(end) => position + end + 1,
                None => html.len(),
            };
            visible.push(' ');
            continue;
        }
        let next = rest.find('<').map(|i| position + i).unwrap_or(html.len());
        visible.push_str(&html[position..next]);
        position = next;
    }
    text_words(&decode_entities(&visible))
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find(';').filter(|end| *end <= 10) else {
            out.push('&');
            rest = after;
            continue;
        };
        let name = &after[..end];
        let decoded = match name {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            "nbsp" => Some(' '),
            "middot" => Some('·'),
            _ => name
                .strip_prefix("#x")
                .or_else(|| name.strip_prefix("#X"))
                .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                .or_else(|| name.strip_prefix('#').and_then(|dec| dec.parse().ok()))
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => out.push(c),
            None => {
                out.push('&');
                out.push_str(name);
                out.push(';');
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_words_skip_head_and_tags() {
        let html = "<html><head><title>Visit</title><style>p{}</style></head><body><p>Hello &amp; <b>welcome</b>, Zo&#xeb;</p></body></html>";
        assert_eq!(html_words(html), ["hello", "welcome", "zoë"]);
    }

    #[test]
    fn word_difference_counts() {
        let (only_html, only_text) =
            word_difference(&text_words("a b b c"), &text_words("a b c d"));
        assert_eq!(only_html, ["b"]);
        assert_eq!(only_text, ["d"]);
    }

    #[test]
    fn entities_decode() {
        assert_eq!(
            decode_entities("a &lt;b&gt; &#47; &#x2f; &unknown; & c"),
            "a <b> / / &unknown; & c"
        );
    }
}
