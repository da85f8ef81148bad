//! Process lifecycle and channel behaviour: SIGTERM and SIGINT drain sends in flight, the
//! webhook channel, per-channel rate limits, the attempt limit, and the `deliveries` command.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::herald::{ConfigDir, Herald, Options, run_cli};
use crate::support::http_recorder::{HttpRecorder, ScriptedResponse};
use crate::support::payloads::PublicUser;
use crate::support::smtp::{SmtpConfig, SmtpServer, Stage};

const WAIT: Duration = Duration::from_secs(30);

/// The default configuration, e-mail only for invites, with fast retries.
fn email_only_config() -> ConfigDir {
    let config = ConfigDir::defaults();
    config.replace("rules.yaml", "initial_backoff: 30s", "initial_backoff: 1s");
    config.replace("rules.yaml", "max_backoff: 30m", "max_backoff: 2s");
    config.replace(
        "rules.yaml",
        "    send: [email, sms]\n    template: invite",
        "    send: [email]\n    template: invite",
    );
    config
}

fn smtp_options<'a>(config: &'a ConfigDir, data: &'a Path, smtp: &SmtpServer) -> Options<'a> {
    Options::new(config.path(), data).env("SMTP_URL", format!("smtp://127.0.0.1:{}", smtp.port()))
}

fn invite(id: i64) -> Value {
    PublicUser::new("Invite", 3 * 24 * 60).id(id).json()
}

fn cli_json(args: &[&str]) -> Value {
    let (code, stdout, stderr) = run_cli(args, &[]);
    assert_eq!(code, 0, "herald {args:?}: {stderr}");
    serde_json::from_str(&stdout)
        .unwrap_or_else(|error| panic!("herald {args:?} printed no JSON ({error}): {stdout}"))
}

#[tokio::test]
async fn sigterm_finishes_sends_in_flight() {
    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    smtp.set_data_reply_delay(Duration::from_secs(2));
    let config = email_only_config();
    let data = tempfile::tempdir().unwrap();
    let mut herald = Herald::start(smtp_options(&config, data.path(), &smtp)).await;

    let reply = herald.post(&invite(1)).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let id = reply.body["deliveries"][0]["id"].as_i64().unwrap();
    // The send is in flight once the server has the message and holds back its reply.
    smtp.wait_for_messages(1, WAIT).await;
    herald.signal("TERM");

    let status = herald.wait_exit(WAIT).await;
    assert_eq!(status.code(), Some(0), "exit status");
    herald
        .wait_for_log("Sends in flight finished", &[], Duration::from_secs(1))
        .await;
    herald
        .wait_for_log("herald stopped", &[], Duration::from_secs(1))
        .await;
    let data_dir = data.path().to_str().unwrap();
    let detail = cli_json(&[
        "deliveries",
        "--data-dir",
        data_dir,
        "show",
        &id.to_string(),
        "--format",
        "json",
    ]);
    assert_eq!(
        detail["state"], "delivered",
        "the send in flight was recorded before exit"
    );
}

#[tokio::test]
async fn sigint_stops_cleanly_and_refuses_new_connections() {
    let config = ConfigDir::defaults();
    let data = tempfile::tempdir().unwrap();
    let mut herald = Herald::start(Options::new(config.path(), data.path())).await;
    let url = herald.url("/healthz");
    herald.signal("INT");
    assert_eq!(herald.wait_exit(WAIT).await.code(), Some(0));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    assert!(
        client.get(&url).send().await.is_err(),
        "nothing listens after the stop"
    );
    herald
        .wait_for_log(
            "Stopping",
            &[("signal", Value::from("SIGINT"))],
            Duration::from_secs(1),
        )
        .await;
}

#[tokio::test]
async fn sigterm_deadline_leaves_unfinished_sends_for_restart() {
    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    smtp.set_data_reply_delay(Duration::from_secs(8));
    let config = email_only_config();
    config.replace(
        "rules.yaml",
        "    on_missing_env: file\n\n  # SMS",
        "    on_missing_env: file\n    timeout: 2s\n\n  # SMS",
    );
    let data = tempfile::tempdir().unwrap();
    let mut herald = Herald::start(
        smtp_options(&config, data.path(), &smtp)
            .arg("--shutdown-timeout")
            .arg("1s"),
    )
    .await;

    let reply = herald.post(&invite(2)).await;
    let id = reply.body["deliveries"][0]["id"].as_i64().unwrap();
    smtp.wait_for_messages(1, WAIT).await;
    let stopped_at = Instant::now();
    herald.signal("TERM");
    assert_eq!(herald.wait_exit(WAIT).await.code(), Some(0), "exit status");
    assert!(
        stopped_at.elapsed() < Duration::from_secs(8),
        "herald did not wait for the slow reply"
    );
    herald
        .wait_for_log(
            "Sends still running at the shutdown deadline; their deliveries are retried after their lease runs out",
            &[],
            Duration::from_secs(1),
        )
        .await;

    // After a restart the lease (twice the 2 s timeout, plus 5 s) runs out and the delivery
    // is sent again; the first copy did reach the server, so this is the bounded duplicate.
    smtp.set_data_reply_delay(Duration::ZERO);
    let _restarted = Herald::start(smtp_options(&config, data.path(), &smtp)).await;
    let data_dir = data.path().to_str().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let detail = cli_json(&[
            "deliveries",
            "--data-dir",
            data_dir,
            "show",
            &id.to_string(),
            "--format",
            "json",
        ]);
        if detail["state"] == "delivered" {
            let outcomes: Vec<&str> = detail["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["outcome"].as_str().unwrap())
                .collect();
            assert_eq!(outcomes, ["interrupted", "delivered"]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never delivered after restart: {detail:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let ids: std::collections::BTreeSet<String> = smtp
        .messages()
        .iter()
        .map(|m| m.header("Message-ID").unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "both copies carry the same Message-ID");
}

#[tokio::test]
async fn webhook_channel_posts_rendered_json() {
    let receiver = HttpRecorder::start().await;
    receiver.set_default_response(ScriptedResponse::json(
        200,
        &serde_json::json!({"id": "evt-1"}),
    ));
    let config = ConfigDir::defaults();
    config.replace(
        "rules.yaml",
        "channels:\n",
        "channels:\n  crm:\n    driver: webhook\n    url: ${CRM_URL}\n    headers:\n      Authorization: Bearer ${CRM_TOKEN}\n      X-Clinic: north\n",
    );
    config.replace(
        "rules.yaml",
        "    send: [email, sms]\n    template: invite",
        "    send: [crm]\n    template: crm-invite",
    );
    config.write(
        "templates/crm-invite/webhook.json",
        "{\"patient\": {{ fields.name }}, \"status\": {{ status }}, \"session\": {{ fields.session_time }}, \"sms\": {{ fields.sms }}}\n",
    );
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start(
        Options::new(config.path(), data.path())
            .env("CRM_URL", format!("{}/hooks/patients", receiver.url()))
            .env("CRM_TOKEN", "s3cret"),
    )
    .await;

    let payload = PublicUser::new("Invite", 3 * 24 * 60)
        .with("RecipientSmsNumber", "")
        .with("RecipientName", "Zoë \"Z\" Public");
    let reply = herald.post(&payload.json()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let requests = receiver.wait_for_requests(1, WAIT).await;
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/patients");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(request.header("x-clinic"), Some("north"));
    assert!(
        request
            .header("idempotency-key")
            .is_some_and(|key| key.starts_with("herald-")),
        "idempotency key"
    );
    let body = request.json();
    assert_eq!(
        body["patient"], "Zoë \"Z\" Public",
        "values are JSON-escaped"
    );
    assert_eq!(body["status"], "Invite");
    assert_eq!(body["sms"], Value::Null, "an empty field is null in JSON");
    assert!(body["session"].as_str().unwrap().ends_with('Z'));
    assert!(
        !herald.logs().join("\n").contains("s3cret"),
        "the header secret is not logged"
    );
}

#[tokio::test]
async fn rate_limit_spaces_sends() {
    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    let config = email_only_config();
    config.replace(
        "rules.yaml",
        "    on_missing_env: file\n\n  # SMS",
        "    on_missing_env: file\n    rate_limit: 2\n\n  # SMS",
    );
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start(smtp_options(&config, data.path(), &smtp)).await;

    let started = Instant::now();
    for id in 0..6 {
        assert_eq!(herald.post(&invite(100 + id)).await.status, 202);
    }
    smtp.wait_for_messages(6, WAIT).await;
    // Two tokens are there at once; the other four come at two per second, so the sixth
    // cannot go out before 2 s have passed.
    assert!(
        started.elapsed() >= Duration::from_millis(1_900),
        "6 sends at 2/s took {:?}",
        started.elapsed()
    );
    assert_eq!(smtp.messages().len(), 6);
}

#[tokio::test]
async fn attempts_run_out_after_max_attempts() {
    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    smtp.fail_all(Stage::Data, 451, "4.3.0 try again later");
    let config = email_only_config();
    config.replace("rules.yaml", "    max_attempts: 10", "    max_attempts: 3");
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start(smtp_options(&config, data.path(), &smtp)).await;

    let reply = herald.post(&invite(7)).await;
    let id = reply.body["deliveries"][0]["id"].as_i64().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let detail = loop {
        let detail = cli_json(&[
            "deliveries",
            "--data-dir",
            data_dir,
            "show",
            &id.to_string(),
            "--format",
            "json",
        ]);
        if detail["state"] == "failed" {
            break detail;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never failed: {detail:#}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let outcomes: Vec<&str> = detail["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["transient", "transient", "permanent"]);
    let reason = detail["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("gave up after 3 attempts; last error: SMTP: "),
        "{reason}"
    );
    drop(herald);
}

#[tokio::test]
async fn deliveries_command_lists_retries_and_cancels() {
    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    smtp.fail_all(Stage::Rcpt, 550, "5.1.1 no such user");
    let config = email_only_config();
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start(smtp_options(&config, data.path(), &smtp)).await;
    let data_dir = data.path().to_str().unwrap().to_string();

    let failed_id = herald.post(&invite(11)).await.body["deliveries"][0]["id"]
        .as_i64()
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while cli_json(&[
        "deliveries",
        "--data-dir",
        &data_dir,
        "show",
        &failed_id.to_string(),
        "--format",
        "json",
    ])["state"]
        != "failed"
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the delivery never failed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // list: the text table and the JSON lines agree.
    let (code, table, _) = run_cli(
        &[
            "deliveries",
            "--data-dir",
            &data_dir,
            "list",
            "--status",
            "failed",
        ],
        &[],
    );
    assert_eq!(code, 0);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(lines[0].starts_with("    ID  EVENT  STATE"), "{table}");
    assert!(
        lines[1].contains(" failed ")
            && lines[1].contains(" email ")
            && lines[1].contains(" invite "),
        "{table}"
    );
    assert!(lines[1].contains("SMTP: "), "the reason is shown: {table}");
    let (_, json_lines, _) = run_cli(
        &[
            "deliveries",
            "--data-dir",
            &data_dir,
            "list",
            "--format",
            "json",
        ],
        &[],
    );
    let first: Value = serde_json::from_str(json_lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["id"], failed_id);

    // show masks the recipient unless --reveal.
    let (_, shown, _) = run_cli(
        &[
            "deliveries",
            "--data-dir",
            &data_dir,
            "show",
            &failed_id.to_string(),
        ],
        &[],
    );
    assert!(
        shown.contains("To:           p***@example.com (--reveal shows the message)"),
        "{shown}"
    );
    assert!(!shown.contains("perry@example.com"), "{shown}");
    let (_, revealed, _) = run_cli(
        &[
            "deliveries",
            "--data-dir",
            &data_dir,
            "show",
            &failed_id.to_string(),
            "--reveal",
        ],
        &[],
    );
    assert!(revealed.contains("perry@example.com"), "{revealed}");

    // retry: once the server accepts again, the failed delivery goes out.
    smtp.clear_failures();
    let (code, stdout, _) = run_cli(
        &[
            "deliveries",
            "--data-dir",
            &data_dir,
            "retry",
            &failed_id.to_string(),
        ],
        &[],
    );
    assert_eq!(code, 0);
    assert_eq!(
        stdout,
        format!("delivery {failed_id} is pending and due now\n")
    );
    smtp.wait_for_messages(1, WAIT).await;

    // cancel: a pending delivery is closed; a delivered one cannot be cancelled.
    smtp.fail_all(Stage::Data, 451, "4.3.0 later");
    let pending_id = herald.post(&invite(12)).await.body["deliveries"][0]["id"]
        .as_i64()
        .unwrap();
    let (code, stdout, stderr) = run_cli(
        &[
            "deliveries",
            "--data-dir",
            &data_dir,
            "cancel",
            &pending_id.to_string(),
            "--reason",
            "patient called",
        ],
        &[],
    );
    if code == 0 {
        assert_eq!(stdout, format!("delivery {pending_id} is cancelled\n"));
        let detail = cli_json(&[
            "deliveries",
            "--data-dir",
            &data_dir,
            "show",
            &pending_id.to_string(),
            "--format",
            "json",
        ]);
        assert_eq!(detail["state"], "cancelled");
        assert_eq!(detail["reason"], "patient called");
    } else {
        // The delivery was being sent at that instant; a send in flight cannot be cancelled.
        assert_eq!(
            stderr,
            format!(
                "error: delivery {pending_id} is sending: only pending deliveries can be cancelled\n"
            )
        );
    }
    let (code, _, stderr) = run_cli(
        &[
            "deliveries",
            "--data-dir",
            &data_dir,
            "cancel",
            &failed_id.to_string(),
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(
        stderr,
        format!(
            "error: delivery {failed_id} is delivered: only pending deliveries can be cancelled\n"
        )
    );
    let (code, _, stderr) = run_cli(
        &["deliveries", "--data-dir", &data_dir, "show", "999999"],
        &[],
    );
    assert_eq!((code, stderr.as_str()), (1, "error: no delivery 999999\n"));
    let (code, _, stderr) = run_cli(
        &["deliveries", "--data-dir", "/nonexistent/herald", "list"],
        &[],
    );
    assert_eq!(code, 2);
    assert_eq!(
        stderr,
        "error: no outbox in /nonexistent/herald: pass --data-dir with the folder herald serve uses\n"
    );
    let (code, _, stderr) = run_cli(
        &[
            "deliveries",
            "--data-dir",
            &data_dir,
            "list",
            "--status",
            "lost",
        ],
        &[],
    );
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("error: unknown status \"lost\""),
        "{stderr}"
    );
    drop(herald);
}

#[tokio::test]
async fn smtp_connections_are_reused() {
    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    let config = email_only_config();
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start(smtp_options(&config, data.path(), &smtp)).await;
    for id in 0..3 {
        assert_eq!(herald.post(&invite(300 + id)).await.status, 202);
        smtp.wait_for_messages(id as usize + 1, WAIT).await;
    }
    assert_eq!(
        smtp.connections_accepted(),
        1,
        "three e-mails over one pooled connection"
    );
}

#[tokio::test]
async fn smtps_with_auth_delivers_over_tls() {
    let smtp =
        SmtpServer::start(SmtpConfig::implicit_tls().with_credentials("clinic", "p@ss word")).await;
    let certificate_dir = tempfile::tempdir().unwrap();
    let certificate = smtp.write_certificate_pem(certificate_dir.path());
    let config = email_only_config();
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start(
        Options::new(config.path(), data.path())
            .env(
                "SMTP_URL",
                format!("smtps://clinic:p%40ss%20word@localhost:{}", smtp.port()),
            )
            .env("SMTP_CA_FILE", certificate.to_str().unwrap()),
    )
    .await;
    assert_eq!(herald.post(&invite(400)).await.status, 202);
    let messages = smtp.wait_for_messages(1, WAIT).await;
    assert!(messages[0].tls, "the message came over TLS");
    assert_eq!(
        messages[0].auth_user.as_deref(),
        Some("clinic"),
        "AUTH user"
    );
    assert!(
        !herald.logs().join("\n").contains("p@ss word"),
        "the password is not logged"
    );
}

#[tokio::test]
async fn starttls_required_but_not_offered_is_retried() {
    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    let config = email_only_config();
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start(Options::new(config.path(), data.path()).env(
        "SMTP_URL",
        format!("smtp://127.0.0.1:{}?tls=required", smtp.port()),
    ))
    .await;
    let reply = herald.post(&invite(500)).await;
    let id = reply.body["deliveries"][0]["id"].as_i64().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let detail = loop {
        let detail = cli_json(&[
            "deliveries",
            "--data-dir",
            data_dir,
            "show",
            &id.to_string(),
            "--format",
            "json",
        ]);
        if !detail["attempts"].as_array().unwrap().is_empty() {
            break detail;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no attempt: {detail:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(detail["attempts"][0]["outcome"], "transient");
    assert_eq!(
        detail["attempts"][0]["error"],
        "SMTP: the server does not offer STARTTLS, which the channel's URL requires (tls=required)"
    );
    assert!(smtp.messages().is_empty(), "nothing goes out in clear");
    drop(herald);
}
