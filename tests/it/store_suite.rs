//! The contract every `Store` implementation must meet. Each test runs against every store in
//! `stores()`; a new implementation joins the suite by adding itself there.

use std::sync::Arc;
use std::time::Duration;

use herald::message::{Message, SmsMessage};
use herald::outbox::sqlite::SqliteStore;
use herald::outbox::{
    AttemptOutcome, AttemptReport, Change, ChannelClaim, ClaimRequest, CommitOutcome,
    DeliveryState, Intake, ListFilter, NewDelivery, NewSupersession, Store,
};
use herald::rules::SupersedeMode;
use jiff::{SignedDuration, Timestamp};
use tempfile::TempDir;

/// A store under test and what keeps it alive.
struct Subject {
    name: &'static str,
    store: Arc<dyn Store>,
    _dir: TempDir,
}

fn stores() -> Vec<Subject> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(dir.path()).unwrap();
    vec![Subject {
        name: "sqlite",
        store: Arc::new(sqlite),
        _dir: dir,
    }]
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

fn plus(time: Timestamp, seconds: i64) -> Timestamp {
    time.checked_add(SignedDuration::from_secs(seconds))
        .unwrap()
}

fn sms(to: &str) -> Message {
    Message::Sms(SmsMessage {
        to: to.into(),
        body: "Reminder".into(),
        encoding: "GSM-7".into(),
        segments: 1,
    })
}

fn delivery(channel: &str, key: &str) -> NewDelivery {
    NewDelivery {
        rule: "rule".into(),
        channel: channel.into(),
        message: sms("+14155552671"),
        dedupe_key: key.into(),
        supersede_key: None,
        session_time: None,
        not_before: None,
        not_after: None,
        expired: None,
        notes: vec!["template reminder".into()],
    }
}

fn intake(key: &str, received_at: Timestamp, deliveries: Vec<NewDelivery>) -> Intake {
    Intake {
        received_at,
        webhook_type: "NOTIFY_PUBLIC_USER".into(),
        external_id: 183765,
        status: "Invite".into(),
        event_ts: Some(received_at),
        event_key: key.into(),
        generation: 1,
        payload: "{}".into(),
        decision: "{}".into(),
        deliveries,
        supersessions: Vec::new(),
        dedupe_window: Duration::from_secs(3_600),
    }
}

/// A committed delivery's id, state and reason.
type Committed = (i64, DeliveryState, Option<String>);

fn accepted(outcome: CommitOutcome) -> (i64, Vec<Committed>, Vec<i64>) {
    match outcome {
        CommitOutcome::Accepted {
            event_id,
            deliveries,
            superseded,
        } => (
            event_id,
            deliveries
                .into_iter()
                .map(|d| (d.id, d.state, d.reason))
                .collect(),
            superseded,
        ),
        CommitOutcome::Duplicate { event_id } => {
            panic!("expected Accepted, got Duplicate of event {event_id}")
        }
    }
}

fn claim_request(now: Timestamp, limits: &[(&str, usize)]) -> ClaimRequest {
    ClaimRequest {
        now,
        channels: limits
            .iter()
            .map(|(channel, limit)| ChannelClaim {
                channel: channel.to_string(),
                limit: *limit,
                lease: Duration::from_secs(60),
            })
            .collect(),
    }
}

async fn state_of(store: &dyn Store, id: i64) -> DeliveryState {
    store.delivery(id).await.unwrap().unwrap().summary.state
}

#[tokio::test]
async fn commit_then_duplicate_event() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let store = &subject.store;
        let (event_id, deliveries, _) = accepted(
            store
                .commit(intake("k1", now, vec![delivery("sms", "k1/r/sms")]))
                .await
                .unwrap(),
        );
        assert_eq!(deliveries.len(), 1, "{}", subject.name);
        assert_eq!(deliveries[0].1, DeliveryState::Pending, "{}", subject.name);

        let again = store
            .commit(intake(
                "k1",
                plus(now, 10),
                vec![delivery("sms", "k1/r/sms")],
            ))
            .await
            .unwrap();
        assert_eq!(
            again,
            CommitOutcome::Duplicate { event_id },
            "{}",
            subject.name
        );
        let all = store
            .list(ListFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(
            all.len(),
            1,
            "{}: a duplicate stores no delivery",
            subject.name
        );
    }
}

#[tokio::test]
async fn dedupe_key_expires_after_window() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let store = &subject.store;
        accepted(store.commit(intake("k1", now, vec![])).await.unwrap());
        let later = plus(now, 3_601);
        let outcome = store.commit(intake("k1", later, vec![])).await.unwrap();
        assert!(
            matches!(outcome, CommitOutcome::Accepted { .. }),
            "{}: {outcome:?}",
            subject.name
        );
    }
}

#[tokio::test]
async fn delivery_dedupe_key_points_to_first_delivery() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let store = &subject.store;
        let (_, first, _) = accepted(
            store
                .commit(intake("e1", now, vec![delivery("sms", "same")]))
                .await
                .unwrap(),
        );
        let (_, second, _) = accepted(
            store
                .commit(intake("e2", now, vec![delivery("sms", "same")]))
                .await
                .unwrap(),
        );
        assert_eq!(second[0].0, first[0].0, "{}", subject.name);
        assert_eq!(
            second[0].2.as_deref(),
            Some(format!("duplicate of delivery {}", first[0].0).as_str()),
            "{}",
            subject.name
        );
    }
}

#[tokio::test]
async fn concurrent_identical_commits_store_one_event() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let store = subject.store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .commit(intake("same", now, vec![delivery("sms", "same/r/sms")]))
                    .await
                    .unwrap()
            }));
        }
        let mut accepted_count = 0;
        for task in tasks {
            if matches!(task.await.unwrap(), CommitOutcome::Accepted { .. }) {
                accepted_count += 1;
            }
        }
        assert_eq!(accepted_count, 1, "{}", subject.name);
        let all = subject
            .store
            .list(ListFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 1, "{}", subject.name);
    }
}

#[tokio::test]
async fn concurrent_distinct_commits_all_succeed() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let mut tasks = Vec::new();
        for index in 0..200 {
            let store = subject.store.clone();
            tasks.push(tokio::spawn(async move {
                store
                    .commit(intake(
                        &format!("e{index}"),
                        now,
                        vec![delivery("sms", &format!("d{index}"))],
                    ))
                    .await
                    .unwrap()
            }));
        }
        for task in tasks {
            assert!(
                matches!(task.await.unwrap(), CommitOutcome::Accepted { .. }),
                "{}",
                subject.name
            );
        }
        let pending = subject
            .store
            .list(ListFilter {
                states: vec![DeliveryState::Pending],
                limit: 1_000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(pending.len(), 200, "{}", subject.name);
    }
}

#[tokio::test]
async fn claim_respects_channel_limits_and_due_time() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let store = &subject.store;
        let mut later = delivery("sms", "later");
        later.not_before = Some(plus(now, 600));
        let deliveries = vec![
            delivery("sms", "a"),
            delivery("sms", "b"),
            delivery("sms", "c"),
            delivery("email", "d"),
            later,
        ];
        accepted(store.commit(intake("e", now, deliveries)).await.unwrap());

        let claimed = store
            .claim(claim_request(now, &[("sms", 2), ("email", 5)]))
            .await
            .unwrap();
        let channels: Vec<&str> = claimed.iter().map(|c| c.channel.as_str()).collect();
        assert_eq!(channels, ["sms", "sms", "email"], "{}", subject.name);
        assert!(claimed.iter().all(|c| c.attempt == 1), "{}", subject.name);

        let rest = store
            .claim(claim_request(now, &[("sms", 10)]))
            .await
            .unwrap();
        assert_eq!(
            rest.len(),
            1,
            "{}: only the one due sms is left",
            subject.name
        );
        for done in claimed.iter().chain(&rest) {
            store
                .finish(AttemptReport {
                    id: done.id,
                    lease_token: done.lease_token,
                    started_at: now,
                    finished_at: now,
                    outcome: AttemptOutcome::Delivered { provider_id: None },
                    sent: true,
                })
                .await
                .unwrap();
        }
        assert_eq!(
            store
                .next_due(vec!["sms".into(), "email".into()])
                .await
                .unwrap(),
            Some(plus(now, 600)),
            "{}: next due is not_before",
            subject.name
        );

        let none = store
            .claim(claim_request(plus(now, 599), &[("sms", 10)]))
            .await
            .unwrap();
        assert!(none.is_empty(), "{}: not_before holds", subject.name);
        let due = store
            .claim(claim_request(plus(now, 600), &[("sms", 10)]))
            .await
            .unwrap();
        assert_eq!(due.len(), 1, "{}: due at not_before", subject.name);
        assert_eq!(
            store
                .next_due(vec!["sms".into(), "email".into()])
                .await
                .unwrap(),
            Some(plus(now, 660)),
            "{}: next due is the lease expiry",
            subject.name
        );
    }
}

#[tokio::test]
async fn finish_moves_through_states() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let store = &subject.store;
        accepted(
            store
                .commit(intake("e", now, vec![delivery("sms", "a")]))
                .await
                .unwrap(),
        );
        let claimed = store
            .claim(claim_request(now, &[("sms", 1)]))
            .await
            .unwrap()
            .remove(0);

        let retry_at = plus(now, 30);
        store
            .finish(AttemptReport {
                id: claimed.id,
                lease_token: claimed.lease_token,
                started_at: now,
                finished_at: plus(now, 1),
                outcome: AttemptOutcome::Retry {
                    error: "HTTP 503".into(),
                    retry_at,
                },
                sent: true,
            })
            .await
            .unwrap();
        let detail = store.delivery(claimed.id).await.unwrap().unwrap();
        assert_eq!(
            detail.summary.state,
            DeliveryState::Pending,
            "{}",
            subject.name
        );
        assert_eq!(
            detail.summary.next_attempt_at,
            Some(retry_at),
            "{}",
            subject.name
        );
        assert_eq!(detail.summary.attempts, 1, "{}", subject.name);
        assert_eq!(detail.attempts[0].outcome, "transient", "{}", subject.name);
        assert_eq!(
            detail.attempts[0].error.as_deref(),
            Some("HTTP 503"),
            "{}",
            subject.name
        );

        assert!(
            store
                .claim(claim_request(plus(now, 29), &[("sms", 1)]))
                .await
                .unwrap()
                .is_empty(),
            "{}",
            subject.name
        );
        let second = store
            .claim(claim_request(retry_at, &[("sms", 1)]))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(second.attempt, 2, "{}", subject.name);
        store
            .finish(AttemptReport {
                id: second.id,
                lease_token: second.lease_token,
                started_at: retry_at,
                finished_at: plus(retry_at, 1),
                outcome: AttemptOutcome::Delivered {
                    provider_id: Some("SM1".into()),
                },
                sent: true,
            })
            .await
            .unwrap();
        let detail = store.delivery(claimed.id).await.unwrap().unwrap();
        assert_eq!(
            detail.summary.state,
            DeliveryState::Delivered,
            "{}",
            subject.name
        );
        assert_eq!(detail.attempts.len(), 2, "{}", subject.name);
        assert_eq!(
            detail.attempts[1].provider_id.as_deref(),
            Some("SM1"),
            "{}",
            subject.name
        );
    }
}

#[tokio::test]
async fn stale_lease_token_is_ignored() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let store = &subject.store;
        accepted(
            store
                .commit(intake("e", now, vec![delivery("sms", "a")]))
                .await
                .unwrap(),
        );
        let claimed = store
            .claim(claim_request(now, &[("sms", 1)]))
            .await
            .unwrap()
            .remove(0);
        store
            .finish(AttemptReport {
                id: claimed.id,
                lease_token: claimed.lease_token + 1,
                started_at: now,
                finished_at: now,
                outcome: AttemptOutcome::Delivered { provider_id: None },
                sent: true,
            })
            .await
            .unwrap();
        assert_eq!(
            state_of(store.as_ref(), claimed.id).await,
            DeliveryState::Sending,
            "{}",
            subject.name
        );
    }
}

#[tokio::test]
async fn expired_lease_is_reclaimed_with_interrupted_attempt() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let store = &subject.store;
        accepted(
            store
                .commit(intake("e", now, vec![delivery("sms", "a")]))
                .await
                .unwrap(),
        );
        let first = store
            .claim(claim_request(now, &[("sms", 1)]))
            .await
            .unwrap()
            .remove(0);
        assert!(
            store
                .claim(claim_request(plus(now, 59), &[("sms", 1)]))
                .await
                .unwrap()
                .is_empty(),
            "{}: lease held",
            subject.name
        );

        let second = store
            .claim(claim_request(plus(now, 60), &[("sms", 1)]))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(second.id, first.id, "{}", subject.name);
        assert_eq!(second.attempt, 2, "{}", subject.name);
        assert_ne!(second.lease_token, first.lease_token, "{}", subject.name);
        let detail = store.delivery(first.id).await.unwrap().unwrap();
        assert_eq!(detail.attempts.len(), 1, "{}", subject.name);
        assert_eq!(
            detail.attempts[0].outcome, "interrupted",
            "{}",
            subject.name
        );
    }
}

#[tokio::test]
async fn release_returns_to_pending_without_attempt() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let store = &subject.store;
        accepted(
            store
                .commit(intake("e", now, vec![delivery("sms", "a")]))
                .await
                .unwrap(),
        );
        let claimed = store
            .claim(claim_request(now, &[("sms", 1)]))
            .await
            .unwrap()
            .remove(0);
        store
            .release(claimed.id, claimed.lease_token)
            .await
            .unwrap();
        let detail = store.delivery(claimed.id).await.unwrap().unwrap();
        assert_eq!(
            detail.summary.state,
            DeliveryState::Pending,
            "{}",
            subject.name
        );
        assert!(detail.attempts.is_empty(), "{}", subject.name);
        assert_eq!(
            store
                .claim(claim_request(now, &[("sms", 1)]))
                .await
                .unwrap()[0]
                .attempt,
            1,
            "{}",
            subject.name
        );
    }
}

#[tokio::test]
async fn expiry_found_before_sending_records_no_attempt() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let store = &subject.store;
        accepted(
            store
                .commit(intake("e", now, vec![delivery("sms", "a")]))
                .await
                .unwrap(),
        );
        let claimed = store
            .claim(claim_request(now, &[("sms", 1)]))
            .await
            .unwrap()
            .remove(0);
        store
            .finish(AttemptReport {
                id: claimed.id,
                lease_token: claimed.lease_token,
                started_at: now,
                finished_at: now,
                outcome: AttemptOutcome::Expired {
                    reason: "not_after passed".into(),
                },
                sent: false,
            })
            .await
            .unwrap();
        let detail = store.delivery(claimed.id).await.unwrap().unwrap();
        assert_eq!(
            detail.summary.state,
            DeliveryState::Expired,
            "{}",
            subject.name
        );
        assert_eq!(
            detail.summary.reason.as_deref(),
            Some("not_after passed"),
            "{}",
            subject.name
        );
        assert!(detail.attempts.is_empty(), "{}", subject.name);
    }
}

#[tokio::test]
async fn expired_at_intake_is_stored_closed() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let store = &subject.store;
        let mut late = delivery("sms", "a");
        late.expired = Some("not_after had passed".into());
        let (_, deliveries, _) =
            accepted(store.commit(intake("e", now, vec![late])).await.unwrap());
        assert_eq!(deliveries[0].1, DeliveryState::Expired, "{}", subject.name);
        assert!(
            store
                .claim(claim_request(now, &[("sms", 5)]))
                .await
                .unwrap()
                .is_empty(),
            "{}",
            subject.name
        );
    }
}

#[tokio::test]
async fn operator_retry_restarts_the_budget_but_keeps_numbering() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let store = &subject.store;
        accepted(
            store
                .commit(intake("e", now, vec![delivery("sms", "a")]))
                .await
                .unwrap(),
        );
        let first = store
            .claim(claim_request(now, &[("sms", 1)]))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            (first.attempt, first.budget_attempt),
            (1, 1),
            "{}",
            subject.name
        );
        store
            .finish(AttemptReport {
                id: first.id,
                lease_token: first.lease_token,
                started_at: now,
                finished_at: plus(now, 1),
                outcome: AttemptOutcome::Failed {
                    error: "550 mailbox unavailable".into(),
                },
                sent: true,
            })
            .await
            .unwrap();

        assert_eq!(
            store.retry(first.id, plus(now, 60)).await.unwrap(),
            Change::Done,
            "{}",
            subject.name
        );
        let second = store
            .claim(claim_request(plus(now, 60), &[("sms", 1)]))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            (second.attempt, second.budget_attempt),
            (2, 1),
            "{}",
            subject.name
        );
        store
            .finish(AttemptReport {
                id: second.id,
                lease_token: second.lease_token,
                started_at: plus(now, 60),
                finished_at: plus(now, 61),
                outcome: AttemptOutcome::Delivered { provider_id: None },
                sent: true,
            })
            .await
            .unwrap();
        let detail = store.delivery(first.id).await.unwrap().unwrap();
        let numbers: Vec<u32> = detail.attempts.iter().map(|a| a.number).collect();
        assert_eq!(numbers, [1, 2], "{}", subject.name);
        assert_eq!(detail.summary.attempts, 2, "{}", subject.name);
    }
}

fn session_delivery(key: &str, session: Timestamp) -> NewDelivery {
    let mut d = delivery("sms", key);
    d.supersede_key = Some("183765/24403".into());
    d.session_time = Some(session);
    d
}

fn supersession(mode: SupersedeMode, session: Timestamp) -> NewSupersession {
    NewSupersession {
        rule: "cancellation".into(),
        key: "183765/24403".into(),
        mode,
        session_time: Some(session),
    }
}

#[tokio::test]
async fn same_session_supersession_closes_only_that_session() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let session_a = at("2026-01-05T17:00:00Z");
        let session_b = at("2026-01-06T17:00:00Z");
        let store = &subject.store;
        let (_, first, _) = accepted(
            store
                .commit(intake(
                    "reminder-a",
                    now,
                    vec![session_delivery("ra", session_a)],
                ))
                .await
                .unwrap(),
        );
        let (_, second, _) = accepted(
            store
                .commit(intake(
                    "reminder-b",
                    now,
                    vec![session_delivery("rb", session_b)],
                ))
                .await
                .unwrap(),
        );

        let mut cancel = intake("cancel-a", plus(now, 60), vec![]);
        cancel.supersessions = vec![supersession(SupersedeMode::SameSession, session_a)];
        let (cancel_event, _, superseded) = accepted(store.commit(cancel).await.unwrap());
        assert_eq!(superseded, vec![first[0].0], "{}", subject.name);
        assert_eq!(
            state_of(store.as_ref(), first[0].0).await,
            DeliveryState::Superseded,
            "{}",
            subject.name
        );
        assert_eq!(
            state_of(store.as_ref(), second[0].0).await,
            DeliveryState::Pending,
            "{}",
            subject.name
        );
        let reason = store
            .delivery(first[0].0)
            .await
            .unwrap()
            .unwrap()
            .summary
            .reason
            .unwrap();
        assert_eq!(
            reason,
            format!("superseded by event {cancel_event} (rule cancellation)"),
            "{}",
            subject.name
        );
    }
}

#[tokio::test]
async fn supersession_during_a_send_closes_instead_of_retrying() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let session = at("2026-01-05T17:00:00Z");
        let store = &subject.store;
        accepted(
            store
                .commit(intake(
                    "reminder",
                    now,
                    vec![session_delivery("r", session)],
                ))
                .await
                .unwrap(),
        );
        let claimed = store
            .claim(claim_request(now, &[("sms", 1)]))
            .await
            .unwrap()
            .remove(0);

        let mut cancel = intake("cancel", plus(now, 1), vec![]);
        cancel.supersessions = vec![supersession(SupersedeMode::SameSession, session)];
        let (cancel_event, _, superseded) = accepted(store.commit(cancel).await.unwrap());
        assert!(
            superseded.is_empty(),
            "{}: a send in flight is not closed at once",
            subject.name
        );
        assert_eq!(
            state_of(store.as_ref(), claimed.id).await,
            DeliveryState::Sending,
            "{}",
            subject.name
        );

        store
            .finish(AttemptReport {
                id: claimed.id,
                lease_token: claimed.lease_token,
                started_at: now,
                finished_at: plus(now, 2),
                outcome: AttemptOutcome::Retry {
                    error: "HTTP 503".into(),
                    retry_at: plus(now, 30),
                },
                sent: true,
            })
            .await
            .unwrap();
        let detail = store.delivery(claimed.id).await.unwrap().unwrap();
        assert_eq!(
            detail.summary.state,
            DeliveryState::Superseded,
            "{}",
            subject.name
        );
        assert_eq!(
            detail.summary.reason,
            Some(format!(
                "superseded by event {cancel_event} (rule cancellation)"
            )),
            "{}",
            subject.name
        );
        assert_eq!(
            detail.attempts.len(),
            1,
            "{}: the attempt is still recorded",
            subject.name
        );
    }
}

#[tokio::test]
async fn other_session_supersession_closes_old_times() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let old_time = at("2026-01-05T17:00:00Z");
        let new_time = at("2026-01-06T17:00:00Z");
        let store = &subject.store;
        let (_, old, _) = accepted(
            store
                .commit(intake(
                    "invite",
                    now,
                    vec![session_delivery("old", old_time)],
                ))
                .await
                .unwrap(),
        );
        let mut update = intake(
            "update",
            plus(now, 60),
            vec![session_delivery("new", new_time)],
        );
        update.supersessions = vec![supersession(SupersedeMode::OtherSession, new_time)];
        let (_, new, superseded) = accepted(store.commit(update).await.unwrap());
        assert_eq!(superseded, vec![old[0].0], "{}", subject.name);
        assert_eq!(
            state_of(store.as_ref(), new[0].0).await,
            DeliveryState::Pending,
            "{}: the update's own message stays",
            subject.name
        );
    }
}

#[tokio::test]
async fn late_arrival_of_older_event_is_superseded() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let session = at("2026-01-05T17:00:00Z");
        let store = &subject.store;
        let mut cancel = intake("cancel", plus(now, 600), vec![]);
        cancel.supersessions = vec![supersession(SupersedeMode::SameSession, session)];
        let (cancel_event, _, _) = accepted(store.commit(cancel).await.unwrap());

        let mut reminder = intake(
            "reminder",
            plus(now, 601),
            vec![session_delivery("r", session)],
        );
        reminder.event_ts = Some(now);
        let (_, deliveries, _) = accepted(store.commit(reminder).await.unwrap());
        assert_eq!(
            deliveries[0].1,
            DeliveryState::Superseded,
            "{}",
            subject.name
        );
        assert_eq!(
            deliveries[0].2.as_deref(),
            Some(format!("superseded by newer event {cancel_event} (rule cancellation) that arrived first").as_str()),
            "{}",
            subject.name
        );

        let mut rebooked = intake(
            "rebooked",
            plus(now, 1_200),
            vec![session_delivery("r2", session)],
        );
        rebooked.event_ts = Some(plus(now, 1_200));
        let (_, deliveries, _) = accepted(store.commit(rebooked).await.unwrap());
        assert_eq!(
            deliveries[0].1,
            DeliveryState::Pending,
            "{}: a newer event is not superseded",
            subject.name
        );
    }
}

#[tokio::test]
async fn retry_and_cancel_rules() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let store = &subject.store;
        let (_, deliveries, _) = accepted(
            store
                .commit(intake(
                    "e",
                    now,
                    vec![delivery("sms", "a"), delivery("sms", "b")],
                ))
                .await
                .unwrap(),
        );
        let (a, b) = (deliveries[0].0, deliveries[1].0);

        assert_eq!(
            store.cancel(a, now, "patient asked".into()).await.unwrap(),
            Change::Done,
            "{}",
            subject.name
        );
        assert_eq!(
            state_of(store.as_ref(), a).await,
            DeliveryState::Cancelled,
            "{}",
            subject.name
        );
        assert_eq!(
            store.cancel(a, now, "again".into()).await.unwrap(),
            Change::NotAllowed(DeliveryState::Cancelled),
            "{}",
            subject.name
        );
        assert_eq!(
            store.retry(a, plus(now, 5)).await.unwrap(),
            Change::Done,
            "{}",
            subject.name
        );
        assert_eq!(
            state_of(store.as_ref(), a).await,
            DeliveryState::Pending,
            "{}",
            subject.name
        );

        let claimed = store
            .claim(claim_request(plus(now, 5), &[("sms", 1)]))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(
            store.retry(claimed.id, now).await.unwrap(),
            Change::NotAllowed(DeliveryState::Sending),
            "{}",
            subject.name
        );
        assert_eq!(
            store.retry(999_999, now).await.unwrap(),
            Change::NotFound,
            "{}",
            subject.name
        );
        assert_eq!(
            store.cancel(999_999, now, String::new()).await.unwrap(),
            Change::NotFound,
            "{}",
            subject.name
        );
        let _ = b;
    }
}

#[tokio::test]
async fn purge_keeps_open_deliveries() {
    for subject in stores() {
        let old = at("2026-01-01T10:00:00Z");
        let store = &subject.store;
        let (_, closed, _) = accepted(
            store
                .commit(intake("closed", old, vec![delivery("sms", "a")]))
                .await
                .unwrap(),
        );
        store.cancel(closed[0].0, old, "x".into()).await.unwrap();
        let (_, open, _) = accepted(
            store
                .commit(intake("open", old, vec![delivery("sms", "b")]))
                .await
                .unwrap(),
        );

        let now = at("2026-02-01T10:00:00Z");
        let report = store.purge(now, at("2026-01-15T00:00:00Z")).await.unwrap();
        assert_eq!(report.events, 1, "{}", subject.name);
        assert_eq!(report.deliveries, 1, "{}", subject.name);
        assert!(
            report.dedupe_keys >= 2,
            "{}: expired dedupe keys go too",
            subject.name
        );
        assert!(
            store.delivery(closed[0].0).await.unwrap().is_none(),
            "{}",
            subject.name
        );
        assert!(
            store.delivery(open[0].0).await.unwrap().is_some(),
            "{}",
            subject.name
        );
    }
}

#[tokio::test]
async fn probe_writes() {
    for subject in stores() {
        subject
            .store
            .probe()
            .await
            .unwrap_or_else(|error| panic!("{}: {error}", subject.name));
    }
}

#[tokio::test]
async fn counts_by_state() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let store = &subject.store;
        let (_, deliveries, _) = accepted(
            store
                .commit(intake(
                    "e",
                    now,
                    vec![delivery("sms", "a"), delivery("sms", "b")],
                ))
                .await
                .unwrap(),
        );
        store
            .cancel(deliveries[0].0, now, "x".into())
            .await
            .unwrap();
        let counts = store.counts().await.unwrap();
        let count = |state| counts.iter().find(|(s, _)| *s == state).map(|(_, n)| *n);
        assert_eq!(count(DeliveryState::Pending), Some(1), "{}", subject.name);
        assert_eq!(count(DeliveryState::Cancelled), Some(1), "{}", subject.name);
        assert_eq!(count(DeliveryState::Delivered), Some(0), "{}", subject.name);
    }
}

#[tokio::test]
async fn list_filters() {
    for subject in stores() {
        let now = at("2026-01-01T10:00:00Z");
        let store = &subject.store;
        accepted(
            store
                .commit(intake("e1", now, vec![delivery("sms", "a")]))
                .await
                .unwrap(),
        );
        accepted(
            store
                .commit(intake("e2", plus(now, 3_600), vec![delivery("email", "b")]))
                .await
                .unwrap(),
        );
        let by_channel = store
            .list(ListFilter {
                channel: Some("email".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(by_channel.len(), 1, "{}", subject.name);
        let recent = store
            .list(ListFilter {
                since: Some(plus(now, 60)),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(recent.len(), 1, "{}", subject.name);
        let newest_first = store
            .list(ListFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(newest_first[0].id > newest_first[1].id, "{}", subject.name);
    }
}
