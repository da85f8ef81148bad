//! The rule engine: runs an event through a generation's rules and renders every planned
//! message. `serve`, `check` and `explain` all call `evaluate`.

use jiff::{SignedDuration, Timestamp};
use minijinja::value::Value;
use sha2::{Digest, Sha256};

use super::conditions::check_conditions;
use super::decision::{
    Decision, InitialState, PlannedDelivery, RuleTrace, SkippedChannel, Supersession, Verdict,
};
use super::fields::{self, Fields};
use super::model::{Action, Rule};
use super::render::{RenderedMessage, render_message};
use crate::config::{ChannelConfig, Generation};
use crate::ingest::event::Event;
use crate::templates::RenderError;
use crate::timezone;

/// How far in the future an EventTs may be before the decision warns about it.
const FUTURE_TOLERANCE: SignedDuration = SignedDuration::from_mins(5);

/// A rule that cannot be applied to this event because a template or expression failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineError {
    pub rule: String,
    pub error: RenderError,
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "rule {}: {}", self.rule, self.error)
    }
}

impl std::error::Error for EngineError {}

/// Everything a rule needs while it is applied to one event.
pub(super) struct Evaluation<'a> {
    pub generation: &'a Generation,
    pub event: &'a Event,
    pub fields: Fields,
    pub context: Value,
    pub now: Timestamp,
    pub age: Option<SignedDuration>,
    pub event_key: String,
}

impl Evaluation<'_> {
    /// Evaluates one of a rule's expressions (`when`, `not_after`) against this event.
    pub(super) fn eval(
        &self,
        rule: &Rule,
        setting: &str,
        expression: &str,
    ) -> Result<Value, EngineError> {
        let label = format!("rules/{}/{setting}", rule.name);
        self.generation
            .templates
            .eval(&label, expression, &self.context)
            .map_err(|error| EngineError {
                rule: rule.name.clone(),
                error,
            })
    }
}

/// Runs `event` through the rules of `generation` as of `now`.
pub fn evaluate(
    generation: &Generation,
    event: &Event,
    now: Timestamp,
) -> Result<Decision, EngineError> {
    let fields = fields::resolve(
        event,
        generation.field_map(&event.webhook_type),
        &generation.defaults,
    );
    let event_key = default_event_key(event, &fields);
    let context = build_context(event, &fields, &generation.vars, now);
    let evaluation = Evaluation {
        generation,
        event,
        age: event.event_ts.map(|ts| now.duration_since(ts)),
        fields,
        context,
        now,
        event_key,
    };

    let mut decision = Decision {
        generation: generation.number,
        evaluated_at: now,
        event_key: evaluation.event_key.clone(),
        rules: Vec::new(),
        planned: Vec::new(),
        skipped: Vec::new(),
        supersessions: Vec::new(),
        warnings: evaluation.fields.warnings.clone(),
        nothing_planned: None,
    };

    // An event from the future passes every max_age; a sender's clock that is off by more
    // than a few minutes is worth a warning.
    if let Some(age) = evaluation.age
        && age < -FUTURE_TOLERANCE
    {
        decision.warnings.push(format!(
            "EventTs is {} in the future; check the sending platform's clock",
            crate::config::duration::format_signed(-age)
        ));
    }

    let mut stopped_by: Option<&str> = None;
    let mut matched_any = false;
    let mut near_misses = Vec::new();
    let mut drop_reason = None;
    for rule in &generation.rules {
        if let Some(earlier) = stopped_by {
            decision.rules.push(trace(
                rule,
                Verdict::NotEvaluated,
                format!("rule {earlier} matched first and has no continue"),
            ));
            continue;
        }
        if let Err(miss) = check_conditions(rule, &evaluation)? {
            if miss.near {
                near_misses.push(format!(
                    "rule {} does not apply: {}",
                    rule.name, miss.detail
                ));
            }
            decision
                .rules
                .push(trace(rule, Verdict::NotMatched, miss.detail));
            continue;
        }
        matched_any = true;
        let detail = apply_action(rule, &evaluation, &mut decision, &mut drop_reason)?;
        decision.rules.push(trace(rule, Verdict::Matched, detail));
        if !rule.continue_matching {
            stopped_by = Some(&rule.name);
        }
    }

    if decision.planned.is_empty() {
        decision.nothing_planned = Some(nothing_planned_reason(
            &evaluation,
            &decision,
            matched_any,
            drop_reason,
            &near_misses,
        ));
    }
    Ok(decision)
}

fn trace(rule: &Rule, verdict: Verdict, detail: String) -> RuleTrace {
    RuleTrace {
        rule: rule.name.clone(),
        line: rule.line,
        verdict,
        detail,
    }
}

/// Carries out a matching rule's action and returns what it did, for the trace.
fn apply_action(
    rule: &Rule,
    evaluation: &Evaluation<'_>,
    decision: &mut Decision,
    drop_reason: &mut Option<String>,
) -> Result<String, EngineError> {
    let channels = match &rule.action {
        Action::Drop(reason) => {
            *drop_reason = Some(format!("dropped by rule {}: {reason}", rule.name));
            return Ok(format!("drop: {reason}"));
        }
        Action::Send(channels) | Action::FirstOf(channels) => channels,
    };
    let first_only = matches!(rule.action, Action::FirstOf(_));

    let mut sent_through: Vec<&str> = Vec::new();
    for name in channels {
        let channel = evaluation
            .generation
            .channels
            .get(name)
            .expect("the loader checked that every channel a rule names exists");
        if first_only && let Some(first) = sent_through.first() {
            decision.skipped.push(skip(
                rule,
                channel,
                format!("not needed: {first} comes first in first_of and is available"),
            ));
            continue;
        }
        if let Some(reason) = unavailable_reason(channel, &evaluation.fields) {
            decision.skipped.push(skip(rule, channel, reason));
            continue;
        }
        match plan(rule, channel, evaluation)? {
            Planned::Delivery(delivery) => {
                sent_through.push(&channel.name);
                decision.planned.push(*delivery);
            }
            Planned::Skipped(reason) => decision.skipped.push(skip(rule, channel, reason)),
        }
    }

    if let (Some(mode), Some(key_template)) = (rule.supersedes, &rule.supersede_key) {
        let key = render_key(evaluation, rule, key_template)?;
        decision.supersessions.push(Supersession {
            rule: rule.name.clone(),
            key,
            mode,
            session_time: evaluation.fields.session_time,
        });
    }

    Ok(if sent_through.is_empty() {
        "matched, but no channel is available".to_string()
    } else {
        format!("send through {}", sent_through.join(", "))
    })
}

fn skip(rule: &Rule, channel: &ChannelConfig, reason: String) -> SkippedChannel {
    SkippedChannel {
        rule: rule.name.clone(),
        channel: channel.name.clone(),
        reason,
    }
}

/// Why a channel cannot send to this recipient: its contact field is empty or invalid.
fn unavailable_reason(channel: &ChannelConfig, fields: &Fields) -> Option<String> {
    let contact = channel.kind.contact_field()?;
    fields.why_unusable(contact)
}

enum Planned {
    Delivery(Box<PlannedDelivery>),
    Skipped(String),
}

fn plan(
    rule: &Rule,
    channel: &ChannelConfig,
    evaluation: &Evaluation<'_>,
) -> Result<Planned, EngineError> {
    let RenderedMessage { message, mut notes } = match render_message(rule, channel, evaluation)? {
        Ok(rendered) => rendered,
        Err(reason) => return Ok(Planned::Skipped(reason)),
    };
    notes.extend(evaluation.fields.warnings.iter().cloned());

    let not_after = match &rule.not_after {
        Some(expression) => Some(eval_time(evaluation, rule, "not_after", expression)?),
        None => None,
    };
    let mut state = InitialState::Pending;
    if let Some(limit) = not_after
        && limit <= evaluation.now
    {
        state = InitialState::Expired(format!(
            "not_after {} had passed when the event arrived",
            timezone::format_utc(limit)
        ));
    }

    let mut not_before = None;
    if let Some(quiet) = &rule.quiet_hours {
        let zone = evaluation
            .fields
            .zone
            .as_ref()
            .unwrap_or(&evaluation.generation.defaults.time_zone);
        match super::quiet::apply(quiet, zone, evaluation.now, not_after) {
            super::quiet::QuietOutcome::Outside => {}
            super::quiet::QuietOutcome::SendAnyway(note) => notes.push(note),
            super::quiet::QuietOutcome::Deferred { until, note } => {
                not_before = Some(until);
                notes.push(note);
            }
            super::quiet::QuietOutcome::Dropped(reason) => return Ok(Planned::Skipped(reason)),
            super::quiet::QuietOutcome::ExpiresFirst(reason) => {
                if state == InitialState::Pending {
                    state = InitialState::Expired(reason);
                }
            }
        }
    }

    let key_base = match &rule.dedupe_key {
        Some(template) => render_key(evaluation, rule, template)?,
        None => evaluation.event_key.clone(),
    };
    let supersede_key = match &rule.supersede_key {
        Some(template) => Some(render_key(evaluation, rule, template)?),
        None => None,
    };

    Ok(Planned::Delivery(Box::new(PlannedDelivery {
        rule: rule.name.clone(),
        channel: channel.name.clone(),
        kind: channel.kind,
        message,
        dedupe_key: format!("{key_base}/{}/{}", rule.name, channel.name),
        supersede_key,
        session_time: evaluation.fields.session_time,
        not_before,
        not_after,
        state,
        notes,
    })))
}

fn render_key(
    evaluation: &Evaluation<'_>,
    rule: &Rule,
    template: &str,
) -> Result<String, EngineError> {
    evaluation
        .generation
        .templates
        .render(template, &evaluation.context)
        .map(|key| key.trim().to_string())
        .map_err(|error| EngineError {
            rule: rule.name.clone(),
            error,
        })
}

fn eval_time(
    evaluation: &Evaluation<'_>,
    rule: &Rule,
    setting: &str,
    expression: &str,
) -> Result<Timestamp, EngineError> {
    let label = format!("rules/{}/{setting}", rule.name);
    let fail = |message: String| EngineError {
        rule: rule.name.clone(),
        error: RenderError {
            template: label.clone(),
            line: None,
            message,
        },
    };
    let value = evaluation.eval(rule, setting, expression)?;
    let Some(text) = value.as_str() else {
        return Err(fail(format!(
            "the expression {expression:?} gave {}, not a time; it must give a UTC time such as fields.session_time",
            if value.is_none() || value.is_undefined() {
                "no value".to_string()
            } else {
                value.kind().to_string()
            }
        )));
    };
    timezone::parse_timestamp(text).map_err(fail)
}

fn nothing_planned_reason(
    evaluation: &Evaluation<'_>,
    decision: &Decision,
    matched_any: bool,
    drop_reason: Option<String>,
    near_misses: &[String],
) -> String {
    if let Some(reason) = drop_reason {
        return reason;
    }
    let event = evaluation.event;
    if !matched_any {
        // Rules for this type and status that failed on a later condition, such as an age
        // limit, say more than "no rule matched".
        if near_misses.is_empty() {
            return format!(
                "no rule matched webhook type {} with status {}",
                event.webhook_type, event.status
            );
        }
        return near_misses.join("; ");
    }
    if decision.skipped.is_empty() {
        return "the matching rules planned nothing".into();
    }
    let reasons: Vec<String> = decision
        .skipped
        .iter()
        .map(|skip| format!("{} skipped: {}", skip.channel, skip.reason))
        .collect();
    format!("no channel is available: {}", reasons.join("; "))
}

/// Returns the dedupe key used when a rule sets none: a hash of type, ID, status, EventTs
/// and the session time, so that a repeated POST of the same webhook maps to the same key.
pub fn default_event_key(event: &Event, fields: &Fields) -> String {
    let mut hasher = Sha256::new();
    for part in [
        event.webhook_type.as_str(),
        &event.id.to_string(),
        event.status.as_str(),
        &event.event_ts.map(timezone::format_utc).unwrap_or_default(),
        &fields
            .session_time
            .map(timezone::format_utc)
            .unwrap_or_default(),
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let digest = hasher.finalize();
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// Builds the variables that templates and expressions see.
fn build_context(
    event: &Event,
    fields: &Fields,
    vars: &std::collections::BTreeMap<String, String>,
    now: Timestamp,
) -> Value {
    let attributes: serde_json::Map<String, serde_json::Value> = event
        .attributes
        .iter()
        .map(|a| (a.name.clone(), serde_json::Value::String(a.value.clone())))
        .collect();
    let mut field_values = serde_json::Map::new();
    for name in fields.fields.keys() {
        let value = fields
            .value(name)
            .map(|v| serde_json::Value::String(v.to_string()))
            .unwrap_or(serde_json::Value::Null);
        field_values.insert(name.clone(), value);
    }
    if let Some(zone) = &fields.zone {
        field_values.insert(
            super::well_known::TIME_ZONE.into(),
            serde_json::Value::String(zone.iana.clone()),
        );
    }
    let context = serde_json::json!({
        "webhook_type": event.webhook_type,
        "id": event.id,
        "status": event.status,
        "event_ts": event.event_ts.map(timezone::format_utc),
        "attributes": attributes,
        "fields": field_values,
        "vars": vars,
        "now": timezone::format_utc(now),
        "payload": event.payload,
    });
    Value::from(minijinja::value::Serde(&context))
}
