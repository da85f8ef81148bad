//! In-process SMTP server that receives what herald sends during integration tests.
//!
//! The server speaks SMTP (RFC 5321) over TCP on 127.0.0.1, with optional STARTTLS (RFC 3207),
//! implicit TLS, AUTH PLAIN and AUTH LOGIN (RFC 4954), and failure injection that a test can
//! change while the server runs. Received messages keep their raw DATA bytes, and
//! `ReceivedMessage` decodes headers and text bodies for assertions.
//!
//! The MIME, RFC 2047, quoted-printable and base64 decoders at the end of this file are written
//! here instead of taken from a crate: they cover what assertions on herald's output need and
//! nothing more, and `support_selftest` tests them.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

/// Maximum length of a command line, including CRLF, outside DATA.
///
/// RFC 5321 sets 512 octets for commands. The larger bound leaves room for long AUTH responses.
pub const MAX_LINE_LENGTH: usize = 4096;

/// Default maximum size of one message's DATA, in bytes, also advertised as `SIZE`.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 10 * 1024 * 1024;

/// Maximum number of recipients in one mail transaction.
const MAX_RECIPIENTS: usize = 1000;

/// Maximum nesting depth of multipart entities that the body helpers descend into.
const MAX_MIME_DEPTH: usize = 16;

/// Base64 of `Username:` and `Password:`, the AUTH LOGIN challenges.
const LOGIN_USERNAME_CHALLENGE: &str = "VXNlcm5hbWU6";
const LOGIN_PASSWORD_CHALLENGE: &str = "UGFzc3dvcmQ6";

/// How the server offers TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain TCP only, and STARTTLS is not advertised.
    #[default]
    None,
    /// Plain TCP with STARTTLS advertised after EHLO.
    StartTls,
    /// TLS from the first byte, as on the SMTPS port 465.
    Implicit,
}

/// Settings for `SmtpServer::start`.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    /// Port on 127.0.0.1, or `None` for a port chosen by the operating system.
    pub port: Option<u16>,
    /// Domain that the server names in its greeting and EHLO reply.
    pub hostname: String,
    pub tls: TlsMode,
    /// Rejects MAIL with 530 until the connection uses TLS.
    pub require_tls: bool,
    /// User name and password that AUTH accepts. When set, AUTH is advertised and MAIL
    /// requires a successful AUTH first.
    pub credentials: Option<(String, String)>,
    pub eight_bit_mime: bool,
    pub smtputf8: bool,
    pub pipelining: bool,
    /// Maximum DATA size in bytes after dot-unstuffing, advertised as `SIZE`.
    pub max_message_size: usize,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            port: None,
            hostname: "localhost".to_owned(),
            tls: TlsMode::None,
            require_tls: false,
            credentials: None,
            eight_bit_mime: true,
            smtputf8: false,
            pipelining: true,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

impl SmtpConfig {
    /// Creates a configuration that advertises STARTTLS with a certificate generated at start.
    pub fn tls() -> Self {
        Self {
            tls: TlsMode::StartTls,
            ..Self::default()
        }
    }

    /// Creates a configuration that speaks TLS from the first byte with a generated certificate.
    pub fn implicit_tls() -> Self {
        Self {
            tls: TlsMode::Implicit,
            ..Self::default()
        }
    }

    pub fn with_port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub fn with_credentials(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }
}

/// SMTP command whose reply failure injection replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Mail,
    Rcpt,
    /// The end of DATA, after the client sent `CRLF.CRLF`.
    Data,
}

#[derive(Clone, Debug)]
enum FailureAction {
    Reply { code: u16, text: String },
    Disconnect,
}

#[derive(Debug)]
struct FailureRule {
    stage: Stage,
    /// Number of commands left to fail, or `None` for every command.
    remaining: Option<usize>,
    action: FailureAction,
}

/// One message that the server accepted with a 250 reply to the end of DATA.
#[derive(Clone, Debug)]
pub struct ReceivedMessage {
    /// Envelope sender from MAIL FROM without angle brackets, or empty for the null sender `<>`.
    pub mail_from: String,
    /// Parameters that followed MAIL FROM, such as `BODY=8BITMIME` or `SMTPUTF8`.
    pub mail_parameters: Vec<String>,
    /// Envelope recipients from RCPT TO, without angle brackets, in order.
    pub rcpt_to: Vec<String>,
    /// DATA after dot-unstuffing, with the line endings the client sent.
    pub data: Vec<u8>,
    /// Whether the connection used TLS, through STARTTLS or implicit TLS.
    pub tls: bool,
    /// User name of the successful AUTH on this connection.
    pub auth_user: Option<String>,
    /// Domain that the client sent with EHLO or HELO.
    pub ehlo_domain: String,
    /// Number of the connection, counting from 1 in accept order.
    pub connection_id: usize,
}

impl ReceivedMessage {
    /// Returns the first header field with this name (case-insensitive), unfolded and trimmed,
    /// with RFC 2047 encoded-words left as sent.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers(name).into_iter().next()
    }

    /// Returns every header field with this name (case-insensitive), unfolded and trimmed.
    pub fn headers(&self, name: &str) -> Vec<String> {
        parse_entity(&self.data)
            .headers
            .into_iter()
            .filter(|(field_name, _)| field_name.eq_ignore_ascii_case(name))
            .map(|(_, value)| value)
            .collect()
    }

    /// Returns the first header field with this name with its RFC 2047 encoded-words decoded.
    ///
    /// Panics when an encoded-word is malformed or uses a charset other than UTF-8,
    /// US-ASCII or ISO-8859-1.
    pub fn decoded_header(&self, name: &str) -> Option<String> {
        let value = self.header(name)?;
        let decoded = decode_rfc2047(&value).unwrap_or_else(|error| {
            panic!("header {name}: {value:?} is not valid RFC 2047: {error}")
        });
        Some(decoded)
    }

    /// Returns the display name and address of a header field that contains one mailbox, such
    /// as `To`, with the display name unquoted or its RFC 2047 encoded-words decoded.
    ///
    /// Panics when the field is missing or is not one mailbox, for example when a display
    /// name with a comma is not quoted and so reads as two mailboxes.
    pub fn mailbox(&self, name: &str) -> (Option<String>, String) {
        let value = self
            .header(name)
            .unwrap_or_else(|| panic!("the message has no {name} header"));
        parse_mailbox(&value)
            .unwrap_or_else(|error| panic!("header {name}: {value:?} is not one mailbox: {error}"))
    }

    /// Returns the top-level media type in lowercase without parameters, such as
    /// `multipart/alternative`, or `text/plain` when Content-Type is missing (RFC 2045).
    pub fn content_type(&self) -> String {
        parse_entity(&self.data).content_type().media_type
    }

    /// Returns the first text/plain part that is not an attachment, decoded to a string with
    /// CRLF line endings turned into LF.
    ///
    /// Descends into every multipart type. Panics when the part's transfer encoding or charset
    /// cannot be decoded, because that means herald sent a broken message.
    pub fn body_text(&self) -> Option<String> {
        find_text_part(&self.data, "plain", 0)
    }

    /// Returns the first text/html part that is not an attachment, decoded like `body_text`.
    pub fn body_html(&self) -> Option<String> {
        find_text_part(&self.data, "html", 0)
    }

    fn summary(&self) -> String {
        let subject = self.header("Subject").unwrap_or_default();
        format!(
            "from <{}> to {:?}, Subject: {subject}",
            self.mail_from, self.rcpt_to
        )
    }
}

struct Shared {
    config: SmtpConfig,
    tls_acceptor: Option<TlsAcceptor>,
    messages: Mutex<Vec<ReceivedMessage>>,
    /// When each accepted message's DATA ended, at the same index as in `messages`.
    arrival_times: Mutex<Vec<SystemTime>>,
    /// Messages whose DATA was answered with an injected failure reply.
    rejected: Mutex<Vec<ReceivedMessage>>,
    failures: Mutex<Vec<FailureRule>>,
    connections_accepted: AtomicUsize,
    starttls_upgrades: AtomicUsize,
    /// Wait between storing a message and replying 250 to its DATA.
    data_reply_delay: Mutex<Duration>,
}

impl Shared {
    /// Returns the action of the first failure rule for `stage` and uses up one of its commands.
    fn take_failure(&self, stage: Stage) -> Option<FailureAction> {
        let mut rules = lock(&self.failures);
        let index = rules.iter().position(|rule| rule.stage == stage)?;
        let action = rules[index].action.clone();
        if let Some(remaining) = &mut rules[index].remaining {
            *remaining -= 1;
            if *remaining == 0 {
                rules.remove(index);
            }
        }
        Some(action)
    }
}

struct RunningServer {
    shutdown: oneshot::Sender<()>,
    accept_task: JoinHandle<()>,
}

/// SMTP server on 127.0.0.1 that records accepted messages until `stop` or drop.
pub struct SmtpServer {
    addr: SocketAddr,
    certificate_pem: Option<String>,
    shared: Arc<Shared>,
    running: Mutex<Option<RunningServer>>,
}

impl SmtpServer {
    /// Binds the listener and starts accepting connections.
    ///
    /// Generates a self-signed certificate for `localhost` and `127.0.0.1` when TLS is on.
    /// Panics when the port cannot be bound.
    pub async fn start(config: SmtpConfig) -> SmtpServer {
        let (certificate_pem, tls_acceptor) = match config.tls {
            TlsMode::None => (None, None),
            TlsMode::StartTls | TlsMode::Implicit => {
                let (pem, acceptor) = generate_tls_acceptor();
                (Some(pem), Some(acceptor))
            }
        };

        let listener = bind_loopback(config.port.unwrap_or(0), "SMTP server");
        let addr = listener
            .local_addr()
            .expect("reading the SMTP listener address failed");
        let shared = Arc::new(Shared {
            config,
            tls_acceptor,
            messages: Mutex::new(Vec::new()),
            arrival_times: Mutex::new(Vec::new()),
            rejected: Mutex::new(Vec::new()),
            failures: Mutex::new(Vec::new()),
            connections_accepted: AtomicUsize::new(0),
            starttls_upgrades: AtomicUsize::new(0),
            data_reply_delay: Mutex::new(Duration::ZERO),
        });

        let (shutdown, shutdown_received) = oneshot::channel();
        let accept_task = tokio::spawn(accept_connections(
            listener,
            Arc::clone(&shared),
            shutdown_received,
        ));
        tracing::debug!(%addr, "test SMTP server started");

        SmtpServer {
            addr,
            certificate_pem,
            shared,
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

    /// Returns the PEM of the generated self-signed certificate, which is its own CA.
    ///
    /// Panics when the server was started without TLS.
    pub fn certificate_pem(&self) -> &str {
        self.certificate_pem
            .as_deref()
            .expect("certificate_pem() needs an SMTP server started with TLS on")
    }

    /// Writes the certificate PEM to `smtp-server-ca.pem` in `dir` and returns the file's path.
    pub fn write_certificate_pem(&self, dir: &Path) -> PathBuf {
        let path = dir.join("smtp-server-ca.pem");
        std::fs::write(&path, self.certificate_pem())
            .unwrap_or_else(|error| panic!("writing {} failed: {error}", path.display()));
        path
    }

    /// Returns a copy of the messages accepted so far, in acceptance order.
    pub fn messages(&self) -> Vec<ReceivedMessage> {
        lock(&self.shared.messages).clone()
    }

    /// Returns the system time at which each accepted message's DATA ended, in acceptance
    /// order, so that index `i` belongs to `messages()[i]`.
    pub fn arrival_times(&self) -> Vec<SystemTime> {
        let _messages = lock(&self.shared.messages);
        lock(&self.shared.arrival_times).clone()
    }

    /// Returns a copy of the messages whose DATA got an injected failure reply from
    /// `fail_next` or `fail_all`, in order. They are not in `messages()`.
    pub fn rejected_messages(&self) -> Vec<ReceivedMessage> {
        lock(&self.shared.rejected).clone()
    }

    /// Polls until at least `count` messages arrived and returns all of them.
    ///
    /// Panics with the number and summaries of the messages received when `timeout` passes first.
    pub async fn wait_for_messages(&self, count: usize, timeout: Duration) -> Vec<ReceivedMessage> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return messages;
            }
            if tokio::time::Instant::now() >= deadline {
                let summaries: Vec<String> =
                    messages.iter().map(ReceivedMessage::summary).collect();
                panic!(
                    "expected at least {count} messages at the test SMTP server within {timeout:?}, \
                     received {}: {summaries:#?}",
                    messages.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Returns the number of TCP connections accepted since start.
    pub fn connections_accepted(&self) -> usize {
        self.shared.connections_accepted.load(Ordering::SeqCst)
    }

    /// Returns the number of completed STARTTLS handshakes since start.
    pub fn starttls_upgrades(&self) -> usize {
        self.shared.starttls_upgrades.load(Ordering::SeqCst)
    }

    /// Replies `code text` to the next `count` commands of `stage` instead of accepting them.
    ///
    /// Rules apply in the order they were added, so an earlier rule for the same stage runs
    /// out before a later one applies. `code` must be a 4xx or 5xx reply code.
    pub fn fail_next(&self, stage: Stage, count: usize, code: u16, text: &str) {
        self.add_failure(stage, Some(count), reply_action(code, text));
    }

    /// Replies `code text` to every command of `stage` until `clear_failures`.
    pub fn fail_all(&self, stage: Stage, code: u16, text: &str) {
        self.add_failure(stage, None, reply_action(code, text));
    }

    /// Closes the connection without a reply on the next `count` commands of `stage`.
    ///
    /// With `Stage::Data` the server reads the whole message first and does not record it.
    pub fn disconnect_next(&self, stage: Stage, count: usize) {
        self.add_failure(stage, Some(count), FailureAction::Disconnect);
    }

    /// Waits `delay` between storing each message and replying 250 to its DATA, like a relay
    /// that has queued the message but answers late. A client that gives up in between has
    /// delivered a message it does not know about.
    pub fn set_data_reply_delay(&self, delay: Duration) {
        *lock(&self.shared.data_reply_delay) = delay;
    }

    /// Removes every failure rule, so the server accepts commands normally again.
    pub fn clear_failures(&self) {
        lock(&self.shared.failures).clear();
    }

    fn add_failure(&self, stage: Stage, remaining: Option<usize>, action: FailureAction) {
        if remaining == Some(0) {
            return;
        }
        lock(&self.shared.failures).push(FailureRule {
            stage,
            remaining,
            action,
        });
    }

    /// Closes the listener and every open connection, and waits until they are closed.
    ///
    /// New connections to the port are refused afterwards. Received messages stay readable.
    /// Calling `stop` again does nothing.
    pub async fn stop(&self) {
        let running = lock(&self.running).take();
        let Some(running) = running else {
            return;
        };
        // The accept task has ended already when the receiver is gone.
        let _ = running.shutdown.send(());
        if let Err(error) = running.accept_task.await {
            panic!("the test SMTP server's accept task failed: {error}");
        }
        tracing::debug!(addr = %self.addr, "test SMTP server stopped");
    }
}

impl Drop for SmtpServer {
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

fn reply_action(code: u16, text: &str) -> FailureAction {
    assert!(
        (400..600).contains(&code),
        "failure injection needs a 4xx or 5xx reply code, got {code}"
    );
    FailureAction::Reply {
        code,
        text: text.to_owned(),
    }
}

/// Locks a mutex, and keeps using the data when a panicking test thread poisoned it.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Binds a listener on 127.0.0.1 with SO_REUSEADDR, so a test can bind a stopped server's
/// port again while its old connections are in TIME_WAIT. The HTTP recorder uses it too.
///
/// Panics with `server_name` and the address when binding fails.
pub(crate) fn bind_loopback(port: u16, server_name: &str) -> TcpListener {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let socket = TcpSocket::new_v4().unwrap_or_else(|error| {
        panic!("creating a socket for the test {server_name} failed: {error}")
    });
    socket.set_reuseaddr(true).unwrap_or_else(|error| {
        panic!("setting SO_REUSEADDR for the test {server_name} failed: {error}")
    });
    socket
        .bind(addr)
        .unwrap_or_else(|error| panic!("binding the test {server_name} to {addr} failed: {error}"));
    socket.listen(1024).unwrap_or_else(|error| {
        panic!("listening on {addr} for the test {server_name} failed: {error}")
    })
}

/// Generates a self-signed certificate for `localhost` and `127.0.0.1` and returns its PEM
/// and a TLS acceptor that presents it.
fn generate_tls_acceptor() -> (String, TlsAcceptor) {
    let key_pair = rcgen::KeyPair::generate().expect("generating the TLS key pair failed");
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("creating the TLS certificate parameters failed");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "herald test SMTP server");
    let certificate = params
        .self_signed(&key_pair)
        .expect("signing the TLS certificate failed");

    let private_key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_pair.serialize_der()));
    // An explicit provider avoids a panic in `ServerConfig::builder` when more than one rustls
    // provider feature ends up enabled in the test build.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("selecting TLS protocol versions failed")
        .with_no_client_auth()
        .with_single_cert(vec![certificate.der().clone()], private_key)
        .expect("building the TLS server configuration failed");

    (
        certificate.pem(),
        TlsAcceptor::from(Arc::new(server_config)),
    )
}

async fn accept_connections(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let connection_id =
                        shared.connections_accepted.fetch_add(1, Ordering::SeqCst) + 1;
                    tracing::debug!(connection_id, %peer, "test SMTP server accepted a connection");
                    connections.spawn(serve_connection(Arc::clone(&shared), stream, connection_id));
                }
                Err(error) => {
                    tracing::warn!(%error, "test SMTP server failed to accept a connection");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(finished) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = finished {
                    tracing::error!(%error, "test SMTP connection task failed");
                }
            }
        }
    }
    drop(listener);
    connections.shutdown().await;
}

trait SmtpStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> SmtpStream for T {}

/// Buffered connection, plain or TLS. The buffer lets the session read pipelined commands one
/// at a time.
type Connection = BufReader<Box<dyn SmtpStream>>;

async fn serve_connection(shared: Arc<Shared>, stream: TcpStream, connection_id: usize) {
    match run_session(shared, stream, connection_id).await {
        Ok(()) => tracing::debug!(connection_id, "test SMTP connection closed"),
        Err(error) => {
            tracing::debug!(connection_id, %error, "test SMTP connection ended with an error")
        }
    }
}

async fn run_session(
    shared: Arc<Shared>,
    stream: TcpStream,
    connection_id: usize,
) -> io::Result<()> {
    let mut session = Session::new(Arc::clone(&shared), connection_id);
    let mut stream: Box<dyn SmtpStream> = Box::new(stream);
    if shared.config.tls == TlsMode::Implicit {
        stream = Box::new(accept_tls(&shared, stream, connection_id).await?);
        session.tls = true;
    }
    let mut connection: Connection = BufReader::new(stream);

    let greeting = format!("{} ESMTP herald test server", shared.config.hostname);
    send_reply(&mut connection, 220, &greeting).await?;

    let mut line = Vec::new();
    loop {
        match read_line(&mut connection, &mut line, MAX_LINE_LENGTH).await? {
            LineRead::Complete => {}
            LineRead::TooLong => {
                send_reply(&mut connection, 500, "5.5.2 Line too long").await?;
                continue;
            }
            LineRead::Closed => return Ok(()),
        }
        let command = String::from_utf8_lossy(trim_line_ending(&line)).into_owned();

        match session.handle_command(&mut connection, &command).await? {
            Flow::Continue => {}
            Flow::Close => return Ok(()),
            Flow::StartTls => {
                // `into_inner` drops any plaintext that the client pipelined after STARTTLS,
                // so those bytes are never read as if they came over TLS.
                let plain = connection.into_inner();
                let tls_stream = accept_tls(&shared, plain, connection_id).await?;
                connection = BufReader::new(Box::new(tls_stream));
                shared.starttls_upgrades.fetch_add(1, Ordering::SeqCst);
                session.reset_after_starttls();
            }
        }
    }
}

async fn accept_tls(
    shared: &Shared,
    stream: Box<dyn SmtpStream>,
    connection_id: usize,
) -> io::Result<tokio_rustls::server::TlsStream<Box<dyn SmtpStream>>> {
    let acceptor = shared
        .tls_acceptor
        .clone()
        .expect("a TLS acceptor exists whenever TLS is on");
    acceptor.accept(stream).await.inspect_err(|error| {
        tracing::warn!(connection_id, %error, "test SMTP server TLS handshake failed");
    })
}

enum LineRead {
    Complete,
    /// The line was longer than the limit and was read to its end and discarded.
    TooLong,
    Closed,
}

/// Reads one line including its LF into `line`, keeping at most `max_length` bytes in memory.
async fn read_line(
    connection: &mut Connection,
    line: &mut Vec<u8>,
    max_length: usize,
) -> io::Result<LineRead> {
    line.clear();
    let mut too_long = false;
    loop {
        let available = connection.fill_buf().await?;
        if available.is_empty() {
            return Ok(LineRead::Closed);
        }
        let newline = available.iter().position(|&byte| byte == b'\n');
        let chunk_length = newline.map_or(available.len(), |index| index + 1);
        if !too_long {
            if line.len() + chunk_length > max_length {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(&available[..chunk_length]);
            }
        }
        connection.consume(chunk_length);
        if newline.is_some() {
            return Ok(if too_long {
                LineRead::TooLong
            } else {
                LineRead::Complete
            });
        }
    }
}

async fn send_reply(connection: &mut Connection, code: u16, text: &str) -> io::Result<()> {
    send_raw(connection, format!("{code} {text}\r\n").as_bytes()).await
}

async fn send_raw(connection: &mut Connection, bytes: &[u8]) -> io::Result<()> {
    let stream = connection.get_mut();
    stream.write_all(bytes).await?;
    stream.flush().await
}

fn trim_line_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

enum Flow {
    Continue,
    StartTls,
    Close,
}

/// Marker that the server closes the connection without replying.
struct Disconnect;

/// Reply to a command, as a code and the text after it.
struct Reply {
    code: u16,
    text: String,
}

impl Reply {
    fn new(code: u16, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }
}

struct Transaction {
    mail_from: String,
    mail_parameters: Vec<String>,
    smtputf8: bool,
    rcpt_to: Vec<String>,
}

/// State of one SMTP connection.
struct Session {
    shared: Arc<Shared>,
    connection_id: usize,
    tls: bool,
    /// Domain from HELO or EHLO, `None` before either.
    ehlo_domain: Option<String>,
    /// Whether the client greeted with EHLO, which enables the extensions.
    extended: bool,
    auth_user: Option<String>,
    transaction: Option<Transaction>,
}

impl Session {
    fn new(shared: Arc<Shared>, connection_id: usize) -> Self {
        Self {
            shared,
            connection_id,
            tls: false,
            ehlo_domain: None,
            extended: false,
            auth_user: None,
            transaction: None,
        }
    }

    fn config(&self) -> &SmtpConfig {
        &self.shared.config
    }

    /// Forgets everything learnt before the TLS handshake, as RFC 3207 section 4.2 requires.
    fn reset_after_starttls(&mut self) {
        self.tls = true;
        self.ehlo_domain = None;
        self.extended = false;
        self.auth_user = None;
        self.transaction = None;
    }

    async fn handle_command(
        &mut self,
        connection: &mut Connection,
        command: &str,
    ) -> io::Result<Flow> {
        let (verb, argument) = match command.split_once(' ') {
            Some((verb, argument)) => (verb, argument.trim()),
            None => (command, ""),
        };

        let reply = match verb.to_ascii_uppercase().as_str() {
            "EHLO" => return self.ehlo(connection, argument).await,
            "HELO" => self.helo(argument),
            "STARTTLS" => return self.starttls(connection, argument).await,
            "AUTH" => return self.auth(connection, argument).await,
            "MAIL" => match self.mail(argument) {
                Ok(reply) => reply,
                Err(Disconnect) => return Ok(Flow::Close),
            },
            "RCPT" => match self.rcpt(argument) {
                Ok(reply) => reply,
                Err(Disconnect) => return Ok(Flow::Close),
            },
            "DATA" => return self.data(connection, argument).await,
            "RSET" => {
                self.transaction = None;
                Reply::new(250, "2.0.0 OK")
            }
            "NOOP" => Reply::new(250, "2.0.0 OK"),
            "VRFY" => Reply::new(252, "2.5.0 Cannot VRFY user, but will accept message"),
            "QUIT" => {
                send_reply(connection, 221, "2.0.0 Bye").await?;
                return Ok(Flow::Close);
            }
            "" => Reply::new(500, "5.5.2 Empty command"),
            _ => Reply::new(500, "5.5.2 Command not recognized"),
        };
        send_reply(connection, reply.code, &reply.text).await?;
        Ok(Flow::Continue)
    }

    async fn ehlo(&mut self, connection: &mut Connection, domain: &str) -> io::Result<Flow> {
        if domain.is_empty() {
            send_reply(connection, 501, "5.5.4 Syntax: EHLO domain").await?;
            return Ok(Flow::Continue);
        }
        self.ehlo_domain = Some(domain.to_owned());
        self.extended = true;
        self.transaction = None;

        let config = self.config();
        let mut lines = vec![format!("{} greets {domain}", config.hostname)];
        if config.eight_bit_mime {
            lines.push("8BITMIME".to_owned());
        }
        if config.smtputf8 {
            lines.push("SMTPUTF8".to_owned());
        }
        if config.pipelining {
            lines.push("PIPELINING".to_owned());
        }
        lines.push(format!("SIZE {}", config.max_message_size));
        lines.push("ENHANCEDSTATUSCODES".to_owned());
        if config.tls == TlsMode::StartTls && !self.tls {
            lines.push("STARTTLS".to_owned());
        }
        if config.credentials.is_some() {
            lines.push("AUTH PLAIN LOGIN".to_owned());
        }

        let mut reply = String::new();
        for (index, line) in lines.iter().enumerate() {
            let separator = if index + 1 == lines.len() { ' ' } else { '-' };
            reply.push_str(&format!("250{separator}{line}\r\n"));
        }
        send_raw(connection, reply.as_bytes()).await?;
        Ok(Flow::Continue)
    }

    fn helo(&mut self, domain: &str) -> Reply {
        if domain.is_empty() {
            return Reply::new(501, "5.5.4 Syntax: HELO domain");
        }
        self.ehlo_domain = Some(domain.to_owned());
        self.extended = false;
        self.transaction = None;
        Reply::new(250, self.config().hostname.clone())
    }

    async fn starttls(&mut self, connection: &mut Connection, argument: &str) -> io::Result<Flow> {
        let reply = if self.config().tls != TlsMode::StartTls {
            Reply::new(502, "5.5.1 STARTTLS not supported")
        } else if self.tls {
            Reply::new(503, "5.5.1 TLS already active")
        } else if !argument.is_empty() {
            Reply::new(501, "5.5.4 Syntax: STARTTLS")
        } else {
            send_reply(connection, 220, "2.0.0 Ready to start TLS").await?;
            return Ok(Flow::StartTls);
        };
        send_reply(connection, reply.code, &reply.text).await?;
        Ok(Flow::Continue)
    }

    async fn auth(&mut self, connection: &mut Connection, argument: &str) -> io::Result<Flow> {
        let Some((expected_user, expected_password)) = self.config().credentials.clone() else {
            send_reply(connection, 502, "5.5.1 AUTH not supported").await?;
            return Ok(Flow::Continue);
        };
        let rejection = if !self.extended {
            Some(Reply::new(503, "5.5.1 Send EHLO first"))
        } else if self.auth_user.is_some() {
            Some(Reply::new(503, "5.5.1 Already authenticated"))
        } else if self.transaction.is_some() {
            Some(Reply::new(
                503,
                "5.5.1 AUTH not allowed during a mail transaction",
            ))
        } else {
            None
        };
        if let Some(reply) = rejection {
            send_reply(connection, reply.code, &reply.text).await?;
            return Ok(Flow::Continue);
        }

        let (mechanism, initial_response) = match argument.split_once(' ') {
            Some((mechanism, response)) => (mechanism, Some(response.trim())),
            None => (argument, None),
        };
        let credentials = match mechanism.to_ascii_uppercase().as_str() {
            "PLAIN" => self.auth_plain(connection, initial_response).await?,
            "LOGIN" => self.auth_login(connection, initial_response).await?,
            _ => {
                send_reply(
                    connection,
                    504,
                    "5.5.4 Unrecognized authentication mechanism",
                )
                .await?;
                return Ok(Flow::Continue);
            }
        };
        let (user, password) = match credentials {
            AuthExchange::Credentials { user, password } => (user, password),
            AuthExchange::Rejected(reply) => {
                send_reply(connection, reply.code, &reply.text).await?;
                return Ok(Flow::Continue);
            }
            AuthExchange::Closed => return Ok(Flow::Close),
        };

        if user == expected_user && password == expected_password {
            self.auth_user = Some(user);
            send_reply(connection, 235, "2.7.0 Authentication successful").await?;
        } else {
            tracing::debug!(
                connection_id = self.connection_id,
                user,
                "test SMTP AUTH rejected"
            );
            send_reply(connection, 535, "5.7.8 Authentication credentials invalid").await?;
        }
        Ok(Flow::Continue)
    }

    /// Runs AUTH PLAIN (RFC 4616): `authzid NUL authcid NUL passwd`, base64-encoded.
    async fn auth_plain(
        &mut self,
        connection: &mut Connection,
        initial_response: Option<&str>,
    ) -> io::Result<AuthExchange> {
        let response = match initial_response {
            Some(response) => response.to_owned(),
            None => match read_auth_response(connection, "").await? {
                Ok(response) => response,
                Err(exchange) => return Ok(exchange),
            },
        };
        let decoded = match decode_auth_response(&response) {
            Ok(decoded) => decoded,
            Err(reply) => return Ok(AuthExchange::Rejected(reply)),
        };
        let fields: Vec<&str> = decoded.split('\0').collect();
        let [_authorization_id, user, password] = fields.as_slice() else {
            return Ok(AuthExchange::Rejected(Reply::new(
                501,
                "5.5.2 AUTH PLAIN response must contain three NUL-separated fields",
            )));
        };
        Ok(AuthExchange::Credentials {
            user: (*user).to_owned(),
            password: (*password).to_owned(),
        })
    }

    /// Runs AUTH LOGIN: the user name and the password each answer a base64 challenge.
    async fn auth_login(
        &mut self,
        connection: &mut Connection,
        initial_response: Option<&str>,
    ) -> io::Result<AuthExchange> {
        let encoded_user = match initial_response {
            Some(response) => response.to_owned(),
            None => match read_auth_response(connection, LOGIN_USERNAME_CHALLENGE).await? {
                Ok(response) => response,
                Err(exchange) => return Ok(exchange),
            },
        };
        let user = match decode_auth_response(&encoded_user) {
            Ok(user) => user,
            Err(reply) => return Ok(AuthExchange::Rejected(reply)),
        };
        let encoded_password =
            match read_auth_response(connection, LOGIN_PASSWORD_CHALLENGE).await? {
                Ok(response) => response,
                Err(exchange) => return Ok(exchange),
            };
        let password = match decode_auth_response(&encoded_password) {
            Ok(password) => password,
            Err(reply) => return Ok(AuthExchange::Rejected(reply)),
        };
        Ok(AuthExchange::Credentials { user, password })
    }

    fn mail(&mut self, argument: &str) -> Result<Reply, Disconnect> {
        if self.ehlo_domain.is_none() {
            return Ok(Reply::new(503, "5.5.1 Send EHLO or HELO first"));
        }
        if self.config().require_tls && !self.tls {
            return Ok(Reply::new(530, "5.7.0 Must issue a STARTTLS command first"));
        }
        if self.config().credentials.is_some() && self.auth_user.is_none() {
            return Ok(Reply::new(530, "5.7.0 Authentication required"));
        }
        if self.transaction.is_some() {
            return Ok(Reply::new(503, "5.5.1 Nested MAIL command"));
        }
        let Some((address, parameters)) = parse_path_argument(argument, "FROM:") else {
            return Ok(Reply::new(501, "5.5.4 Syntax: MAIL FROM:<address>"));
        };

        let mut smtputf8 = false;
        for parameter in &parameters {
            let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
            match name.to_ascii_uppercase().as_str() {
                "SIZE" if self.extended => match value.parse::<usize>() {
                    Ok(size) if size > self.config().max_message_size => {
                        return Ok(Reply::new(
                            552,
                            "5.3.4 Message size exceeds fixed maximum message size",
                        ));
                    }
                    Ok(_) => {}
                    Err(_) => return Ok(Reply::new(501, "5.5.4 Invalid SIZE value")),
                },
                "BODY" if self.extended => {
                    let body = value.to_ascii_uppercase();
                    let supported =
                        body == "7BIT" || (body == "8BITMIME" && self.config().eight_bit_mime);
                    if !supported {
                        return Ok(Reply::new(
                            555,
                            format!("5.5.4 Unsupported BODY value {value}"),
                        ));
                    }
                }
                "SMTPUTF8" if self.extended && self.config().smtputf8 && value.is_empty() => {
                    smtputf8 = true;
                }
                _ => {
                    return Ok(Reply::new(
                        555,
                        format!("5.5.4 Unsupported MAIL parameter {parameter}"),
                    ));
                }
            }
        }
        if !address.is_ascii() && !smtputf8 {
            return Ok(Reply::new(553, "5.6.7 Non-ASCII address requires SMTPUTF8"));
        }

        if let Some(reply) = self.injected_failure(Stage::Mail)? {
            return Ok(reply);
        }
        self.transaction = Some(Transaction {
            mail_from: address.to_owned(),
            mail_parameters: parameters
                .iter()
                .map(|parameter| (*parameter).to_owned())
                .collect(),
            smtputf8,
            rcpt_to: Vec::new(),
        });
        Ok(Reply::new(250, "2.1.0 OK"))
    }

    fn rcpt(&mut self, argument: &str) -> Result<Reply, Disconnect> {
        let Some(transaction) = &self.transaction else {
            return Ok(Reply::new(503, "5.5.1 Need MAIL before RCPT"));
        };
        let Some((address, parameters)) = parse_path_argument(argument, "TO:") else {
            return Ok(Reply::new(501, "5.5.4 Syntax: RCPT TO:<address>"));
        };
        if address.is_empty() {
            return Ok(Reply::new(501, "5.1.3 Empty recipient address"));
        }
        if let Some(parameter) = parameters.first() {
            return Ok(Reply::new(
                555,
                format!("5.5.4 Unsupported RCPT parameter {parameter}"),
            ));
        }
        if !address.is_ascii() && !transaction.smtputf8 {
            return Ok(Reply::new(553, "5.6.7 Non-ASCII address requires SMTPUTF8"));
        }
        if transaction.rcpt_to.len() >= MAX_RECIPIENTS {
            return Ok(Reply::new(452, "4.5.3 Too many recipients"));
        }

        if let Some(reply) = self.injected_failure(Stage::Rcpt)? {
            return Ok(reply);
        }
        if let Some(transaction) = &mut self.transaction {
            transaction.rcpt_to.push(address.to_owned());
        }
        Ok(Reply::new(250, "2.1.5 OK"))
    }

    async fn data(&mut self, connection: &mut Connection, argument: &str) -> io::Result<Flow> {
        let rejection = match &self.transaction {
            _ if !argument.is_empty() => Some(Reply::new(501, "5.5.4 Syntax: DATA")),
            None => Some(Reply::new(503, "5.5.1 Need MAIL and RCPT before DATA")),
            Some(transaction) if transaction.rcpt_to.is_empty() => {
                Some(Reply::new(503, "5.5.1 Need RCPT before DATA"))
            }
            Some(_) => None,
        };
        if let Some(reply) = rejection {
            send_reply(connection, reply.code, &reply.text).await?;
            return Ok(Flow::Continue);
        }
        send_reply(connection, 354, "End data with <CR><LF>.<CR><LF>").await?;

        let data = match read_data(connection, self.config().max_message_size).await? {
            DataRead::Complete(data) => data,
            DataRead::TooLarge => {
                self.transaction = None;
                send_reply(
                    connection,
                    552,
                    "5.3.4 Message size exceeds fixed maximum message size",
                )
                .await?;
                return Ok(Flow::Continue);
            }
            DataRead::Closed => return Ok(Flow::Close),
        };
        let transaction = self
            .transaction
            .take()
            .expect("DATA is accepted only inside a mail transaction");

        let message = ReceivedMessage {
            mail_from: transaction.mail_from,
            mail_parameters: transaction.mail_parameters,
            rcpt_to: transaction.rcpt_to,
            data,
            tls: self.tls,
            auth_user: self.auth_user.clone(),
            ehlo_domain: self.ehlo_domain.clone().unwrap_or_default(),
            connection_id: self.connection_id,
        };
        match self.shared.take_failure(Stage::Data) {
            Some(FailureAction::Reply { code, text }) => {
                lock(&self.shared.rejected).push(message);
                send_reply(connection, code, &text).await?;
                return Ok(Flow::Continue);
            }
            Some(FailureAction::Disconnect) => return Ok(Flow::Close),
            None => {}
        }

        let queue_id = {
            let mut messages = lock(&self.shared.messages);
            messages.push(message);
            lock(&self.shared.arrival_times).push(SystemTime::now());
            messages.len()
        };
        let delay = *lock(&self.shared.data_reply_delay);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        send_reply(connection, 250, &format!("2.0.0 OK: queued as {queue_id}")).await?;
        Ok(Flow::Continue)
    }

    /// Returns the injected reply for `stage`, if a failure rule applies.
    fn injected_failure(&self, stage: Stage) -> Result<Option<Reply>, Disconnect> {
        match self.shared.take_failure(stage) {
            Some(FailureAction::Reply { code, text }) => Ok(Some(Reply::new(code, text))),
            Some(FailureAction::Disconnect) => Err(Disconnect),
            None => Ok(None),
        }
    }
}

enum AuthExchange {
    Credentials { user: String, password: String },
    Rejected(Reply),
    Closed,
}

/// Sends a 334 challenge and reads the client's response line.
async fn read_auth_response(
    connection: &mut Connection,
    challenge: &str,
) -> io::Result<Result<String, AuthExchange>> {
    send_reply(connection, 334, challenge).await?;
    let mut line = Vec::new();
    match read_line(connection, &mut line, MAX_LINE_LENGTH).await? {
        LineRead::Complete => {}
        LineRead::TooLong => {
            return Ok(Err(AuthExchange::Rejected(Reply::new(
                500,
                "5.5.2 Line too long",
            ))));
        }
        LineRead::Closed => return Ok(Err(AuthExchange::Closed)),
    }
    let response = String::from_utf8_lossy(trim_line_ending(&line))
        .trim()
        .to_owned();
    if response == "*" {
        return Ok(Err(AuthExchange::Rejected(Reply::new(
            501,
            "5.7.0 Authentication cancelled",
        ))));
    }
    Ok(Ok(response))
}

/// Decodes a base64 AUTH response, where `=` means an empty response (RFC 4954).
fn decode_auth_response(response: &str) -> Result<String, Reply> {
    if response == "=" {
        return Ok(String::new());
    }
    let bytes = decode_base64(response.as_bytes())
        .map_err(|_| Reply::new(501, "5.5.2 Invalid base64 in AUTH response"))?;
    String::from_utf8(bytes).map_err(|_| Reply::new(501, "5.5.2 AUTH response is not UTF-8"))
}

enum DataRead {
    Complete(Vec<u8>),
    /// The message was larger than the limit and was read to its end and discarded.
    TooLarge,
    Closed,
}

/// Reads DATA up to the line `.`, removing the dot-stuffing of RFC 5321 section 4.5.2.
async fn read_data(connection: &mut Connection, max_size: usize) -> io::Result<DataRead> {
    let mut data = Vec::new();
    let mut oversized = false;
    let mut line = Vec::new();
    loop {
        match read_line(connection, &mut line, max_size).await? {
            LineRead::Complete => {}
            LineRead::TooLong => {
                oversized = true;
                continue;
            }
            LineRead::Closed => return Ok(DataRead::Closed),
        }
        if trim_line_ending(&line) == b"." {
            return Ok(if oversized {
                DataRead::TooLarge
            } else {
                DataRead::Complete(data)
            });
        }
        let unstuffed = line.strip_prefix(b".").unwrap_or(&line);
        if data.len() + unstuffed.len() > max_size {
            oversized = true;
        }
        if !oversized {
            data.extend_from_slice(unstuffed);
        }
    }
}

/// Splits `FROM:<address> PARAM...` or `TO:<address> PARAM...` into the address and the
/// parameters. `keyword` matches case-insensitively, and a space after the colon is allowed.
fn parse_path_argument<'a>(argument: &'a str, keyword: &str) -> Option<(&'a str, Vec<&'a str>)> {
    let prefix = argument.get(..keyword.len())?;
    if !prefix.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let path = argument[keyword.len()..].trim_start().strip_prefix('<')?;
    let end = path.find('>')?;
    let parameters = path[end + 1..].split_ascii_whitespace().collect();
    Some((&path[..end], parameters))
}

// MIME parsing and decoding.

/// Header fields and body of a message or of one MIME part.
struct Entity<'a> {
    /// Field names as sent, with unfolded and trimmed values.
    headers: Vec<(String, String)>,
    body: &'a [u8],
}

impl Entity<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(field_name, _)| field_name.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn content_type(&self) -> ContentType {
        match self.header("Content-Type") {
            Some(value) => parse_content_type(value),
            None => ContentType {
                media_type: "text/plain".to_owned(),
                parameters: Vec::new(),
            },
        }
    }

    fn is_attachment(&self) -> bool {
        self.header("Content-Disposition").is_some_and(|value| {
            let disposition = value.split(';').next().unwrap_or_default().trim();
            disposition.eq_ignore_ascii_case("attachment")
        })
    }
}

/// Splits an entity at the first empty line into header fields and body (RFC 5322 section 2.1).
///
/// Unfolding removes each line break that precedes whitespace and keeps the whitespace.
/// Lines that are neither a field nor a continuation are skipped.
fn parse_entity(raw: &[u8]) -> Entity<'_> {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut position = 0;
    let mut body_start = raw.len();
    while position < raw.len() {
        let line_end = raw[position..]
            .iter()
            .position(|&byte| byte == b'\n')
            .map_or(raw.len(), |index| position + index + 1);
        let line = trim_line_ending(&raw[position..line_end]);
        position = line_end;

        if line.is_empty() {
            body_start = position;
            break;
        }
        if matches!(line[0], b' ' | b'\t') {
            if let Some((_, value)) = headers.last_mut() {
                value.push_str(&String::from_utf8_lossy(line));
            }
            continue;
        }
        let text = String::from_utf8_lossy(line);
        if let Some((name, value)) = text.split_once(':') {
            headers.push((name.trim().to_owned(), value.to_owned()));
        }
    }

    for (_, value) in &mut headers {
        *value = value.trim().to_owned();
    }
    Entity {
        headers,
        body: &raw[body_start..],
    }
}

struct ContentType {
    /// Type and subtype in lowercase, such as `text/plain`.
    media_type: String,
    /// Parameter names in lowercase with unquoted values.
    parameters: Vec<(String, String)>,
}

impl ContentType {
    fn parameter(&self, name: &str) -> Option<&str> {
        self.parameters
            .iter()
            .find(|(parameter_name, _)| parameter_name == name)
            .map(|(_, value)| value.as_str())
    }
}

/// Parses a Content-Type value such as `text/plain; charset="utf-8"` (RFC 2045 section 5.1).
fn parse_content_type(value: &str) -> ContentType {
    let mut segments = split_outside_quotes(value, ';').into_iter();
    let media_type = segments
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let parameters = segments
        .filter_map(|segment| {
            let (name, value) = segment.split_once('=')?;
            Some((name.trim().to_ascii_lowercase(), unquote(value.trim())))
        })
        .collect();
    ContentType {
        media_type,
        parameters,
    }
}

/// Splits at `separator` wherever it is outside a quoted string.
fn split_outside_quotes(value: &str, separator: char) -> Vec<&str> {
    let mut segments = Vec::new();
    let mut in_quotes = false;
    let mut escaped = false;
    let mut start = 0;
    for (index, character) in value.char_indices() {
        if escaped {
            escaped = false;
        } else if character == '\\' && in_quotes {
            escaped = true;
        } else if character == '"' {
            in_quotes = !in_quotes;
        } else if character == separator && !in_quotes {
            segments.push(&value[start..index]);
            start = index + character.len_utf8();
        }
    }
    segments.push(&value[start..]);
    segments
}

/// Removes the quotes and backslash escapes of a quoted string, or returns a token as it is.
fn unquote(value: &str) -> String {
    let Some(inner) = value
        .strip_prefix('"')
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return value.to_owned();
    };
    let mut unquoted = String::with_capacity(inner.len());
    let mut characters = inner.chars();
    while let Some(character) = characters.next() {
        if character == '\\' {
            if let Some(escaped) = characters.next() {
                unquoted.push(escaped);
            }
        } else {
            unquoted.push(character);
        }
    }
    unquoted
}

/// Splits a multipart body into its parts' raw bytes (RFC 2046 section 5.1.1).
///
/// The line break before each delimiter line belongs to the delimiter. The preamble, the
/// epilogue and anything after the closing delimiter are dropped.
fn split_multipart<'a>(body: &'a [u8], boundary: &str) -> Vec<&'a [u8]> {
    let delimiter = format!("--{boundary}");
    let closing_delimiter = format!("--{boundary}--");
    let mut parts = Vec::new();
    let mut part_start: Option<usize> = None;
    let mut position = 0;
    while position < body.len() {
        let line_start = position;
        let line_end = body[position..]
            .iter()
            .position(|&byte| byte == b'\n')
            .map_or(body.len(), |index| position + index + 1);
        position = line_end;

        // Transport padding (RFC 2046) allows whitespace after the delimiter.
        let line = trim_line_ending(&body[line_start..line_end]).trim_ascii_end();
        let is_closing = line == closing_delimiter.as_bytes();
        if !is_closing && line != delimiter.as_bytes() {
            continue;
        }
        if let Some(start) = part_start {
            let content = &body[start..line_start];
            let content = content.strip_suffix(b"\n").unwrap_or(content);
            let content = content.strip_suffix(b"\r").unwrap_or(content);
            parts.push(content);
        }
        if is_closing {
            break;
        }
        part_start = Some(line_end);
    }
    parts
}

fn find_text_part(raw: &[u8], subtype: &str, depth: usize) -> Option<String> {
    assert!(
        depth <= MAX_MIME_DEPTH,
        "the message nests multipart entities deeper than {MAX_MIME_DEPTH} levels"
    );
    let entity = parse_entity(raw);
    let content_type = entity.content_type();

    if content_type.media_type.starts_with("multipart/") {
        let boundary = content_type.parameter("boundary").unwrap_or_else(|| {
            panic!(
                "{} entity has no boundary parameter",
                content_type.media_type
            )
        });
        return split_multipart(entity.body, boundary)
            .into_iter()
            .find_map(|part| find_text_part(part, subtype, depth + 1));
    }
    if content_type.media_type != format!("text/{subtype}") || entity.is_attachment() {
        return None;
    }
    Some(decode_text_body(&entity, &content_type))
}

/// Decodes a text part's transfer encoding and charset, and turns CRLF into LF.
fn decode_text_body(entity: &Entity<'_>, content_type: &ContentType) -> String {
    let encoding = entity
        .header("Content-Transfer-Encoding")
        .unwrap_or("7bit")
        .to_ascii_lowercase();
    let bytes = match encoding.as_str() {
        "7bit" | "8bit" | "binary" => entity.body.to_vec(),
        "quoted-printable" => decode_quoted_printable(entity.body),
        "base64" => decode_base64(entity.body).unwrap_or_else(|error| {
            panic!(
                "{} part has invalid base64: {error}",
                content_type.media_type
            )
        }),
        other => panic!(
            "{} part has unsupported Content-Transfer-Encoding {other:?}",
            content_type.media_type
        ),
    };
    let charset = content_type.parameter("charset").unwrap_or("us-ascii");
    let text = decode_charset(charset, bytes).unwrap_or_else(|error| {
        panic!(
            "{} part cannot be decoded: {error}",
            content_type.media_type
        )
    });
    text.replace("\r\n", "\n")
}

/// Decodes bytes in UTF-8, US-ASCII or ISO-8859-1 (charset names are case-insensitive).
fn decode_charset(charset: &str, bytes: Vec<u8>) -> Result<String, String> {
    match charset.to_ascii_lowercase().as_str() {
        "utf-8" | "utf8" | "us-ascii" | "ascii" => {
            String::from_utf8(bytes).map_err(|error| format!("invalid {charset}: {error}"))
        }
        // Every ISO-8859-1 byte is the Unicode code point of the same value.
        "iso-8859-1" | "iso_8859-1" | "latin1" => Ok(bytes.into_iter().map(char::from).collect()),
        _ => Err(format!("unsupported charset {charset:?}")),
    }
}

/// Parses an unfolded header value that contains one mailbox (RFC 5322 section 3.4): a bare
/// address, or a display name followed by `<address>`, and returns the display name and the
/// address.
///
/// A display name that starts with `"` must be one quoted-string, which is unquoted. Any other
/// display name is a phrase of atoms and encoded-words, which are decoded, and which must not
/// contain the specials that need quoting (`.` is allowed, as RFC 5322 obs-phrase allows it).
pub fn parse_mailbox(value: &str) -> Result<(Option<String>, String), String> {
    const SPECIALS: &str = "()<>[]:;@\\,\"";
    let is_invalid_in_address = |c: char| c.is_whitespace() || (SPECIALS.contains(c) && c != '@');
    let value = value.trim();
    let Some(before_close) = value.strip_suffix('>') else {
        if value.is_empty() || value.contains(is_invalid_in_address) {
            return Err("the bare address is empty or contains whitespace or specials".to_owned());
        }
        return Ok((None, value.to_owned()));
    };
    let open = before_close
        .rfind('<')
        .ok_or_else(|| "it ends with `>` but has no `<`".to_owned())?;
    let address = &before_close[open + 1..];
    if address.is_empty() || address.contains(is_invalid_in_address) {
        return Err(format!(
            "the address {address:?} is empty or contains whitespace or specials"
        ));
    }
    let phrase = before_close[..open].trim();
    if phrase.is_empty() {
        return Ok((None, address.to_owned()));
    }
    if let Some(quoted) = phrase.strip_prefix('"') {
        let inner = quoted
            .strip_suffix('"')
            .ok_or_else(|| "the quoted display name has no closing quote".to_owned())?;
        return unquote_strict(inner).map(|name| (Some(name), address.to_owned()));
    }
    if let Some(special) = phrase.chars().find(|&c| SPECIALS.contains(c)) {
        return Err(format!(
            "the unquoted display name contains {special:?}, which must be quoted"
        ));
    }
    decode_rfc2047(phrase).map(|name| (Some(name), address.to_owned()))
}

/// Removes the backslash escapes of a quoted-string's content, and fails on a `"` that is not
/// escaped, because that would end the quoted-string early.
fn unquote_strict(inner: &str) -> Result<String, String> {
    let mut unquoted = String::with_capacity(inner.len());
    let mut characters = inner.chars();
    while let Some(character) = characters.next() {
        match character {
            '\\' => match characters.next() {
                Some(escaped) => unquoted.push(escaped),
                None => return Err("the quoted display name ends in a backslash".to_owned()),
            },
            '"' => return Err("the quoted display name has an unescaped quote inside".to_owned()),
            other => unquoted.push(other),
        }
    }
    Ok(unquoted)
}

/// Decodes RFC 2047 encoded-words (`=?charset?B|Q?text?=`) in a header value.
///
/// Whitespace between two adjacent encoded-words is dropped, and the bytes of adjacent words
/// in the same charset are joined before decoding, so a character split across words
/// decodes. Text that only looks like an encoded-word stays as it is.
pub fn decode_rfc2047(value: &str) -> Result<String, String> {
    let mut decoded = String::new();
    // Bytes of the preceding encoded-words that share one charset, not yet decoded.
    let mut pending: Option<(String, Vec<u8>)> = None;
    let mut rest = value;
    let mut after_encoded_word = false;

    while let Some(start) = rest.find("=?") {
        let Some((charset, bytes, word_length)) = parse_encoded_word(&rest[start..])? else {
            // Not an encoded-word: keep `=?` as text.
            let (text, remainder) = rest.split_at(start + 2);
            flush_pending(&mut pending, &mut decoded)?;
            decoded.push_str(text);
            rest = remainder;
            after_encoded_word = false;
            continue;
        };

        let text_before = &rest[..start];
        let joins_previous = after_encoded_word && text_before.trim().is_empty();
        if !joins_previous {
            flush_pending(&mut pending, &mut decoded)?;
            decoded.push_str(text_before);
        }
        match &mut pending {
            Some((pending_charset, pending_bytes))
                if pending_charset.eq_ignore_ascii_case(&charset) =>
            {
                pending_bytes.extend_from_slice(&bytes);
            }
            _ => {
                flush_pending(&mut pending, &mut decoded)?;
                pending = Some((charset, bytes));
            }
        }
        rest = &rest[start + word_length..];
        after_encoded_word = true;
    }
    flush_pending(&mut pending, &mut decoded)?;
    decoded.push_str(rest);
    Ok(decoded)
}

fn flush_pending(
    pending: &mut Option<(String, Vec<u8>)>,
    decoded: &mut String,
) -> Result<(), String> {
    if let Some((charset, bytes)) = pending.take() {
        decoded.push_str(&decode_charset(&charset, bytes)?);
    }
    Ok(())
}

/// Parses the encoded-word at the start of `text` and returns its charset, decoded bytes and
/// length, or `None` when `text` does not start with a well-formed encoded-word.
fn parse_encoded_word(text: &str) -> Result<Option<(String, Vec<u8>, usize)>, String> {
    let Some(inner) = text.strip_prefix("=?") else {
        return Ok(None);
    };
    let Some((charset, after_charset)) = inner.split_once('?') else {
        return Ok(None);
    };
    let Some((encoding, after_encoding)) = after_charset.split_once('?') else {
        return Ok(None);
    };
    let Some(text_end) = after_encoding.find("?=") else {
        return Ok(None);
    };
    let encoded_text = &after_encoding[..text_end];
    let has_whitespace = |part: &str| part.contains(char::is_whitespace);
    if charset.is_empty() || has_whitespace(charset) || has_whitespace(encoded_text) {
        return Ok(None);
    }

    // RFC 2231 section 5 allows a language after `*`, as in `utf-8*en`.
    let charset = charset.split('*').next().unwrap_or(charset).to_owned();
    let bytes = match encoding {
        "B" | "b" => decode_base64(encoded_text.as_bytes())
            .map_err(|error| format!("invalid base64 in encoded-word {encoded_text:?}: {error}"))?,
        "Q" | "q" => decode_q_encoding(encoded_text.as_bytes()),
        _ => return Ok(None),
    };
    let length = text.len() - after_encoding.len() + text_end + "?=".len();
    Ok(Some((charset, bytes, length)))
}

/// Decodes the Q encoding of RFC 2047 section 4.2: `_` is a space, `=XX` a byte.
fn decode_q_encoding(text: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(text.len());
    let mut index = 0;
    while index < text.len() {
        match text[index] {
            b'_' => {
                decoded.push(b' ');
                index += 1;
            }
            b'=' => match hex_byte(&text[index + 1..]) {
                Some(byte) => {
                    decoded.push(byte);
                    index += 3;
                }
                None => {
                    decoded.push(b'=');
                    index += 1;
                }
            },
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    decoded
}

/// Decodes quoted-printable (RFC 2045 section 6.7).
///
/// A line ending in `=` is a soft line break, `=XX` is a byte in either letter case, trailing
/// whitespace on each line is removed, and an `=` that starts no valid escape stays as it is.
pub fn decode_quoted_printable(input: &[u8]) -> Vec<u8> {
    let mut decoded = Vec::with_capacity(input.len());
    let mut position = 0;
    while position < input.len() {
        let line_end = input[position..]
            .iter()
            .position(|&byte| byte == b'\n')
            .map_or(input.len(), |index| position + index + 1);
        let raw_line = &input[position..line_end];
        let line_ending = &raw_line[trim_line_ending(raw_line).len()..];
        position = line_end;

        let line = trim_line_ending(raw_line).trim_ascii_end();
        let (line, soft_break) = match line.strip_suffix(b"=") {
            Some(line) => (line, true),
            None => (line, false),
        };

        let mut index = 0;
        while index < line.len() {
            if line[index] == b'='
                && let Some(byte) = hex_byte(&line[index + 1..])
            {
                decoded.push(byte);
                index += 3;
                continue;
            }
            decoded.push(line[index]);
            index += 1;
        }
        if !soft_break {
            decoded.extend_from_slice(line_ending);
        }
    }
    decoded
}

/// Decodes the first two bytes of `text` as a hexadecimal byte.
fn hex_byte(text: &[u8]) -> Option<u8> {
    let digits = text.get(..2)?;
    let high = (digits[0] as char).to_digit(16)?;
    let low = (digits[1] as char).to_digit(16)?;
    Some((high * 16 + low) as u8)
}

/// Decodes standard base64 (RFC 4648 section 4), skipping ASCII whitespace and line breaks.
/// Padding is optional. The HTTP recorder uses it for Basic credentials.
pub fn decode_base64(input: &[u8]) -> Result<Vec<u8>, String> {
    let mut decoded = Vec::with_capacity(input.len() / 4 * 3);
    let mut accumulator: u32 = 0;
    let mut bit_count = 0;
    let mut symbol_count = 0;
    let mut padding_count = 0;
    for &byte in input {
        let value = match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                padding_count += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return Err(format!("invalid base64 character 0x{byte:02x}")),
        };
        if padding_count > 0 {
            return Err("base64 data continues after padding".to_owned());
        }
        symbol_count += 1;
        accumulator = (accumulator << 6) | u32::from(value);
        bit_count += 6;
        if bit_count >= 8 {
            bit_count -= 8;
            decoded.push((accumulator >> bit_count) as u8);
            accumulator &= (1 << bit_count) - 1;
        }
    }
    if symbol_count % 4 == 1 {
        return Err("base64 data ends with a single leftover character".to_owned());
    }
    if padding_count > 2 {
        return Err("base64 data has more than two padding characters".to_owned());
    }
    Ok(decoded)
}
