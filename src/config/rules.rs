//! Checks the `fields:` and `rules:` sections and compiles them for the engine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_saphyr::Spanned;

use super::ConfigError;
use super::channels::{ChannelConfig, is_identifier, known_names};
use super::raw::{RawAttributeMatch, RawMatch, RawQuietHours, RawRule, RawSegmentLimit};
use crate::ingest::schema::Schemas;
use crate::rules::{
    Action, AttributeTest, Condition, FieldMap, QuietAction, QuietHours, Rule, SegmentLimit,
    SupersedeMode, TypePattern,
};
use crate::templates::{Part, Templates};

/// Lookup tables for rule checks: channels, field mappings and schemas.
pub(super) struct RuleContext<'a> {
    pub file: &'a Path,
    pub channels: &'a BTreeMap<String, ChannelConfig>,
    /// Every channel name under `channels:`, including those that failed their own checks,
    /// so that a rule naming a broken channel does not add a second, misleading error.
    pub declared_channels: &'a BTreeSet<String>,
    pub field_maps: &'a [FieldMap],
    pub schemas: &'a Schemas,
}

pub(super) fn check_field_maps(
    file: &Path,
    raw: &BTreeMap<String, Spanned<BTreeMap<String, Spanned<String>>>>,
    errors: &mut Vec<ConfigError>,
) -> Vec<FieldMap> {
    let mut maps = Vec::new();
    for (webhook_type, fields) in raw {
        let line = fields.referenced.line();
        if webhook_type.trim().is_empty() {
            errors.push(ConfigError::at(
                file,
                line,
                "fields",
                "a webhook type name is empty",
            ));
            continue;
        }
        let mut checked = BTreeMap::new();
        for (field, attribute) in &fields.value {
            let key = format!("fields.{webhook_type}.{field}");
            if !is_identifier(field) {
                errors.push(ConfigError::at(
                    file,
                    attribute.referenced.line(),
                    key.clone(),
                    format!("invalid field name {field:?}: use lowercase letters, digits, - and _"),
                ));
            }
            if attribute.value.trim().is_empty() {
                errors.push(ConfigError::at(
                    file,
                    attribute.referenced.line(),
                    key,
                    "the attribute name is empty",
                ));
                continue;
            }
            checked.insert(field.clone(), attribute.value.clone());
        }
        maps.push(FieldMap {
            pattern: TypePattern(webhook_type.clone()),
            fields: checked,
        });
    }
    maps
}

pub(super) fn check_rules(
    raw_rules: &Spanned<Vec<Spanned<RawRule>>>,
    context: &RuleContext<'_>,
    templates: &mut Templates,
    errors: &mut Vec<ConfigError>,
) -> Vec<Rule> {
    if raw_rules.value.is_empty() {
        errors.push(ConfigError::at(context.file, raw_rules.referenced.line(), "rules",
            "the list is empty: herald needs at least one rule (a rule with drop acknowledges events without sending)"));
        return Vec::new();
    }
    let mut names = BTreeSet::new();
    let mut rules = Vec::new();
    for (index, raw) in raw_rules.value.iter().enumerate() {
        let key = format!("rules[{index}]");
        let name = &raw.value.name.value;
        if !is_identifier(name) {
            errors.push(ConfigError::at(
                context.file,
                raw.value.name.referenced.line(),
                format!("{key}.name"),
                format!("invalid rule name {name:?}: use lowercase letters, digits, - and _"),
            ));
        } else if !names.insert(name.clone()) {
            errors.push(ConfigError::at(
                context.file,
                raw.value.name.referenced.line(),
                format!("{key}.name"),
                format!("duplicate rule name {name:?}: rule names must be unique"),
            ));
        }
        if let Some(rule) = check_rule(&key, raw, context, templates, errors) {
            rules.push(rule);
        }
    }
    rules
}

fn check_rule(
    key: &str,
    raw: &Spanned<RawRule>,
    context: &RuleContext<'_>,
    templates: &mut Templates,
    errors: &mut Vec<ConfigError>,
) -> Option<Rule> {
    let file = context.file;
    let rule = &raw.value;
    let line = raw.referenced.line();
    let error_count = errors.len();
    let mut push = |line: u64, sub: &str, message: String| {
        let full_key = if sub.is_empty() {
            key.to_string()
        } else {
            format!("{key}.{sub}")
        };
        errors.push(ConfigError::at(file, line, full_key, message));
    };

    let type_pattern = rule
        .conditions
        .webhook_type
        .as_ref()
        .map(|t| TypePattern(t.value.clone()));
    let field_map_for_type = type_pattern
        .as_ref()
        .map(|pattern| field_maps_matching(context.field_maps, pattern));
    let conditions = check_conditions(
        &rule.conditions,
        type_pattern.as_ref(),
        field_map_for_type.as_deref(),
        context,
        templates,
        &mut push,
    );

    let action_count = [
        rule.send.is_some(),
        rule.first_of.is_some(),
        rule.drop.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if action_count != 1 {
        push(
            line,
            "",
            "a rule needs exactly one of send, first_of or drop".into(),
        );
        return None;
    }
    let action = if let Some(reason) = &rule.drop {
        if reason.value.trim().is_empty() {
            push(reason.referenced.line(), "drop", "give the reason for dropping, such as \"session status changes need no patient message\"".into());
        }
        for (present, name) in [
            (rule.template.is_some(), "template"),
            (rule.not_after.is_some(), "not_after"),
            (rule.dedupe_key.is_some(), "dedupe_key"),
            (rule.quiet_hours.is_some(), "quiet_hours"),
            (rule.sms_segment_limit.is_some(), "sms_segment_limit"),
            (rule.locale.is_some(), "locale"),
        ] {
            if present {
                push(
                    line,
                    name,
                    format!("{name} has no effect on a rule that drops: remove it"),
                );
            }
        }
        Action::Drop(reason.value.trim().to_string())
    } else {
        let (list, sub, first_of) = match (&rule.send, &rule.first_of) {
            (Some(list), _) => (list, "send", false),
            (_, Some(list)) => (list, "first_of", true),
            _ => unreachable!("exactly one action was checked above"),
        };
        let channels =
            check_channel_list(list, sub, context, field_map_for_type.as_deref(), &mut push);
        if first_of {
            Action::FirstOf(channels)
        } else {
            Action::Send(channels)
        }
    };

    let template = match (&action, &rule.template) {
        (Action::Drop(_), _) => None,
        (_, None) => {
            push(
                line,
                "template",
                "missing: a rule that sends needs template, the name of a folder under templates/"
                    .into(),
            );
            None
        }
        (Action::Send(channels) | Action::FirstOf(channels), Some(template)) => {
            check_template_parts(
                &template.value,
                template.referenced.line(),
                channels,
                context,
                templates,
                &mut push,
            );
            Some(template.value.clone())
        }
    };

    if let Some(expression) = &rule.not_after
        && let Err(message) = templates.check_expression(&expression.value)
    {
        push(
            expression.referenced.line(),
            "not_after",
            format!("invalid expression: {message}"),
        );
    }
    let dedupe_key = inline_template(
        templates,
        &rule.name.value,
        "dedupe_key",
        rule.dedupe_key.as_ref(),
        &mut push,
    );
    let supersede_key = inline_template(
        templates,
        &rule.name.value,
        "supersede_key",
        rule.supersede_key.as_ref(),
        &mut push,
    );
    let supersedes = rule.supersedes.as_ref().and_then(|mode| {
        let parsed = SupersedeMode::parse(&mode.value);
        if parsed.is_none() {
            push(
                mode.referenced.line(),
                "supersedes",
                format!(
                    "invalid value {:?}: expected same_session, other_session or all",
                    mode.value
                ),
            );
        }
        if rule.supersede_key.is_none() {
            push(
                mode.referenced.line(),
                "supersedes",
                "needs supersede_key, which says which deliveries belong together".into(),
            );
        }
        parsed
    });
    let locale = rule.locale.as_ref().map(|locale| {
        let normalized = crate::templates::normalize_locale(&locale.value);
        if normalized.is_empty() {
            push(
                locale.referenced.line(),
                "locale",
                "the locale is empty".into(),
            );
        }
        normalized
    });
    let quiet_hours = rule
        .quiet_hours
        .as_ref()
        .and_then(|quiet| check_quiet_hours(quiet, &mut push));
    let sms_segment_limit = rule
        .sms_segment_limit
        .as_ref()
        .and_then(|limit| check_segment_limit(limit, &mut push));

    if errors.len() > error_count {
        return None;
    }
    Some(Rule {
        name: rule.name.value.clone(),
        line,
        conditions,
        action,
        template,
        not_after: rule.not_after.as_ref().map(|e| e.value.clone()),
        dedupe_key,
        supersede_key,
        supersedes,
        locale,
        quiet_hours,
        sms_segment_limit,
        continue_matching: rule.continue_matching,
    })
}

fn check_conditions(
    raw: &RawMatch,
    type_pattern: Option<&TypePattern>,
    field_maps: Option<&[&FieldMap]>,
    context: &RuleContext<'_>,
    templates: &Templates,
    push: &mut dyn FnMut(u64, &str, String),
) -> Vec<Condition> {
    let mut conditions = Vec::new();
    if let (Some(pattern), Some(spanned)) = (type_pattern, &raw.webhook_type) {
        if pattern.0.trim().is_empty() {
            push(
                spanned.referenced.line(),
                "match.type",
                "the webhook type is empty".into(),
            );
        }
        conditions.push(Condition::WebhookType(pattern.clone()));
    }
    if let Some(status) = &raw.status {
        let statuses: Vec<String> = match &status.value {
            super::raw::OneOrMany::One(one) => vec![one.clone()],
            super::raw::OneOrMany::Many(many) => many.clone(),
        };
        if statuses.is_empty() {
            push(
                status.referenced.line(),
                "match.status",
                "the list is empty".into(),
            );
        }
        if let Some(pattern) = type_pattern.filter(|p| p.is_exact())
            && let Some(known) = context.schemas.statuses(&pattern.0)
        {
            for value in &statuses {
                if !known.contains(value) {
                    push(
                        status.referenced.line(),
                        "match.status",
                        format!(
                            "unknown status {value:?} for {pattern}: schemas/{pattern}.json allows {}",
                            known.join(", ")
                        ),
                    );
                }
            }
        }
        conditions.push(Condition::Status(statuses));
    }
    if let (Some(min), Some(max)) = (&raw.min_age, &raw.max_age)
        && min.value > max.value
    {
        push(
            min.referenced.line(),
            "match.min_age",
            format!("min_age {} is above max_age {}", min.value, max.value),
        );
    }
    if let Some(min) = &raw.min_age {
        conditions.push(Condition::MinAge(min.value.as_duration()));
    }
    if let Some(max) = &raw.max_age {
        conditions.push(Condition::MaxAge(max.value.as_duration()));
    }
    for (list, sub, present) in [
        (&raw.present, "match.present", true),
        (&raw.missing, "match.missing", false),
    ] {
        let Some(list) = list else { continue };
        for field in &list.value {
            check_field_reference(
                &field.value,
                field.referenced.line(),
                sub,
                type_pattern,
                field_maps,
                push,
            );
            conditions.push(if present {
                Condition::Present(field.value.clone())
            } else {
                Condition::Missing(field.value.clone())
            });
        }
    }
    if let Some(attributes) = &raw.attributes {
        for (name, test) in attributes {
            let sub = format!("match.attributes.{name}");
            let test = match &test.value {
                RawAttributeMatch::Equals(value) => AttributeTest::Equals(value.clone()),
                RawAttributeMatch::OneOf(values) => AttributeTest::OneOf(values.clone()),
                RawAttributeMatch::Regex { regex } => match regex::Regex::new(regex) {
                    Ok(compiled) => AttributeTest::Regex(compiled),
                    Err(error) => {
                        push(
                            test.referenced.line(),
                            &sub,
                            format!("invalid regex: {}", one_line_regex_error(&error)),
                        );
                        continue;
                    }
                },
            };
            conditions.push(Condition::Attribute {
                name: name.clone(),
                test,
            });
        }
    }
    if let Some(when) = &raw.when {
        if let Err(message) = templates.check_expression(&when.value) {
            push(
                when.referenced.line(),
                "match.when",
                format!("invalid expression: {message}"),
            );
        }
        conditions.push(Condition::When(when.value.clone()));
    }
    conditions
}

fn check_field_reference(
    field: &str,
    line: u64,
    sub: &str,
    type_pattern: Option<&TypePattern>,
    field_maps: Option<&[&FieldMap]>,
    push: &mut dyn FnMut(u64, &str, String),
) {
    let (Some(pattern), Some(maps)) = (type_pattern, field_maps) else {
        push(
            line,
            sub,
            format!(
                "field {field:?} needs the rule to match a type (match.type) so that its field mapping is known"
            ),
        );
        return;
    };
    if maps.is_empty() {
        push(
            line,
            sub,
            format!(
                "no entry under fields: maps webhook type {pattern}, so field {field:?} is unknown"
            ),
        );
        return;
    }
    for map in maps {
        if !map.fields.contains_key(field) {
            let known: Vec<&str> = map.fields.keys().map(String::as_str).collect();
            push(
                line,
                sub,
                format!(
                    "unknown field {field:?}: fields.{} maps {}",
                    map.pattern,
                    known.join(", ")
                ),
            );
        }
    }
}

fn check_channel_list(
    list: &Spanned<Vec<Spanned<String>>>,
    sub: &str,
    context: &RuleContext<'_>,
    field_maps: Option<&[&FieldMap]>,
    push: &mut dyn FnMut(u64, &str, String),
) -> Vec<String> {
    if list.value.is_empty() {
        push(
            list.referenced.line(),
            sub,
            "the channel list is empty".into(),
        );
    }
    let mut seen = BTreeSet::new();
    let mut channels = Vec::new();
    for (index, name) in list.value.iter().enumerate() {
        let item = format!("{sub}[{index}]");
        let Some(channel) = context.channels.get(&name.value) else {
            if context.declared_channels.contains(&name.value) {
                channels.push(name.value.clone());
                continue;
            }
            push(
                name.referenced.line(),
                &item,
                format!(
                    "unknown channel {:?} (known: {})",
                    name.value,
                    known_names(context.channels)
                ),
            );
            continue;
        };
        if !seen.insert(name.value.clone()) {
            push(
                name.referenced.line(),
                &item,
                format!("channel {:?} is listed twice", name.value),
            );
        }
        if let (Some(contact), Some(maps)) = (channel.kind.contact_field(), field_maps) {
            for map in maps {
                if !map.fields.contains_key(contact) {
                    push(
                        name.referenced.line(),
                        &item,
                        format!(
                            "channel {} sends {} messages, which need field {contact}, but fields.{} does not map it",
                            channel.name, channel.kind, map.pattern
                        ),
                    );
                }
            }
        }
        channels.push(name.value.clone());
    }
    channels
}

fn check_template_parts(
    template: &str,
    line: u64,
    channels: &[String],
    context: &RuleContext<'_>,
    templates: &Templates,
    push: &mut dyn FnMut(u64, &str, String),
) {
    let Some(set) = templates.set(template) else {
        let known: Vec<&str> = templates.sets().keys().map(String::as_str).collect();
        push(
            line,
            "template",
            format!(
                "unknown template {template:?}: no folder templates/{template}/ (known: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ),
        );
        return;
    };
    for channel in channels
        .iter()
        .filter_map(|name| context.channels.get(name))
    {
        for part in required_parts(channel.kind) {
            if !set.has("", *part) {
                push(
                    line,
                    "template",
                    format!(
                        "template {template} has no {part}, which channel {} ({} messages) needs: add templates/{template}/{part}",
                        channel.name, channel.kind
                    ),
                );
            }
        }
    }
}

/// Returns the parts a message of each kind cannot do without.
pub fn required_parts(kind: crate::config::MessageKind) -> &'static [Part] {
    match kind {
        crate::config::MessageKind::Email => &[Part::EmailSubject, Part::EmailText],
        crate::config::MessageKind::Sms => &[Part::Sms],
        crate::config::MessageKind::Webhook => &[Part::Webhook],
    }
}

fn inline_template(
    templates: &mut Templates,
    rule: &str,
    setting: &str,
    source: Option<&Spanned<String>>,
    push: &mut dyn FnMut(u64, &str, String),
) -> Option<String> {
    let source = source?;
    if source.value.trim().is_empty() {
        push(
            source.referenced.line(),
            setting,
            "the template is empty".into(),
        );
        return None;
    }
    let name = format!("rules/{rule}/{setting}");
    match templates.add_inline(&name, &source.value) {
        Ok(()) => Some(name),
        Err(message) => {
            push(
                source.referenced.line(),
                setting,
                format!("invalid template: {message}"),
            );
            None
        }
    }
}

fn field_maps_matching<'a>(maps: &'a [FieldMap], pattern: &TypePattern) -> Vec<&'a FieldMap> {
    if pattern.is_exact() {
        let exact: Vec<&FieldMap> = maps
            .iter()
            .filter(|m| m.pattern.is_exact() && m.pattern.0 == pattern.0)
            .collect();
        if !exact.is_empty() {
            return exact;
        }
        return maps
            .iter()
            .filter(|m| m.pattern.matches(&pattern.0))
            .take(1)
            .collect();
    }
    maps.iter()
        .filter(|m| {
            m.pattern.0 == pattern.0 || (m.pattern.is_exact() && pattern.matches(&m.pattern.0))
        })
        .collect()
}

/// Returns the last line of a regex syntax error. The regex crate spreads these errors over
/// several lines (the pattern, a caret, then `error: ...`), and the last one names the problem.
fn one_line_regex_error(error: &regex::Error) -> String {
    let text = error.to_string();
    let last = text
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .unwrap_or_default();
    last.trim().trim_start_matches("error: ").to_string()
}

fn check_quiet_hours(
    quiet: &Spanned<RawQuietHours>,
    push: &mut dyn FnMut(u64, &str, String),
) -> Option<QuietHours> {
    let parse_time = |text: &str| {
        let text = text.trim();
        jiff::civil::Time::strptime("%H:%M:%S", text)
            .or_else(|_| jiff::civil::Time::strptime("%H:%M", text))
            .ok()
    };
    let action = match quiet.value.action.as_str() {
        "defer" => Some(QuietAction::Defer),
        "drop" => Some(QuietAction::Drop),
        "send" => Some(QuietAction::Send),
        _ => None,
    };
    let line = quiet.referenced.line();
    match (
        parse_time(&quiet.value.start),
        parse_time(&quiet.value.end),
        action,
    ) {
        (Some(start), Some(end), Some(action)) if start != end => {
            Some(QuietHours { start, end, action })
        }
        (Some(_), Some(_), Some(_)) => {
            push(
                line,
                "quiet_hours",
                "start and end are equal: give a window such as start: \"21:00\", end: \"08:00\""
                    .into(),
            );
            None
        }
        (start, end, action) => {
            let mut problems = Vec::new();
            if start.is_none() {
                problems.push(format!(
                    "start {:?} is not a time like 21:00",
                    quiet.value.start
                ));
            }
            if end.is_none() {
                problems.push(format!(
                    "end {:?} is not a time like 08:00",
                    quiet.value.end
                ));
            }
            if action.is_none() {
                problems.push(format!(
                    "action {:?} is not one of defer, drop, send",
                    quiet.value.action
                ));
            }
            push(line, "quiet_hours", problems.join("; "));
            None
        }
    }
}

fn check_segment_limit(
    limit: &Spanned<RawSegmentLimit>,
    push: &mut dyn FnMut(u64, &str, String),
) -> Option<SegmentLimit> {
    let line = limit.referenced.line();
    let policy = limit.value.policy.parse().ok();
    match (limit.value.max_segments, policy) {
        (0, _) => {
            push(
                line,
                "sms_segment_limit.max_segments",
                "must be at least 1".into(),
            );
            None
        }
        (_, None) => {
            push(
                line,
                "sms_segment_limit.policy",
                format!(
                    "invalid policy {:?}: expected reject, transliterate or truncate",
                    limit.value.policy
                ),
            );
            None
        }
        (max_segments, Some(policy)) => Some(SegmentLimit {
            max_segments,
            policy,
        }),
    }
}
