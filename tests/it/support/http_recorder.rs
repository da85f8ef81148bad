//! In-process HTTP/1.1 server that records every request and replies from a script.
//!
//! It acts as the SMS provider (a Twilio-style Messages API:
//! `POST /2010-04-01/Accounts/{sid}/Messages.json` with a form-encoded body and HTTP Basic
//! auth) and as the receiver of herald's outbound webhooks. Scripted responses are used in
//! request order before the default response, so a test can make the first requests fail.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderName, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::smtp::{bind_loopback, decode_base64};

/// Maximum request body size in bytes. Larger requests get 413 and are not recorded.
pub const MAX_BODY_SIZE: usize = 10 * 1024 * 1024;

/// One request as the recorder received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Method in uppercase, such as `POST`.
    pub method: String,
    pub path: String,
    /// Query string without the `?`, as sent.
    pub query: Option<String>,
    /// Header fields in arrival order, with lowercase names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Status code of the response that the recorder sent.
    pub response_status: u16,
}

impl RecordedRequest {
    /// Returns the first value of a header field, matching `name` case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(field_name, _)| field_name.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Decodes the body as `application/x-www-form-urlencoded` into name and value pairs, in
    /// order, with `+` as a space and percent-escapes decoded.
    ///
    /// Panics when a decoded name or value is not UTF-8.
    pub fn form(&self) -> Vec<(String, String)> {
        self.body
            .split(|&byte| byte == b'&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (name, value) = match pair.iter().position(|&byte| byte == b'=') {
                    Some(index) => (&pair[..index], &pair[index + 1..]),
                    None => (pair, &pair[pair.len()..]),
                };
                (decode_form_component(name), decode_form_component(value))
            })
            .collect()
    }

    /// Returns the first form value with this name, matched case-sensitively.
    pub fn form_value(&self, name: &str) -> Option<String> {
        self.form()
            .into_iter()
            .find(|(field_name, _)| field_name == name)
            .map(|(_, value)| value)
    }

    /// Parses the body as JSON. Panics with the body text when it is not valid JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "body of {} {} is not valid JSON ({error}): {:?}",
                self.method,
                self.path,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Returns the user and password of an `Authorization: Basic` header (RFC 7617), or `None`
    /// when the header is missing, uses another scheme or is malformed.
    pub fn basic_auth(&self) -> Option<(String, String)> {
        let value = self.header("authorization")?;
        let (scheme, credentials) = value.trim().split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = String::from_utf8(decode_base64(credentials.trim().as_bytes()).ok()?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        Some((user.to_owned(), password.to_owned()))
    }

    fn summary(&self) -> String {
        match &self.query {
            Some(query) => format!(
                "{} {}?{query} -> {}",
                self.method, self.path, self.response_status
            ),
            None => format!("{} {} -> {}", self.method, self.path, self.response_status),
        }
    }
}

/// Decodes one name or value of a form body: `+` is a space and `%XX` a byte. A `%` that
/// starts no valid escape stays as it is.
fn decode_form_component(component: &[u8]) -> String {
    let mut decoded = Vec::with_capacity(component.len());
    let mut index = 0;
    while index < component.len() {
        match component[index] {
            b'+' => {
                decoded.push(b' ');
                index += 1;
            }
            b'%' => match component.get(index + 1..index + 3).and_then(parse_hex_pair) {
                Some(byte) => {
                    decoded.push(byte);
                    index += 3;
                }
                None => {
                    decoded.push(b'%');
                    index += 1;
                }
            },
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).unwrap_or_else(|error| {
        panic!(
            "form component {:?} is not UTF-8 after percent-decoding: {error}",
            error.as_bytes()
        )
    })
}

fn parse_hex_pair(digits: &[u8]) -> Option<u8> {
    let text = std::str::from_utf8(digits).ok()?;
    u8::from_str_radix(text, 16).ok()
}

/// Response that the recorder sends: status, header fields, body and an optional delay.
#[derive(Clone, Debug)]
pub struct ScriptedResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Time to wait after reading the request and before sending the response.
    pub delay: Option<Duration>,
}

impl ScriptedResponse {
    /// Creates a response with an empty body. Panics when `status` is not a valid status code.
    pub fn new(status: u16) -> Self {
        assert!(
            StatusCode::from_u16(status).is_ok(),
            "{status} is not a valid HTTP status code"
        );
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
            delay: None,
        }
    }

    /// Creates a response with a JSON body and `Content-Type: application/json`.
    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        Self::new(status)
            .with_header("content-type", "application/json")
            .with_body(body.to_string())
    }

    /// Creates the SMS provider's success response: 201 with
    /// `{"sid":"SM<32 hex digits>","status":"queued"}` and a random sid.
    pub fn sms_accepted() -> Self {
        let sid = format!("SM{:032x}", fastrand::u128(..));
        Self::json(201, &serde_json::json!({ "sid": sid, "status": "queued" }))
    }

    /// Creates the SMS provider's error response for an invalid destination number: 400 with
    /// error code 21211.
    pub fn sms_invalid_number() -> Self {
        Self::json(
            400,
            &serde_json::json!({
                "code": 21211,
                "message": "The 'To' number is not a valid phone number.",
                "status": 400,
            }),
        )
    }

    /// Adds a header field. Panics when the name or value is not valid in HTTP.
    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        assert!(
            HeaderName::from_bytes(name.as_bytes()).is_ok(),
            "{name:?} is not a valid HTTP header name"
        );
        assert!(
            HeaderValue::from_str(value).is_ok(),
            "{value:?} is not a valid value for HTTP header {name}"
        );
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn with_body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    fn to_response(&self) -> Response<Full<Bytes>> {
        let mut builder = Response::builder().status(self.status);
        for (name, value) in &self.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        builder
            .body(Full::new(Bytes::from(self.body.clone())))
            .expect("the status and headers were validated when the response was created")
    }
}

struct State {
    requests: Vec<RecordedRequest>,
    script: VecDeque<ScriptedResponse>,
    default_response: ScriptedResponse,
}

struct RunningServer {
    shutdown: oneshot::Sender<()>,
    accept_task: JoinHandle<()>,
}

/// HTTP/1.1 server on 127.0.0.1 that records requests until `stop` or drop.
pub struct HttpRecorder {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    running: Mutex<Option<RunningServer>>,
}

impl HttpRecorder {
    /// Starts a recorder on a port chosen by the operating system. The default response is
    /// 200 with an empty body.
    pub async fn start() -> HttpRecorder {
        Self::start_on_port(0).await
    }

    /// Starts a recorder on `port` of 127.0.0.1, with SO_REUSEADDR so a test can restart a
    /// stopped recorder on the same port. Panics when the port cannot be bound.
    pub async fn start_on_port(port: u16) -> HttpRecorder {
        let listener = bind_loopback(port, "HTTP recorder");
        let addr = listener
            .local_addr()
            .expect("reading the HTTP recorder's listener address failed");
        let state = Arc::new(Mutex::new(State {
            requests: Vec::new(),
            script: VecDeque::new(),
            default_response: ScriptedResponse::new(200),
        }));

        let (shutdown, shutdown_received) = oneshot::channel();
        let accept_task = tokio::spawn(accept_connections(
            listener,
            Arc::clone(&state),
            shutdown_received,
        ));
        tracing::debug!(%addr, "test HTTP recorder started");

        HttpRecorder {
            addr,
            state,
            running: Mutex::new(Some(RunningServer {
                shutdown,
                accept_task,
            })),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns the base URL, `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets the response for requests that find the script empty.
    pub fn set_default_response(&self, response: ScriptedResponse) {
        lock(&self.state).default_response = response;
    }

    /// Appends a response to the script. Each request takes the first response left.
    pub fn push_response(&self, response: ScriptedResponse) {
        lock(&self.state).script.push_back(response);
    }

    /// Appends responses to the script in order.
    pub fn push_responses(&self, responses: impl IntoIterator<Item = ScriptedResponse>) {
        lock(&self.state).script.extend(responses);
    }

    /// Removes the scripted responses that no request has used yet.
    pub fn clear_script(&self) {
        lock(&self.state).script.clear();
    }

    /// Returns a copy of the requests recorded so far, in the order their bodies completed.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// Polls until at least `count` requests arrived and returns all of them.
    ///
    /// Panics with the number and summaries of the requests received when `timeout` passes first.
    pub async fn wait_for_requests(&self, count: usize, timeout: Duration) -> Vec<RecordedRequest> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let requests = self.requests();
            if requests.len() >= count {
                return requests;
            }
            if tokio::time::Instant::now() >= deadline {
                let summaries: Vec<String> =
                    requests.iter().map(RecordedRequest::summary).collect();
                panic!(
                    "expected at least {count} requests at the test HTTP recorder within {timeout:?}, \
                     received {}: {summaries:#?}",
                    requests.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Closes the listener and every open connection, and waits until they are closed.
    ///
    /// New connections are refused afterwards. Recorded requests stay readable. Calling
    /// `stop` again does nothing.
    pub async fn stop(&self) {
        let running = lock(&self.running).take();
        let Some(running) = running else {
            return;
        };
        // The accept task has ended already when the receiver is gone.
        let _ = running.shutdown.send(());
        if let Err(error) = running.accept_task.await {
            panic!("the test HTTP recorder's accept task failed: {error}");
        }
        tracing::debug!(addr = %self.addr, "test HTTP recorder stopped");
    }
}

impl Drop for HttpRecorder {
    fn drop(&mut self) {
        // Aborting the accept task drops its listener and its JoinSet, which aborts every
        // connection task.
        let running = self
            .running
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(running) = running.take() {
            running.accept_task.abort();
        }
    }
}

/// Locks a mutex, and keeps using the data when a panicking test thread poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept_connections(
    listener: TcpListener,
    state: Arc<Mutex<State>>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve_connection(Arc::clone(&state), stream));
                }
                Err(error) => {
                    tracing::warn!(%error, "test HTTP recorder failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = finished {
                    tracing::error!(%error, "test HTTP recorder connection task failed");
                }
            }
        }
    }
    drop(listener);
    connections.shutdown().await;
}

async fn serve_connection(state: Arc<Mutex<State>>, stream: TcpStream) {
    let service = service_fn(move |request| {
        let state = Arc::clone(&state);
        async move { Ok::<_, Infallible>(handle_request(&state, request).await) }
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    if let Err(error) = connection.await {
        tracing::debug!(%error, "test HTTP recorder connection ended with an error");
    }
}

/// Reads the whole request, records it and takes the response under one lock, so concurrent
/// requests use the script in the order they are recorded.
async fn handle_request(state: &Mutex<State>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY_SIZE).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            tracing::warn!(
                %error,
                method = %parts.method,
                path = parts.uri.path(),
                "test HTTP recorder failed to read a request body"
            );
            return ScriptedResponse::new(413).to_response();
        }
    };

    let headers = parts
        .headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    let response = {
        let mut state = lock(state);
        let response = match state.script.pop_front() {
            Some(response) => response,
            None => state.default_response.clone(),
        };
        state.requests.push(RecordedRequest {
            method: parts.method.as_str().to_owned(),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers,
            body: body.to_vec(),
            response_status: response.status,
        });
        response
    };

    if let Some(delay) = response.delay {
        tokio::time::sleep(delay).await;
    }
    response.to_response()
}
