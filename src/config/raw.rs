//! The shape of `rules.yaml` as written by an operator, before any check.
//!
//! Every struct rejects unknown keys, and values that a later check may complain about are
//! wrapped in `Spanned` so that the error can name their line.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_saphyr::Spanned;

use super::duration::ConfigDuration;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRulesFile {
    #[serde(default)]
    pub defaults: RawDefaults,
    #[serde(default)]
    pub vars: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub channels: BTreeMap<String, Spanned<RawChannel>>,
    #[serde(default)]
    pub fields: BTreeMap<String, Spanned<BTreeMap<String, Spanned<String>>>>,
    pub rules: Spanned<Vec<Spanned<RawRule>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub phone_region: Option<Spanned<String>>,
    pub time_zone: Option<Spanned<String>>,
    pub locale: Option<Spanned<String>>,
    pub max_event_age: Option<ConfigDuration>,
    pub dedupe_window: Option<ConfigDuration>,
    pub retention: Option<ConfigDuration>,
    pub retry: Option<RawRetry>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    pub max_attempts: Option<Spanned<u32>>,
    pub initial_backoff: Option<ConfigDuration>,
    pub max_backoff: Option<ConfigDuration>,
    pub max_age: Option<ConfigDuration>,
}

/// One entry under `channels:`. The settings of every driver share this struct, and the
/// loader rejects a setting that the chosen driver does not use.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    pub driver: Spanned<String>,
    pub on_missing_env: Option<Spanned<String>>,
    pub concurrency: Option<Spanned<u32>>,
    pub rate_limit: Option<Spanned<f64>>,
    pub timeout: Option<ConfigDuration>,
    pub retry: Option<RawRetry>,

    pub url: Option<Spanned<String>>,
    pub from: Option<Spanned<String>>,
    pub reply_to: Option<Spanned<String>>,
    pub tls_ca_file: Option<Spanned<String>>,
    pub hello_name: Option<Spanned<String>>,
    pub pool_size: Option<Spanned<u32>>,

    pub account_sid: Option<Spanned<String>>,
    pub auth_token: Option<Spanned<String>>,
    pub messaging_service_sid: Option<Spanned<String>>,

    pub headers: Option<Spanned<BTreeMap<String, String>>>,

    pub directory: Option<Spanned<String>>,
    pub format: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    pub name: Spanned<String>,
    #[serde(rename = "match", default)]
    pub conditions: RawMatch,
    pub send: Option<Spanned<Vec<Spanned<String>>>>,
    pub first_of: Option<Spanned<Vec<Spanned<String>>>>,
    pub drop: Option<Spanned<String>>,
    pub template: Option<Spanned<String>>,
    pub not_after: Option<Spanned<String>>,
    pub dedupe_key: Option<Spanned<String>>,
    pub supersede_key: Option<Spanned<String>>,
    pub supersedes: Option<Spanned<String>>,
    pub locale: Option<Spanned<String>>,
    pub quiet_hours: Option<Spanned<RawQuietHours>>,
    pub sms_segment_limit: Option<Spanned<RawSegmentLimit>>,
    #[serde(rename = "continue", default)]
    pub continue_matching: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatch {
    #[serde(rename = "type")]
    pub webhook_type: Option<Spanned<String>>,
    pub status: Option<Spanned<OneOrMany>>,
    pub min_age: Option<Spanned<ConfigDuration>>,
    pub max_age: Option<Spanned<ConfigDuration>>,
    pub present: Option<Spanned<Vec<Spanned<String>>>>,
    pub missing: Option<Spanned<Vec<Spanned<String>>>>,
    pub attributes: Option<BTreeMap<String, Spanned<RawAttributeMatch>>>,
    pub when: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(value) => vec![value],
            OneOrMany::Many(values) => values,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawAttributeMatch {
    Equals(String),
    OneOf(Vec<String>),
    Regex { regex: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQuietHours {
    pub start: String,
    pub end: String,
    pub action: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSegmentLimit {
    pub max_segments: usize,
    pub policy: String,
}
