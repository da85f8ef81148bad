//! E-mail addresses and display names: checked, with IDN domains converted to punycode and
//! control characters kept out of headers.

use std::str::FromStr;

use lettre::Address;
use lettre::message::Mailbox;

/// Checks and normalizes a recipient address. The domain is converted to its ASCII (punycode)
/// form; the local part must be ASCII, because non-ASCII local parts need SMTPUTF8, which
/// relays do not all offer. Errors never repeat the address.
pub fn normalize_address(text: &str) -> Result<String, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err("is empty".into());
    }
    if trimmed.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains whitespace or control characters".into());
    }
    let Some((local, domain)) = trimmed.rsplit_once('@') else {
        return Err("is not an e-mail address (no @)".into());
    };
    if local.is_empty() || domain.is_empty() {
        return Err("is not an e-mail address (empty local part or domain)".into());
    }
    if !local.is_ascii() {
        return Err("has a non-ASCII local part, which needs SMTPUTF8".into());
    }
    let ascii_domain =
        idna::domain_to_ascii(domain).map_err(|_| "has an invalid domain".to_string())?;
    if !ascii_domain.contains('.') && !ascii_domain.starts_with('[') {
        return Err("has a domain without a dot".into());
    }
    let address = format!("{local}@{ascii_domain}");
    Address::from_str(&address).map_err(|_| "is not a valid e-mail address".to_string())?;
    Ok(address)
}

/// Longest display name herald sends, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 512;

/// Longest subject herald sends, in characters.
pub const MAX_SUBJECT_CHARS: usize = 512;

/// Longest run of ASCII characters without a space that a header value keeps.
const MAX_WORD_CHARS: usize = 200;

/// Cleans a header value (see `clean_header_text`) and cuts it with an ellipsis at `max`
/// characters and, in plain ASCII text, at the first run of more than 200 characters without
/// a space. lettre folds ASCII header lines only at spaces, so a longer run could give a line
/// over the 998 octets that RFC 5322 allows; text with other characters it encodes (RFC 2047)
/// in short pieces.
pub fn header_text(text: &str, max: usize) -> String {
    let cleaned = clean_header_text(text);
    let limit_words = cleaned.is_ascii();
    let mut out = String::with_capacity(cleaned.len());
    let mut word = 0;
    for (kept, c) in cleaned.chars().enumerate() {
        word = if c == ' ' { 0 } else { word + 1 };
        if (limit_words && word > MAX_WORD_CHARS) || kept == max {
            out.pop();
            out.truncate(out.trim_end().len());
            out.push('…');
            return out;
        }
        out.push(c);
    }
    out
}

/// Removes control characters (CR, LF, NUL, tabs and the rest) from a header value and
/// collapses runs of whitespace into one space.
pub fn clean_header_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut pending_space = false;
    for c in text.chars() {
        if c.is_control() || c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        out.push(c);
    }
    out
}

/// Builds a mailbox from a display name and a normalized address. The name is cleaned of
/// control characters; lettre encodes it per RFC 2047 when it is not plain ASCII.
pub fn mailbox(name: Option<&str>, address: &str) -> Result<Mailbox, String> {
    let address =
        Address::from_str(address).map_err(|_| "is not a valid e-mail address".to_string())?;
    let name = name
        .map(|name| header_text(name, MAX_DISPLAY_NAME_CHARS))
        .filter(|n| !n.is_empty());
    Ok(Mailbox::new(name, address))
}

/// Parses a configured sender such as `Clinic <no-reply@clinic.example>` or a bare address.
pub fn parse_mailbox(text: &str) -> Result<Mailbox, String> {
    let trimmed = text.trim();
    let (name, address) = match (trimmed.rfind('<'), trimmed.ends_with('>')) {
        (Some(open), true) => {
            let name = trimmed[..open].trim().trim_matches('"').trim();
            (
                Some(name).filter(|n| !n.is_empty()),
                &trimmed[open + 1..trimmed.len() - 1],
            )
        }
        _ => (None, trimmed),
    };
    let address = normalize_address(address)
        .map_err(|reason| format!("invalid sender {text:?}: the address {reason}; write it as \"Name <user@example.com>\" or user@example.com"))?;
    mailbox(name, &address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idn_domain_becomes_punycode() {
        assert_eq!(
            normalize_address("anna@bücher.example"),
            Ok("anna@xn--bcher-kva.example".into())
        );
    }

    #[test]
    fn plus_addressing_is_kept() {
        assert_eq!(
            normalize_address(" perry+visits@example.com "),
            Ok("perry+visits@example.com".into())
        );
    }

    #[test]
    fn invalid_addresses() {
        assert_eq!(normalize_address(""), Err("is empty".into()));
        assert_eq!(
            normalize_address("perry.example.com"),
            Err("is not an e-mail address (no @)".into())
        );
        assert_eq!(
            normalize_address("a@b\r\nBcc: x@y.com"),
            Err("contains whitespace or control characters".into())
        );
        assert_eq!(
            normalize_address("josé@example.com"),
            Err("has a non-ASCII local part, which needs SMTPUTF8".into())
        );
        assert_eq!(
            normalize_address("perry@localhost"),
            Err("has a domain without a dot".into())
        );
    }

    #[test]
    fn header_text_loses_control_characters() {
        assert_eq!(
            clean_header_text("Perry\r\nBcc: x@y.com\0 Public"),
            "Perry Bcc: x@y.com Public"
        );
        assert_eq!(clean_header_text("  a \t b  "), "a b");
    }

    proptest::proptest! {
        #[test]
        fn normalizers_never_panic_and_are_idempotent(text in "\\PC{0,40}|[a-z+.]{1,10}@[a-zü.]{1,12}\\.[a-z]{2,4}") {
            let cleaned = clean_header_text(&text);
            proptest::prop_assert_eq!(clean_header_text(&cleaned), cleaned.clone());
            proptest::prop_assert!(!cleaned.chars().any(char::is_control));
            if let Ok(address) = normalize_address(&text) {
                proptest::prop_assert_eq!(normalize_address(&address), Ok(address.clone()));
                proptest::prop_assert!(address.is_ascii());
            }
        }
    }

    #[test]
    fn long_header_text_is_cut() {
        assert_eq!(header_text("a b", 5), "a b");
        assert_eq!(header_text("abcdefgh", 5), "abcd…");
        assert_eq!(header_text("abc defgh", 5), "abc…");
        let long_word = "x".repeat(300);
        assert_eq!(
            header_text(&format!("Dr {long_word}"), 512),
            format!("Dr {}…", "x".repeat(199))
        );
        let spaced = "José Müller ".repeat(30);
        assert_eq!(
            header_text(&spaced, MAX_DISPLAY_NAME_CHARS),
            spaced.trim_end()
        );
        let cjk = "山田太郎医師".repeat(35);
        assert_eq!(
            header_text(&cjk, 512),
            cjk,
            "non-ASCII text is encoded and folded by lettre"
        );
    }

    #[test]
    fn sender_forms() {
        assert_eq!(
            parse_mailbox("Clinic <no-reply@clinic.example>")
                .unwrap()
                .to_string(),
            "Clinic <no-reply@clinic.example>"
        );
        assert_eq!(
            parse_mailbox("no-reply@clinic.example")
                .unwrap()
                .to_string(),
            "no-reply@clinic.example"
        );
        assert!(
            parse_mailbox("Clinic <nobody>")
                .unwrap_err()
                .starts_with("invalid sender")
        );
    }
}
