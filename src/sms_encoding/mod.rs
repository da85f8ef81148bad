//! SMS encoding: GSM-7 or UCS-2 detection, billed segment counts and segment-limit policies.
//!
//! The GSM 7-bit default alphabet and its extension table come from 3GPP TS 23.038,
//! section 6.2.1. A text that uses only those characters is sent as GSM-7, where an
//! extension-table character costs 2 septets (the escape 0x1B and its code). Any other
//! character makes the whole text UCS-2, counted in UTF-16 code units.
//!
//! A single SMS contains 160 septets or 70 UCS-2 units. A longer text is sent as a concatenated
//! SMS whose 6-octet user data header leaves 153 septets or 67 units in each part. Segments
//! are counted by packing characters into parts, because an escape pair or a UTF-16
//! surrogate pair cannot be split across two parts.

use std::error::Error;
use std::fmt;
use std::str::FromStr;

#[cfg(test)]
mod tests;

/// GSM 7-bit default alphabet in code order, one row per high nibble (3GPP TS 23.038,
/// section 6.2.1). Code 0x1B is the escape to the extension table and not a character.
const GSM7_BASIC_ROWS: [&str; 8] = [
    "@£$¥èéùìòÇ\nØø\rÅå",
    "Δ_ΦΓΛΩΠΨΣΘΞ\u{1B}ÆæßÉ",
    " !\"#¤%&'()*+,-./",
    "0123456789:;<=>?",
    "¡ABCDEFGHIJKLMNO",
    "PQRSTUVWXYZÄÖÑÜ§",
    "¿abcdefghijklmno",
    "pqrstuvwxyzäöñüà",
];

/// Characters of the GSM 7-bit default alphabet extension table (3GPP TS 23.038, section
/// 6.2.1), each sent as the escape 0x1B followed by its code: form feed 0x0A, ^ 0x14,
/// { 0x28, } 0x29, \ 0x2F, [ 0x3C, ~ 0x3D, ] 0x3E, | 0x40 and € 0x65.
const GSM7_EXTENSION: [char; 10] = ['\u{C}', '^', '{', '}', '\\', '[', '~', ']', '|', '€'];

/// Escape to the extension table, which cannot appear in a text as a character of its own.
const GSM7_ESCAPE: char = '\u{1B}';

const GSM7_LIMITS: SegmentLimits = SegmentLimits {
    single: 160,
    part: 153,
};

const UCS2_LIMITS: SegmentLimits = SegmentLimits {
    single: 70,
    part: 67,
};

/// Ellipsis appended by `truncate` to a GSM-7 result, because U+2026 is not in GSM-7.
const GSM7_ELLIPSIS: &str = "...";

/// Ellipsis appended by `truncate` to a UCS-2 result.
const UCS2_ELLIPSIS: &str = "…";

const ZERO_WIDTH_JOINER: char = '\u{200D}';

/// Combining diacritical marks that `transliterate` composes with a preceding Latin letter,
/// each with the precomposed letters it forms and their base letters at the same positions.
/// The pairs are the canonical decompositions (Unicode NFD) of the letters in Latin-1
/// Supplement, Latin Extended-A, and Romanian Ș ș Ț ț.
const DIACRITICS: [(char, &str, &str); 14] = [
    // Grave
    ('\u{300}', "ÀÈÌÒÙàèìòù", "AEIOUaeiou"),
    // Acute
    (
        '\u{301}',
        "ÁÉÍÓÚÝáéíóúýĆćĹĺŃńŔŕŚśŹź",
        "AEIOUYaeiouyCcLlNnRrSsZz",
    ),
    // Circumflex
    (
        '\u{302}',
        "ÂÊÎÔÛâêîôûĈĉĜĝĤĥĴĵŜŝŴŵŶŷ",
        "AEIOUaeiouCcGgHhJjSsWwYy",
    ),
    // Tilde
    ('\u{303}', "ÃÑÕãñõĨĩŨũ", "ANOanoIiUu"),
    // Macron
    ('\u{304}', "ĀāĒēĪīŌōŪū", "AaEeIiOoUu"),
    // Breve
    ('\u{306}', "ĂăĔĕĞğĬĭŎŏŬŭ", "AaEeGgIiOoUu"),
    // Dot above
    ('\u{307}', "ĊċĖėĠġİŻż", "CcEeGgIZz"),
    // Diaeresis
    ('\u{308}', "ÄËÏÖÜäëïöüÿŸ", "AEIOUaeiouyY"),
    // Ring above
    ('\u{30A}', "ÅåŮů", "AaUu"),
    // Double acute
    ('\u{30B}', "ŐőŰű", "OoUu"),
    // Caron
    ('\u{30C}', "ČčĎďĚěĽľŇňŘřŠšŤťŽž", "CcDdEeLlNnRrSsTtZz"),
    // Comma below
    ('\u{326}', "ȘșȚț", "SsTt"),
    // Cedilla
    ('\u{327}', "ÇçĢģĶķĻļŅņŖŗŞşŢţ", "CcGgKkLlNnRrSsTt"),
    // Ogonek
    ('\u{328}', "ĄąĘęĮįŲų", "AaEeIiUu"),
];

/// Character encoding of an SMS text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// GSM 7-bit default alphabet with its extension table.
    Gsm7,
    /// UCS-2, counted as UTF-16 so that characters outside the BMP take 2 units.
    Ucs2,
}

impl Encoding {
    fn unit_name(self) -> &'static str {
        match self {
            Encoding::Gsm7 => "septets",
            Encoding::Ucs2 => "UTF-16 code units",
        }
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Encoding::Gsm7 => "GSM-7",
            Encoding::Ucs2 => "UCS-2",
        })
    }
}

/// Encoding and billed size of an SMS text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SmsInfo {
    pub encoding: Encoding,
    /// Septets for GSM-7, where an extension-table character counts 2, or UTF-16 code
    /// units for UCS-2.
    pub units: usize,
    /// Unicode scalar values.
    pub characters: usize,
    /// Segments a carrier bills, at least 1 because an empty SMS is billed as 1 segment.
    pub segments: usize,
}

/// Analyzes `text` as a carrier would encode and bill it.
pub fn analyze(text: &str) -> SmsInfo {
    let (encoding, packing) = match pack_gsm7(text) {
        Some(packing) => (Encoding::Gsm7, packing),
        None => (Encoding::Ucs2, pack_ucs2(text)),
    };

    SmsInfo {
        encoding,
        units: packing.units,
        characters: text.chars().count(),
        segments: packing.segments(),
    }
}

/// Action that `enforce_limit` takes on a text that needs more segments than the limit.
///
/// `FromStr` and `Display` use the lowercase names "reject", "transliterate" and
/// "truncate", the names that serde's `rename_all = "lowercase"` gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitPolicy {
    /// Return `LimitExceeded`.
    Reject,
    /// Replace characters outside GSM-7 with GSM-7 equivalents, then reject if the text
    /// still does not fit.
    Transliterate,
    /// Cut the text and append an ellipsis.
    Truncate,
}

impl LimitPolicy {
    /// Returns the configuration name of the policy.
    pub const fn as_str(self) -> &'static str {
        match self {
            LimitPolicy::Reject => "reject",
            LimitPolicy::Transliterate => "transliterate",
            LimitPolicy::Truncate => "truncate",
        }
    }
}

impl fmt::Display for LimitPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LimitPolicy {
    type Err = ParseLimitPolicyError;

    /// Parses a policy name. Names are case-sensitive, as they are for serde.
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "reject" => Ok(LimitPolicy::Reject),
            "transliterate" => Ok(LimitPolicy::Transliterate),
            "truncate" => Ok(LimitPolicy::Truncate),
            _ => Err(ParseLimitPolicyError {
                value: value.to_owned(),
            }),
        }
    }
}

/// Error for a string that names no `LimitPolicy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLimitPolicyError {
    pub value: String,
}

impl fmt::Display for ParseLimitPolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid SMS limit policy {:?}, expected \"reject\", \"transliterate\" or \"truncate\"",
            self.value
        )
    }
}

impl Error for ParseLimitPolicyError {}

/// Text that `enforce_limit` accepted, with its analysis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitOutcome {
    /// The original text fits unchanged.
    Fits(SmsInfo),
    /// The transliterated text fits.
    Transliterated { text: String, info: SmsInfo },
    /// The text was cut to fit and ends in an ellipsis.
    Truncated { text: String, info: SmsInfo },
}

impl LimitOutcome {
    /// Returns the analysis of the text to send.
    pub fn info(&self) -> SmsInfo {
        match self {
            LimitOutcome::Fits(info) => *info,
            LimitOutcome::Transliterated { info, .. } | LimitOutcome::Truncated { info, .. } => {
                *info
            }
        }
    }
}

/// Error for a text that needs more segments than the limit after its policy was applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitExceeded {
    /// Analysis of the text after the policy: the original text for `Reject`, the
    /// transliterated text for `Transliterate`.
    pub info: SmsInfo,
    /// Maximum number of segments.
    pub limit: usize,
    /// Policy that was applied.
    pub policy: LimitPolicy,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let info = &self.info;
        write!(
            f,
            "SMS text needs {} {} {} ({} {})",
            info.segments,
            info.encoding,
            plural(info.segments, "segment", "segments"),
            info.units,
            info.encoding.unit_name(),
        )?;
        match self.policy {
            LimitPolicy::Reject => {}
            LimitPolicy::Transliterate => f.write_str(" after transliteration")?,
            LimitPolicy::Truncate => f.write_str(" after truncation")?,
        }
        write!(
            f,
            " but the limit is {} {}, so shorten the template",
            self.limit,
            plural(self.limit, "segment", "segments"),
        )?;

        // Transliteration changes nothing in a GSM-7 text, so it is suggested only for UCS-2.
        let suggestion = match (self.policy, info.encoding) {
            (LimitPolicy::Reject, Encoding::Ucs2) => {
                " or set the limit policy to \"transliterate\" or \"truncate\""
            }
            (LimitPolicy::Reject | LimitPolicy::Transliterate, _) => {
                " or set the limit policy to \"truncate\""
            }
            (LimitPolicy::Truncate, _) => "",
        };
        f.write_str(suggestion)
    }
}

impl Error for LimitExceeded {}

/// Checks `text` against `max_segments` and applies `policy` when it needs more.
///
/// `Truncate` always succeeds. `Reject` fails for any text over the limit, and
/// `Transliterate` fails when the transliterated text is still over it.
///
/// `max_segments` must be at least 1, which callers validate when they load the
/// configuration. Debug builds panic on 0 and release builds treat it as 1.
pub fn enforce_limit(
    text: &str,
    max_segments: usize,
    policy: LimitPolicy,
) -> Result<LimitOutcome, LimitExceeded> {
    debug_assert!(max_segments >= 1, "max_segments must be at least 1");
    let max_segments = max_segments.max(1);

    let info = analyze(text);
    if info.segments <= max_segments {
        return Ok(LimitOutcome::Fits(info));
    }

    match policy {
        LimitPolicy::Reject => Err(LimitExceeded {
            info,
            limit: max_segments,
            policy,
        }),
        LimitPolicy::Transliterate => {
            let text = transliterate(text);
            let info = analyze(&text);
            if info.segments <= max_segments {
                Ok(LimitOutcome::Transliterated { text, info })
            } else {
                Err(LimitExceeded {
                    info,
                    limit: max_segments,
                    policy,
                })
            }
        }
        LimitPolicy::Truncate => {
            let text = truncate(text, max_segments);
            let info = analyze(&text);
            Ok(LimitOutcome::Truncated { text, info })
        }
    }
}

/// Replaces characters outside GSM-7 with GSM-7 equivalents where one exists.
///
/// Typographic quotes, dashes, the ellipsis, the bullet and Unicode spaces become their
/// ASCII forms, and invisible format characters such as U+200B and U+00AD are removed.
/// Accented letters of Latin-1 Supplement and Latin Extended-A outside GSM-7 lose the
/// accent (á → a, Ő → O), while those in GSM-7 (é, ñ, ü, ...) are kept. GSM-7 has only capital Ç, so ç becomes Ç, which keeps
/// the cedilla and changes the case. A combining mark (U+0300 to U+036F) after a Latin
/// letter is composed with it where a precomposed letter exists (e + U+0301 → é) and
/// dropped otherwise. Every other character is kept, so the result can still be UCS-2.
/// Applying the function twice gives the same text as applying it once.
pub fn transliterate(text: &str) -> String {
    let mut output = String::with_capacity(text.len());
    for c in text.chars() {
        if is_gsm7(c) {
            output.push(c);
            continue;
        }

        if is_combining_diacritic(c)
            && let Some(letter) = output.chars().next_back()
            && is_latin_letter(letter)
        {
            if let Some(composed) = compose(letter, c) {
                output.pop();
                push_transliterated(composed, &mut output);
            }
            continue;
        }

        push_transliterated(c, &mut output);
    }
    output
}

/// Cuts `text` so that it fits in `max_segments` with an ellipsis appended.
///
/// A text that already fits is returned unchanged. Otherwise the function takes the longest
/// prefix that fits together with "..." in GSM-7 and the longest that fits together with
/// "…" in UCS-2, and keeps the one with more characters, GSM-7 on a tie. The prefix ends at
/// a character boundary, so no escape pair or surrogate pair is split. It is then shortened
/// so that it does not end in whitespace and does not split a base character from its
/// combining diacritical marks, a zero-width joiner sequence, an emoji from its skin-tone
/// modifier or the two halves of a flag.
///
/// `max_segments` must be at least 1: debug builds panic on 0 and release builds treat it
/// as 1.
pub fn truncate(text: &str, max_segments: usize) -> String {
    debug_assert!(max_segments >= 1, "max_segments must be at least 1");
    let max_segments = max_segments.max(1);

    if analyze(text).segments <= max_segments {
        return text.to_owned();
    }

    let chars: Vec<char> = text.chars().collect();
    let gsm7_len = fitting_prefix_len(
        &chars,
        GSM7_LIMITS,
        gsm7_septets,
        GSM7_ELLIPSIS,
        max_segments,
    );
    let gsm7_len = cut_point_before(&chars, gsm7_len);
    let ucs2_len = fitting_prefix_len(&chars, UCS2_LIMITS, ucs2_units, UCS2_ELLIPSIS, max_segments);
    let ucs2_len = cut_point_before(&chars, ucs2_len);

    let (len, ellipsis) = if gsm7_len >= ucs2_len {
        (gsm7_len, GSM7_ELLIPSIS)
    } else {
        (ucs2_len, UCS2_ELLIPSIS)
    };
    let mut output: String = chars[..len].iter().collect();
    output.push_str(ellipsis);
    output
}

/// Single-segment capacity and per-part capacity of a concatenated SMS, in units of the
/// encoding.
#[derive(Debug, Clone, Copy)]
struct SegmentLimits {
    single: usize,
    part: usize,
}

/// Running packing of characters into the parts of a concatenated SMS.
#[derive(Debug, Clone, Copy)]
struct Packing {
    limits: SegmentLimits,
    /// Units of all characters pushed so far.
    units: usize,
    /// Parts used so far when the text is sent as a concatenated SMS.
    parts: usize,
    /// Units in the last part.
    last_part_units: usize,
}

impl Packing {
    fn new(limits: SegmentLimits) -> Self {
        Packing {
            limits,
            units: 0,
            parts: 1,
            last_part_units: 0,
        }
    }

    /// Adds a character of `units` units, starting a new part when it does not fit whole
    /// in the last one.
    fn push(&mut self, units: usize) {
        self.units += units;
        if self.last_part_units + units > self.limits.part {
            self.parts += 1;
            self.last_part_units = units;
        } else {
            self.last_part_units += units;
        }
    }

    fn segments(&self) -> usize {
        if self.units <= self.limits.single {
            1
        } else {
            self.parts
        }
    }
}

/// Packs `text` as GSM-7, or returns `None` when it has a character outside GSM-7.
fn pack_gsm7(text: &str) -> Option<Packing> {
    let mut packing = Packing::new(GSM7_LIMITS);
    for c in text.chars() {
        packing.push(gsm7_septets(c)?);
    }
    Some(packing)
}

fn pack_ucs2(text: &str) -> Packing {
    let mut packing = Packing::new(UCS2_LIMITS);
    for c in text.chars() {
        packing.push(c.len_utf16());
    }
    packing
}

/// Returns the septets of `c` in GSM-7, or `None` when GSM-7 cannot encode it.
fn gsm7_septets(c: char) -> Option<usize> {
    if c == GSM7_ESCAPE {
        None
    } else if GSM7_BASIC_ROWS.iter().any(|row| row.contains(c)) {
        Some(1)
    } else if GSM7_EXTENSION.contains(&c) {
        Some(2)
    } else {
        None
    }
}

fn ucs2_units(c: char) -> Option<usize> {
    Some(c.len_utf16())
}

fn is_gsm7(c: char) -> bool {
    gsm7_septets(c).is_some()
}

/// Returns the number of leading characters of `chars` that fit in `max_segments`
/// together with `ellipsis`, stopping at the first character that `units_of` cannot
/// encode.
fn fitting_prefix_len(
    chars: &[char],
    limits: SegmentLimits,
    units_of: fn(char) -> Option<usize>,
    ellipsis: &str,
    max_segments: usize,
) -> usize {
    let ellipsis_units: Vec<usize> = ellipsis
        .chars()
        .map(|c| units_of(c).expect("both ellipses are encodable in their own encoding"))
        .collect();

    let mut packing = Packing::new(limits);
    let mut fitting_len = 0;
    for (index, &c) in chars.iter().enumerate() {
        let Some(units) = units_of(c) else {
            break;
        };
        packing.push(units);

        let mut with_ellipsis = packing;
        for &units in &ellipsis_units {
            with_ellipsis.push(units);
        }
        // Appending characters never lowers the segment count, so no longer prefix fits
        // once this one does not.
        if with_ellipsis.segments() > max_segments {
            break;
        }
        fitting_len = index + 1;
    }
    fitting_len
}

/// Returns the largest cut point at or before `len` where the kept prefix ends neither in
/// whitespace nor inside a grapheme cluster.
fn cut_point_before(chars: &[char], mut len: usize) -> usize {
    while len > 0 {
        let last = chars[len - 1];
        let splits_cluster = chars.get(len).is_some_and(|&next| extends_previous(next))
            || last == ZERO_WIDTH_JOINER
            || splits_flag(chars, len);
        if !last.is_whitespace() && !splits_cluster {
            break;
        }
        len -= 1;
    }
    len
}

/// Returns whether `c` continues the grapheme cluster of the character before it.
///
/// NOTE: this covers combining diacritical marks, variation selectors, emoji modifiers, tag
/// characters and the zero-width joiner. It does not implement all of the extended grapheme
/// cluster rules of UAX #29, so a cut can still split an Indic vowel sign or a Hangul jamo
/// sequence from its base.
fn extends_previous(c: char) -> bool {
    matches!(
        c,
        '\u{300}'..='\u{36F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FE20}'..='\u{FE2F}'
            | ZERO_WIDTH_JOINER
            | '\u{1F3FB}'..='\u{1F3FF}'
            | '\u{E0020}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

/// Returns whether a cut after `len` characters separates the two regional indicators of
/// a flag.
fn splits_flag(chars: &[char], len: usize) -> bool {
    if !chars
        .get(len)
        .is_some_and(|&next| is_regional_indicator(next))
    {
        return false;
    }
    let preceding_indicators = chars[..len]
        .iter()
        .rev()
        .take_while(|&&c| is_regional_indicator(c))
        .count();
    preceding_indicators % 2 == 1
}

fn is_regional_indicator(c: char) -> bool {
    matches!(c, '\u{1F1E6}'..='\u{1F1FF}')
}

fn is_combining_diacritic(c: char) -> bool {
    matches!(c, '\u{300}'..='\u{36F}')
}

/// Returns whether `c` is an ASCII letter or a Latin letter of GSM-7, the letters that
/// `transliterate` composes combining marks with.
fn is_latin_letter(c: char) -> bool {
    c.is_ascii_alphabetic() || "ÄÅÆÇÉÑÖØÜßàäåæèéìñòöøùü".contains(c)
}

/// Returns the precomposed letter for `letter` followed by the combining mark `mark`.
fn compose(letter: char, mark: char) -> Option<char> {
    let (_, precomposed, bases) = DIACRITICS.iter().find(|(m, _, _)| *m == mark)?;
    let index = bases.chars().position(|base| base == letter)?;
    precomposed.chars().nth(index)
}

/// Returns the base letter of a precomposed letter in `DIACRITICS`.
fn base_letter(c: char) -> Option<char> {
    DIACRITICS.iter().find_map(|(_, precomposed, bases)| {
        let index = precomposed.chars().position(|letter| letter == c)?;
        bases.chars().nth(index)
    })
}

/// Appends the GSM-7 replacement of `c` to `output`, or `c` itself when there is none.
fn push_transliterated(c: char, output: &mut String) {
    if is_gsm7(c) {
        output.push(c);
    } else if let Some(replacement) = replacement(c) {
        output.push_str(replacement);
    } else if let Some(base) = base_letter(c) {
        output.push(base);
    } else {
        output.push(c);
    }
}

/// Returns the GSM-7 replacement of a punctuation mark, space, invisible format character
/// or Latin letter that has no canonical decomposition.
fn replacement(c: char) -> Option<&'static str> {
    let replacement = match c {
        // U+2018 to U+201B, U+2032, U+2039, U+203A, grave accent, acute accent
        '‘' | '’' | '‚' | '‛' | '′' | '‹' | '›' | '`' | '´' => "'",
        // U+201C to U+201F, U+2033, U+00AB, U+00BB
        '“' | '”' | '„' | '‟' | '″' | '«' | '»' => "\"",
        // U+2010 to U+2015, U+2212
        '‐' | '‑' | '‒' | '–' | '—' | '―' | '−' => "-",
        '…' => "...",
        '•' => "*",
        '\t'
        | '\u{A0}'
        | '\u{1680}'
        | '\u{2000}'..='\u{200A}'
        | '\u{202F}'
        | '\u{205F}'
        | '\u{3000}' => " ",
        // Line separator and paragraph separator.
        '\u{2028}' | '\u{2029}' => "\n",
        // Soft hyphen, zero-width space, word joiner, zero-width no-break space.
        '\u{AD}' | '\u{200B}' | '\u{2060}' | '\u{FEFF}' => "",
        'ç' => "Ç",
        'Ð' | 'Đ' => "D",
        'ð' | 'đ' => "d",
        'Ħ' => "H",
        'ħ' => "h",
        'ı' => "i",
        'Ĳ' => "IJ",
        'ĳ' => "ij",
        'Ł' | 'Ŀ' => "L",
        'ł' | 'ŀ' => "l",
        'Œ' => "OE",
        'œ' => "oe",
        'Þ' => "TH",
        'þ' => "th",
        'Ŧ' => "T",
        'ŧ' => "t",
        _ => return None,
    };
    Some(replacement)
}

fn plural<'a>(count: usize, singular: &'a str, plural: &'a str) -> &'a str {
    if count == 1 { singular } else { plural }
}
