use proptest::prelude::*;

use super::*;

fn gsm7(units: usize, characters: usize, segments: usize) -> SmsInfo {
    SmsInfo {
        encoding: Encoding::Gsm7,
        units,
        characters,
        segments,
    }
}

fn ucs2(units: usize, characters: usize, segments: usize) -> SmsInfo {
    SmsInfo {
        encoding: Encoding::Ucs2,
        units,
        characters,
        segments,
    }
}

#[test]
fn analyze_cases() {
    let cases: Vec<(&str, String, SmsInfo)> = vec![
        ("empty text", String::new(), gsm7(0, 0, 1)),
        ("160 GSM-7 characters", "a".repeat(160), gsm7(160, 160, 1)),
        ("161 GSM-7 characters", "a".repeat(161), gsm7(161, 161, 2)),
        ("2 full GSM-7 parts", "a".repeat(153 * 2), gsm7(306, 306, 2)),
        (
            "2 GSM-7 parts plus 1",
            "a".repeat(153 * 2 + 1),
            gsm7(307, 307, 3),
        ),
        (
            "extension character at part boundary",
            format!("{}€{}", "a".repeat(152), "b".repeat(152)),
            gsm7(306, 305, 3),
        ),
        ("euro sign", "€".to_owned(), gsm7(2, 1, 1)),
        ("brackets and braces", "{}[]".to_owned(), gsm7(8, 4, 1)),
        ("80 braces", "{".repeat(80), gsm7(160, 80, 1)),
        ("81 braces", "{".repeat(81), gsm7(162, 81, 2)),
        (
            "euro sign after 159",
            format!("{}€", "a".repeat(159)),
            gsm7(161, 160, 2),
        ),
        ("form feed", "\u{C}".to_owned(), gsm7(2, 1, 1)),
        ("e acute", "é".to_owned(), gsm7(1, 1, 1)),
        ("a acute", "á".to_owned(), ucs2(1, 1, 1)),
        ("small c cedilla", "ç".to_owned(), ucs2(1, 1, 1)),
        ("capital C cedilla", "Ç".to_owned(), gsm7(1, 1, 1)),
        ("Greek letters", "ΔΦΓΛΩΠΨΣΘΞ".to_owned(), gsm7(10, 10, 1)),
        ("currency and marks", "@$£¥¤§¡¿".to_owned(), gsm7(8, 8, 1)),
        ("CR LF", "a\r\nb".to_owned(), gsm7(4, 4, 1)),
        ("grave accent", "`".to_owned(), ucs2(1, 1, 1)),
        ("escape character", "\u{1B}".to_owned(), ucs2(1, 1, 1)),
        ("70 UCS-2 characters", "Ж".repeat(70), ucs2(70, 70, 1)),
        ("71 UCS-2 characters", "Ж".repeat(71), ucs2(71, 71, 2)),
        ("2 full UCS-2 parts", "Ж".repeat(67 * 2), ucs2(134, 134, 2)),
        (
            "2 UCS-2 parts plus 1",
            "Ж".repeat(67 * 2 + 1),
            ucs2(135, 135, 3),
        ),
        (
            "emoji at part boundary",
            format!("{}😀{}", "Ж".repeat(66), "Ж".repeat(66)),
            ucs2(134, 133, 3),
        ),
        (
            "emoji fills single segment",
            format!("{}😀", "Ж".repeat(68)),
            ucs2(70, 69, 1),
        ),
        ("single emoji", "😀".to_owned(), ucs2(2, 1, 1)),
        ("emoji in GSM-7 text", "Hello 😀".to_owned(), ucs2(8, 7, 1)),
        ("euro sign in UCS-2 text", "€Ж".to_owned(), ucs2(2, 2, 1)),
        (
            "Chinese text",
            "您的验证码是123456，五分钟内有效。".to_owned(),
            ucs2(20, 20, 1),
        ),
    ];

    for (name, text, expected) in cases {
        assert_eq!(analyze(&text), expected, "{name}");
    }
}

#[test]
fn gsm7_tables_have_spec_sizes() {
    let basic_codes: usize = GSM7_BASIC_ROWS.iter().map(|row| row.chars().count()).sum();
    assert_eq!(basic_codes, 128);

    let bmp = (0..=0xFFFF).filter_map(char::from_u32);
    let basic = bmp.clone().filter(|&c| gsm7_septets(c) == Some(1)).count();
    let extension = bmp.filter(|&c| gsm7_septets(c) == Some(2)).count();
    assert_eq!(basic, 127);
    assert_eq!(extension, 10);
}

#[test]
fn gsm7_codes_match_spec() {
    let code_of = |c: char| {
        GSM7_BASIC_ROWS
            .iter()
            .flat_map(|row| row.chars())
            .position(|basic| basic == c)
    };
    assert_eq!(code_of('@'), Some(0x00));
    assert_eq!(code_of('$'), Some(0x02));
    assert_eq!(code_of('Ç'), Some(0x09));
    assert_eq!(code_of('\n'), Some(0x0A));
    assert_eq!(code_of('Δ'), Some(0x10));
    assert_eq!(code_of('É'), Some(0x1F));
    assert_eq!(code_of('¤'), Some(0x24));
    assert_eq!(code_of('¡'), Some(0x40));
    assert_eq!(code_of('§'), Some(0x5F));
    assert_eq!(code_of('¿'), Some(0x60));
    assert_eq!(code_of('à'), Some(0x7F));
}

#[test]
fn diacritic_table_is_consistent() {
    for (mark, precomposed, bases) in DIACRITICS {
        assert_eq!(
            precomposed.chars().count(),
            bases.chars().count(),
            "{mark:?}"
        );
        for (letter, base) in precomposed.chars().zip(bases.chars()) {
            assert!(base.is_ascii_alphabetic(), "{letter}");
            assert_eq!(compose(base, mark), Some(letter), "{letter}");
            assert_eq!(base_letter(letter), Some(base), "{letter}");
        }
    }
}

#[test]
fn transliterated_letters_are_gsm7() {
    let letters = DIACRITICS
        .iter()
        .flat_map(|(_, precomposed, _)| precomposed.chars());
    for letter in letters {
        let output = transliterate(&letter.to_string());
        assert_eq!(
            analyze(&output).encoding,
            Encoding::Gsm7,
            "{letter} -> {output}"
        );
    }
}

#[test]
fn replacements_are_gsm7() {
    let replaced = (0..=0xFFFF)
        .filter_map(char::from_u32)
        .filter_map(replacement);
    for output in replaced {
        assert!(output.chars().all(is_gsm7), "{output:?}");
    }
}

#[test]
fn transliterate_cases() {
    let cases = [
        ("single quotes", "‘a’ ‚b‛ 5′ ‹c›", "'a' 'b' 5' 'c'"),
        ("double quotes", "“a” „b‟ 5″ «c»", "\"a\" \"b\" 5\" \"c\""),
        ("dashes and minus", "a‐b‑c‒d–e—f―g−h", "a-b-c-d-e-f-g-h"),
        ("ellipsis", "Wait…", "Wait..."),
        ("bullet", "• item", "* item"),
        (
            "Unicode spaces",
            "a\u{A0}b\u{2009}c\u{202F}d\u{3000}e\tf",
            "a b c d e f",
        ),
        ("line separator", "a\u{2028}b", "a\nb"),
        ("invisible characters", "a\u{200B}b\u{AD}c\u{FEFF}d", "abcd"),
        ("acute vowels", "áíóúý", "aiouy"),
        ("e acute stays", "é", "é"),
        ("circumflex vowels", "âêîôû", "aeiou"),
        ("tilde vowels", "ãõ", "ao"),
        ("diaeresis outside GSM-7", "ëïÿ", "eiy"),
        ("diaeresis in GSM-7", "äöüÄÖÜ", "äöüÄÖÜ"),
        ("GSM-7 accents stay", "àèìòùñÑÅåØøÆæß", "àèìòùñÑÅåØøÆæß"),
        (
            "capital accents",
            "ÀÁÂÃÈÉÊËÌÍÎÏÒÓÔÕÙÚÛ",
            "AAAAEÉEEIIIIOOOOUUU",
        ),
        ("c cedilla", "ça", "Ça"),
        ("Polish", "Łódź", "Lodz"),
        ("Romanian", "Ștefan țară", "Stefan tara"),
        ("ligatures", "Œuvre œil", "OEuvre oeil"),
        ("combining acute on e", "e\u{301}", "é"),
        ("combining acute on a", "a\u{301}", "a"),
        ("combining cedilla", "c\u{327}", "Ç"),
        ("two combining marks", "e\u{301}\u{301}", "é"),
        ("uncomposable mark", "n\u{323}", "n"),
        ("mark on Cyrillic", "и\u{306}", "и\u{306}"),
        ("leading mark", "\u{301}a", "\u{301}a"),
        ("Chinese", "您好", "您好"),
        ("emoji", "OK 👍", "OK 👍"),
        ("GSM-7 text", "{Hi} [x] €5 ~|^\\", "{Hi} [x] €5 ~|^\\"),
    ];

    for (name, text, expected) in cases {
        assert_eq!(transliterate(text), expected, "{name}");
    }
}

#[test]
fn truncate_cases() {
    let cases: Vec<(&str, String, usize, String)> = vec![
        (
            "fitting text unchanged",
            "Hello".to_owned(),
            1,
            "Hello".to_owned(),
        ),
        (
            "400 GSM-7 characters",
            "a".repeat(400),
            1,
            format!("{}...", "a".repeat(157)),
        ),
        (
            "trailing space trimmed",
            format!("{} {}", "x".repeat(156), "y".repeat(300)),
            1,
            format!("{}...", "x".repeat(156)),
        ),
        (
            "euro sign at cut",
            format!("{}€{}", "a".repeat(156), "a".repeat(100)),
            1,
            format!("{}...", "a".repeat(156)),
        ),
        (
            "2 GSM-7 segments",
            "a".repeat(1000),
            2,
            format!("{}...", "a".repeat(303)),
        ),
        (
            "euro sign at part boundary",
            format!("{}€{}", "a".repeat(152), "a".repeat(500)),
            2,
            format!("{}€{}...", "a".repeat(152), "a".repeat(148)),
        ),
        (
            "UCS-2 text",
            "Ж".repeat(100),
            1,
            format!("{}…", "Ж".repeat(69)),
        ),
        (
            "emoji at cut",
            format!("{}😀{}", "Ж".repeat(68), "Ж".repeat(10)),
            1,
            format!("{}…", "Ж".repeat(68)),
        ),
        (
            "combining mark at cut",
            format!("{}e\u{301}{}", "Ж".repeat(68), "Ж".repeat(10)),
            1,
            format!("{}…", "Ж".repeat(68)),
        ),
        (
            "flag at cut",
            format!("{}🇩🇪{}", "Ж".repeat(67), "Ж".repeat(10)),
            1,
            format!("{}…", "Ж".repeat(67)),
        ),
        (
            "skin tone at cut",
            format!("{}👍🏽{}", "Ж".repeat(67), "Ж".repeat(10)),
            1,
            format!("{}…", "Ж".repeat(67)),
        ),
        (
            "UCS-2 character after cut",
            format!("{}😀", "a".repeat(200)),
            1,
            format!("{}...", "a".repeat(157)),
        ),
        (
            "UCS-2 character before cut",
            format!("😀 {}", "a".repeat(200)),
            1,
            format!("😀 {}…", "a".repeat(66)),
        ),
    ];

    for (name, text, max_segments, expected) in cases {
        assert_eq!(truncate(&text, max_segments), expected, "{name}");
    }
}

#[test]
fn truncate_gsm7_fills_segment() {
    let output = truncate(&"a".repeat(400), 1);
    assert_eq!(analyze(&output), gsm7(160, 160, 1));
}

#[test]
fn truncate_ucs2_fills_segment() {
    let output = truncate(&"Ж".repeat(100), 1);
    assert_eq!(analyze(&output), ucs2(70, 70, 1));
}

#[test]
fn enforce_limit_fits_unchanged() {
    for policy in [
        LimitPolicy::Reject,
        LimitPolicy::Transliterate,
        LimitPolicy::Truncate,
    ] {
        let outcome = enforce_limit("Your code is 1234", 1, policy);
        assert_eq!(outcome, Ok(LimitOutcome::Fits(gsm7(17, 17, 1))), "{policy}");
    }
}

#[test]
fn enforce_limit_rejects_gsm7() {
    let error = enforce_limit(&"a".repeat(400), 1, LimitPolicy::Reject).unwrap_err();
    assert_eq!(
        error,
        LimitExceeded {
            info: gsm7(400, 400, 3),
            limit: 1,
            policy: LimitPolicy::Reject,
        }
    );
    assert_eq!(
        error.to_string(),
        "SMS text needs 3 GSM-7 segments (400 septets) but the limit is 1 segment, \
         so shorten the template or set the limit policy to \"truncate\""
    );
}

#[test]
fn enforce_limit_rejects_ucs2() {
    let error = enforce_limit(&"Ж".repeat(100), 1, LimitPolicy::Reject).unwrap_err();
    assert_eq!(
        error.to_string(),
        "SMS text needs 2 UCS-2 segments (100 UTF-16 code units) but the limit is 1 segment, \
         so shorten the template or set the limit policy to \"transliterate\" or \"truncate\""
    );
}

#[test]
fn enforce_limit_transliterates_quotes() {
    let text = "Hi Anna, your order “Blue Lamp” has shipped – it’s on its way \
                and should arrive within 3–5 business days… Track it in the app.";
    assert_eq!(analyze(text), ucs2(126, 126, 2));

    let outcome = enforce_limit(text, 1, LimitPolicy::Transliterate);
    let expected = LimitOutcome::Transliterated {
        text: "Hi Anna, your order \"Blue Lamp\" has shipped - it's on its way \
               and should arrive within 3-5 business days... Track it in the app."
            .to_owned(),
        info: gsm7(128, 128, 1),
    };
    assert_eq!(outcome, Ok(expected));
}

#[test]
fn enforce_limit_transliterates_spanish() {
    let text = "Hola María, tu cita en la clínica está confirmada para el miércoles a las \
                10:30. ¿Podrías llegar 15 minutos antes? Recibirás un recordatorio por teléfono.";
    assert_eq!(analyze(text), ucs2(154, 154, 3));

    let outcome = enforce_limit(text, 1, LimitPolicy::Transliterate);
    let expected = LimitOutcome::Transliterated {
        text: "Hola Maria, tu cita en la clinica esta confirmada para el miércoles a las \
               10:30. ¿Podrias llegar 15 minutos antes? Recibiras un recordatorio por teléfono."
            .to_owned(),
        info: gsm7(154, 154, 1),
    };
    assert_eq!(outcome, Ok(expected));
}

#[test]
fn enforce_limit_transliteration_still_too_long() {
    let text = "您的验证码是123456，五分钟内有效。".repeat(4);
    let error = enforce_limit(&text, 1, LimitPolicy::Transliterate).unwrap_err();
    assert_eq!(
        error,
        LimitExceeded {
            info: ucs2(80, 80, 2),
            limit: 1,
            policy: LimitPolicy::Transliterate,
        }
    );
    assert_eq!(
        error.to_string(),
        "SMS text needs 2 UCS-2 segments (80 UTF-16 code units) after transliteration \
         but the limit is 1 segment, so shorten the template or set the limit policy to \"truncate\""
    );
}

#[test]
fn enforce_limit_truncates() {
    let outcome = enforce_limit(&"a".repeat(400), 1, LimitPolicy::Truncate);
    let expected = LimitOutcome::Truncated {
        text: format!("{}...", "a".repeat(157)),
        info: gsm7(160, 160, 1),
    };
    assert_eq!(outcome, Ok(expected));
}

#[test]
fn limit_outcome_info() {
    let outcome = enforce_limit(&"Ж".repeat(100), 2, LimitPolicy::Reject).unwrap();
    assert_eq!(outcome.info(), ucs2(100, 100, 2));
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "max_segments must be at least 1")]
fn enforce_limit_zero_segments_panics() {
    let _ = enforce_limit("Hello", 0, LimitPolicy::Truncate);
}

#[test]
fn limit_policy_parses_names() {
    assert_eq!("reject".parse(), Ok(LimitPolicy::Reject));
    assert_eq!("transliterate".parse(), Ok(LimitPolicy::Transliterate));
    assert_eq!("truncate".parse(), Ok(LimitPolicy::Truncate));
}

#[test]
fn limit_policy_display() {
    assert_eq!(LimitPolicy::Reject.to_string(), "reject");
    assert_eq!(LimitPolicy::Transliterate.to_string(), "transliterate");
    assert_eq!(LimitPolicy::Truncate.to_string(), "truncate");
}

#[test]
fn limit_policy_rejects_unknown_name() {
    let error = "Reject".parse::<LimitPolicy>().unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid SMS limit policy \"Reject\", expected \"reject\", \"transliterate\" or \"truncate\""
    );
}

#[test]
fn encoding_display() {
    assert_eq!(Encoding::Gsm7.to_string(), "GSM-7");
    assert_eq!(Encoding::Ucs2.to_string(), "UCS-2");
}

/// Strategy for texts made of characters that the encoding rules treat specially:
/// extension characters, accents inside and outside GSM-7, surrogate pairs, combining
/// marks, regional indicators, spaces and punctuation that `transliterate` replaces.
fn sms_text() -> impl Strategy<Value = String> {
    let pool = vec![
        'a', 'Z', ' ', '\n', '€', '{', '^', 'é', 'á', 'ç', 'Ç', 'Ж', '您', '😀', '🏽', '\u{301}',
        '\u{327}', '\u{200D}', '🇩', '🇪', '…', '“', '’', '–', '\u{A0}', '\u{200B}', 'Ł', 'Œ',
    ];
    prop::collection::vec(prop::sample::select(pool), 0..700)
        .prop_map(|chars| chars.into_iter().collect())
}

fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), sms_text()]
}

proptest! {
    #[test]
    fn analyze_counts_segments(text in any_text()) {
        let info = analyze(&text);
        let limits = match info.encoding {
            Encoding::Gsm7 => GSM7_LIMITS,
            Encoding::Ucs2 => UCS2_LIMITS,
        };
        prop_assert!(info.segments >= 1);
        prop_assert_eq!(info.characters, text.chars().count());
        if info.segments == 1 {
            prop_assert!(info.units <= limits.single);
        } else {
            prop_assert!(info.units > limits.single);
            prop_assert!(info.segments * limits.part >= info.units);
        }
        if info.encoding == Encoding::Ucs2 {
            prop_assert_eq!(info.units, text.encode_utf16().count());
        }
    }

    #[test]
    fn analyze_divides_single_unit_text(length in 0usize..1000) {
        let info = analyze(&"a".repeat(length));
        let expected = if length <= 160 { 1 } else { length.div_ceil(153) };
        prop_assert_eq!(info.segments, expected);
    }

    #[test]
    fn truncate_fits(text in any_text(), max_segments in 1usize..=5) {
        let output = truncate(&text, max_segments);
        prop_assert!(analyze(&output).segments <= max_segments);
    }

    #[test]
    fn truncate_keeps_prefix(text in any_text(), max_segments in 1usize..=5) {
        let output = truncate(&text, max_segments);
        if output != text {
            let prefix = output
                .strip_suffix(GSM7_ELLIPSIS)
                .or_else(|| output.strip_suffix(UCS2_ELLIPSIS));
            prop_assert!(prefix.is_some_and(|prefix| text.starts_with(prefix)), "{:?}", output);
        }
    }

    #[test]
    fn transliterate_is_idempotent(text in any_text()) {
        let once = transliterate(&text);
        prop_assert_eq!(transliterate(&once), once);
    }

    #[test]
    fn transliterate_keeps_gsm7_text(text in any_text()) {
        if analyze(&text).encoding == Encoding::Gsm7 {
            prop_assert_eq!(transliterate(&text), text);
        }
    }

    #[test]
    fn enforce_limit_truncate_fits(text in any_text(), max_segments in 1usize..=5) {
        let outcome = enforce_limit(&text, max_segments, LimitPolicy::Truncate);
        prop_assert!(outcome.is_ok());
        let info = outcome.unwrap().info();
        prop_assert!(info.segments <= max_segments);
    }
}
