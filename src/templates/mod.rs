//! minijinja templates: loading the `templates/` folder into one environment per configuration
//! generation, the filters herald adds, and rendering with strict handling of missing values.
//!
//! Layout: `templates/<set>/<part>` holds the default variant of a template set and
//! `templates/<set>/<locale>/<part>` a language variant. Files and folders whose name starts
//! with `_` are partials for `{% include %}` and `{% extends %}`.

mod filters;
mod parts;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

pub use parts::{Part, TemplateSet, normalize_locale};

use crate::config::ConfigError;
use crate::phone::Region;
use crate::timezone::Zone;

/// Upper bound on template instructions per render, so that a runaway loop in an operator's
/// template fails the render instead of stalling intake.
const FUEL_PER_RENDER: u64 = 200_000;

/// Settings the filters need from `rules.yaml`.
#[derive(Clone, Debug)]
pub struct FilterSettings {
    pub phone_region: Region,
    pub default_zone: Zone,
}

/// Every template of one configuration generation, compiled.
pub struct Templates {
    env: Environment<'static>,
    sets: BTreeMap<String, TemplateSet>,
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("sets", &self.sets)
            .finish_non_exhaustive()
    }
}

/// A failed render or expression, with the template and line where it failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenderError {
    pub template: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.template, self.message),
            None => write!(f, "{}: {}", self.template, self.message),
        }
    }
}

impl std::error::Error for RenderError {}

impl RenderError {
    fn from_minijinja(fallback_name: &str, error: &minijinja::Error) -> RenderError {
        let template = error.name().unwrap_or(fallback_name).to_string();
        let message = describe(error);
        RenderError {
            template,
            line: error.line(),
            message,
        }
    }
}

/// Turns a minijinja error into one sentence with a hint for the common template mistakes.
fn describe(error: &minijinja::Error) -> String {
    let detail = error.detail().map(str::to_string);
    match error.kind() {
        ErrorKind::UndefinedError => {
            let what = detail.unwrap_or_else(|| "a value".into());
            format!(
                "undefined value ({what}): the payload or the context has no such value; guard optional values with {{% if name is defined %}}"
            )
        }
        ErrorKind::OutOfFuel => {
            "the template ran too long (fuel exhausted); check its loops".to_string()
        }
        _ => match detail {
            Some(detail) => format!("{}: {detail}", error.kind()),
            None => error.kind().to_string(),
        },
    }
}

impl Templates {
    /// Loads and compiles every file under `dir`. Problems are pushed to `errors` with the
    /// file and line, and the remaining files are still loaded so that one run reports all.
    pub fn load(dir: &Path, settings: &FilterSettings, errors: &mut Vec<ConfigError>) -> Templates {
        let mut env = new_environment(settings);
        let mut sets = BTreeMap::new();
        parts::load_dir(dir, &mut env, &mut sets, errors);
        Templates { env, sets }
    }

    /// An environment with no files, for rendering expressions and inline templates only.
    pub fn empty(settings: &FilterSettings) -> Templates {
        Templates {
            env: new_environment(settings),
            sets: BTreeMap::new(),
        }
    }

    pub fn sets(&self) -> &BTreeMap<String, TemplateSet> {
        &self.sets
    }

    pub fn set(&self, name: &str) -> Option<&TemplateSet> {
        self.sets.get(name)
    }

    /// Compiles an inline template (such as a rule's `dedupe_key`) under `name`.
    pub fn add_inline(&mut self, name: &str, source: &str) -> Result<(), String> {
        self.env
            .add_template_owned(name.to_string(), source.to_string())
            .map_err(|error| describe(&error))
    }

    /// Checks that an expression (such as a rule's `when`) compiles.
    pub fn check_expression(&self, source: &str) -> Result<(), String> {
        self.env
            .compile_expression(source)
            .map(|_| ())
            .map_err(|error| describe(&error))
    }

    pub fn render(&self, name: &str, context: &Value) -> Result<String, RenderError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|error| RenderError::from_minijinja(name, &error))?;
        template
            .render(context)
            .map_err(|error| RenderError::from_minijinja(name, &error))
    }

    /// Evaluates an expression against a context; `label` names it in errors.
    pub fn eval(&self, label: &str, source: &str, context: &Value) -> Result<Value, RenderError> {
        let expression = self
            .env
            .compile_expression(source)
            .map_err(|error| RenderError::from_minijinja(label, &error))?;
        expression.eval(context).map_err(|error| RenderError {
            template: label.to_string(),
            line: None,
            message: describe(&error),
        })
    }
}

fn new_environment(settings: &FilterSettings) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_fuel(Some(FUEL_PER_RENDER));
    env.set_auto_reload(false);
    // Block tags on their own line leave no blank line behind, which keeps text bodies and
    // SMS texts tidy without `{%-` everywhere.
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.set_auto_escape_callback(parts::auto_escape_for);
    env.set_formatter(format_value);
    filters::register(&mut env, settings);
    env
}

/// Writes a value into the output. A `none` value in text or HTML output is an error, because
/// it would print as "none" in a patient's message; JSON output writes it as `null`. HTML
/// escaping leaves `/` alone (minijinja escapes it as `&#x2f;`), so links read as written.
fn format_value(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    if value.is_none() && !matches!(state.auto_escape(), AutoEscape::Json) {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "a value is none (an empty or missing optional field); test it with {% if %} or use `or` to give a fallback",
        ));
    }
    if matches!(state.auto_escape(), AutoEscape::Html) && !value.is_safe() {
        let text = value.to_string();
        let mut escaped = String::with_capacity(text.len());
        for c in text.chars() {
            match c {
                '&' => escaped.push_str("&amp;"),
                '<' => escaped.push_str("&lt;"),
                '>' => escaped.push_str("&gt;"),
                '"' => escaped.push_str("&quot;"),
                '\'' => escaped.push_str("&#x27;"),
                other => escaped.push(other),
            }
        }
        return out.write_str(&escaped).map_err(|_| {
            minijinja::Error::new(ErrorKind::WriteFailure, "cannot write the template output")
        });
    }
    minijinja::escape_formatter(out, state, value)
}

#[cfg(test)]
mod tests;
