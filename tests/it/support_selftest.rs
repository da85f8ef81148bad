//! Tests of the test-support servers themselves, with real traffic over TCP on 127.0.0.1.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::support::http_recorder::{HttpRecorder, ScriptedResponse};
use crate::support::smtp::{
    ReceivedMessage, SmtpConfig, SmtpServer, Stage, decode_base64, decode_quoted_printable,
    decode_rfc2047,
};

const WAIT: Duration = Duration::from_secs(5);

const SUBJECT: &str = "Störung: Über 90 % – 警告";
const TEXT_BODY: &str = "Grüße aus dem Lager.\n.Eine Zeile mit Punkt am Anfang.\nEnde";
const HTML_BODY: &str = "<p>警告：倉庫の温度が高すぎます。</p>";

fn plain_transport(port: u16) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .timeout(Some(WAIT))
        .build()
}

/// Builds a transport that trusts the server's generated certificate for `domain`.
fn tls_transport(
    server: &SmtpServer,
    domain: &str,
    wrap: fn(TlsParameters) -> Tls,
) -> AsyncSmtpTransport<Tokio1Executor> {
    let certificate = Certificate::from_pem(server.certificate_pem().as_bytes())
        .expect("the server's certificate PEM parses");
    let parameters = TlsParameters::builder(domain.to_owned())
        .add_root_certificate(certificate)
        .build_rustls()
        .expect("TLS parameters build");
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.port())
        .timeout(Some(WAIT))
        .tls(wrap(parameters))
        .build()
}

fn mailbox(text: &str) -> Mailbox {
    text.parse().expect("the test mailbox parses")
}

fn alert_message() -> Message {
    Message::builder()
        .from(mailbox("Herald <herald@example.test>"))
        .to(mailbox("Ops <ops@example.test>"))
        .cc(mailbox("oncall@example.test"))
        .bcc(mailbox("audit@example.test"))
        .subject(SUBJECT)
        .multipart(MultiPart::alternative_plain_html(
            TEXT_BODY.to_owned(),
            HTML_BODY.to_owned(),
        ))
        .expect("the test message builds")
}

fn short_message(subject: &str) -> Message {
    Message::builder()
        .from(mailbox("herald@example.test"))
        .to(mailbox("ops@example.test"))
        .subject(subject)
        .body("short body".to_owned())
        .expect("the test message builds")
}

fn message_with_data(data: &str) -> ReceivedMessage {
    ReceivedMessage {
        mail_from: "sender@example.test".to_owned(),
        mail_parameters: Vec::new(),
        rcpt_to: vec!["rcpt@example.test".to_owned()],
        data: data.as_bytes().to_vec(),
        tls: false,
        auth_user: None,
        ehlo_domain: "client.example.test".to_owned(),
        connection_id: 1,
    }
}

/// SMTP client that writes raw command text and reads replies, for cases lettre never sends.
struct RawSmtpClient {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl RawSmtpClient {
    async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr)
            .await
            .expect("connecting to the test SMTP server");
        let (read_half, writer) = stream.into_split();
        Self {
            reader: BufReader::new(read_half),
            writer,
        }
    }

    async fn send(&mut self, text: &str) {
        self.writer
            .write_all(text.as_bytes())
            .await
            .expect("writing to the test SMTP server");
    }

    /// Reads one reply and returns its code and the text of every line.
    async fn read_reply(&mut self) -> (u16, Vec<String>) {
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(WAIT, self.reader.read_line(&mut line))
                .await
                .expect("the SMTP reply arrived in time")
                .expect("reading the SMTP reply");
            assert!(read > 0, "the server closed the connection after {lines:?}");
            let line = line.trim_end();
            let code = line[..3].parse().expect("the reply starts with a code");
            lines.push(line[4..].to_owned());
            if line.as_bytes()[3] == b' ' {
                return (code, lines);
            }
        }
    }

    async fn command(&mut self, text: &str) -> (u16, Vec<String>) {
        self.send(&format!("{text}\r\n")).await;
        self.read_reply().await
    }
}

#[tokio::test]
async fn smtp_plain_delivery_records_envelope() {
    let server = SmtpServer::start(SmtpConfig::default()).await;

    plain_transport(server.port())
        .send(alert_message())
        .await
        .expect("plain SMTP delivery succeeds");

    let messages = server.wait_for_messages(1, WAIT).await;
    let message = &messages[0];
    assert_eq!(message.mail_from, "herald@example.test", "envelope sender");
    let recipients: BTreeSet<&str> = message.rcpt_to.iter().map(String::as_str).collect();
    assert_eq!(
        recipients,
        BTreeSet::from([
            "ops@example.test",
            "oncall@example.test",
            "audit@example.test"
        ]),
        "envelope recipients include To, Cc and Bcc"
    );
    assert!(!message.tls, "plain delivery is not marked as TLS");
    assert_eq!(message.auth_user, None, "no AUTH happened");
    assert!(
        !message.ehlo_domain.is_empty(),
        "the EHLO domain is recorded"
    );
    assert_eq!(message.header("Bcc"), None, "lettre removes the Bcc header");
    assert_eq!(
        server.connections_accepted(),
        1,
        "one connection was accepted"
    );
    assert_eq!(server.starttls_upgrades(), 0, "no STARTTLS happened");
}

#[tokio::test]
async fn smtp_message_headers_and_bodies_decode() {
    let server = SmtpServer::start(SmtpConfig::default()).await;

    plain_transport(server.port())
        .send(alert_message())
        .await
        .expect("plain SMTP delivery succeeds");

    let message = &server.wait_for_messages(1, WAIT).await[0];
    let raw_subject = message
        .header("Subject")
        .expect("the Subject header exists");
    assert!(
        raw_subject.starts_with("=?"),
        "the raw non-ASCII subject is an RFC 2047 encoded-word: {raw_subject}"
    );
    assert!(
        !raw_subject.contains('\n'),
        "the raw subject is unfolded: {raw_subject:?}"
    );
    assert_eq!(
        message.decoded_header("Subject").as_deref(),
        Some(SUBJECT),
        "decoded subject"
    );
    assert_eq!(
        message.decoded_header("From").as_deref(),
        Some("Herald <herald@example.test>"),
        "decoded From"
    );
    assert_eq!(
        message.header("X-Missing"),
        None,
        "a missing header is None"
    );
    assert_eq!(
        message.content_type(),
        "multipart/alternative",
        "top-level media type"
    );

    let text = message.body_text().expect("a text/plain part exists");
    assert_eq!(
        text, TEXT_BODY,
        "text body after transfer decoding and dot-unstuffing"
    );
    let html = message.body_html().expect("a text/html part exists");
    assert_eq!(html, HTML_BODY, "HTML body after transfer decoding");
}

#[tokio::test]
async fn smtp_pooled_connection_carries_several_messages() {
    let server = SmtpServer::start(SmtpConfig::default()).await;
    let transport = plain_transport(server.port());

    for index in 0..3 {
        transport
            .send(short_message(&format!("message {index}")))
            .await
            .unwrap_or_else(|error| panic!("delivery {index} failed: {error}"));
        // lettre returns a connection to its pool in a spawned task, so a send that starts
        // at once can open a second connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let messages = server.wait_for_messages(3, WAIT).await;
    let subjects: Vec<String> = messages
        .iter()
        .map(|message| message.header("Subject").unwrap_or_default())
        .collect();
    assert_eq!(
        subjects,
        ["message 0", "message 1", "message 2"],
        "messages arrive in order"
    );
    assert_eq!(
        server.connections_accepted(),
        1,
        "lettre reused one pooled connection"
    );
    assert!(
        messages.iter().all(|message| message.connection_id == 1),
        "every message came over connection 1"
    );
}

#[tokio::test]
async fn smtp_starttls_with_trusted_certificate() {
    let server = SmtpServer::start(SmtpConfig::tls()).await;
    let transport = tls_transport(&server, "localhost", Tls::Required);

    transport
        .send(alert_message())
        .await
        .expect("delivery over STARTTLS succeeds");

    let message = &server.wait_for_messages(1, WAIT).await[0];
    assert!(message.tls, "the message is marked as received over TLS");
    assert_eq!(
        server.starttls_upgrades(),
        1,
        "one STARTTLS upgrade happened"
    );
    assert_eq!(
        message.decoded_header("Subject").as_deref(),
        Some(SUBJECT),
        "subject survives the TLS session"
    );
}

#[tokio::test]
async fn smtp_certificate_file_is_trusted() {
    let server = SmtpServer::start(SmtpConfig::tls()).await;
    let directory = tempfile::tempdir().expect("creating a temporary directory");

    let path = server.write_certificate_pem(directory.path());
    let pem = std::fs::read(&path).expect("reading the written certificate");
    assert!(
        String::from_utf8_lossy(&pem).starts_with("-----BEGIN CERTIFICATE-----"),
        "the file holds a PEM certificate"
    );

    let parameters = TlsParameters::builder("127.0.0.1".to_owned())
        .add_root_certificate(Certificate::from_pem(&pem).expect("the written PEM parses"))
        .build_rustls()
        .expect("TLS parameters build");
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.port())
        .timeout(Some(WAIT))
        .tls(Tls::Required(parameters))
        .build()
        .send(short_message("via the IP address SAN"))
        .await
        .expect("STARTTLS with the certificate from the file and the IP address name succeeds");
    server.wait_for_messages(1, WAIT).await;
}

#[tokio::test]
async fn smtp_starttls_untrusted_certificate_fails() {
    let server = SmtpServer::start(SmtpConfig::tls()).await;
    let other_server = SmtpServer::start(SmtpConfig::tls()).await;
    // Trusts another server's certificate, so the handshake must fail verification.
    let certificate = Certificate::from_pem(other_server.certificate_pem().as_bytes())
        .expect("the other certificate parses");
    let parameters = TlsParameters::builder("localhost".to_owned())
        .add_root_certificate(certificate)
        .build_rustls()
        .expect("TLS parameters build");
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.port())
        .timeout(Some(WAIT))
        .tls(Tls::Required(parameters))
        .build();

    let result = transport.send(short_message("untrusted")).await;

    assert!(
        result.is_err(),
        "delivery with an untrusted certificate fails"
    );
    assert!(server.messages().is_empty(), "no message was recorded");
}

#[tokio::test]
async fn smtp_implicit_tls_delivery() {
    let server = SmtpServer::start(SmtpConfig::implicit_tls()).await;
    let transport = tls_transport(&server, "localhost", Tls::Wrapper);

    transport
        .send(alert_message())
        .await
        .expect("delivery over implicit TLS succeeds");

    let message = &server.wait_for_messages(1, WAIT).await[0];
    assert!(message.tls, "the message is marked as received over TLS");
    assert_eq!(
        server.starttls_upgrades(),
        0,
        "implicit TLS needs no STARTTLS"
    );
    assert_eq!(
        message.body_html().as_deref(),
        Some(HTML_BODY),
        "HTML body over implicit TLS"
    );
}

#[tokio::test]
async fn smtp_auth_plain_and_login_accept_credentials() {
    let server =
        SmtpServer::start(SmtpConfig::tls().with_credentials("herald", "s3cret pass")).await;

    for mechanism in [Mechanism::Plain, Mechanism::Login] {
        let certificate = Certificate::from_pem(server.certificate_pem().as_bytes())
            .expect("the server's certificate PEM parses");
        let parameters = TlsParameters::builder("localhost".to_owned())
            .add_root_certificate(certificate)
            .build_rustls()
            .expect("TLS parameters build");
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(server.port())
            .timeout(Some(WAIT))
            .tls(Tls::Required(parameters))
            .credentials(Credentials::new(
                "herald".to_owned(),
                "s3cret pass".to_owned(),
            ))
            .authentication(vec![mechanism])
            .build()
            .send(short_message(&format!("{mechanism:?}")))
            .await
            .unwrap_or_else(|error| panic!("delivery with AUTH {mechanism:?} failed: {error}"));
    }

    let messages = server.wait_for_messages(2, WAIT).await;
    for message in &messages {
        assert_eq!(
            message.auth_user.as_deref(),
            Some("herald"),
            "AUTH user of {:?}",
            message.header("Subject")
        );
    }
}

#[tokio::test]
async fn smtp_auth_wrong_password_is_rejected() {
    let server = SmtpServer::start(SmtpConfig::default().with_credentials("herald", "right")).await;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(server.port())
        .timeout(Some(WAIT))
        .credentials(Credentials::new("herald".to_owned(), "wrong".to_owned()))
        .authentication(vec![Mechanism::Plain])
        .build();

    let error = transport
        .send(short_message("wrong password"))
        .await
        .expect_err("delivery with a wrong password fails");

    assert!(error.is_permanent(), "535 is a permanent error: {error}");
    assert_eq!(
        error.status().map(|code| code.to_string()).as_deref(),
        Some("535"),
        "reply code: {error}"
    );
    assert!(server.messages().is_empty(), "no message was recorded");
}

#[tokio::test]
async fn smtp_mail_without_auth_is_rejected() {
    let server = SmtpServer::start(SmtpConfig::default().with_credentials("herald", "right")).await;
    let mut client = RawSmtpClient::connect(server.addr()).await;
    client.read_reply().await;

    let (code, lines) = client.command("EHLO client.example.test").await;
    assert_eq!(code, 250, "EHLO reply");
    assert!(
        lines.iter().any(|line| line == "AUTH PLAIN LOGIN"),
        "AUTH is advertised: {lines:?}"
    );

    let (code, lines) = client.command("MAIL FROM:<herald@example.test>").await;
    assert_eq!(code, 530, "MAIL before AUTH: {lines:?}");
}

#[tokio::test]
async fn smtp_require_tls_rejects_plain_mail() {
    let config = SmtpConfig {
        require_tls: true,
        ..SmtpConfig::tls()
    };
    let server = SmtpServer::start(config).await;
    let mut client = RawSmtpClient::connect(server.addr()).await;
    client.read_reply().await;

    let (code, lines) = client.command("EHLO client.example.test").await;
    assert_eq!(code, 250, "EHLO reply");
    assert!(
        lines.iter().any(|line| line == "STARTTLS"),
        "STARTTLS is advertised: {lines:?}"
    );

    let (code, lines) = client.command("MAIL FROM:<herald@example.test>").await;
    assert_eq!(code, 530, "MAIL before STARTTLS");
    assert_eq!(
        lines,
        ["5.7.0 Must issue a STARTTLS command first"],
        "MAIL before STARTTLS reply text"
    );
}

#[tokio::test]
async fn smtp_data_451_is_transient_error() {
    let server = SmtpServer::start(SmtpConfig::default()).await;
    server.fail_next(Stage::Data, 1, 451, "4.3.0 try later");
    let transport = plain_transport(server.port());

    let error = transport
        .send(short_message("first try"))
        .await
        .expect_err("delivery fails while DATA gets 451");
    assert!(error.is_transient(), "451 is a transient error: {error}");
    assert!(
        server.messages().is_empty(),
        "the rejected message was not recorded"
    );

    transport
        .send(short_message("second try"))
        .await
        .expect("delivery succeeds once the injected failure is used up");
    let messages = server.wait_for_messages(1, WAIT).await;
    assert_eq!(messages.len(), 1, "only the accepted message was recorded");
}

#[tokio::test]
async fn smtp_rcpt_550_is_permanent_error() {
    let server = SmtpServer::start(SmtpConfig::default()).await;
    server.fail_all(Stage::Rcpt, 550, "5.1.1 no such user");
    let transport = plain_transport(server.port());

    for attempt in 0..2 {
        let error = transport
            .send(short_message("rejected"))
            .await
            .expect_err("delivery fails while RCPT gets 550");
        assert!(
            error.is_permanent(),
            "attempt {attempt}: 550 is a permanent error: {error}"
        );
    }

    server.clear_failures();
    transport
        .send(short_message("accepted"))
        .await
        .expect("delivery succeeds after clear_failures");
    let messages = server.wait_for_messages(1, WAIT).await;
    assert_eq!(messages.len(), 1, "only the accepted message was recorded");
}

#[tokio::test]
async fn smtp_mail_failure_uses_given_code() {
    let server = SmtpServer::start(SmtpConfig::default()).await;
    server.fail_next(Stage::Mail, 2, 452, "4.3.1 insufficient system storage");
    let mut client = RawSmtpClient::connect(server.addr()).await;
    client.read_reply().await;
    client.command("EHLO client.example.test").await;

    for attempt in 0..2 {
        let (code, lines) = client.command("MAIL FROM:<herald@example.test>").await;
        assert_eq!(code, 452, "attempt {attempt}: injected MAIL reply code");
        assert_eq!(
            lines,
            ["4.3.1 insufficient system storage"],
            "attempt {attempt}: injected reply text"
        );
    }
    let (code, _) = client.command("MAIL FROM:<herald@example.test>").await;
    assert_eq!(code, 250, "MAIL is accepted after two injected failures");
}

#[tokio::test]
async fn smtp_disconnect_after_data_drops_message() {
    let server = SmtpServer::start(SmtpConfig::default()).await;
    server.disconnect_next(Stage::Data, 1);
    let transport = plain_transport(server.port());

    let result = transport.send(short_message("dropped")).await;
    assert!(
        result.is_err(),
        "delivery fails when the connection drops after DATA"
    );
    assert!(
        server.messages().is_empty(),
        "the dropped message was not recorded"
    );

    transport
        .send(short_message("delivered"))
        .await
        .expect("delivery succeeds on a new connection");
    let messages = server.wait_for_messages(1, WAIT).await;
    assert_eq!(
        messages[0].header("Subject").as_deref(),
        Some("delivered"),
        "the second message was recorded"
    );
    assert_eq!(
        server.connections_accepted(),
        2,
        "the client had to reconnect"
    );
}

#[tokio::test]
async fn smtp_stop_refuses_connections_until_restart() {
    let server = SmtpServer::start(SmtpConfig::default()).await;
    let port = server.port();
    plain_transport(port)
        .send(short_message("before stop"))
        .await
        .expect("delivery before stop succeeds");

    server.stop().await;
    let connect_error = TcpStream::connect(server.addr())
        .await
        .expect_err("connecting to a stopped server fails");
    assert_eq!(
        connect_error.kind(),
        ErrorKind::ConnectionRefused,
        "a stopped server refuses connections"
    );
    let failed = plain_transport(port)
        .send(short_message("during outage"))
        .await;
    assert!(
        failed.is_err(),
        "delivery fails while the server is stopped"
    );
    assert_eq!(
        server.messages().len(),
        1,
        "messages stay readable after stop"
    );
    server.stop().await;

    let restarted = SmtpServer::start(SmtpConfig::default().with_port(port)).await;
    assert_eq!(
        restarted.port(),
        port,
        "the restarted server uses the same port"
    );
    plain_transport(port)
        .send(short_message("after restart"))
        .await
        .expect("delivery after restart succeeds");
    let messages = restarted.wait_for_messages(1, WAIT).await;
    assert_eq!(
        messages[0].header("Subject").as_deref(),
        Some("after restart"),
        "the restarted server recorded the new message"
    );
}

#[tokio::test]
async fn smtp_stop_closes_open_connections() {
    let server = SmtpServer::start(SmtpConfig::default()).await;
    let mut client = RawSmtpClient::connect(server.addr()).await;
    client.read_reply().await;

    server.stop().await;

    let mut line = String::new();
    let read = tokio::time::timeout(WAIT, client.reader.read_line(&mut line))
        .await
        .expect("the closed connection returns in time");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the open connection is closed after stop: {read:?} {line:?}"
    );
}

#[tokio::test]
async fn smtp_command_sequence_errors() {
    let server = SmtpServer::start(SmtpConfig::default()).await;
    let mut client = RawSmtpClient::connect(server.addr()).await;

    let (code, _) = client.read_reply().await;
    assert_eq!(code, 220, "greeting");
    let (code, _) = client.command("MAIL FROM:<herald@example.test>").await;
    assert_eq!(code, 503, "MAIL before EHLO");

    let (code, lines) = client.command("EHLO client.example.test").await;
    assert_eq!(code, 250, "EHLO");
    for extension in ["8BITMIME", "PIPELINING", "SIZE 10485760"] {
        assert!(
            lines.iter().any(|line| line == extension),
            "EHLO advertises {extension}: {lines:?}"
        );
    }
    for extension in ["SMTPUTF8", "STARTTLS"] {
        assert!(
            !lines.iter().any(|line| line.starts_with(extension)),
            "EHLO does not advertise {extension}: {lines:?}"
        );
    }

    let (code, _) = client.command("RCPT TO:<ops@example.test>").await;
    assert_eq!(code, 503, "RCPT before MAIL");
    let (code, _) = client.command("MAIL FROM:<herald@example.test>").await;
    assert_eq!(code, 250, "MAIL after EHLO");
    let (code, _) = client.command("DATA").await;
    assert_eq!(code, 503, "DATA before RCPT");
    let (code, _) = client.command("MAIL FROM:<herald@example.test>").await;
    assert_eq!(code, 503, "nested MAIL");
    let (code, _) = client.command("RSET").await;
    assert_eq!(code, 250, "RSET");
    let (code, _) = client.command("DATA").await;
    assert_eq!(code, 503, "DATA after RSET");
    let (code, _) = client.command("NOOP").await;
    assert_eq!(code, 250, "NOOP");
    let (code, _) = client.command("VRFY ops@example.test").await;
    assert_eq!(code, 252, "VRFY");
    let (code, _) = client.command("EXPN staff").await;
    assert_eq!(code, 500, "unknown command");
    let (code, _) = client.command("MAIL FROM:<jörg@example.test>").await;
    assert_eq!(code, 553, "non-ASCII sender without SMTPUTF8");
    let (code, _) = client
        .command("MAIL FROM:<herald@example.test> SMTPUTF8")
        .await;
    assert_eq!(code, 555, "SMTPUTF8 parameter when it is not advertised");

    let long_line = format!("NOOP {}", "x".repeat(5000));
    let (code, _) = client.command(&long_line).await;
    assert_eq!(code, 500, "line over 4096 bytes");
    let (code, _) = client.command("NOOP").await;
    assert_eq!(code, 250, "the session goes on after a long line");

    let (code, _) = client.command("QUIT").await;
    assert_eq!(code, 221, "QUIT");
}

#[tokio::test]
async fn smtp_smtputf8_accepts_non_ascii_address() {
    let config = SmtpConfig {
        smtputf8: true,
        ..SmtpConfig::default()
    };
    let server = SmtpServer::start(config).await;
    let mut client = RawSmtpClient::connect(server.addr()).await;
    client.read_reply().await;

    let (_, lines) = client.command("EHLO client.example.test").await;
    assert!(
        lines.iter().any(|line| line == "SMTPUTF8"),
        "SMTPUTF8 is advertised: {lines:?}"
    );
    let (code, _) = client
        .command("MAIL FROM:<jörg@example.test> SMTPUTF8")
        .await;
    assert_eq!(code, 250, "non-ASCII sender with SMTPUTF8");
    let (code, _) = client.command("RCPT TO:<zoë@example.test>").await;
    assert_eq!(code, 250, "non-ASCII recipient in an SMTPUTF8 transaction");
    let (code, _) = client.command("DATA").await;
    assert_eq!(code, 354, "DATA");
    let (code, _) = client.command("Subject: Grüße\r\n\r\nHallo\r\n.").await;
    assert_eq!(code, 250, "end of DATA");

    let message = &server.wait_for_messages(1, WAIT).await[0];
    assert_eq!(
        message.mail_from, "jörg@example.test",
        "UTF-8 envelope sender"
    );
    assert_eq!(message.mail_parameters, ["SMTPUTF8"], "MAIL parameters");
    assert_eq!(
        message.header("Subject").as_deref(),
        Some("Grüße"),
        "raw UTF-8 header"
    );
}

#[tokio::test]
async fn smtp_pipelined_commands_and_dot_unstuffing() {
    let server = SmtpServer::start(SmtpConfig::default()).await;
    let mut client = RawSmtpClient::connect(server.addr()).await;
    client.read_reply().await;

    client
        .send(concat!(
            "EHLO client.example.test\r\n",
            "MAIL FROM:<herald@example.test> BODY=8BITMIME SIZE=200\r\n",
            "RCPT TO:<one@example.test>\r\n",
            "RCPT TO:<two@example.test>\r\n",
            "DATA\r\n",
        ))
        .await;
    let codes = [
        client.read_reply().await.0,
        client.read_reply().await.0,
        client.read_reply().await.0,
        client.read_reply().await.0,
        client.read_reply().await.0,
    ];
    assert_eq!(
        codes,
        [250, 250, 250, 250, 354],
        "replies to pipelined commands"
    );

    client
        .send(concat!(
            "Subject: pipelined\r\n",
            "\r\n",
            "..starts with a dot\r\n",
            "...two dots\r\n",
            "last line\r\n",
            ".\r\n",
            "MAIL FROM:<>\r\n",
            "RCPT TO:<three@example.test>\r\n",
            "DATA\r\n",
        ))
        .await;
    let codes = [
        client.read_reply().await.0,
        client.read_reply().await.0,
        client.read_reply().await.0,
        client.read_reply().await.0,
    ];
    assert_eq!(
        codes,
        [250, 250, 250, 354],
        "replies to the second pipelined batch"
    );
    let (code, _) = client.command("Subject: second\r\n\r\n.").await;
    assert_eq!(code, 250, "end of the second DATA");
    client.command("QUIT").await;

    let messages = server.wait_for_messages(2, WAIT).await;
    assert_eq!(
        String::from_utf8_lossy(&messages[0].data),
        "Subject: pipelined\r\n\r\n.starts with a dot\r\n..two dots\r\nlast line\r\n",
        "DATA after dot-unstuffing, with CRLF kept"
    );
    assert_eq!(
        messages[0].rcpt_to,
        ["one@example.test", "two@example.test"],
        "recipients of the first message"
    );
    assert_eq!(
        messages[0].mail_parameters,
        ["BODY=8BITMIME", "SIZE=200"],
        "MAIL parameters of the first message"
    );
    assert_eq!(
        messages[1].mail_from, "",
        "null sender of the second message"
    );
    assert_eq!(
        messages[1].rcpt_to,
        ["three@example.test"],
        "recipient of the second message"
    );
}

#[tokio::test]
async fn smtp_oversized_message_is_rejected() {
    let config = SmtpConfig {
        max_message_size: 100,
        ..SmtpConfig::default()
    };
    let server = SmtpServer::start(config).await;
    let mut client = RawSmtpClient::connect(server.addr()).await;
    client.read_reply().await;
    client.command("EHLO client.example.test").await;

    let (code, _) = client
        .command("MAIL FROM:<herald@example.test> SIZE=101")
        .await;
    assert_eq!(code, 552, "declared SIZE over the limit");

    client.command("MAIL FROM:<herald@example.test>").await;
    client.command("RCPT TO:<ops@example.test>").await;
    let (code, _) = client.command("DATA").await;
    assert_eq!(code, 354, "DATA");
    let body = format!("Subject: big\r\n\r\n{}\r\n.", "y".repeat(200));
    let (code, _) = client.command(&body).await;
    assert_eq!(code, 552, "DATA over the limit");
    let (code, _) = client.command("NOOP").await;
    assert_eq!(code, 250, "the session goes on after an oversized message");
    assert!(
        server.messages().is_empty(),
        "the oversized message was not recorded"
    );
}

#[test]
fn base64_decoder_cases() {
    assert_eq!(
        decode_base64(b"aGVyYWxk").as_deref(),
        Ok(&b"herald"[..]),
        "no padding needed"
    );
    assert_eq!(
        decode_base64(b"aGVyYWw=").as_deref(),
        Ok(&b"heral"[..]),
        "one padding character"
    );
    assert_eq!(
        decode_base64(b"aGVyYQ==").as_deref(),
        Ok(&b"hera"[..]),
        "two padding characters"
    );
    assert_eq!(
        decode_base64(b"aGVy\r\nYQ").as_deref(),
        Ok(&b"hera"[..]),
        "line break and no padding"
    );
    assert_eq!(decode_base64(b"").as_deref(), Ok(&b""[..]), "empty input");
    assert!(decode_base64(b"aGV*").is_err(), "invalid character");
    assert!(
        decode_base64(b"aGVyY").is_err(),
        "single leftover character"
    );
    assert!(decode_base64(b"aG==VyYQ").is_err(), "data after padding");
}

#[test]
fn quoted_printable_decoder_cases() {
    assert_eq!(
        decode_quoted_printable(b"Gr=C3=BC=c3=9fe"),
        "Grüße".as_bytes(),
        "escapes in both letter cases"
    );
    assert_eq!(
        decode_quoted_printable(b"long =\r\nline\r\nnext"),
        b"long line\r\nnext",
        "soft line break"
    );
    assert_eq!(
        decode_quoted_printable(b"trailing   \r\nend"),
        b"trailing\r\nend",
        "trailing whitespace is removed"
    );
    assert_eq!(
        decode_quoted_printable(b"a=ZZb=3"),
        b"a=ZZb=3",
        "invalid escapes stay as they are"
    );
}

#[test]
fn rfc2047_decoder_cases() {
    let cases = [
        ("=?utf-8?B?R3LDvMOfZQ==?=", "Grüße", "B encoding in UTF-8"),
        (
            "=?ISO-8859-1?Q?Gr=FC=DFe_aus_Wien?=",
            "Grüße aus Wien",
            "Q encoding in ISO-8859-1",
        ),
        (
            "Re: =?utf-8?q?St=C3=B6rung?= jetzt",
            "Re: Störung jetzt",
            "text around a word",
        ),
        (
            "=?utf-8?q?a?= =?utf-8?q?b?=",
            "ab",
            "whitespace between words is dropped",
        ),
        (
            "=?utf-8?B?R3LD?=\r\n =?utf-8?B?vMOfZQ==?=",
            "Grüße",
            "character split across words",
        ),
        ("=?utf-8*de?q?Hallo?=", "Hallo", "charset with a language"),
        (
            "cost =? 5 ?= price",
            "cost =? 5 ?= price",
            "text that is no encoded-word",
        ),
        ("plain", "plain", "plain text"),
    ];
    for (input, expected, case) in cases {
        assert_eq!(
            decode_rfc2047(input).as_deref(),
            Ok(expected),
            "{case}: {input:?}"
        );
    }
    assert!(
        decode_rfc2047("=?koi8-r?q?x?=").is_err(),
        "an unsupported charset is an error"
    );
}

#[test]
fn received_message_nested_mime() {
    let data = concat!(
        "Received: from a\r\n",
        "Received: from b\r\n",
        "Subject: =?utf-8?q?Gef=C3=A4hrlich?=\r\n",
        "\t=?utf-8?q?_hoch?=\r\n",
        "Content-Type: multipart/mixed; boundary=\"outer; b\"\r\n",
        "\r\n",
        "preamble\r\n",
        "--outer; b\r\n",
        "Content-Type: multipart/alternative; boundary=inner\r\n",
        "\r\n",
        "--inner\r\n",
        "Content-Type: text/plain; charset=utf-8\r\n",
        "Content-Transfer-Encoding: quoted-printable\r\n",
        "\r\n",
        "Temperatur =C3=BCber Grenzwert, sehr lange Zeile die umgebrochen =\r\n",
        "wird\r\n",
        "--inner\r\n",
        "Content-Type: text/html; charset=\"UTF-8\"\r\n",
        "Content-Transfer-Encoding: base64\r\n",
        "\r\n",
        "PHA+w7xiZXI8L3A+\r\n",
        "--inner--\r\n",
        "--outer; b \r\n",
        "Content-Type: text/plain; charset=iso-8859-1\r\n",
        "Content-Disposition: attachment; filename=log.txt\r\n",
        "\r\n",
        "attachment text\r\n",
        "--outer; b--\r\n",
        "epilogue\r\n",
    );
    let message = message_with_data(data);

    assert_eq!(
        message.headers("received"),
        ["from a", "from b"],
        "every Received header in order"
    );
    assert_eq!(
        message.header("subject").as_deref(),
        Some("=?utf-8?q?Gef=C3=A4hrlich?=\t=?utf-8?q?_hoch?="),
        "raw subject, unfolded"
    );
    assert_eq!(
        message.decoded_header("Subject").as_deref(),
        Some("Gefährlich hoch"),
        "decoded folded subject"
    );
    assert_eq!(
        message.content_type(),
        "multipart/mixed",
        "top-level media type"
    );
    assert_eq!(
        message.body_text().as_deref(),
        Some("Temperatur über Grenzwert, sehr lange Zeile die umgebrochen wird"),
        "quoted-printable text part, not the attachment"
    );
    assert_eq!(
        message.body_html().as_deref(),
        Some("<p>über</p>"),
        "base64 HTML part"
    );
}

#[test]
fn received_message_single_part() {
    let message = message_with_data(concat!(
        "Subject: plain\r\n",
        "\r\n",
        "line one\r\n",
        "line two\r\n",
    ));

    assert_eq!(
        message.content_type(),
        "text/plain",
        "media type without Content-Type"
    );
    assert_eq!(
        message.body_text().as_deref(),
        Some("line one\nline two\n"),
        "7bit body with LF line endings"
    );
    assert_eq!(message.body_html(), None, "no HTML part");
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .expect("the HTTP client builds")
}

#[tokio::test]
async fn http_recorder_records_form_post() {
    let recorder = HttpRecorder::start().await;
    recorder.set_default_response(ScriptedResponse::sms_accepted());
    let url = format!(
        "{}/2010-04-01/Accounts/AC0123/Messages.json",
        recorder.url()
    );

    let response = http_client()
        .post(&url)
        .basic_auth("AC0123", Some("auth:token"))
        .form(&[
            ("To", "+15551234567"),
            ("From", "+15557654321"),
            ("Body", "Grüße & 100% = alarm"),
        ])
        .send()
        .await
        .expect("the form POST is answered");
    assert_eq!(response.status().as_u16(), 201, "default response status");
    let body: serde_json::Value = response.json().await.expect("the response is JSON");
    let sid = body["sid"].as_str().expect("sid is a string");
    assert!(
        sid.len() == 34
            && sid.starts_with("SM")
            && sid[2..]
                .chars()
                .all(|character| character.is_ascii_hexdigit()),
        "sid is SM and 32 hex digits: {sid}"
    );
    assert_eq!(body["status"], "queued", "response status field");

    let requests = recorder.wait_for_requests(1, WAIT).await;
    let request = &requests[0];
    assert_eq!(request.method, "POST", "method");
    assert_eq!(
        request.path, "/2010-04-01/Accounts/AC0123/Messages.json",
        "path"
    );
    assert_eq!(request.query, None, "no query string");
    assert_eq!(
        request.header("content-type"),
        Some("application/x-www-form-urlencoded"),
        "form content type"
    );
    assert!(
        request
            .headers
            .iter()
            .all(|(name, _)| name == &name.to_lowercase()),
        "header names are lowercase: {:?}",
        request.headers
    );
    assert_eq!(
        request.form_value("To").as_deref(),
        Some("+15551234567"),
        "To with a plus sign"
    );
    assert_eq!(
        request.form_value("Body").as_deref(),
        Some("Grüße & 100% = alarm"),
        "Body with escapes"
    );
    assert_eq!(request.form().len(), 3, "three form fields");
    assert_eq!(
        request.basic_auth(),
        Some(("AC0123".to_owned(), "auth:token".to_owned())),
        "Basic credentials, with a colon in the password"
    );
    assert_eq!(request.response_status, 201, "recorded response status");
}

#[tokio::test]
async fn http_recorder_script_then_default() {
    let recorder = HttpRecorder::start().await;
    recorder.push_responses(vec![
        ScriptedResponse::new(429)
            .with_header("Retry-After", "1");
        2
    ]);
    recorder.set_default_response(ScriptedResponse::sms_accepted());
    let client = http_client();
    let url = format!("{}/hook?attempt=x", recorder.url());

    let mut statuses = Vec::new();
    let mut retry_after = Vec::new();
    for _ in 0..3 {
        let response = client
            .post(&url)
            .json(&serde_json::json!({"event": "alert"}))
            .send()
            .await
            .expect("the request is answered");
        statuses.push(response.status().as_u16());
        retry_after.push(
            response
                .headers()
                .get("retry-after")
                .map(|value| value.to_str().unwrap_or_default().to_owned()),
        );
    }

    assert_eq!(
        statuses,
        [429, 429, 201],
        "two scripted responses, then the default"
    );
    assert_eq!(
        retry_after,
        [Some("1".to_owned()), Some("1".to_owned()), None],
        "Retry-After only on scripted responses"
    );
    let requests = recorder.wait_for_requests(3, WAIT).await;
    let recorded: Vec<u16> = requests
        .iter()
        .map(|request| request.response_status)
        .collect();
    assert_eq!(recorded, [429, 429, 201], "recorded response statuses");
    assert_eq!(
        requests[0].query.as_deref(),
        Some("attempt=x"),
        "query string"
    );
    assert_eq!(requests[0].json()["event"], "alert", "JSON body");
}

#[tokio::test]
async fn http_recorder_sms_error_body() {
    let recorder = HttpRecorder::start().await;
    recorder.push_response(ScriptedResponse::sms_invalid_number());

    let response = http_client()
        .post(format!(
            "{}/2010-04-01/Accounts/AC1/Messages.json",
            recorder.url()
        ))
        .form(&[("To", "12"), ("MessagingServiceSid", "MG1"), ("Body", "x")])
        .send()
        .await
        .expect("the request is answered");

    assert_eq!(response.status().as_u16(), 400, "error status");
    let body: serde_json::Value = response.json().await.expect("the error body is JSON");
    assert_eq!(
        body,
        serde_json::json!({
            "code": 21211,
            "message": "The 'To' number is not a valid phone number.",
            "status": 400,
        }),
        "provider error body"
    );
    let requests = recorder.wait_for_requests(1, WAIT).await;
    assert_eq!(
        requests[0].form_value("MessagingServiceSid").as_deref(),
        Some("MG1"),
        "MessagingServiceSid form field"
    );
    assert_eq!(requests[0].basic_auth(), None, "no credentials sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_recorder_concurrent_requests_all_recorded() {
    const REQUEST_COUNT: usize = 64;
    let recorder = HttpRecorder::start().await;
    recorder.push_responses(vec![ScriptedResponse::new(503); 10]);
    let client = http_client();

    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..REQUEST_COUNT {
        let client = client.clone();
        let url = format!("{}/hook", recorder.url());
        tasks.spawn(async move {
            client
                .post(url)
                .json(&serde_json::json!({ "index": index }))
                .send()
                .await
                .map(|response| response.status().as_u16())
        });
    }
    let mut statuses = Vec::new();
    while let Some(result) = tasks.join_next().await {
        let status = result
            .expect("the request task did not panic")
            .expect("the request is answered");
        statuses.push(status);
    }

    let requests = recorder.wait_for_requests(REQUEST_COUNT, WAIT).await;
    assert_eq!(
        requests.len(),
        REQUEST_COUNT,
        "every request was recorded once"
    );
    let indices: BTreeSet<u64> = requests
        .iter()
        .map(|request| request.json()["index"].as_u64().expect("index is a number"))
        .collect();
    assert_eq!(
        indices.len(),
        REQUEST_COUNT,
        "every request index is present"
    );
    let unavailable = statuses.iter().filter(|&&status| status == 503).count();
    assert_eq!(unavailable, 10, "each scripted response was used once");
    let recorded_unavailable = requests
        .iter()
        .filter(|request| request.response_status == 503)
        .count();
    assert_eq!(
        recorded_unavailable, 10,
        "recorded statuses match the script"
    );
}

#[tokio::test]
async fn http_recorder_stop_and_restart() {
    let recorder = HttpRecorder::start().await;
    let port = recorder.port();
    let client = http_client();
    client
        .get(format!("{}/before", recorder.url()))
        .send()
        .await
        .expect("the request before stop is answered");

    recorder.stop().await;
    let connect_error = TcpStream::connect(recorder.addr())
        .await
        .expect_err("connecting to a stopped recorder fails");
    assert_eq!(
        connect_error.kind(),
        ErrorKind::ConnectionRefused,
        "a stopped recorder refuses connections"
    );
    assert_eq!(
        recorder.requests().len(),
        1,
        "requests stay readable after stop"
    );

    let restarted = HttpRecorder::start_on_port(port).await;
    let response = client
        .get(format!("{}/after", restarted.url()))
        .send()
        .await
        .expect("the request after restart is answered");
    assert_eq!(
        response.status().as_u16(),
        200,
        "default status after restart"
    );
    let requests = restarted.wait_for_requests(1, WAIT).await;
    assert_eq!(
        requests[0].path, "/after",
        "the restarted recorder records new requests"
    );
}

#[tokio::test]
async fn http_recorder_delayed_response() {
    let recorder = HttpRecorder::start().await;
    recorder.push_response(ScriptedResponse::new(204).with_delay(Duration::from_millis(300)));

    let started = std::time::Instant::now();
    let response = http_client()
        .get(recorder.url())
        .send()
        .await
        .expect("the delayed request is answered");

    assert_eq!(response.status().as_u16(), 204, "scripted status");
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "the response waited for the delay: {:?}",
        started.elapsed()
    );
}
