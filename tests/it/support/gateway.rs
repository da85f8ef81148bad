//! herald started with a configuration folder that a test prepared.
//!
//! Its e-mail channel is pointed at a test SMTP server and its SMS channel at an HTTP recorder
//! in place of the SMS provider, through the `SMTP_URL` and `SMS_*` variables that the
//! repository's `rules.yaml` reads.

use serde_json::Value;
use tempfile::TempDir;

use super::herald::{ConfigDir, Herald, Options, run_cli};
use super::http_recorder::{HttpRecorder, ScriptedResponse};
use super::smtp::{SmtpConfig, SmtpServer};

pub const SMS_ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
pub const SMS_AUTH_TOKEN: &str = "test-auth-token";
pub const SMS_FROM: &str = "+15005550006";

/// A running herald and the servers it sends to. Fields drop in order, so herald stops before
/// the servers.
pub struct Gateway {
    pub herald: Herald,
    pub smtp: SmtpServer,
    pub sms: HttpRecorder,
    pub config: ConfigDir,
    pub data: TempDir,
}

impl Gateway {
    /// Starts a plain SMTP server, an HTTP recorder that accepts every SMS, and herald with
    /// `config` and a fresh data folder.
    pub async fn start(config: ConfigDir) -> Gateway {
        let smtp = SmtpServer::start(SmtpConfig::default()).await;
        let sms = HttpRecorder::start().await;
        sms.set_default_response(ScriptedResponse::sms_accepted());
        let data = tempfile::tempdir().unwrap();
        let options = Options::new(config.path(), data.path())
            .env("SMTP_URL", format!("smtp://127.0.0.1:{}", smtp.port()))
            .env("SMS_API_URL", sms.url())
            .env("SMS_ACCOUNT_SID", SMS_ACCOUNT_SID)
            .env("SMS_AUTH_TOKEN", SMS_AUTH_TOKEN)
            .env("SMS_FROM", SMS_FROM);
        let herald = Herald::start(options).await;
        Gateway {
            herald,
            smtp,
            sms,
            config,
            data,
        }
    }

    /// Runs `herald deliveries show ID --format json` on the data folder and returns its
    /// output: state, notes, `not_before`, attempts, and the message with a masked recipient.
    pub fn delivery(&self, id: i64) -> Value {
        let data_dir = self
            .data
            .path()
            .to_str()
            .expect("temporary paths are UTF-8");
        let id = id.to_string();
        let (code, stdout, stderr) = run_cli(
            &[
                "deliveries",
                "--data-dir",
                data_dir,
                "show",
                &id,
                "--format",
                "json",
            ],
            &[],
        );
        assert_eq!(code, 0, "herald deliveries show {id}: stderr:\n{stderr}");
        serde_json::from_str(&stdout)
            .unwrap_or_else(|error| panic!("deliveries show {id} is not JSON ({error}):\n{stdout}"))
    }
}
