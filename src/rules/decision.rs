//! The result of running an event through the rules: what matched, what was planned and why.

use jiff::Timestamp;
use serde::Serialize;

use crate::config::MessageKind;
use crate::message::Message;
use crate::rules::SupersedeMode;

/// Whether a rule applied to the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Matched,
    NotMatched,
    /// An earlier matching rule without `continue` ended the evaluation.
    NotEvaluated,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Matched => "matched",
            Verdict::NotMatched => "not matched",
            Verdict::NotEvaluated => "not evaluated",
        }
    }
}

/// How one rule fared.
#[derive(Clone, Debug, Serialize)]
pub struct RuleTrace {
    pub rule: String,
    pub line: u64,
    pub verdict: Verdict,
    /// The failing condition when not matched, or what the rule did when matched.
    pub detail: String,
}

/// The state a planned delivery starts in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state", content = "reason")]
pub enum InitialState {
    Pending,
    /// Already past its expiry at intake; recorded, never sent.
    Expired(String),
}

/// One message the event will produce.
#[derive(Clone, Debug, Serialize)]
pub struct PlannedDelivery {
    pub rule: String,
    pub channel: String,
    pub kind: MessageKind,
    pub message: Message,
    pub dedupe_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supersede_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_time: Option<Timestamp>,
    /// Do not send before this instant (the end of quiet hours).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    /// Do not send after this instant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Timestamp>,
    #[serde(flatten)]
    pub state: InitialState,
    /// Facts about how the message was made, such as the template variant or a transliteration.
    pub notes: Vec<String>,
}

/// A channel of a matching rule that will not send, and why.
#[derive(Clone, Debug, Serialize)]
pub struct SkippedChannel {
    pub rule: String,
    pub channel: String,
    pub reason: String,
}

/// A request to close earlier pending deliveries, from a rule with `supersedes`.
#[derive(Clone, Debug, Serialize)]
pub struct Supersession {
    pub rule: String,
    pub key: String,
    pub mode: SupersedeMode,
    pub session_time: Option<Timestamp>,
}

impl Serialize for SupersedeMode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl Serialize for MessageKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Everything the engine decided about one event.
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub generation: u64,
    pub evaluated_at: Timestamp,
    /// The event's default dedupe key, derived from type, ID, status, EventTs and session time.
    pub event_key: String,
    pub rules: Vec<RuleTrace>,
    pub planned: Vec<PlannedDelivery>,
    pub skipped: Vec<SkippedChannel>,
    pub supersessions: Vec<Supersession>,
    /// Problems with the payload that did not stop it, such as a time zone fallback; serve
    /// logs each at WARN. They never contain patient data.
    pub warnings: Vec<String>,
    /// Why nothing will be sent, when that is the case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nothing_planned: Option<String>,
}

impl Decision {
    pub fn has_pending(&self) -> bool {
        self.planned
            .iter()
            .any(|p| p.state == InitialState::Pending)
    }
}
