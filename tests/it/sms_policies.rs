//! SMS encoding, segment counts and the segment-limit policies (`reject`, `transliterate`,
//! `truncate`), mostly through `herald explain` on the repository's Invite example with
//! another host name, plus the real binary sending to the SMS recorder and `herald check`
//! on the schema examples.
//!
//! The invite SMS reads "Your Clinic: video visit with {host} on Jun 26 at 11:45 AM PDT. Join
//! at https://portal.clinic.example": 30 characters before the host name and 65 after it, so
//! the text has 95 characters plus the host name. The expected counts were worked out by hand
//! from 3GPP TS 23.038 (GSM-7: 160 septets in one SMS, 153 per part, and `^{}\[~]|€` take
//! 2 septets; UCS-2: 70 UTF-16 code units, 67 per part) and checked with a separate script.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::gateway::Gateway;
use crate::support::herald::{ConfigDir, repo_root, run_cli};
use crate::support::payloads::PublicUser;

/// Upper bound for a message to arrive after herald accepted its webhook.
const WAIT: Duration = Duration::from_secs(10);

/// Time to watch for an SMS that must not come. The dispatcher checks the outbox at least
/// once a second, so a stray delivery would show up within this time.
const SETTLE: Duration = Duration::from_millis(1500);

/// The evaluation time for the Invite example, eight minutes after its EventTs.
const EXPLAIN_AT: &str = "2019-06-14T06:00:00Z";

const NO_LIMIT: Option<&str> = None;

/// What `herald explain` printed about the SMS of the invite rule.
#[derive(Debug, Default)]
struct ExplainedSms {
    /// The `Encoding:` line without its indentation, when an SMS is planned.
    encoding: Option<String>,
    /// The SMS text, when an SMS is planned.
    text: Option<String>,
    notes: Vec<String>,
    /// The reason after `sms (rule invite):` under `Skipped:`.
    skipped: Option<String>,
}

fn path_text(path: &Path) -> &str {
    path.to_str().expect("the paths in these tests are UTF-8")
}

/// Returns a copy of the repository's configuration, with `limit` as the invite rule's
/// `sms_segment_limit` when given.
fn config_with_limit(limit: Option<&str>) -> ConfigDir {
    let config = ConfigDir::defaults();
    if let Some(limit) = limit {
        config.replace(
            "rules.yaml",
            "    template: invite\n",
            &format!("    template: invite\n    sms_segment_limit: {limit}\n"),
        );
    }
    config
}

/// Runs `herald explain` on the Invite example with `host_name` as SessionHostName and
/// `limit` on the invite rule, and returns what it printed about the SMS.
fn explain_sms(limit: Option<&str>, host_name: &str) -> ExplainedSms {
    let config = config_with_limit(limit);
    let text = std::fs::read_to_string(repo_root().join("examples/invite.json")).unwrap();
    let mut payload: Value = serde_json::from_str(&text).unwrap();
    for attribute in payload["Attributes"].as_array_mut().unwrap() {
        if attribute["AttributeName"] == "SessionHostName" {
            attribute["AttributeValue"] = json!(host_name);
        }
    }
    config.write("payload.json", &payload.to_string());
    let data = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run_cli(
        &[
            "explain",
            path_text(&config.path().join("payload.json")),
            "--now",
            EXPLAIN_AT,
            "--config-dir",
            path_text(config.path()),
            "--data-dir",
            path_text(data.path()),
        ],
        &[],
    );
    assert_eq!(code, 0, "explain: exit code; stderr:\n{stderr}");
    parse_explained_sms(&stdout)
}

fn parse_explained_sms(stdout: &str) -> ExplainedSms {
    let mut explained = ExplainedSms::default();
    let mut lines = stdout.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(reason) = line.strip_prefix("  sms (rule invite): ") {
            explained.skipped = Some(reason.to_string());
            continue;
        }
        if !(line.starts_with("  ") && line.ends_with(". sms via rule invite (pending)")) {
            continue;
        }
        let mut text_lines = Vec::new();
        let mut in_text = false;
        while let Some(detail) = lines.next_if(|next| next.starts_with("     ")) {
            if in_text {
                text_lines.push(detail.trim_start_matches(' ').to_string());
            } else if let Some(note) = detail.strip_prefix("     note: ") {
                explained.notes.push(note.to_string());
            } else if let Some(encoding) = detail.strip_prefix("     Encoding: ") {
                explained.encoding = Some(encoding.to_string());
            } else if detail == "     --- text ---" {
                in_text = true;
            }
        }
        explained.text = Some(text_lines.join("\n"));
    }
    explained
}

/// Returns the Invite SMS text for a host name.
fn invite_sms(host_name: &str) -> String {
    format!(
        "Your Clinic: video visit with {host_name} on Jun 26 at 11:45 AM PDT. Join at https://portal.clinic.example"
    )
}

/// Asserts an SMS that is planned with `text` and `encoding`, and whether herald noted a
/// change made by the limit policy.
fn assert_planned(explained: &ExplainedSms, text: &str, encoding: &str, change_note: Option<&str>) {
    assert_eq!(explained.skipped, None, "{text:?}: skip reason");
    assert_eq!(
        explained.encoding.as_deref(),
        Some(encoding),
        "{text:?}: Encoding line"
    );
    assert_eq!(explained.text.as_deref(), Some(text), "SMS text");
    let mut expected_notes = vec!["template invite".to_string()];
    expected_notes.extend(change_note.map(str::to_string));
    assert_eq!(explained.notes, expected_notes, "{text:?}: notes");
}

/// Asserts an SMS that is skipped with `reason` and not planned.
fn assert_skipped(explained: &ExplainedSms, reason: &str) {
    assert_eq!(explained.skipped.as_deref(), Some(reason), "skip reason");
    assert_eq!(explained.encoding, None, "Encoding line of a skipped SMS");
}

// Encoding and segment counts, without a limit.

#[test]
fn gsm7_short_text_one_segment() {
    let host = "Dr. Ada Example";
    assert_planned(
        &explain_sms(NO_LIMIT, host),
        &invite_sms(host),
        "GSM-7, 1 segment, 110 characters",
        None,
    );
}

#[test]
fn gsm7_160_septets_one_segment() {
    let host = "Dr. Ada Example, Northern Valley Community Hospital, Cardiology A";
    assert_eq!(host.chars().count(), 65, "host name length");
    assert_planned(
        &explain_sms(NO_LIMIT, host),
        &invite_sms(host),
        "GSM-7, 1 segment, 160 characters",
        None,
    );
}

#[test]
fn gsm7_161_septets_two_segments() {
    let host = "Dr. Ada Example, Northern Valley Community Hospital, Cardiology AB";
    assert_eq!(host.chars().count(), 66, "host name length");
    assert_planned(
        &explain_sms(NO_LIMIT, host),
        &invite_sms(host),
        "GSM-7, 2 segments, 161 characters",
        None,
    );
}

#[test]
fn gsm7_extension_characters_count_twice() {
    // 159 characters, but { and } take 2 septets each: 161 septets.
    let host = "Dr. Ada Example {Cardiology} at Northern Valley Hospital, Room 2";
    assert_eq!(host.chars().count(), 64, "host name length");
    assert_planned(
        &explain_sms(NO_LIMIT, host),
        &invite_sms(host),
        "GSM-7, 2 segments, 159 characters",
        None,
    );
}

#[test]
fn gsm7_escape_pair_not_split_across_parts() {
    // 30 + 122 = 152 septets come before the €, whose 2 septets do not fit in the first
    // part's 153, so it starts the second part. The 306 septets need 3 parts, not 2.
    let host = format!("{}€{}", "A".repeat(122), "B".repeat(87));
    assert_planned(
        &explain_sms(NO_LIMIT, &host),
        &invite_sms(&host),
        "GSM-7, 3 segments, 305 characters",
        None,
    );
}

#[test]
fn curly_quotes_make_ucs2() {
    let host = "Dr. “Ana” Núñez";
    assert_planned(
        &explain_sms(NO_LIMIT, host),
        &invite_sms(host),
        "UCS-2, 2 segments, 110 characters",
        None,
    );
}

#[test]
fn emoji_takes_two_ucs2_units() {
    // 134 characters fit in 2 UCS-2 parts of 67, but the emoji is a surrogate pair, so the
    // text has 135 UTF-16 code units.
    let host = "Dr. Ada Example, Valley Hospital 😀 Room";
    assert_eq!(host.chars().count(), 39, "host name length");
    assert_planned(
        &explain_sms(NO_LIMIT, host),
        &invite_sms(host),
        "UCS-2, 3 segments, 134 characters",
        None,
    );
}

#[test]
fn cjk_makes_ucs2() {
    let host = "山田太郎";
    assert_planned(
        &explain_sms(NO_LIMIT, host),
        &invite_sms(host),
        "UCS-2, 2 segments, 99 characters",
        None,
    );
}

// reject

#[test]
fn reject_gsm7_over_limit() {
    let host = "Dr. Ada Example, Northern Valley Community Hospital, Cardiology AB";
    assert_skipped(
        &explain_sms(Some("{max_segments: 1, policy: reject}"), host),
        "SMS text needs 2 GSM-7 segments (161 septets) but the limit is 1 segment, so shorten the template or set the limit policy to \"truncate\"",
    );
}

#[test]
fn reject_ucs2_over_limit() {
    assert_skipped(
        &explain_sms(Some("{max_segments: 1, policy: reject}"), "Dr. “Ana” Núñez"),
        "SMS text needs 2 UCS-2 segments (110 UTF-16 code units) but the limit is 1 segment, so shorten the template or set the limit policy to \"transliterate\" or \"truncate\"",
    );
}

#[test]
fn reject_within_limit_sends_unchanged() {
    let host = "Dr. “Ana” Núñez";
    assert_planned(
        &explain_sms(Some("{max_segments: 2, policy: reject}"), host),
        &invite_sms(host),
        "UCS-2, 2 segments, 110 characters",
        None,
    );
}

// transliterate

/// The note herald adds to a text that it transliterated to fit 1 segment.
const TRANSLITERATION_NOTE: Option<&str> = Some("transliterated to GSM-7 to fit 1 segment(s)");

#[test]
fn transliterate_quotes_and_accents() {
    // “ and ” become ", ú becomes u, and ñ stays because GSM-7 has it.
    assert_planned(
        &explain_sms(
            Some("{max_segments: 1, policy: transliterate}"),
            "Dr. “Ana” Núñez",
        ),
        &invite_sms("Dr. \"Ana\" Nuñez"),
        "GSM-7, 1 segment, 110 characters",
        TRANSLITERATION_NOTE,
    );
}

#[test]
fn transliterate_em_dash() {
    // The em dash becomes -, í becomes i, and é stays because GSM-7 has it.
    assert_planned(
        &explain_sms(
            Some("{max_segments: 1, policy: transliterate}"),
            "Dr. Ana Pérez — Clínica Sur",
        ),
        &invite_sms("Dr. Ana Pérez - Clinica Sur"),
        "GSM-7, 1 segment, 122 characters",
        TRANSLITERATION_NOTE,
    );
}

#[test]
fn transliterate_keeps_extension_characters() {
    // The text has 113 characters. {, } and € are GSM-7 extension characters, so it has 116
    // septets.
    assert_planned(
        &explain_sms(
            Some("{max_segments: 1, policy: transliterate}"),
            "Dr. Ana “{Lab}” €5",
        ),
        &invite_sms("Dr. Ana \"{Lab}\" €5"),
        "GSM-7, 1 segment, 113 characters",
        TRANSLITERATION_NOTE,
    );
}

#[test]
fn transliterate_c_cedilla_to_capital() {
    // GSM-7 has only the capital Ç, and è stays.
    assert_planned(
        &explain_sms(
            Some("{max_segments: 1, policy: transliterate}"),
            "Dr. François Lefèvre",
        ),
        &invite_sms("Dr. FranÇois Lefèvre"),
        "GSM-7, 1 segment, 115 characters",
        TRANSLITERATION_NOTE,
    );
}

#[test]
fn transliterate_composes_combining_marks() {
    // e + U+0301 and u + U+0308 become é and ü, which GSM-7 has.
    assert_planned(
        &explain_sms(
            Some("{max_segments: 1, policy: transliterate}"),
            "Dr. Jose\u{301} Mu\u{308}ller",
        ),
        &invite_sms("Dr. José Müller"),
        "GSM-7, 1 segment, 110 characters",
        TRANSLITERATION_NOTE,
    );
}

#[test]
fn transliterate_three_ucs2_to_two_gsm7() {
    // 179 characters: 3 UCS-2 segments before, 2 GSM-7 segments after.
    assert_planned(
        &explain_sms(
            Some("{max_segments: 2, policy: transliterate}"),
            "Dra. María José Núñez Pérez, Clínica del Valle Norte, Cardiología y Medicina Interna",
        ),
        &invite_sms(
            "Dra. Maria José Nuñez Pérez, Clinica del Valle Norte, Cardiologia y Medicina Interna",
        ),
        "GSM-7, 2 segments, 179 characters",
        Some("transliterated to GSM-7 to fit 2 segment(s)"),
    );
}

#[test]
fn transliterate_still_over_limit_rejected() {
    assert_skipped(
        &explain_sms(
            Some("{max_segments: 1, policy: transliterate}"),
            "Dra. María José Núñez Pérez, Clínica del Valle Norte, Cardiología y Medicina Interna",
        ),
        "SMS text needs 2 GSM-7 segments (179 septets) after transliteration but the limit is 1 segment, so shorten the template or set the limit policy to \"truncate\"",
    );
}

#[test]
fn transliterate_emoji_rejected() {
    // The emoji has no GSM-7 form, so the text stays UCS-2: 104 characters, 105 units.
    assert_skipped(
        &explain_sms(
            Some("{max_segments: 1, policy: transliterate}"),
            "Dr. Ana 😀",
        ),
        "SMS text needs 2 UCS-2 segments (105 UTF-16 code units) after transliteration but the limit is 1 segment, so shorten the template or set the limit policy to \"truncate\"",
    );
}

#[test]
fn transliterate_cjk_rejected() {
    assert_skipped(
        &explain_sms(Some("{max_segments: 1, policy: transliterate}"), "山田太郎"),
        "SMS text needs 2 UCS-2 segments (99 UTF-16 code units) after transliteration but the limit is 1 segment, so shorten the template or set the limit policy to \"truncate\"",
    );
}

#[test]
fn transliterate_within_limit_sends_unchanged() {
    let host = "Dr. “Ana” Núñez";
    assert_planned(
        &explain_sms(Some("{max_segments: 2, policy: transliterate}"), host),
        &invite_sms(host),
        "UCS-2, 2 segments, 110 characters",
        None,
    );
}

// truncate

/// The note herald adds to a text that it truncated to fit 1 segment.
const TRUNCATION_NOTE: Option<&str> = Some("truncated to fit 1 segment(s)");

#[test]
fn truncate_gsm7_ends_in_dots() {
    // 157 characters and "..." make 160 septets.
    assert_planned(
        &explain_sms(
            Some("{max_segments: 1, policy: truncate}"),
            "Dr. Ada Example of the Northern Valley Community Hospital, Department of Cardiology and Internal Medicine, Second Floor,",
        ),
        "Your Clinic: video visit with Dr. Ada Example of the Northern Valley Community Hospital, Department of Cardiology and Internal Medicine, Second Floor, on Jun...",
        "GSM-7, 1 segment, 160 characters",
        TRUNCATION_NOTE,
    );
}

#[test]
fn truncate_counts_extension_characters() {
    // The € takes 2 septets, so 156 characters and "..." make 160 septets.
    assert_planned(
        &explain_sms(
            Some("{max_segments: 1, policy: truncate}"),
            "Dr. Ada Example €50 visit, Northern Valley Community Hospital, Department of Cardiology and Internal Medicine",
        ),
        "Your Clinic: video visit with Dr. Ada Example €50 visit, Northern Valley Community Hospital, Department of Cardiology and Internal Medicine on Jun 26 at 11:...",
        "GSM-7, 1 segment, 159 characters",
        TRUNCATION_NOTE,
    );
}

#[test]
fn truncate_ucs2_ends_in_ellipsis() {
    // 69 characters and "…" make 70 UCS-2 units.
    assert_planned(
        &explain_sms(
            Some("{max_segments: 1, policy: truncate}"),
            "山田太郎医師、北谷地域病院循環器内科、二階東棟",
        ),
        "Your Clinic: video visit with 山田太郎医師、北谷地域病院循環器内科、二階東棟 on Jun 26 at 11…",
        "UCS-2, 1 segment, 70 characters",
        TRUNCATION_NOTE,
    );
}

#[test]
fn truncate_prefers_longer_gsm7_prefix() {
    // The GSM-7 prefix runs to the “ at character 137, far longer than the 69 characters a
    // UCS-2 SMS holds, so the result is GSM-7. The space before the cut is dropped.
    assert_planned(
        &explain_sms(
            Some("{max_segments: 1, policy: truncate}"),
            "Dr. Ada Example of the Northern Valley Community Hospital, Department of Cardiology and Internal Medicine, “Second Floor”",
        ),
        "Your Clinic: video visit with Dr. Ada Example of the Northern Valley Community Hospital, Department of Cardiology and Internal Medicine,...",
        "GSM-7, 1 segment, 139 characters",
        TRUNCATION_NOTE,
    );
}

#[test]
fn truncate_does_not_split_emoji() {
    // The emoji fills UTF-16 code units 69 and 70, so with "…" the text would need 71 units,
    // and the cut falls before the emoji instead of between its two units.
    assert_planned(
        &explain_sms(
            Some("{max_segments: 1, policy: truncate}"),
            "“Ana” Example, Valley Hospital, Room 2😀 Suite B",
        ),
        "Your Clinic: video visit with “Ana” Example, Valley Hospital, Room 2…",
        "UCS-2, 1 segment, 69 characters",
        TRUNCATION_NOTE,
    );
}

#[test]
fn truncate_keeps_combining_mark_with_letter() {
    // The e is character 69 and its U+0301 character 70, so the cut falls before the e and
    // does not separate the mark from its letter.
    assert_planned(
        &explain_sms(
            Some("{max_segments: 1, policy: truncate}"),
            "“Ana” Example, Valley Hospital, Room 2e\u{301} Suite B",
        ),
        "Your Clinic: video visit with “Ana” Example, Valley Hospital, Room 2…",
        "UCS-2, 1 segment, 69 characters",
        TRUNCATION_NOTE,
    );
}

#[test]
fn truncate_keeps_skin_tone_with_emoji() {
    // 👍 fills units 67 and 68 and its skin-tone modifier units 69 and 70, so with "…" the
    // pair does not fit, and the cut falls before 👍 instead of between the two.
    assert_planned(
        &explain_sms(
            Some("{max_segments: 1, policy: truncate}"),
            "“Ana” Example, Valley Hospital, Room👍🏽 Suite B",
        ),
        "Your Clinic: video visit with “Ana” Example, Valley Hospital, Room…",
        "UCS-2, 1 segment, 67 characters",
        TRUNCATION_NOTE,
    );
}

#[test]
fn truncate_to_two_segments() {
    // 303 characters and "..." make 306 septets, 2 parts of 153.
    assert_planned(
        &explain_sms(
            Some("{max_segments: 2, policy: truncate}"),
            "Dr. Ada Example of the Northern Valley Community Hospital, Department of Cardiology and Internal Medicine, Second Floor, East Wing, Room 214, Suite B, next to the main entrance by the pharmacy and the cafeteria on Mission Street",
        ),
        "Your Clinic: video visit with Dr. Ada Example of the Northern Valley Community Hospital, Department of Cardiology and Internal Medicine, Second Floor, East Wing, Room 214, Suite B, next to the main entrance by the pharmacy and the cafeteria on Mission Street on Jun 26 at 11:45 AM PDT. Join at https://p...",
        "GSM-7, 2 segments, 306 characters",
        Some("truncated to fit 2 segment(s)"),
    );
}

#[test]
fn truncate_within_limit_sends_unchanged() {
    let host = "Dr. Ada Example, Northern Valley Community Hospital, Cardiology AB";
    assert_planned(
        &explain_sms(Some("{max_segments: 2, policy: truncate}"), host),
        &invite_sms(host),
        "GSM-7, 2 segments, 161 characters",
        None,
    );
}

// herald check

#[test]
fn check_reports_sms_over_limit() {
    let config = config_with_limit(Some("{max_segments: 1, policy: reject}"));
    let sms = config.read("templates/invite/sms.txt");
    config.write(
        "templates/invite/sms.txt",
        &format!(
            "{} Questions? Call {{{{ vars.clinic_phone }}}}. Reply STOP to stop these messages.\n",
            sms.trim_end()
        ),
    );
    let data = tempfile::tempdir().unwrap();

    let (code, stdout, stderr) = run_cli(
        &[
            "check",
            "--config-dir",
            path_text(config.path()),
            "--data-dir",
            path_text(data.path()),
        ],
        &[],
    );

    assert_eq!(code, 2, "exit code; stderr:\n{stderr}");
    // The English text has 110 + 67 = 177 characters. The Spanish variant is unchanged and
    // fits, so the example is reported once.
    assert_eq!(
        stderr,
        "error: schemas/NOTIFY_PUBLIC_USER.json examples[0] (Invite): rule invite: sms skipped: \
         SMS text needs 2 GSM-7 segments (177 septets) but the limit is 1 segment, so shorten \
         the template or set the limit policy to \"truncate\"\n\
         configuration invalid: 1 error rendering the schemas' example payloads\n",
        "stderr"
    );
    assert!(
        !stdout.contains("configuration OK"),
        "stdout reports success:\n{stdout}"
    );
}

// The real binary.

/// Returns an Invite for July 10, 2030, when Los Angeles is on daylight time, so that
/// 18:45 UTC is 11:45 AM PDT.
fn invite_2030(host_name: &str) -> PublicUser {
    PublicUser::new("Invite", 0)
        .with("SessionTimeUtc", "2030-07-10T18:45:00")
        .with("SessionTimeLocal", "2030-07-10T11:45:00")
        .with("SessionHostName", host_name)
}

#[tokio::test]
async fn transliterated_sms_reaches_provider() {
    let case = "transliterate, real binary";
    let config = config_with_limit(Some("{max_segments: 1, policy: transliterate}"));
    let gateway = Gateway::start(config).await;

    let reply = gateway
        .herald
        .post(&invite_2030("Dr. “Ana” Núñez").json())
        .await;
    assert_eq!(reply.status, 202, "{case}: HTTP status: {}", reply.text);

    let request = gateway.sms.wait_for_requests(1, WAIT).await.remove(0);
    assert_eq!(
        request.form_value("Body").as_deref(),
        Some(
            "Your Clinic: video visit with Dr. \"Ana\" Nuñez on Jul 10 at 11:45 AM PDT. Join at https://portal.clinic.example"
        ),
        "{case}: SMS Body"
    );
    let sms_id = reply.body["deliveries"]
        .as_array()
        .and_then(|deliveries| deliveries.iter().find(|d| d["channel"] == "sms"))
        .and_then(|delivery| delivery["id"].as_i64())
        .unwrap_or_else(|| panic!("{case}: no SMS delivery in {}", reply.text));
    let detail = gateway.delivery(sms_id);
    assert_eq!(
        detail["message"]["encoding"],
        json!("GSM-7"),
        "{case}: stored encoding"
    );
    assert_eq!(
        detail["message"]["segments"],
        json!(1),
        "{case}: stored segments"
    );
}

#[tokio::test]
async fn rejected_sms_reason_in_response() {
    let case = "reject, real binary";
    let config = config_with_limit(Some("{max_segments: 1, policy: reject}"));
    let gateway = Gateway::start(config).await;

    let reply = gateway
        .herald
        .post(&invite_2030("Dr. “Ana” Núñez").json())
        .await;

    assert_eq!(reply.status, 202, "{case}: HTTP status: {}", reply.text);
    assert_eq!(
        reply.body["skipped"],
        json!([{
            "channel": "sms",
            "reason": "SMS text needs 2 UCS-2 segments (110 UTF-16 code units) but the limit is 1 segment, so shorten the template or set the limit policy to \"transliterate\" or \"truncate\"",
            "rule": "invite",
        }]),
        "{case}: skipped"
    );
    gateway.smtp.wait_for_messages(1, WAIT).await;
    tokio::time::sleep(SETTLE).await;
    assert_eq!(gateway.sms.requests().len(), 0, "{case}: SMS requests");
}
