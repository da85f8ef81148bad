use std::path::Path;

use minijinja::context;

use super::*;
use crate::timezone;

fn settings() -> FilterSettings {
    FilterSettings {
        phone_region: "US".parse().unwrap(),
        default_zone: timezone::resolve("America/New_York").unwrap(),
    }
}

fn inline(source: &str) -> Templates {
    let mut templates = Templates::empty(&settings());
    templates.add_inline("test.txt", source).unwrap();
    templates
}

fn render(source: &str, context: minijinja::Value) -> Result<String, RenderError> {
    inline(source).render("test.txt", &context)
}

#[test]
fn local_time_uses_the_abbreviation_for_the_instant() {
    let out = render(
        "{{ t | local_time('Pacific Standard Time') }}",
        context! { t => "2019-06-26T18:45:00" },
    );
    assert_eq!(out.unwrap(), "Wednesday, June 26, 2019 at 11:45 AM PDT");
    let out = render(
        "{{ t | local_time('America/Los_Angeles', '%H:%M %Z') }}",
        context! { t => "2019-12-26T18:45:00Z" },
    );
    assert_eq!(out.unwrap(), "10:45 PST");
}

#[test]
fn local_time_without_zone_uses_the_default_zone() {
    let out = render(
        "{{ t | local_time(none, '%H:%M %Z') }}",
        context! { t => "2019-06-26T18:45:00" },
    );
    assert_eq!(out.unwrap(), "14:45 EDT");
}

#[test]
fn e164_filter() {
    assert_eq!(
        render("{{ n | e164 }}", context! { n => "(415) 555-2671" }).unwrap(),
        "+14155552671"
    );
    assert_eq!(
        render("{{ n | e164('GB') }}", context! { n => "07911 123456" }).unwrap(),
        "+447911123456"
    );
    let error = render("{{ n | e164 }}", context! { n => "12" }).unwrap_err();
    assert!(
        error.message.contains("is not a valid phone number"),
        "{error}"
    );
}

#[test]
fn add_duration_filter() {
    let out = render(
        "{{ t | add_duration('-10m') }}",
        context! { t => "2019-06-26T18:45:00" },
    );
    assert_eq!(out.unwrap(), "2019-06-26T18:35:00Z");
    let out = render(
        "{{ t | add_duration('1h30m') }}",
        context! { t => "2019-06-26T18:45:00Z" },
    );
    assert_eq!(out.unwrap(), "2019-06-26T20:15:00Z");
}

#[test]
fn undefined_value_is_an_error() {
    let error = render("Hello {{ missing }}", context! {}).unwrap_err();
    assert_eq!(error.template, "test.txt");
    assert_eq!(error.line, Some(1));
    assert!(error.message.starts_with("undefined value"), "{error}");
}

#[test]
fn none_value_is_an_error_in_text() {
    let error = render("Hello {{ name }}", context! { name => () }).unwrap_err();
    assert!(error.message.contains("a value is none"), "{error}");
}

#[test]
fn optional_values_can_be_tested() {
    let source = "{% if name %}Hello {{ name }}{% else %}Hello{% endif %}";
    assert_eq!(render(source, context! { name => () }).unwrap(), "Hello");
    assert_eq!(
        render("{{ name or 'there' }}", context! { name => () }).unwrap(),
        "there"
    );
    assert_eq!(
        render(
            "{% if x is defined %}x{% else %}no x{% endif %}",
            context! {}
        )
        .unwrap(),
        "no x"
    );
}

#[test]
fn html_is_escaped_and_text_is_not() {
    let mut templates = Templates::empty(&settings());
    templates.add_inline("a.html", "{{ name }}").unwrap();
    templates.add_inline("a.txt", "{{ name }}").unwrap();
    let context = context! { name => "<b>Zoë & co</b>" };
    assert_eq!(
        templates.render("a.html", &context).unwrap(),
        "&lt;b&gt;Zoë &amp; co&lt;/b&gt;"
    );
    assert_eq!(
        templates.render("a.txt", &context).unwrap(),
        "<b>Zoë & co</b>"
    );
}

#[test]
fn json_templates_quote_values_and_write_none_as_null() {
    let mut templates = Templates::empty(&settings());
    templates
        .add_inline("a.json", "{\"name\": {{ name }}, \"sms\": {{ sms }}}")
        .unwrap();
    let out = templates
        .render("a.json", &context! { name => "Perry \"P\"", sms => () })
        .unwrap();
    assert_eq!(out, r#"{"name": "Perry \"P\"", "sms": null}"#);
}

#[test]
fn runaway_loops_run_out_of_fuel() {
    let error = render(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
        context! {},
    )
    .unwrap_err();
    assert!(error.message.contains("fuel"), "{error}");
}

#[test]
fn loading_reports_unknown_files_and_syntax_errors() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("invite/es")).unwrap();
    std::fs::write(root.join("invite/email.subject.txt"), "Hi").unwrap();
    std::fs::write(root.join("invite/email.txt"), "Hello {{ name }").unwrap();
    std::fs::write(root.join("invite/email.htm"), "x").unwrap();
    std::fs::write(root.join("invite/es/email.subject.txt"), "Hola").unwrap();
    std::fs::write(root.join("stray.txt"), "x").unwrap();
    let mut errors = Vec::new();
    let templates = Templates::load(root, &settings(), &mut errors);
    let messages: Vec<String> = errors
        .iter()
        .map(|e| e.to_string().replace(&root.display().to_string(), "T"))
        .collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    assert!(
        messages[0].starts_with("T/invite/email.htm: unknown template file \"email.htm\""),
        "{}",
        messages[0]
    );
    assert!(
        messages[1].starts_with("T/invite/email.txt:1: syntax error: unexpected `}`"),
        "{}",
        messages[1]
    );
    assert!(
        messages[2].starts_with("T/stray.txt: a template file must sit in a template set folder"),
        "{}",
        messages[2]
    );
    let set = templates.set("invite").unwrap();
    assert!(set.has("", Part::EmailSubject));
    assert!(
        set.has("", Part::EmailText),
        "a part with a syntax error still exists"
    );
    assert!(set.has("es", Part::EmailSubject));
    assert!(Path::new(root).exists());
}

#[test]
fn variant_choice_falls_back() {
    let mut set = TemplateSet {
        name: "invite".into(),
        variants: Default::default(),
    };
    set.variants
        .insert("".into(), [Part::EmailSubject, Part::Sms].into());
    set.variants
        .insert("es".into(), [Part::EmailSubject].into());
    set.variants
        .insert("pt-BR".into(), [Part::EmailSubject, Part::Sms].into());
    assert_eq!(set.choose_variant(Some("es"), Part::EmailSubject), "es");
    assert_eq!(set.choose_variant(Some("es-MX"), Part::EmailSubject), "es");
    assert_eq!(set.choose_variant(Some("es"), Part::Sms), "");
    assert_eq!(set.choose_variant(Some("pt_br"), Part::Sms), "pt-BR");
    assert_eq!(set.choose_variant(Some("fr"), Part::EmailSubject), "");
    assert_eq!(set.choose_variant(None, Part::EmailSubject), "");
}
