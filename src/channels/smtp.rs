//! E-mail over SMTP: lettre speaks the protocol, and herald opens the connections itself so
//! that it can set TCP_NODELAY. Without it, the end of each message waits for the relay's
//! delayed ACK (about 40 ms on Linux), which capped a channel of 8 connections near 180
//! e-mails per second on the loopback interface.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::classify::{SmtpFailure, classify_smtp, scrub};
use super::{Driver, Outgoing, Receipt, SendError};
use crate::config::channels::{SmtpSecurity, SmtpSettings};
use crate::message::{Message, email};

/// A pooled connection idle for longer than this is closed instead of reused; relays close
/// idle connections after a while, and a send on a closed one would fail.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// A pooled connection idle for longer than this is checked with NOOP before reuse.
const CHECK_AFTER: Duration = Duration::from_secs(2);

pub struct SmtpDriver {
    settings: SmtpSettings,
    hello: ClientId,
    credentials: Option<Credentials>,
    /// For STARTTLS.
    starttls: Option<TlsParameters>,
    /// For implicit TLS (`smtps://`).
    implicit_tls: Option<tokio_rustls::TlsConnector>,
    timeout: Duration,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

impl SmtpDriver {
    pub fn new(settings: &SmtpSettings, timeout: Duration) -> Result<SmtpDriver, String> {
        let extra_root =
            match &settings.tls_ca_file {
                Some(path) => Some(std::fs::read(path).map_err(|error| {
                    format!("cannot read tls_ca_file {}: {error}", path.display())
                })?),
                None => None,
            };
        let (starttls, implicit_tls) = match settings.security {
            SmtpSecurity::None => (None, None),
            SmtpSecurity::Opportunistic | SmtpSecurity::Required => {
                let mut builder = TlsParameters::builder(settings.host.clone());
                if let (Some(pem), Some(path)) = (&extra_root, &settings.tls_ca_file) {
                    let certificate = Certificate::from_pem(pem).map_err(|error| {
                        format!(
                            "tls_ca_file {} holds no valid PEM certificate: {error}",
                            path.display()
                        )
                    })?;
                    builder = builder.add_root_certificate(certificate);
                }
                let parameters = builder
                    .build_rustls()
                    .map_err(|error| format!("cannot set up TLS for {}: {error}", settings.host))?;
                (Some(parameters), None)
            }
            SmtpSecurity::Implicit => (None, Some(implicit_tls_connector(extra_root.as_deref())?)),
        };
        let hello = match &settings.hello_name {
            Some(name) => ClientId::Domain(name.clone()),
            None => ClientId::default(),
        };
        let credentials = settings.username.as_ref().map(|username| {
            let password = settings
                .password
                .as_ref()
                .map(|p| p.0.clone())
                .unwrap_or_default();
            Credentials::new(username.clone(), password)
        });
        Ok(SmtpDriver {
            settings: settings.clone(),
            hello,
            credentials,
            starttls,
            implicit_tls,
            timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// An idle pooled connection that still works, or a new one.
    async fn connection(&self) -> Result<AsyncSmtpConnection, SendError> {
        loop {
            let pooled = self.idle.lock().ok().and_then(|mut idle| idle.pop());
            let Some((mut connection, since)) = pooled else {
                break;
            };
            let idle_for = since.elapsed();
            if idle_for > IDLE_TIMEOUT || connection.has_broken() {
                connection.abort().await;
                continue;
            }
            if idle_for < CHECK_AFTER || connection.test_connected().await {
                return Ok(connection);
            }
        }
        self.connect().await
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let address = (self.settings.host.as_str(), self.settings.port);
        let tcp = match tokio::time::timeout(self.timeout, TcpStream::connect(address)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(error)) => return Err(connection_error(SmtpFailure::Connection, &error)),
            Err(_) => {
                return Err(connection_error(
                    SmtpFailure::Timeout,
                    &"connecting timed out",
                ));
            }
        };
        tcp.set_nodelay(true)
            .map_err(|error| connection_error(SmtpFailure::Connection, &error))?;

        let mut connection = match &self.implicit_tls {
            Some(connector) => {
                let name = ServerName::try_from(self.settings.host.clone())
                    .map_err(|error| connection_error(SmtpFailure::Tls, &error))?;
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|error| connection_error(SmtpFailure::Tls, &error))?;
                AsyncSmtpConnection::connect_with_transport(Box::new(TlsStream(tls)), &self.hello)
                    .await
            }
            None => AsyncSmtpConnection::connect_with_transport(Box::new(tcp), &self.hello).await,
        }
        .map_err(|error| classify_error(&error))?;
        if let Some(parameters) = &self.starttls {
            if connection.can_starttls() {
                connection
                    .starttls(parameters.clone(), &self.hello)
                    .await
                    .map_err(|error| classify_error(&error))?;
            } else if self.settings.security == SmtpSecurity::Required {
                connection.abort().await;
                return Err(connection_error(
                    SmtpFailure::Tls,
                    &"the server does not offer STARTTLS, which the channel's URL requires (tls=required)",
                ));
            }
        }
        if let Some(credentials) = &self.credentials {
            connection
                .auth(&[Mechanism::Plain, Mechanism::Login], credentials)
                .await
                .map_err(|error| classify_error(&error))?;
        }
        Ok(connection)
    }

    fn return_to_pool(&self, connection: AsyncSmtpConnection) {
        if let Ok(mut idle) = self.idle.lock()
            && idle.len() < self.settings.pool_size as usize
        {
            idle.push((connection, Instant::now()));
        }
    }
}

#[async_trait]
impl Driver for SmtpDriver {
    async fn send(&self, outgoing: &Outgoing<'_>) -> Result<Receipt, SendError> {
        let Message::Email(message) = outgoing.message else {
            return Err(SendError::permanent(
                "an smtp channel can only send e-mails",
            ));
        };
        let message_id =
            email::message_id(outgoing.instance_id, outgoing.delivery_id, &message.from);
        let built = email::build(message, &message_id).map_err(SendError::permanent)?;
        let envelope: Envelope = built.envelope().clone();
        let bytes = built.formatted();

        let mut connection = self.connection().await?;
        let sent = tokio::time::timeout(self.timeout, connection.send(&envelope, &bytes)).await;
        match sent {
            Ok(Ok(response)) => {
                self.return_to_pool(connection);
                Ok(Receipt {
                    provider_id: response.first_line().map(scrub),
                })
            }
            // lettre closes the connection itself on an SMTP error.
            Ok(Err(error)) => Err(classify_error(&error)),
            Err(_) => {
                connection.abort().await;
                Err(SendError::transient(format!(
                    "SMTP: the send did not finish within {} s",
                    self.timeout.as_secs()
                )))
            }
        }
    }
}

/// A failure before the SMTP session starts (TCP connect, implicit TLS).
fn connection_error(failure: SmtpFailure, error: &dyn std::fmt::Display) -> SendError {
    SendError {
        kind: classify_smtp(failure),
        message: format!("SMTP: {}", scrub(&error.to_string())),
        retry_after: None,
    }
}

/// A TLS client connector that trusts the platform's roots and, when given, the
/// certificates of a PEM file.
fn implicit_tls_connector(
    extra_root_pem: Option<&[u8]>,
) -> Result<tokio_rustls::TlsConnector, String> {
    let mut extra_roots = Vec::new();
    if let Some(pem) = extra_root_pem {
        for certificate in CertificateDer::pem_slice_iter(pem) {
            extra_roots.push(certificate.map_err(|error| {
                format!("tls_ca_file holds an invalid PEM certificate: {error}")
            })?);
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider.clone())
            .map_err(|error| format!("cannot load the platform's trusted certificates: {error}"))?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("cannot set up TLS: {error}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A TLS stream that lettre can speak SMTP over.
#[derive(Debug)]
struct TlsStream(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for TlsStream {
    fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

fn classify_error(error: &lettre::transport::smtp::Error) -> SendError {
    let failure = if let Some(code) = error.status() {
        SmtpFailure::Reply(code.to_string().parse().unwrap_or(500))
    } else if error.is_timeout() {
        SmtpFailure::Timeout
    } else if error.is_tls() {
        SmtpFailure::Tls
    } else if error.is_client() {
        SmtpFailure::InvalidMessage
    } else {
        SmtpFailure::Connection
    };
    SendError {
        kind: classify_smtp(failure),
        message: format!("SMTP: {}", scrub(&super::error_chain(error))),
        retry_after: None,
    }
}
