//! Evaluating a rule's `match:` conditions against one event.

use jiff::SignedDuration;

use super::engine::{EngineError, Evaluation};
use super::model::{AttributeTest, Condition, Rule};
use crate::config::duration::{format_duration, format_signed};

/// A rule that did not match, and why.
pub(super) struct Miss {
    /// The first condition that does not hold.
    pub detail: String,
    /// Whether the rule is about this kind of event: its type and status conditions held and
    /// a later condition (age, contacts, attributes) failed.
    pub near: bool,
}

/// Checks every condition in order. The outer error is a failed `when` expression; the inner
/// one names the first condition that does not hold.
pub(super) fn check_conditions(
    rule: &Rule,
    evaluation: &Evaluation<'_>,
) -> Result<Result<(), Miss>, EngineError> {
    for condition in &rule.conditions {
        if let Err(detail) = check(rule, condition, evaluation)? {
            let near = !matches!(condition, Condition::WebhookType(_) | Condition::Status(_));
            return Ok(Err(Miss { detail, near }));
        }
    }
    if !rule.has_explicit_max_age()
        && let (Some(limit), Some(age)) =
            (evaluation.generation.defaults.max_event_age, evaluation.age)
        && exceeds(age, limit)
    {
        return Ok(Err(Miss {
            detail: format!(
                "event age {} exceeds defaults.max_event_age {}",
                format_signed(age),
                format_duration(limit)
            ),
            near: true,
        }));
    }
    Ok(Ok(()))
}

fn exceeds(age: SignedDuration, limit: std::time::Duration) -> bool {
    age > signed(limit)
}

fn signed(duration: std::time::Duration) -> SignedDuration {
    SignedDuration::try_from(duration).unwrap_or(SignedDuration::MAX)
}

fn check(
    rule: &Rule,
    condition: &Condition,
    evaluation: &Evaluation<'_>,
) -> Result<Result<(), String>, EngineError> {
    let event = evaluation.event;
    let result = match condition {
        Condition::WebhookType(pattern) => {
            if pattern.matches(&event.webhook_type) {
                Ok(())
            } else {
                Err(format!(
                    "type {} does not match {pattern}",
                    event.webhook_type
                ))
            }
        }
        Condition::Status(statuses) => {
            if statuses.contains(&event.status) {
                Ok(())
            } else if statuses.len() == 1 {
                Err(format!("status {} is not {}", event.status, statuses[0]))
            } else {
                Err(format!(
                    "status {} is not one of {}",
                    event.status,
                    statuses.join(", ")
                ))
            }
        }
        Condition::MinAge(limit) => match evaluation.age {
            None => Err("EventTs is missing, so the event age is unknown".to_string()),
            Some(age) if age >= signed(*limit) => Ok(()),
            Some(age) => Err(format!(
                "event age {} is below min_age {}",
                format_signed(age),
                format_duration(*limit)
            )),
        },
        Condition::MaxAge(limit) => match evaluation.age {
            None => Err("EventTs is missing, so the event age is unknown".to_string()),
            Some(age) if exceeds(age, *limit) => Err(format!(
                "event age {} exceeds max_age {}",
                format_signed(age),
                format_duration(*limit)
            )),
            Some(_) => Ok(()),
        },
        Condition::Present(field) => match evaluation.fields.why_unusable(field) {
            None => Ok(()),
            Some(why) => Err(format!("field {field} is not present: {why}")),
        },
        Condition::Missing(field) => match evaluation.fields.why_unusable(field) {
            None => Err(format!("field {field} is present")),
            Some(_) => Ok(()),
        },
        Condition::Attribute { name, test } => match event.attribute(name) {
            None => Err(format!("attribute {name} is not in the payload")),
            Some(value) => {
                let holds = match test {
                    AttributeTest::Equals(expected) => value == expected,
                    AttributeTest::OneOf(values) => values.iter().any(|v| v == value),
                    AttributeTest::Regex(regex) => regex.is_match(value),
                };
                if holds {
                    Ok(())
                } else {
                    Err(format!("attribute {name} does not hold: {test}"))
                }
            }
        },
        Condition::When(expression) => {
            let value = evaluation.eval(rule, "when", expression)?;
            if value.is_true() {
                Ok(())
            } else {
                Err(format!("when {expression:?} is false"))
            }
        }
    };
    Ok(result)
}
