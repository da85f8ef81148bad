//! Configuration: `rules.yaml`, `templates/` and `schemas/` loaded into one immutable
//! generation. `serve` swaps generations on SIGHUP; `check` and `explain` load one the same way.

mod channel_check;
pub mod channels;
pub mod duration;
pub mod env;
mod load;
pub mod raw;
mod rules;
mod yaml_path;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use channels::{ChannelConfig, MessageKind, Transport};
pub use load::{LoadOptions, load};

use crate::ingest::schema::Schemas;
use crate::phone::Region;
use crate::rules::{FieldMap, Rule};
use crate::templates::Templates;
use crate::timezone::Zone;

/// A problem found while loading the configuration, located as precisely as the source allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u64>,
    /// The key path inside the file, such as `rules[2].send[0]`; empty for whole-file errors.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn file(file: &Path, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: None,
            key: String::new(),
            message: message.into(),
        }
    }

    pub fn at(
        file: &Path,
        line: u64,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: file.to_path_buf(),
            line: (line > 0).then_some(line),
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every error of one failed load.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// When and how often a failed delivery is tried again.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Time after acceptance past which a delivery is no longer tried.
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 10,
            initial_backoff: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30 * 60),
            max_age: Duration::from_secs(24 * 3_600),
        }
    }
}

/// The `defaults:` section, with the built-in value for every key left out.
#[derive(Clone, Debug)]
pub struct Defaults {
    pub phone_region: Region,
    /// The zone used when a payload's time zone is empty or unknown.
    pub time_zone: Zone,
    pub locale: Option<String>,
    /// Events older than this match no rule unless the rule sets its own `max_age`.
    pub max_event_age: Option<Duration>,
    pub dedupe_window: Duration,
    pub retention: Duration,
    pub retry: RetryPolicy,
}

/// One complete, checked configuration. It never changes after loading.
#[derive(Debug)]
pub struct Generation {
    pub number: u64,
    pub config_dir: PathBuf,
    pub defaults: Defaults,
    /// Operator-defined template variables, such as the clinic's name, as `vars.<name>`.
    pub vars: BTreeMap<String, String>,
    pub channels: BTreeMap<String, ChannelConfig>,
    pub field_maps: Vec<FieldMap>,
    pub rules: Vec<Rule>,
    pub templates: Templates,
    pub schemas: Schemas,
    /// Facts an operator should see at startup, such as a channel writing to the file outbox
    /// because its environment variables are unset.
    pub notices: Vec<String>,
}

impl Generation {
    /// Returns the field mapping for a webhook type: an exact entry first, then the first
    /// pattern that matches.
    pub fn field_map(&self, webhook_type: &str) -> Option<&FieldMap> {
        self.field_maps
            .iter()
            .find(|map| map.pattern.is_exact() && map.pattern.matches(webhook_type))
            .or_else(|| {
                self.field_maps
                    .iter()
                    .find(|map| map.pattern.matches(webhook_type))
            })
    }
}
