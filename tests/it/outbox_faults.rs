//! Delivery guarantees under faults: duplicates, an SMTP server that is down, permanent and
//! transient provider errors, kill -9, supersession, expiry, and a full or read-only data
//! directory. Every test runs the real binary against real servers on 127.0.0.1.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::herald::{ConfigDir, Herald, Options, run_cli};
use crate::support::http_recorder::{HttpRecorder, ScriptedResponse};
use crate::support::payloads::{PublicUser, minutes_from_now, platform_time};
use crate::support::smtp::{SmtpConfig, SmtpServer, Stage};

const WAIT: Duration = Duration::from_secs(30);

/// The default configuration with retries fast enough for a test: 1 s backoff doubling to at
/// most 2 s, and a 3 s send timeout.
fn fast_retry_config() -> ConfigDir {
    let config = ConfigDir::defaults();
    config.replace("rules.yaml", "initial_backoff: 30s", "initial_backoff: 1s");
    config.replace("rules.yaml", "max_backoff: 30m", "max_backoff: 2s");
    config.replace(
        "rules.yaml",
        "    on_missing_env: file\n\n  # SMS",
        "    on_missing_env: file\n    timeout: 3s\n\n  # SMS",
    );
    config.replace(
        "rules.yaml",
        "    on_missing_env: file\n\nfields:",
        "    on_missing_env: file\n    timeout: 3s\n\nfields:",
    );
    config
}

fn with_servers<'a>(options: Options<'a>, smtp_port: u16, sms_url: &str) -> Options<'a> {
    options
        .env("SMTP_URL", format!("smtp://127.0.0.1:{smtp_port}"))
        .env("SMS_API_URL", sms_url)
        .env("SMS_ACCOUNT_SID", "AC123")
        .env("SMS_AUTH_TOKEN", "token")
        .env("SMS_FROM", "+15550100100")
}

/// `herald deliveries show ID --format json` against a data directory.
fn show(data_dir: &Path, id: i64) -> Value {
    let data = data_dir.to_str().unwrap();
    let (code, stdout, stderr) = run_cli(
        &[
            "deliveries",
            "--data-dir",
            data,
            "show",
            &id.to_string(),
            "--format",
            "json",
        ],
        &[],
    );
    assert_eq!(code, 0, "deliveries show {id}: {stderr}");
    serde_json::from_str(&stdout).unwrap()
}

/// Polls a delivery until `done` holds for it.
async fn wait_for_delivery(
    data_dir: &Path,
    id: i64,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let detail = show(data_dir, id);
        if done(&detail) {
            return detail;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery {id} never became {what}: {detail:#}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn delivery_id(reply: &Value, channel: &str) -> i64 {
    reply["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["channel"] == channel)
        .unwrap_or_else(|| panic!("no {channel} delivery in {reply}"))["id"]
        .as_i64()
        .unwrap()
}

fn attempt_outcomes(detail: &Value) -> Vec<String> {
    detail["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["outcome"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn five_identical_webhooks_at_once_send_once() {
    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    let sms = HttpRecorder::start().await;
    sms.set_default_response(ScriptedResponse::sms_accepted());
    let config = ConfigDir::defaults();
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start(with_servers(
        Options::new(config.path(), data.path()),
        smtp.port(),
        &sms.url(),
    ))
    .await;

    let payload = PublicUser::new("Invite", 3 * 24 * 60).json();
    let posts: Vec<_> = (0..5).map(|_| herald.post(&payload)).collect();
    let replies = futures_join(posts).await;
    let accepted = replies.iter().filter(|r| r.status == 202).count();
    let duplicates = replies
        .iter()
        .filter(|r| r.status == 200 && r.body["status"] == "duplicate")
        .count();
    assert_eq!(accepted, 1, "{replies:#?}");
    assert_eq!(duplicates, 4, "{replies:#?}");

    smtp.wait_for_messages(1, WAIT).await;
    sms.wait_for_requests(1, WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.messages().len(), 1, "one e-mail");
    assert_eq!(sms.requests().len(), 1, "one SMS");
}

async fn futures_join<F: std::future::Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut outputs = Vec::with_capacity(futures.len());
    let handles: Vec<_> = futures.into_iter().map(Box::pin).collect();
    // Poll every future concurrently on this task.
    let mut pending: Vec<_> = handles.into_iter().map(Some).collect();
    let mut results: Vec<Option<F::Output>> = (0..pending.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut all_done = true;
        for (slot, result) in pending.iter_mut().zip(results.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(output) => {
                        *result = Some(output);
                        *slot = None;
                    }
                    std::task::Poll::Pending => all_done = false,
                }
            }
        }
        if all_done {
            std::task::Poll::Ready(())
        } else {
            std::task::Poll::Pending
        }
    })
    .await;
    for result in results {
        outputs.push(result.unwrap());
    }
    outputs
}

#[tokio::test]
async fn smtp_down_then_up_delivers_once() {
    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    let port = smtp.port();
    smtp.stop().await;
    let sms = HttpRecorder::start().await;
    sms.set_default_response(ScriptedResponse::sms_accepted());
    let config = fast_retry_config();
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start(with_servers(
        Options::new(config.path(), data.path()),
        port,
        &sms.url(),
    ))
    .await;

    let reply = herald
        .post(&PublicUser::new("Invite", 3 * 24 * 60).json())
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let email = delivery_id(&reply.body, "email");
    wait_for_delivery(data.path(), email, "retried twice", |d| {
        d["attempts"].as_array().unwrap().len() >= 2
    })
    .await;

    let smtp = SmtpServer::start(SmtpConfig::default().with_port(port)).await;
    let detail = wait_for_delivery(data.path(), email, "delivered", |d| {
        d["state"] == "delivered"
    })
    .await;
    let outcomes = attempt_outcomes(&detail);
    assert!(outcomes.len() >= 3, "{outcomes:?}");
    assert!(
        outcomes[..outcomes.len() - 1]
            .iter()
            .all(|o| o == "transient"),
        "{outcomes:?}"
    );
    assert_eq!(outcomes.last().unwrap(), "delivered");
    let first_error = detail["attempts"][0]["error"].as_str().unwrap();
    assert!(first_error.starts_with("SMTP: "), "{first_error}");

    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(smtp.messages().len(), 1, "the e-mail arrives once");
    assert!(herald.count_logs("Delivery failed; will retry") >= 2);
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    smtp.fail_all(
        Stage::Rcpt,
        550,
        "5.1.1 <perry@example.com>: Recipient address rejected",
    );
    let sms = HttpRecorder::start().await;
    sms.set_default_response(ScriptedResponse::sms_invalid_number());
    let config = fast_retry_config();
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start(with_servers(
        Options::new(config.path(), data.path()),
        smtp.port(),
        &sms.url(),
    ))
    .await;

    let reply = herald
        .post(&PublicUser::new("Invite", 3 * 24 * 60).json())
        .await;
    let (email, text) = (
        delivery_id(&reply.body, "email"),
        delivery_id(&reply.body, "sms"),
    );
    let email_detail =
        wait_for_delivery(data.path(), email, "failed", |d| d["state"] == "failed").await;
    let sms_detail =
        wait_for_delivery(data.path(), text, "failed", |d| d["state"] == "failed").await;

    // Several backoff periods later, still one attempt each.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(attempt_outcomes(&show(data.path(), email)), ["permanent"]);
    assert_eq!(attempt_outcomes(&show(data.path(), text)), ["permanent"]);
    assert_eq!(sms.requests().len(), 1, "the SMS provider was called once");

    let email_error = email_detail["reason"].as_str().unwrap();
    assert!(email_error.contains("550"), "{email_error}");
    assert!(
        !email_error.contains("perry@example.com"),
        "the address is scrubbed: {email_error}"
    );
    let sms_error = sms_detail["reason"].as_str().unwrap();
    assert_eq!(
        sms_error,
        "HTTP 400, provider code 21211: The 'To' number is not a valid phone number."
    );
    drop(herald);
}

#[tokio::test]
async fn transient_errors_are_retried() {
    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    smtp.fail_next(Stage::Data, 2, 451, "4.3.0 try again later");
    let sms = HttpRecorder::start().await;
    sms.push_response(ScriptedResponse::new(429).with_header("Retry-After", "2"));
    sms.set_default_response(ScriptedResponse::sms_accepted());
    let config = fast_retry_config();
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start(with_servers(
        Options::new(config.path(), data.path()),
        smtp.port(),
        &sms.url(),
    ))
    .await;

    let reply = herald
        .post(&PublicUser::new("Invite", 3 * 24 * 60).json())
        .await;
    let (email, text) = (
        delivery_id(&reply.body, "email"),
        delivery_id(&reply.body, "sms"),
    );
    let email_detail = wait_for_delivery(data.path(), email, "delivered", |d| {
        d["state"] == "delivered"
    })
    .await;
    let sms_detail = wait_for_delivery(data.path(), text, "delivered", |d| {
        d["state"] == "delivered"
    })
    .await;
    assert_eq!(
        attempt_outcomes(&email_detail),
        ["transient", "transient", "delivered"]
    );
    assert_eq!(attempt_outcomes(&sms_detail), ["transient", "delivered"]);

    // Retry-After: 2 asked for longer than the 1 s backoff, so the second attempt started at
    // least 2 s after the first finished.
    let first_finished: jiff::Timestamp = sms_detail["attempts"][0]["finished_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let second_started: jiff::Timestamp = sms_detail["attempts"][1]["started_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let waited = second_started.duration_since(first_finished);
    assert!(
        waited >= jiff::SignedDuration::from_millis(1_990),
        "Retry-After honoured: waited {waited:?}"
    );
    assert_eq!(sms_detail["attempts"][0]["error"], "HTTP 429");
    assert_eq!(smtp.messages().len(), 1);
    assert_eq!(sms.requests().len(), 2);
    drop(herald);
}

#[tokio::test]
async fn connection_refused_is_retried() {
    let sms_port = {
        let probe = HttpRecorder::start().await;
        let port = probe.port();
        probe.stop().await;
        port
    };
    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    let config = fast_retry_config();
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start(with_servers(
        Options::new(config.path(), data.path()),
        smtp.port(),
        &format!("http://127.0.0.1:{sms_port}"),
    ))
    .await;

    let reply = herald
        .post(&PublicUser::new("Invite", 3 * 24 * 60).json())
        .await;
    let text = delivery_id(&reply.body, "sms");
    let detail = wait_for_delivery(data.path(), text, "retried", |d| {
        !d["attempts"].as_array().unwrap().is_empty()
    })
    .await;
    let error = detail["attempts"][0]["error"].as_str().unwrap();
    assert!(error.starts_with("connection failed"), "{error}");

    let sms = HttpRecorder::start_on_port(sms_port).await;
    sms.set_default_response(ScriptedResponse::sms_accepted());
    let detail = wait_for_delivery(data.path(), text, "delivered", |d| {
        d["state"] == "delivered"
    })
    .await;
    assert_eq!(attempt_outcomes(&detail).last().unwrap(), "delivered");
    assert!(
        attempt_outcomes(&detail)
            .iter()
            .filter(|o| *o == "transient")
            .count()
            >= 1
    );
    assert_eq!(sms.requests().len(), 1);
    drop(herald);
}

#[tokio::test]
async fn cancellation_supersedes_pending_reminders() {
    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    let port = smtp.port();
    smtp.stop().await;
    let config = fast_retry_config();
    let data = tempfile::tempdir().unwrap();
    let sms = HttpRecorder::start().await;
    sms.set_default_response(ScriptedResponse::new(503));
    let herald = Herald::start(with_servers(
        Options::new(config.path(), data.path()),
        port,
        &sms.url(),
    ))
    .await;

    let session = minutes_from_now(100);
    let reminder =
        PublicUser::new("LongReminder", 100).with("SessionTimeUtc", &platform_time(session));
    let reply = herald.post(&reminder.json()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let (email, text) = (
        delivery_id(&reply.body, "email"),
        delivery_id(&reply.body, "sms"),
    );
    for id in [email, text] {
        wait_for_delivery(data.path(), id, "tried once", |d| {
            !d["attempts"].as_array().unwrap().is_empty()
        })
        .await;
    }

    let cancellation = PublicUser::new("Cancellation", 100)
        .with("SessionTimeUtc", &platform_time(session))
        .event_ts(
            jiff::Timestamp::now()
                .checked_add(jiff::SignedDuration::from_secs(1))
                .unwrap(),
        );
    let reply = herald.post(&cancellation.json()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    // Each reminder is either pending between attempts and closed at once, or has an attempt
    // in flight and is closed when that attempt fails; either way it ends superseded.
    for id in [email, text] {
        wait_for_delivery(data.path(), id, "superseded", |d| {
            d["state"] == "superseded"
        })
        .await;
    }

    sms.set_default_response(ScriptedResponse::sms_accepted());
    let smtp = SmtpServer::start(SmtpConfig::default().with_port(port)).await;
    let messages = smtp.wait_for_messages(1, WAIT).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    let subjects: Vec<String> = smtp
        .messages()
        .iter()
        .map(|m| m.decoded_header("Subject").unwrap())
        .collect();
    assert!(
        subjects.iter().all(|s| s.starts_with("Cancelled:")),
        "{subjects:?}"
    );
    assert_eq!(messages.len(), 1);
    assert_eq!(
        subjects.len(),
        1,
        "only the cancellation arrives: {subjects:?}"
    );
    sms.wait_for_requests(1, WAIT).await;
    let bodies: Vec<String> = sms
        .requests()
        .iter()
        .filter(|r| r.response_status == 201)
        .filter_map(|r| r.form_value("Body"))
        .collect();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert!(bodies[0].contains("is cancelled"), "{bodies:?}");
    drop(herald);
}

#[tokio::test]
async fn expired_reminder_is_never_sent() {
    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    let port = smtp.port();
    smtp.stop().await;
    let config = fast_retry_config();
    let data = tempfile::tempdir().unwrap();
    let sms = HttpRecorder::start().await;
    let herald = Herald::start(with_servers(
        Options::new(config.path(), data.path()),
        port,
        &sms.url(),
    ))
    .await;

    // A short reminder for a session 6 seconds away, while the provider is down: it must be
    // closed as expired once the session starts, and never sent afterwards.
    let session = jiff::Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(6))
        .unwrap();
    let reminder = PublicUser::new("ShortReminder", 10)
        .with("SessionTimeUtc", &platform_time(session))
        .with("RecipientSmsNumber", "");
    let reply = herald.post(&reminder.json()).await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    let email = delivery_id(&reply.body, "email");
    let detail =
        wait_for_delivery(data.path(), email, "expired", |d| d["state"] == "expired").await;
    assert!(
        detail["reason"].as_str().unwrap().contains("not_after"),
        "{detail:#}"
    );

    let smtp = SmtpServer::start(SmtpConfig::default().with_port(port)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        smtp.messages().is_empty(),
        "an expired reminder is never sent"
    );
    drop(herald);
}

#[tokio::test]
async fn kill_during_burst_loses_no_accepted_event() {
    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    smtp.set_data_reply_delay(Duration::from_millis(300));
    let config = fast_retry_config();
    // E-mail only, so that every accepted event maps to exactly one message.
    config.replace(
        "rules.yaml",
        "    send: [email, sms]\n    template: invite",
        "    send: [email]\n    template: invite",
    );
    let data = tempfile::tempdir().unwrap();
    let sms = HttpRecorder::start().await;
    let options = || {
        with_servers(
            Options::new(config.path(), data.path()),
            smtp.port(),
            &sms.url(),
        )
    };
    let mut herald = Herald::start(options()).await;

    // 120 distinct invites from 8 concurrent clients; the process is killed part way.
    let url = herald.url("/webhook");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let accepted = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut senders = Vec::new();
    for worker in 0..8 {
        let (client, url, accepted) = (client.clone(), url.clone(), accepted.clone());
        senders.push(tokio::spawn(async move {
            for index in (worker..120).step_by(8) {
                let payload = PublicUser::new("Invite", 3 * 24 * 60)
                    .id(100_000 + index)
                    .with(
                        "RecipientEmailAddress",
                        &format!("patient{index}@example.com"),
                    )
                    .json();
                let response = client.post(&url).json(&payload).send().await;
                if let Ok(response) = response
                    && response.status().as_u16() == 202
                {
                    accepted.lock().unwrap().push(index);
                }
            }
        }));
    }
    let deadline = tokio::time::Instant::now() + WAIT;
    while accepted.lock().unwrap().len() < 40 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the burst did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    herald.kill9();
    for sender in senders {
        let _ = sender.await;
    }
    let accepted: Vec<i64> = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() >= 40 && accepted.len() < 120,
        "killed during the burst: {} accepted",
        accepted.len()
    );

    smtp.set_data_reply_delay(Duration::ZERO);
    let herald = Herald::start(options()).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let received: std::collections::BTreeSet<String> = smtp
            .messages()
            .iter()
            .flat_map(|m| m.rcpt_to.clone())
            .collect();
        let missing: Vec<&i64> = accepted
            .iter()
            .filter(|i| !received.contains(&format!("patient{i}@example.com")))
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "accepted events never delivered: {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Sends that were in flight at the kill are sent again once their lease (twice the 3 s
    // timeout, plus 5 s) runs out; wait until nothing is pending or being sent.
    let data_dir = data.path().to_str().unwrap().to_string();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let (_, open, _) = run_cli(
            &[
                "deliveries",
                "--data-dir",
                &data_dir,
                "list",
                "--status",
                "pending,sending",
                "--format",
                "json",
            ],
            &[],
        );
        if open.trim().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "deliveries still open: {open}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let messages = smtp.messages();
    let distinct: std::collections::BTreeSet<String> = messages
        .iter()
        .map(|m| m.header("Message-ID").unwrap())
        .collect();
    let duplicates = messages.len() - distinct.len();
    // A duplicate is a send the server stored but whose reply herald never committed; at most
    // one per send in flight, and the e-mail channel allows 8.
    assert!(duplicates <= 8, "{duplicates} duplicates");
    eprintln!(
        "kill -9 during a burst: {} accepted, {} e-mails, {duplicates} duplicates",
        accepted.len(),
        messages.len()
    );
    drop(herald);
}

/// Runs a shell command as root; returns whether it succeeded.
fn root_command(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[tokio::test]
async fn full_disk_answers_503_and_recovers() {
    if !is_root() {
        eprintln!("full_disk_answers_503_and_recovers needs root to mount a small tmpfs; not run");
        return;
    }
    let mount = tempfile::tempdir().unwrap();
    let mount_path = mount.path().to_str().unwrap().to_string();
    assert!(
        root_command(
            "mount",
            &["-t", "tmpfs", "-o", "size=4m", "tmpfs", &mount_path]
        ),
        "mount a 4 MiB tmpfs"
    );
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mount_path.clone());
    let data = mount.path().join("data");

    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    let sms = HttpRecorder::start().await;
    sms.set_default_response(ScriptedResponse::sms_accepted());
    let config = fast_retry_config();
    let herald = Herald::start(with_servers(
        Options::new(config.path(), &data),
        smtp.port(),
        &sms.url(),
    ))
    .await;

    // Fill the file system, then post until a commit fails: SQLite reuses WAL space, so the
    // first commits after the disk fills may still succeed.
    let filler = mount.path().join("filler");
    let _ = Command::new("dd")
        .args([
            "if=/dev/zero",
            &format!("of={}", filler.display()),
            "bs=64k",
        ])
        .output();
    let mut accepted = Vec::new();
    let mut unavailable = None;
    for index in 0..400 {
        let payload = PublicUser::new("Invite", 3 * 24 * 60)
            .id(200_000 + index)
            .json();
        let reply = herald.post(&payload).await;
        match reply.status {
            202 => accepted.push(index),
            503 => {
                unavailable = Some(reply);
                break;
            }
            other => panic!("unexpected status {other}: {}", reply.text),
        }
    }
    let unavailable = unavailable.expect("a full disk made a commit fail with 503");
    assert_eq!(unavailable.body["status"], "unavailable");
    assert_eq!(unavailable.headers.get("retry-after").unwrap(), "5");
    assert_eq!(
        herald.get("/healthz").await.status,
        200,
        "the process keeps running"
    );

    std::fs::remove_file(&filler).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    let reply = loop {
        let reply = herald
            .post(&PublicUser::new("Invite", 3 * 24 * 60).id(299_999).json())
            .await;
        if reply.status == 202 {
            break reply;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no recovery after space returned: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(reply.body["status"], "accepted");
    smtp.wait_for_messages(accepted.len() + 1, Duration::from_secs(60))
        .await;
    drop(herald);
}

#[tokio::test]
async fn read_only_data_answers_503_and_recovers() {
    if !is_root() {
        eprintln!("read_only_data_answers_503_and_recovers needs root for chattr +i; not run");
        return;
    }
    let data = tempfile::tempdir().unwrap();
    let smtp = SmtpServer::start(SmtpConfig::default()).await;
    let sms = HttpRecorder::start().await;
    sms.set_default_response(ScriptedResponse::sms_accepted());
    let config = fast_retry_config();
    let herald = Herald::start(with_servers(
        Options::new(config.path(), data.path()),
        smtp.port(),
        &sms.url(),
    ))
    .await;
    assert_eq!(
        herald
            .post(&PublicUser::new("Invite", 3 * 24 * 60).json())
            .await
            .status,
        202
    );

    // The immutable attribute makes every write fail, through open file descriptors too,
    // like a file system remounted read-only after an error.
    // The -shm file is left alone: it is memory-mapped, and a write fault on an immutable
    // mapping is SIGBUS, which no disk failure produces.
    let files: Vec<String> = ["herald.sqlite3", "herald.sqlite3-wal", ""]
        .iter()
        .map(|name| data.path().join(name).display().to_string())
        .collect();
    let mut changed = Vec::new();
    for file in &files {
        if root_command("chattr", &["+i", file]) {
            changed.push(file.clone());
        }
    }
    struct Restore(Vec<String>);
    impl Drop for Restore {
        fn drop(&mut self) {
            for file in &self.0 {
                let _ = Command::new("chattr").args(["-i", file]).status();
            }
        }
    }
    let restore = Restore(changed.clone());
    if changed.len() < 2 {
        eprintln!("chattr +i is not supported on this file system; read-only data not tested");
        return;
    }

    let reply = herald
        .post(&PublicUser::new("Update", 4 * 24 * 60).id(7).json())
        .await;
    assert_eq!(reply.status, 503, "{}", reply.text);
    assert_eq!(reply.body["status"], "unavailable");
    assert_eq!(herald.get("/healthz").await.status, 200);
    assert_eq!(
        herald.get("/readyz").await.status,
        503,
        "readiness reports the store"
    );

    drop(restore);
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let reply = herald
            .post(&PublicUser::new("Update", 4 * 24 * 60).id(7).json())
            .await;
        if reply.status == 202 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no recovery: {}",
            reply.text
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    smtp.wait_for_messages(2, WAIT).await;
    assert_eq!(json!(herald.get("/readyz").await.status), json!(200));
    drop(herald);
}
