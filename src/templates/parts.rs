//! The parts of a template set, and loading them from the `templates/` folder.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::path::Path;

use minijinja::{AutoEscape, Environment};

use crate::config::ConfigError;

/// One file of a template set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Part {
    EmailSubject,
    EmailText,
    EmailHtml,
    Sms,
    Webhook,
}

impl Part {
    pub const ALL: [Part; 5] = [
        Part::EmailSubject,
        Part::EmailText,
        Part::EmailHtml,
        Part::Sms,
        Part::Webhook,
    ];

    pub fn file_name(self) -> &'static str {
        match self {
            Part::EmailSubject => "email.subject.txt",
            Part::EmailText => "email.txt",
            Part::EmailHtml => "email.html",
            Part::Sms => "sms.txt",
            Part::Webhook => "webhook.json",
        }
    }

    fn from_file_name(name: &str) -> Option<Part> {
        Part::ALL.into_iter().find(|part| part.file_name() == name)
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.file_name())
    }
}

/// The files of one template set: the default variant (`""`) and each language variant.
#[derive(Clone, Debug, Default)]
pub struct TemplateSet {
    pub name: String,
    pub variants: BTreeMap<String, BTreeSet<Part>>,
}

impl TemplateSet {
    /// The name under which a part of a variant is compiled, such as `invite/es/email.txt`.
    pub fn template_name(&self, variant: &str, part: Part) -> String {
        if variant.is_empty() {
            format!("{}/{}", self.name, part.file_name())
        } else {
            format!("{}/{variant}/{}", self.name, part.file_name())
        }
    }

    pub fn has(&self, variant: &str, part: Part) -> bool {
        self.variants
            .get(variant)
            .is_some_and(|parts| parts.contains(&part))
    }

    /// Picks the variant for a locale: the exact tag (`es-MX`), then its language (`es`),
    /// then the default. A variant counts only if it has `primary`, the part that a message
    /// of that kind cannot do without, so that one message never mixes two languages.
    pub fn choose_variant(&self, locale: Option<&str>, primary: Part) -> &str {
        let Some(locale) = locale.map(str::trim).filter(|l| !l.is_empty()) else {
            return "";
        };
        let normalized = normalize_locale(locale);
        let language = normalized.split('-').next().unwrap_or_default().to_string();
        for candidate in [normalized, language] {
            if let Some((name, _)) = self
                .variants
                .get_key_value(candidate.as_str())
                .filter(|(_, parts)| parts.contains(&primary))
            {
                return name;
            }
        }
        ""
    }
}

/// Lowercases the language and uppercases a region subtag (`ES_mx` becomes `es-MX`).
pub fn normalize_locale(locale: &str) -> String {
    let mut pieces = locale.trim().split(['-', '_']);
    let mut out = pieces.next().unwrap_or_default().to_ascii_lowercase();
    for piece in pieces {
        out.push('-');
        if piece.len() == 2 {
            out.push_str(&piece.to_ascii_uppercase());
        } else {
            out.push_str(piece);
        }
    }
    out
}

fn is_locale_name(name: &str) -> bool {
    let mut pieces = name.split('-');
    let language = pieces.next().unwrap_or_default();
    (2..=3).contains(&language.len())
        && language.bytes().all(|b| b.is_ascii_lowercase())
        && pieces.all(|piece| {
            (2..=8).contains(&piece.len()) && piece.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// Chooses escaping by file extension: HTML for `.html`, JSON for `.json`, none otherwise.
pub fn auto_escape_for(name: &str) -> AutoEscape {
    if name.ends_with(".html") || name.ends_with(".htm") {
        AutoEscape::Html
    } else if name.ends_with(".json") {
        AutoEscape::Json
    } else {
        AutoEscape::None
    }
}

pub(super) fn load_dir(
    dir: &Path,
    env: &mut Environment<'static>,
    sets: &mut BTreeMap<String, TemplateSet>,
    errors: &mut Vec<ConfigError>,
) {
    let entries = match sorted_entries(dir) {
        Ok(entries) => entries,
        Err(error) => {
            errors.push(ConfigError::file(
                dir,
                format!("cannot read the templates folder: {error}"),
            ));
            return;
        }
    };
    for (name, path, is_dir) in entries {
        if name.starts_with('.') {
            continue;
        }
        if name.starts_with('_') {
            load_partials(dir, &path, env, errors);
            continue;
        }
        if !is_dir {
            errors.push(ConfigError::file(
                &path,
                "a template file must sit in a template set folder, such as templates/invite/email.txt (partials start with _)",
            ));
            continue;
        }
        let mut set = TemplateSet {
            name: name.clone(),
            variants: BTreeMap::new(),
        };
        load_variant(&path, "", &mut set, env, errors);
        sets.insert(name, set);
    }
}

fn load_variant(
    dir: &Path,
    variant: &str,
    set: &mut TemplateSet,
    env: &mut Environment<'static>,
    errors: &mut Vec<ConfigError>,
) {
    let entries = match sorted_entries(dir) {
        Ok(entries) => entries,
        Err(error) => {
            errors.push(ConfigError::file(
                dir,
                format!("cannot read folder: {error}"),
            ));
            return;
        }
    };
    let mut parts = BTreeSet::new();
    for (name, path, is_dir) in entries {
        if name.starts_with('.') {
            continue;
        }
        if is_dir {
            if !variant.is_empty() || !is_locale_name(&name) {
                errors.push(ConfigError::file(
                    &path,
                    format!(
                        "unexpected folder {name:?}: a template set may only contain language folders named like \"es\" or \"pt-BR\""
                    ),
                ));
                continue;
            }
            load_variant(&path, &name, set, env, errors);
            continue;
        }
        let Some(part) = Part::from_file_name(&name) else {
            let expected: Vec<_> = Part::ALL.iter().map(|p| p.file_name()).collect();
            errors.push(ConfigError::file(
                &path,
                format!(
                    "unknown template file {name:?}: expected one of {}",
                    expected.join(", ")
                ),
            ));
            continue;
        };
        let template_name = set.template_name(variant, part);
        // A part that fails to compile still exists; its syntax error is the only one to
        // report, not a "missing part" as well.
        add_file(&path, &template_name, env, errors);
        parts.insert(part);
    }
    set.variants.insert(variant.to_string(), parts);
}

fn load_partials(
    root: &Path,
    path: &Path,
    env: &mut Environment<'static>,
    errors: &mut Vec<ConfigError>,
) {
    if path.is_dir() {
        match sorted_entries(path) {
            Ok(entries) => {
                for (name, child, _) in entries {
                    if !name.starts_with('.') {
                        load_partials(root, &child, env, errors);
                    }
                }
            }
            Err(error) => errors.push(ConfigError::file(
                path,
                format!("cannot read folder: {error}"),
            )),
        }
        return;
    }
    let name = relative_name(root, path);
    add_file(path, &name, env, errors);
}

fn add_file(
    path: &Path,
    template_name: &str,
    env: &mut Environment<'static>,
    errors: &mut Vec<ConfigError>,
) {
    let source = match fs::read_to_string(path) {
        Ok(source) => source,
        Err(error) => {
            errors.push(ConfigError::file(
                path,
                format!("cannot read template: {error}"),
            ));
            return;
        }
    };
    if let Err(error) = env.add_template_owned(template_name.to_string(), source) {
        errors.push(ConfigError {
            file: path.to_path_buf(),
            line: error.line().map(|line| line as u64),
            key: String::new(),
            message: super::describe(&error),
        });
    }
}

fn relative_name(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

fn sorted_entries(dir: &Path) -> std::io::Result<Vec<(String, std::path::PathBuf, bool)>> {
    let mut entries = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        entries.push((name, path.clone(), path.is_dir()));
    }
    entries.sort();
    Ok(entries)
}
