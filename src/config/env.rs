//! `${NAME}` and `${NAME:-default}` references to environment variables in channel settings.

use std::collections::HashMap;

/// Where environment variables come from: the process environment in production, a map in
/// tests.
pub trait EnvSource: Send + Sync {
    fn get(&self, name: &str) -> Option<String>;
}

/// The real process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl EnvSource for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

/// The result of expanding one setting.
#[derive(Debug, PartialEq, Eq)]
pub enum Expanded {
    Value(String),
    /// Variables that are unset or empty and have no default, in order of appearance.
    Missing(Vec<String>),
}

/// Replaces every `${NAME}` or `${NAME:-default}` in `text`. An empty variable counts as
/// unset. `$$` writes a literal `$`.
pub fn expand(text: &str, env: &dyn EnvSource) -> Result<Expanded, String> {
    let mut out = String::with_capacity(text.len());
    let mut missing = Vec::new();
    let mut rest = text;
    while let Some(position) = rest.find('$') {
        out.push_str(&rest[..position]);
        let after = &rest[position + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
            continue;
        }
        let Some(body) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body.find('}') else {
            return Err(format!(
                "unclosed variable reference in {text:?}: write ${{NAME}} or ${{NAME:-default}}"
            ));
        };
        let reference = &body[..end];
        let (name, default) = match reference.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (reference, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "invalid variable name {name:?} in {text:?}: use letters, digits and underscores"
            ));
        }
        match (env.get(name).filter(|value| !value.is_empty()), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => missing.push(name.to_string()),
        }
        rest = &body[end + 1..];
    }
    out.push_str(rest);
    if missing.is_empty() {
        Ok(Expanded::Value(out))
    } else {
        Ok(Expanded::Missing(missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn expands_set_variables() {
        let vars = env(&[("HOST", "mail.example"), ("PORT", "587")]);
        assert_eq!(
            expand("smtp://${HOST}:${PORT}", &vars),
            Ok(Expanded::Value("smtp://mail.example:587".into()))
        );
    }

    #[test]
    fn default_applies_when_unset_or_empty() {
        let vars = env(&[("EMPTY", "")]);
        assert_eq!(
            expand("${EMPTY:-a} ${UNSET:-b}", &vars),
            Ok(Expanded::Value("a b".into()))
        );
    }

    #[test]
    fn missing_variables_are_listed() {
        let vars = env(&[("EMPTY", "")]);
        assert_eq!(
            expand("${EMPTY}/${UNSET}", &vars),
            Ok(Expanded::Missing(vec!["EMPTY".into(), "UNSET".into()]))
        );
    }

    #[test]
    fn dollar_escapes_and_plain_dollars() {
        let vars = env(&[]);
        assert_eq!(
            expand("a$$b $5", &vars),
            Ok(Expanded::Value("a$b $5".into()))
        );
    }

    #[test]
    fn malformed_references() {
        let vars = env(&[]);
        assert!(expand("${OPEN", &vars).unwrap_err().starts_with("unclosed"));
        assert!(
            expand("${BAD-NAME}", &vars)
                .unwrap_err()
                .starts_with("invalid variable name")
        );
    }
}
