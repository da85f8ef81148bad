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

/// (UTC instant, zone as the payload gives it, expected local rendering).
const LOCAL_TIME_CASES: &[(&str, &str, &str)] = &[
    // US Pacific: daylight in June, standard in December.
    (
        "2019-06-26T18:45:00",
        "Pacific Standard Time",
        "2019-06-26 11:45 PDT -07:00",
    ),
    (
        "2019-12-26T18:45:00",
        "Pacific Standard Time",
        "2019-12-26 10:45 PST -08:00",
    ),
    // Arizona keeps MST all year; Mountain time does not.
    (
        "2019-06-26T18:45:00",
        "US Mountain Standard Time",
        "2019-06-26 11:45 MST -07:00",
    ),
    (
        "2019-12-26T18:45:00",
        "US Mountain Standard Time",
        "2019-12-26 11:45 MST -07:00",
    ),
    (
        "2019-06-26T18:45:00",
        "Mountain Standard Time",
        "2019-06-26 12:45 MDT -06:00",
    ),
    // US Eastern, the last instant before and the first after spring forward (2026-03-08).
    (
        "2026-03-08T06:59:59",
        "Eastern Standard Time",
        "2026-03-08 01:59 EST -05:00",
    ),
    (
        "2026-03-08T07:00:00",
        "Eastern Standard Time",
        "2026-03-08 03:00 EDT -04:00",
    ),
    // The repeated hour at fall back (2026-11-01): 01:30 happens twice.
    (
        "2026-11-01T05:30:00",
        "Eastern Standard Time",
        "2026-11-01 01:30 EDT -04:00",
    ),
    (
        "2026-11-01T06:30:00",
        "Eastern Standard Time",
        "2026-11-01 01:30 EST -05:00",
    ),
    // Los Angeles on its own transition days.
    (
        "2026-03-08T10:00:00",
        "Pacific Standard Time",
        "2026-03-08 03:00 PDT -07:00",
    ),
    (
        "2026-11-01T09:30:00",
        "Pacific Standard Time",
        "2026-11-01 01:30 PST -08:00",
    ),
    // Half-hour and 45-minute offsets.
    (
        "2019-06-26T18:45:00",
        "India Standard Time",
        "2019-06-27 00:15 IST +05:30",
    ),
    (
        "2019-06-26T18:45:00",
        "Nepal Standard Time",
        "2019-06-27 00:30 +0545 +05:45",
    ),
    (
        "2019-06-26T18:45:00",
        "Newfoundland Standard Time",
        "2019-06-26 16:15 NDT -02:30",
    ),
    (
        "2019-06-26T18:45:00",
        "Cen. Australia Standard Time",
        "2019-06-27 04:15 ACST +09:30",
    ),
    // Southern hemisphere: Sydney is on daylight time in January, standard in July.
    (
        "2020-01-15T00:00:00",
        "AUS Eastern Standard Time",
        "2020-01-15 11:00 AEDT +11:00",
    ),
    (
        "2020-07-15T00:00:00",
        "AUS Eastern Standard Time",
        "2020-07-15 10:00 AEST +10:00",
    ),
    // Chatham Islands: +13:45 in daylight time, +12:45 in standard time.
    (
        "2020-01-15T00:00:00",
        "Chatham Islands Standard Time",
        "2020-01-15 13:45 +1345 +13:45",
    ),
    (
        "2020-07-15T00:00:00",
        "Chatham Islands Standard Time",
        "2020-07-15 12:45 +1245 +12:45",
    ),
    // Sao Paulo dropped daylight time in 2019: -02 in January 2019, -03 in January 2020.
    (
        "2019-01-15T12:00:00",
        "E. South America Standard Time",
        "2019-01-15 10:00 -02 -02:00",
    ),
    (
        "2020-01-15T12:00:00",
        "E. South America Standard Time",
        "2020-01-15 09:00 -03 -03:00",
    ),
    // UTC and the inverted Etc/GMT signs of the Windows UTC±N zones.
    ("2019-06-26T18:45:00", "UTC", "2019-06-26 18:45 UTC +00:00"),
    (
        "2019-06-26T18:45:00",
        "UTC-11",
        "2019-06-26 07:45 -11 -11:00",
    ),
    (
        "2019-06-26T18:45:00",
        "UTC+12",
        "2019-06-27 06:45 +12 +12:00",
    ),
    // Europe across its own transition (2026-03-29, 01:00 UTC).
    (
        "2026-03-29T00:59:00",
        "W. Europe Standard Time",
        "2026-03-29 01:59 CET +01:00",
    ),
    (
        "2026-03-29T01:00:00",
        "W. Europe Standard Time",
        "2026-03-29 03:00 CEST +02:00",
    ),
    (
        "2019-06-26T18:45:00",
        "GMT Standard Time",
        "2019-06-26 19:45 BST +01:00",
    ),
    // IANA names are accepted as well.
    (
        "2019-06-26T18:45:00",
        "America/Phoenix",
        "2019-06-26 11:45 MST -07:00",
    ),
    // A timestamp with a Z and a fraction.
    (
        "2019-06-26T18:45:00.500Z",
        "Tokyo Standard Time",
        "2019-06-27 03:45 JST +09:00",
    ),
];

#[test]
fn local_time_table() {
    for (utc, zone, expected) in LOCAL_TIME_CASES {
        let resolved = resolve(zone).unwrap_or_else(|error| panic!("{zone}: {error}"));
        let instant = parse_timestamp(utc).unwrap();
        let rendered = format_local(instant, &resolved.tz, "%Y-%m-%d %H:%M %Z %:z").unwrap();
        assert_eq!(&rendered, expected, "{utc} in {zone}");
    }
    assert!(LOCAL_TIME_CASES.len() >= 25);
}

proptest::proptest! {
    #[test]
    fn timestamp_parse_never_panics_and_round_trips(text in "\\PC{0,30}|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,9})?Z?") {
        if let Ok(instant) = parse_timestamp(&text) {
            proptest::prop_assert_eq!(parse_timestamp(&format_utc(instant)), Ok(instant));
        }
    }

    #[test]
    fn resolve_never_panics(name in "\\PC{0,40}") {
        let _ = resolve(&name);
    }
}
