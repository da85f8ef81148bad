//! Quiet hours: a window of local time in the recipient's zone during which a rule does not
//! send.

use jiff::Timestamp;
use jiff::civil::Time;

use super::model::{QuietAction, QuietHours};
use crate::timezone::{self, Zone};

pub(super) enum QuietOutcome {
    Outside,
    SendAnyway(String),
    Deferred {
        until: Timestamp,
        note: String,
    },
    Dropped(String),
    /// Deferred past the delivery's expiry, so it will never be sent.
    ExpiresFirst(String),
}

/// Decides what quiet hours do to a message planned at `now`.
pub(super) fn apply(
    quiet: &QuietHours,
    zone: &Zone,
    now: Timestamp,
    not_after: Option<Timestamp>,
) -> QuietOutcome {
    let local = now.to_zoned(zone.tz.clone());
    let time = local.time();
    let wraps = quiet.start > quiet.end;
    let inside = if wraps {
        time >= quiet.start || time < quiet.end
    } else {
        time >= quiet.start && time < quiet.end
    };
    if !inside {
        return QuietOutcome::Outside;
    }
    let window = format!(
        "quiet hours {}-{} in {} (local time {})",
        hh_mm(quiet.start),
        hh_mm(quiet.end),
        zone.iana,
        hh_mm(time)
    );
    match quiet.action {
        QuietAction::Send => QuietOutcome::SendAnyway(format!("{window}: sent anyway")),
        QuietAction::Drop => QuietOutcome::Dropped(format!("{window}: dropped")),
        QuietAction::Defer => {
            let end_date = if wraps && time >= quiet.start {
                local.date().tomorrow().unwrap_or(local.date())
            } else {
                local.date()
            };
            let until =
                first_instant_at_or_after(zone, end_date.to_datetime(quiet.end)).unwrap_or(now);
            if let Some(limit) = not_after
                && until > limit
            {
                return QuietOutcome::ExpiresFirst(format!(
                    "{window}: the window ends at {}, after not_after {}",
                    timezone::format_utc(until),
                    timezone::format_utc(limit)
                ));
            }
            QuietOutcome::Deferred {
                until,
                note: format!("{window}: deferred to {}", timezone::format_utc(until)),
            }
        }
    }
}

/// The first instant whose local time is `local` or later. A local time that a daylight
/// saving change skips (02:30 on a spring-forward night) does not exist, and the first
/// instant after it is the change itself (03:00 in the new offset).
fn first_instant_at_or_after(zone: &Zone, local: jiff::civil::DateTime) -> Option<Timestamp> {
    let ambiguous = zone.tz.to_ambiguous_timestamp(local);
    if let jiff::tz::AmbiguousOffset::Gap { before, .. } = ambiguous.offset() {
        // Read with the offset in force before the change, the skipped time lies after the
        // change, so the change is the last transition before that reading.
        let past_the_change = before.to_timestamp(local).ok()?;
        return zone
            .tz
            .preceding(past_the_change)
            .next()
            .map(|transition| transition.timestamp());
    }
    ambiguous.compatible().ok()
}

fn hh_mm(time: Time) -> String {
    format!("{:02}:{:02}", time.hour(), time.minute())
}
