use super::*;

fn local(utc: &str, zone: &str) -> String {
    let zone = resolve(zone).unwrap();
    format_local(parse_timestamp(utc).unwrap(), &zone.tz, "%Y-%m-%d %H:%M %Z").unwrap()
}

#[test]
fn windows_ids_map_case_insensitively() {
    assert_eq!(
        windows_to_iana("Pacific Standard Time"),
        Some("America/Los_Angeles")
    );
    assert_eq!(
        windows_to_iana(" pacific standard time "),
        Some("America/Los_Angeles")
    );
    assert_eq!(windows_to_iana("Pacific Time"), None);
}

#[test]
fn every_windows_id_resolves_in_tzdb() {
    for (windows, iana) in WINDOWS_ZONES {
        let zone = resolve(windows).unwrap_or_else(|error| panic!("{windows}: {error}"));
        assert_eq!(zone.iana, *iana, "{windows}");
    }
    assert_eq!(WINDOWS_ZONES.len(), 139);
}

#[test]
fn pacific_daylight_and_standard() {
    assert_eq!(
        local("2019-06-26T18:45:00", "Pacific Standard Time"),
        "2019-06-26 11:45 PDT"
    );
    assert_eq!(
        local("2019-12-26T18:45:00", "Pacific Standard Time"),
        "2019-12-26 10:45 PST"
    );
}

#[test]
fn arizona_has_no_dst() {
    assert_eq!(
        local("2019-06-26T18:45:00", "US Mountain Standard Time"),
        "2019-06-26 11:45 MST"
    );
    assert_eq!(
        local("2019-12-26T18:45:00", "US Mountain Standard Time"),
        "2019-12-26 11:45 MST"
    );
}

#[test]
fn timestamp_shapes() {
    let expected = parse_timestamp("2019-06-14T05:52:01").unwrap();
    assert_eq!(parse_timestamp("2019-06-14T05:52:01Z").unwrap(), expected);
    assert_eq!(
        parse_timestamp("2019-06-14T07:52:01+02:00").unwrap(),
        expected
    );
    assert_eq!(
        parse_timestamp("2019-06-14T05:52:01.250")
            .unwrap()
            .subsec_millisecond(),
        250
    );
    assert_eq!(format_utc(expected), "2019-06-14T05:52:01Z");
}

#[test]
fn timestamp_rejects_other_shapes() {
    for text in [
        "",
        "yesterday",
        "2019-06-14",
        "2019-06-14 05:52:01",
        "2019-06-14T05:52",
        "2019-02-30T05:52:01",
        "2019-06-14T25:00:00",
        "2019-06-14T05:52:01+0200",
        "2019-06-14T05:52:01.",
    ] {
        assert!(parse_timestamp(text).is_err(), "{text:?} was accepted");
    }
}

#[test]
fn unknown_zone_names_the_value() {
    let error = resolve("Mars Standard Time").unwrap_err();
    assert!(error.contains("\"Mars Standard Time\""), "{error}");
    assert_eq!(resolve("  ").unwrap_err(), "the time zone is empty");
}
