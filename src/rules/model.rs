//! Compiled rules and field mappings, as the engine evaluates them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use regex::Regex;

use crate::sms_encoding::LimitPolicy;

/// A webhook type name or a glob over names (`*` any run of characters, `?` one character).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypePattern(pub String);

impl TypePattern {
    pub fn is_exact(&self) -> bool {
        !self.0.contains(['*', '?'])
    }

    pub fn matches(&self, name: &str) -> bool {
        glob_match(self.0.as_bytes(), name.as_bytes())
    }
}

impl fmt::Display for TypePattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((star, matched)) => {
                    p = star + 1;
                    t = matched + 1;
                    backtrack = Some((star, matched + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// Which attributes hold a webhook type's recipient data.
#[derive(Clone, Debug)]
pub struct FieldMap {
    pub pattern: TypePattern,
    /// Field name to attribute name.
    pub fields: BTreeMap<String, String>,
}

/// Field names with a meaning to herald; any other field is plain text.
pub mod well_known {
    /// The recipient's e-mail address, checked and converted to punycode.
    pub const EMAIL: &str = "email";
    /// The recipient's phone number, normalized to E.164.
    pub const SMS: &str = "sms";
    /// The recipient's display name.
    pub const NAME: &str = "name";
    /// A Windows or IANA time zone, resolved to an IANA name.
    pub const TIME_ZONE: &str = "time_zone";
    /// The UTC start of the session the event is about.
    pub const SESSION_TIME: &str = "session_time";
    /// The session start in the recipient's local time, as the payload states it; checked
    /// against the time computed from `session_time` and `time_zone`.
    pub const SESSION_TIME_LOCAL: &str = "session_time_local";
    /// The recipient's language tag, which picks a template variant.
    pub const LOCALE: &str = "locale";
}

#[derive(Clone, Debug)]
pub enum AttributeTest {
    Equals(String),
    OneOf(Vec<String>),
    Regex(Regex),
}

impl fmt::Display for AttributeTest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AttributeTest::Equals(value) => write!(f, "equals {value:?}"),
            AttributeTest::OneOf(values) => write!(f, "is one of {values:?}"),
            AttributeTest::Regex(regex) => write!(f, "matches /{}/", regex.as_str()),
        }
    }
}

/// One test of a rule's `match:` section.
#[derive(Clone, Debug)]
pub enum Condition {
    WebhookType(TypePattern),
    Status(Vec<String>),
    MinAge(Duration),
    MaxAge(Duration),
    Present(String),
    Missing(String),
    Attribute { name: String, test: AttributeTest },
    When(String),
}

/// What a matching rule does.
#[derive(Clone, Debug)]
pub enum Action {
    /// Every listed channel whose contact is present.
    Send(Vec<String>),
    /// The first listed channel whose contact is present.
    FirstOf(Vec<String>),
    /// Nothing, for the given reason.
    Drop(String),
}

/// Which pending deliveries with the same supersede key a rule closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SupersedeMode {
    /// Those for the same session time (a cancellation closes that session's reminders).
    SameSession,
    /// Those for any other session time (an update closes messages carrying the old time).
    OtherSession,
    /// All of them.
    All,
}

impl SupersedeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SupersedeMode::SameSession => "same_session",
            SupersedeMode::OtherSession => "other_session",
            SupersedeMode::All => "all",
        }
    }

    pub fn parse(text: &str) -> Option<SupersedeMode> {
        match text {
            "same_session" => Some(SupersedeMode::SameSession),
            "other_session" => Some(SupersedeMode::OtherSession),
            "all" => Some(SupersedeMode::All),
            _ => None,
        }
    }
}

/// What to do with a message whose send time falls in the recipient's quiet hours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuietAction {
    /// Send at the end of the window, unless the delivery expires first.
    Defer,
    /// Do not send.
    Drop,
    /// Send anyway.
    Send,
}

impl QuietAction {
    pub fn as_str(self) -> &'static str {
        match self {
            QuietAction::Defer => "defer",
            QuietAction::Drop => "drop",
            QuietAction::Send => "send",
        }
    }
}

/// Local times of day during which a rule does not send, such as 21:00 to 08:00.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QuietHours {
    pub start: jiff::civil::Time,
    pub end: jiff::civil::Time,
    pub action: QuietAction,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentLimit {
    pub max_segments: usize,
    pub policy: LimitPolicy,
}

/// One compiled rule.
#[derive(Clone, Debug)]
pub struct Rule {
    pub name: String,
    /// Line of the rule in `rules.yaml`.
    pub line: u64,
    pub conditions: Vec<Condition>,
    pub action: Action,
    pub template: Option<String>,
    /// Expression for the time after which the message must not be sent.
    pub not_after: Option<String>,
    /// Name of the compiled inline template that renders the dedupe key.
    pub dedupe_key: Option<String>,
    /// Name of the compiled inline template that renders the supersede key.
    pub supersede_key: Option<String>,
    pub supersedes: Option<SupersedeMode>,
    /// A fixed locale; when absent the `locale` field or the default locale is used.
    pub locale: Option<String>,
    pub quiet_hours: Option<QuietHours>,
    pub sms_segment_limit: Option<SegmentLimit>,
    pub continue_matching: bool,
}

impl Rule {
    pub fn has_explicit_max_age(&self) -> bool {
        self.conditions
            .iter()
            .any(|c| matches!(c, Condition::MaxAge(_)))
    }

    pub fn channels(&self) -> &[String] {
        match &self.action {
            Action::Send(channels) | Action::FirstOf(channels) => channels,
            Action::Drop(_) => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_patterns() {
        let notify = TypePattern("NOTIFY_*".into());
        assert!(notify.matches("NOTIFY_PUBLIC_USER"));
        assert!(notify.matches("NOTIFY_"));
        assert!(!notify.matches("SESSION_STATUS"));
        assert!(TypePattern("*_STATUS".into()).matches("SESSION_STATUS"));
        assert!(TypePattern("N?TIFY_HOST".into()).matches("NOTIFY_HOST"));
        assert!(!TypePattern("NOTIFY_HOST".into()).matches("NOTIFY_HOSTS"));
        assert!(TypePattern("*".into()).matches(""));
    }
}
