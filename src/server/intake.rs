//! `POST /webhook`: parse, check, decide, commit durably, then respond.

use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use jiff::Timestamp;
use serde_json::{Value, json};

use super::AppState;
use super::routes::json_response;
use crate::ingest::{self, IntakeError, event::Event};
use crate::outbox::{
    CommitOutcome, DeliveryState, Intake, NewDelivery, NewSupersession, StoreError,
};
use crate::rules::Decision;
use crate::rules::decision::{InitialState, Verdict};

/// Seconds a sender is asked to wait before retrying after a 503.
const RETRY_AFTER_SECONDS: u32 = 5;

pub async fn receive(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let started = Instant::now();
    let response = handle(&state, &headers, body).await;
    state
        .metrics
        .intake_seconds
        .observe(started.elapsed().as_secs_f64());
    response
}

async fn handle(state: &AppState, headers: &HeaderMap, body: Body) -> Response {
    let limit = state.max_body_bytes;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return too_large(state, limit);
    }
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(_) => return too_large(state, limit),
    };

    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let generation = state.current();
    let now = Timestamp::now();
    let decided = ingest::parse_body(content_type, &bytes)
        .and_then(|payload| ingest::decide(&generation, payload, now));
    let (event, decision) = match decided {
        Ok(decided) => decided,
        Err(error) => return reject(state, &error),
    };

    let intake = build_intake(&event, &decision, &generation, now);
    let outcome = match state.store.commit(intake).await {
        Ok(outcome) => outcome,
        Err(error) => return unavailable(state, &event, &error),
    };
    state.wake.notify_one();
    accepted(state, &event, &decision, outcome, generation.number)
}

fn build_intake(
    event: &Event,
    decision: &Decision,
    generation: &crate::config::Generation,
    now: Timestamp,
) -> Intake {
    let deliveries = decision
        .planned
        .iter()
        .map(|planned| NewDelivery {
            rule: planned.rule.clone(),
            channel: planned.channel.clone(),
            message: planned.message.clone(),
            dedupe_key: planned.dedupe_key.clone(),
            supersede_key: planned.supersede_key.clone(),
            session_time: planned.session_time,
            not_before: planned.not_before,
            not_after: planned.not_after,
            expired: match &planned.state {
                InitialState::Pending => None,
                InitialState::Expired(reason) => Some(reason.clone()),
            },
            notes: planned.notes.clone(),
        })
        .collect();
    let supersessions = decision
        .supersessions
        .iter()
        .map(|s| NewSupersession {
            rule: s.rule.clone(),
            key: s.key.clone(),
            mode: s.mode,
            session_time: s.session_time,
        })
        .collect();
    Intake {
        received_at: now,
        webhook_type: event.webhook_type.clone(),
        external_id: event.id,
        status: event.status.clone(),
        event_ts: event.event_ts,
        event_key: decision.event_key.clone(),
        generation: generation.number,
        payload: event.payload.to_string(),
        decision: decision_record(decision).to_string(),
        deliveries,
        supersessions,
        dedupe_window: generation.defaults.dedupe_window,
    }
}

/// Builds the decision as stored with the event: rules, skipped channels and warnings,
/// without the rendered messages, which the deliveries contain.
fn decision_record(decision: &Decision) -> Value {
    json!({
        "generation": decision.generation,
        // Rules after the deciding one are left out, because their trace only states that
        // they were not evaluated and the record is written for every webhook.
        "rules": decision.rules.iter().filter(|r| r.verdict != Verdict::NotEvaluated).collect::<Vec<_>>(),
        "skipped": decision.skipped,
        "warnings": decision.warnings,
        "nothing_planned": decision.nothing_planned,
        "planned": decision.planned.iter().map(|p| json!({"rule": p.rule, "channel": p.channel, "notes": p.notes})).collect::<Vec<_>>(),
    })
}

fn accepted(
    state: &AppState,
    event: &Event,
    decision: &Decision,
    outcome: CommitOutcome,
    generation: u64,
) -> Response {
    let (event_id, deliveries, superseded) = match outcome {
        CommitOutcome::Duplicate { event_id } => {
            state.metrics.count_webhook("duplicate");
            tracing::info!(event_id, webhook_type = %event.webhook_type, status = %event.status, result = "duplicate", "Webhook received");
            return json_response(
                StatusCode::OK,
                json!({"status": "duplicate", "event_id": event_id}),
            );
        }
        CommitOutcome::Accepted {
            event_id,
            deliveries,
            superseded,
        } => (event_id, deliveries, superseded),
    };
    let pending = deliveries
        .iter()
        .filter(|d| d.state == DeliveryState::Pending && d.reason.is_none())
        .count();
    for delivery in deliveries.iter().filter(|d| d.reason.is_none()) {
        state
            .metrics
            .deliveries_planned
            .get_or_create_owned(&crate::metrics::ChannelLabel {
                channel: delivery.channel.clone(),
            })
            .inc();
    }
    for warning in &decision.warnings {
        tracing::warn!(event_id, warning = %warning, "Payload problem");
    }
    let result = if pending > 0 { "accepted" } else { "ignored" };
    state.metrics.count_webhook(result);
    tracing::info!(
        event_id,
        webhook_type = %event.webhook_type,
        status = %event.status,
        generation,
        result,
        deliveries = pending,
        superseded = superseded.len(),
        "Webhook received"
    );

    let mut body = json!({
        "status": result,
        "event_id": event_id,
        "deliveries": deliveries,
    });
    if !decision.skipped.is_empty() {
        body["skipped"] = json!(decision.skipped);
    }
    if !superseded.is_empty() {
        body["superseded"] = json!(superseded);
    }
    if pending == 0 {
        let reason = decision.nothing_planned.clone().unwrap_or_else(|| {
            let reasons: Vec<String> = deliveries
                .iter()
                .filter_map(|d| {
                    d.reason
                        .as_ref()
                        .map(|reason| format!("{} {}: {reason}", d.channel, d.state))
                })
                .collect();
            format!("nothing to send: {}", reasons.join("; "))
        });
        body["reason"] = json!(reason);
    }
    let status = if pending > 0 {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    json_response(status, body)
}

fn reject(state: &AppState, error: &IntakeError) -> Response {
    state.metrics.count_webhook("rejected");
    let (status, mut body) = match error {
        IntakeError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, json!({})),
        IntakeError::InvalidJson { line, column, .. } => (
            StatusCode::BAD_REQUEST,
            json!({"line": line, "column": column}),
        ),
        IntakeError::Schema(violations) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"violations": violations}),
        ),
        IntakeError::InvalidEvent(_) | IntakeError::Engine(_) => {
            (StatusCode::UNPROCESSABLE_ENTITY, json!({}))
        }
    };
    body["status"] = json!("rejected");
    body["error"] = json!(error.to_string());
    match error {
        IntakeError::Engine(engine) => {
            tracing::error!(rule = %engine.rule, error = %engine.error, "Webhook rejected: a template or expression failed")
        }
        other => tracing::info!(status = status.as_u16(), error = %other, "Webhook rejected"),
    }
    json_response(status, body)
}

fn too_large(state: &AppState, limit: usize) -> Response {
    state.metrics.count_webhook("rejected");
    tracing::info!(limit, "Webhook rejected: body too large");
    json_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        json!({"status": "rejected", "error": format!("the body is larger than the limit of {limit} bytes")}),
    )
}

fn unavailable(state: &AppState, event: &Event, error: &StoreError) -> Response {
    state.metrics.count_webhook("unavailable");
    tracing::error!(webhook_type = %event.webhook_type, status = %event.status, %error, "Cannot commit a webhook; responded with 503");
    let mut response = json_response(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"status": "unavailable", "error": format!("the outbox cannot store the event right now ({error}); retry later")}),
    );
    if let Ok(value) = HeaderValue::from_str(&RETRY_AFTER_SECONDS.to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}
