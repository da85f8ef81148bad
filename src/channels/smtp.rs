//! E-mail over SMTP with lettre: pooled connections, STARTTLS or implicit TLS, AUTH.

use std::time::Duration;

use async_trait::async_trait;
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::classify::{SmtpFailure, classify_smtp, scrub};
use super::{Driver, Outgoing, Receipt, SendError};
use crate::config::channels::{SmtpSecurity, SmtpSettings};
use crate::message::{Message, email};

pub struct SmtpDriver {
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl SmtpDriver {
    pub fn new(settings: &SmtpSettings, timeout: Duration) -> Result<SmtpDriver, String> {
        let mut tls_parameters = TlsParameters::builder(settings.host.clone());
        if let Some(path) = &settings.tls_ca_file {
            let pem = std::fs::read(path)
                .map_err(|error| format!("cannot read tls_ca_file {}: {error}", path.display()))?;
            let certificate = Certificate::from_pem(&pem).map_err(|error| {
                format!(
                    "tls_ca_file {} holds no valid PEM certificate: {error}",
                    path.display()
                )
            })?;
            tls_parameters = tls_parameters.add_root_certificate(certificate);
        }
        let tls_parameters = tls_parameters
            .build_rustls()
            .map_err(|error| format!("cannot set up TLS for {}: {error}", settings.host))?;
        let tls = match settings.security {
            SmtpSecurity::Opportunistic => Tls::Opportunistic(tls_parameters),
            SmtpSecurity::Required => Tls::Required(tls_parameters),
            SmtpSecurity::Implicit => Tls::Wrapper(tls_parameters),
            SmtpSecurity::None => Tls::None,
        };
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(settings.host.as_str())
                .port(settings.port)
                .tls(tls)
                .timeout(Some(timeout))
                .pool_config(
                    PoolConfig::new()
                        .max_size(settings.pool_size)
                        .idle_timeout(Duration::from_secs(30)),
                );
        if let Some(name) = &settings.hello_name {
            builder = builder.hello_name(ClientId::Domain(name.clone()));
        }
        if let Some(username) = &settings.username {
            let password = settings
                .password
                .as_ref()
                .map(|p| p.0.clone())
                .unwrap_or_default();
            builder = builder.credentials(Credentials::new(username.clone(), password));
        }
        Ok(SmtpDriver {
            transport: builder.build(),
        })
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
        match self.transport.send(built).await {
            Ok(response) => Ok(Receipt {
                provider_id: response.first_line().map(scrub),
            }),
            Err(error) => Err(classify_error(&error)),
        }
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
