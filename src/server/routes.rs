//! The HTTP routes and the middleware stack around them.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use super::intake;
use super::{AppState, ServeArgs};

/// Request ids: 16 random hex digits, unless the client sent an `x-request-id`.
#[derive(Clone, Copy, Debug, Default)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&format!("{:016x}", fastrand::u64(..)))
            .ok()
            .map(RequestId::new)
    }
}

pub fn router(state: AppState, args: &ServeArgs) -> Router {
    // Outermost first. A panic anywhere becomes a 500. Secrets in headers never reach the
    // trace. Every request gets an id before its span opens. The timeout covers reading the
    // body and the durable commit, and responds with 503 so that the sender retries.
    let middleware = ServiceBuilder::new()
        .layer(CatchPanicLayer::custom(|_| json_response(StatusCode::INTERNAL_SERVER_ERROR, json!({"status": "error", "error": "internal error; the request was not accepted, so send it again"}))))
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<_>| {
            let id = request
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            tracing::info_span!("request", request_id = %id, method = %request.method(), path = %request.uri().path())
        }))
        .layer(TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, args.request_timeout));

    Router::new()
        .route("/webhook", post(intake::receive))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware)
}

pub fn json_response(status: StatusCode, body: serde_json::Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
        .into_response()
}

/// Liveness: the process responds.
async fn healthz() -> Response {
    json_response(StatusCode::OK, json!({"status": "ok"}))
}

/// Readiness: the store accepts a write and the server is not stopping.
async fn readyz(State(state): State<AppState>) -> Response {
    if state.shutting_down.is_cancelled() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "stopping"}),
        );
    }
    let generation = state.current().number;
    match state.store.probe().await {
        Ok(_) => json_response(
            StatusCode::OK,
            json!({"status": "ready", "generation": generation}),
        ),
        Err(error) => json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "unavailable", "generation": generation, "error": error.to_string()}),
        ),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    if let Ok(counts) = state.store.counts().await {
        state.metrics.set_outbox_counts(&counts);
    }
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn not_found() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        json!({"status": "rejected", "error": "no such endpoint: webhooks go to POST /webhook"}),
    )
}

async fn method_not_allowed() -> Response {
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        json!({"status": "rejected", "error": "method not allowed: webhooks go to POST /webhook; GET serves /healthz, /readyz and /metrics"}),
    )
}
