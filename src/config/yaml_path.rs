//! Finds the key path (`rules[2].match.status`) of a line in a block-style YAML document, so
//! that parse errors from serde-saphyr, which give a line but no path, can name the key.

/// One line's structure: where its key starts, and whether it opens a list item.
struct LineShape<'a> {
    /// Column of the key (after `- ` for a list item).
    key_column: usize,
    /// Column of the `-`, for list items.
    dash_column: Option<usize>,
    key: Option<&'a str>,
}

fn shape(line: &str) -> Option<LineShape<'_>> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    let content = &line[indent..];
    if content.is_empty() || content.starts_with('#') {
        return None;
    }
    let (dash_column, rest, key_column) = match content
        .strip_prefix("- ")
        .or_else(|| content.strip_prefix('-').filter(|r| r.is_empty()))
    {
        Some(rest) => {
            let extra = rest.len() - rest.trim_start_matches(' ').len();
            (
                Some(indent),
                rest.trim_start_matches(' '),
                indent + 2 + extra,
            )
        }
        None => (None, content, indent),
    };
    let key = rest
        .split_once(':')
        .map(|(key, _)| key.trim().trim_matches(|c| c == '"' || c == '\''))
        .filter(|key| !key.is_empty() && !key.contains(['{', '[', ' ']));
    Some(LineShape {
        key_column,
        dash_column,
        key,
    })
}

/// The dotted key path of the node on 1-based `line`, or an empty string when the line is not
/// a key or is outside the text.
pub fn key_path(text: &str, line: u64) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let Some(target) = usize::try_from(line)
        .ok()
        .and_then(|l| l.checked_sub(1))
        .filter(|l| *l < lines.len())
    else {
        return String::new();
    };
    let Some(first) = shape(lines[target]) else {
        return String::new();
    };
    let mut segments: Vec<String> = Vec::new();
    if let Some(key) = first.key {
        segments.push(key.to_string());
    }
    let mut need = first.key_column;
    // A list item on the target line itself: its index is counted from the lines above.
    let mut open_item = first.dash_column;
    let mut index = 0;
    for line in lines[..target].iter().rev() {
        let Some(shape) = shape(line) else { continue };
        if let Some(dash) = open_item {
            match shape.dash_column {
                Some(column) if column == dash => {
                    index += 1;
                    continue;
                }
                // Deeper lines belong to earlier items of the same list.
                _ if shape
                    .dash_column
                    .map_or(shape.key_column > dash, |d| d > dash) =>
                {
                    continue;
                }
                _ => {}
            }
            // The line that owns the list.
            match shape.key {
                Some(key) => segments.push(format!("{key}[{index}]")),
                None => segments.push(format!("[{index}]")),
            }
            open_item = None;
            index = 0;
            need = shape.key_column;
            if let Some(dash) = shape.dash_column {
                open_item = Some(dash);
            }
            continue;
        }
        if shape.key_column < need || (shape.dash_column.is_some() && shape.key_column == need) {
            match (shape.dash_column, shape.key_column == need) {
                // The start of the list item that holds our mapping.
                (Some(dash), true) => {
                    open_item = Some(dash);
                    index = 0;
                }
                (Some(dash), false) => {
                    if let Some(key) = shape.key {
                        segments.push(key.to_string());
                    }
                    open_item = Some(dash);
                    index = 0;
                }
                (None, _) => {
                    if let Some(key) = shape.key {
                        segments.push(key.to_string());
                    }
                    need = shape.key_column;
                }
            }
            if open_item.is_some() {
                need = shape.dash_column.unwrap_or(need);
            }
        }
    }
    if open_item.is_some() {
        segments.push(format!("[{index}]"));
    }
    segments.reverse();
    let mut path = String::new();
    for segment in segments {
        if !path.is_empty() && !segment.starts_with('[') {
            path.push('.');
        }
        path.push_str(&segment);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
defaults:
  retry:
    max_attempts: ten
channels:
  email:
    driver: smtp
rules:
  - name: a
    match:
      status: Invite
  - name: b
    send: [email]
  -
    name: c
fields:
  T:
    email: E
";

    #[test]
    fn nested_mapping_keys() {
        assert_eq!(key_path(DOC, 3), "defaults.retry.max_attempts");
        assert_eq!(key_path(DOC, 6), "channels.email.driver");
        assert_eq!(key_path(DOC, 17), "fields.T.email");
    }

    #[test]
    fn list_items_get_indexes() {
        assert_eq!(key_path(DOC, 8), "rules[0].name");
        assert_eq!(key_path(DOC, 10), "rules[0].match.status");
        assert_eq!(key_path(DOC, 12), "rules[1].send");
        assert_eq!(key_path(DOC, 14), "rules[2].name");
    }

    #[test]
    fn unindented_lists() {
        let doc = "rules:\n- name: a\n- name: b\n  drop: x\n";
        assert_eq!(key_path(doc, 4), "rules[1].drop");
    }

    #[test]
    fn out_of_range_and_comments() {
        assert_eq!(key_path(DOC, 0), "");
        assert_eq!(key_path(DOC, 99), "");
        assert_eq!(key_path("# c\n", 1), "");
    }
}
