//! The one loader behind `serve`, SIGHUP, `check` and `explain`.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use super::channel_check::{self, ChannelContext};
use super::channels;
use super::env::EnvSource;
use super::raw::{RawDefaults, RawRulesFile};
use super::rules::{self, RuleContext};
use super::{ConfigError, ConfigErrors, Defaults, Generation};
use crate::ingest::schema::Schemas;
use crate::phone::Region;
use crate::templates::{FilterSettings, Templates};
use crate::timezone;

pub const RULES_FILE: &str = "rules.yaml";

/// Folders and environment for one load.
pub struct LoadOptions<'a> {
    /// The folder holding `rules.yaml`, `templates/` and `schemas/`.
    pub config_dir: &'a Path,
    /// Relative file-outbox folders resolve against this folder.
    pub data_dir: &'a Path,
    pub env: &'a dyn EnvSource,
    /// The number the new generation gets.
    pub generation: u64,
}

/// Reads and checks every file and builds a complete generation, or returns every error found.
pub fn load(options: &LoadOptions<'_>) -> Result<Generation, ConfigErrors> {
    let mut errors = Vec::new();
    let rules_path = options.config_dir.join(RULES_FILE);

    // Parse rules.yaml first: an unreadable file stops here, because every later check
    // depends on it.
    let raw = match read_rules_file(&rules_path) {
        Ok(raw) => raw,
        Err(error) => return Err(ConfigErrors(vec![error])),
    };

    let defaults = check_defaults(&rules_path, &raw.defaults, &mut errors);
    let filter_settings = FilterSettings {
        phone_region: defaults.phone_region,
        default_zone: defaults.time_zone.clone(),
    };
    let schemas = Schemas::load(&options.config_dir.join("schemas"), &mut errors);
    let mut templates = Templates::load(
        &options.config_dir.join("templates"),
        &filter_settings,
        &mut errors,
    );

    let vars = check_vars(&rules_path, &raw.vars, options.env, &mut errors);
    let mut notices = Vec::new();
    let channel_context = ChannelContext {
        file: &rules_path,
        env: options.env,
        data_dir: options.data_dir,
        config_dir: options.config_dir,
        default_retry: &defaults.retry,
    };
    let mut channel_configs = BTreeMap::new();
    for (name, raw_channel) in &raw.channels {
        if let Some(channel) = channel_check::check_channel(
            name,
            raw_channel,
            &channel_context,
            &mut errors,
            &mut notices,
        ) {
            channel_configs.insert(name.clone(), channel);
        }
    }

    let field_maps = rules::check_field_maps(&rules_path, &raw.fields, &mut errors);
    let Some(schemas) = schemas else {
        return Err(ConfigErrors(errors));
    };
    let declared_channels = raw.channels.keys().cloned().collect();
    let rule_context = RuleContext {
        file: &rules_path,
        channels: &channel_configs,
        declared_channels: &declared_channels,
        field_maps: &field_maps,
        schemas: &schemas,
    };
    let compiled_rules = rules::check_rules(&raw.rules, &rule_context, &mut templates, &mut errors);

    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Generation {
        number: options.generation,
        config_dir: options.config_dir.to_path_buf(),
        defaults,
        vars,
        channels: channel_configs,
        field_maps,
        rules: compiled_rules,
        templates,
        schemas,
        notices,
    })
}

fn check_vars(
    path: &Path,
    raw: &BTreeMap<String, serde_saphyr::Spanned<String>>,
    env: &dyn EnvSource,
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for (name, value) in raw {
        let key = format!("vars.{name}");
        let line = value.referenced.line();
        if !super::channels::is_identifier(name) {
            errors.push(ConfigError::at(
                path,
                line,
                key.clone(),
                format!("invalid variable name {name:?}: use lowercase letters, digits, - and _"),
            ));
        }
        match super::env::expand(&value.value, env) {
            Ok(super::env::Expanded::Value(text)) => {
                vars.insert(name.clone(), text);
            }
            Ok(super::env::Expanded::Missing(names)) => {
                for variable in names {
                    errors.push(ConfigError::at(path, line, key.clone(), format!(
                        "environment variable {variable} is unset or empty: set it or give a default with ${{{variable}:-value}}"
                    )));
                }
            }
            Err(message) => errors.push(ConfigError::at(path, line, key.clone(), message)),
        }
    }
    vars
}

fn read_rules_file(path: &Path) -> Result<RawRulesFile, ConfigError> {
    let text = fs::read_to_string(path).map_err(|error| {
        ConfigError::file(path, format!("cannot read: {error}; pass --config-dir with the folder that holds rules.yaml, templates/ and schemas/"))
    })?;
    let only_comments = text.lines().all(|line| {
        let line = line.trim();
        line.is_empty() || line.starts_with('#')
    });
    if only_comments {
        return Err(ConfigError::file(
            path,
            "the file is empty: it needs channels and rules (an empty file is never read as \"no rules\")",
        ));
    }
    serde_saphyr::from_str::<RawRulesFile>(&text).map_err(|error| yaml_error(path, &text, &error))
}

/// Turns a serde-saphyr error into one line with the key path. Its own text starts with
/// `error: line N column M:` and is followed by a source snippet; ConfigError prints the
/// file and line itself.
fn yaml_error(path: &Path, text: &str, error: &serde_saphyr::Error) -> ConfigError {
    let line = error
        .location()
        .map(|location| location.line())
        .unwrap_or(0);
    let rendered = error.to_string();
    let mut message = rendered.lines().next().unwrap_or_default().trim();
    message = message.strip_prefix("error: ").unwrap_or(message);
    if message.starts_with("line ")
        && let Some((_, rest)) = message.split_once(": ")
    {
        message = rest;
    }
    let message = message.trim_end_matches(", set DuplicateKeyPolicy in Options if acceptable");
    let message = match message {
        "invalid u32" | "invalid u64" | "invalid usize" | "invalid i64" => {
            "invalid value: expected a whole number".to_string()
        }
        "invalid f64" | "invalid f32" => "invalid value: expected a number".to_string(),
        other => other.to_string(),
    };
    ConfigError::at(path, line, super::yaml_path::key_path(text, line), message)
}

fn check_defaults(path: &Path, raw: &RawDefaults, errors: &mut Vec<ConfigError>) -> Defaults {
    let phone_region = match &raw.phone_region {
        Some(region) => region.value.parse::<Region>().unwrap_or_else(|message| {
            errors.push(ConfigError::at(
                path,
                region.referenced.line(),
                "defaults.phone_region",
                message,
            ));
            default_region()
        }),
        None => default_region(),
    };
    let time_zone = match &raw.time_zone {
        Some(zone) => timezone::resolve(&zone.value).unwrap_or_else(|message| {
            errors.push(ConfigError::at(
                path,
                zone.referenced.line(),
                "defaults.time_zone",
                message,
            ));
            utc()
        }),
        None => utc(),
    };
    let locale = raw
        .locale
        .as_ref()
        .map(|l| crate::templates::normalize_locale(&l.value));
    let retry = channels::merge_default_retry(raw.retry.as_ref(), path, errors);
    Defaults {
        phone_region,
        time_zone,
        locale,
        max_event_age: raw.max_event_age.map(|d| d.as_duration()),
        dedupe_window: raw
            .dedupe_window
            .map(|d| d.as_duration())
            .unwrap_or(Duration::from_secs(7 * 86_400)),
        retention: raw
            .retention
            .map(|d| d.as_duration())
            .unwrap_or(Duration::from_secs(30 * 86_400)),
        retry,
    }
}

fn default_region() -> Region {
    "US".parse().expect("US is a known region")
}

fn utc() -> timezone::Zone {
    timezone::resolve("UTC").expect("UTC is in every tz database")
}
