//! The real binary with the default configuration and the file outbox.

use std::time::Duration;

use serde_json::json;

use crate::support::herald::{ConfigDir, Herald, Options};
use crate::support::payloads::PublicUser;

#[tokio::test]
async fn invite_reaches_file_outbox() {
    let config = ConfigDir::defaults();
    let data = tempfile::tempdir().unwrap();
    let herald = Herald::start(Options::new(config.path(), data.path())).await;

    let reply = herald
        .post(&PublicUser::new("Invite", 3 * 24 * 60).json())
        .await;
    assert_eq!(reply.status, 202, "{}", reply.text);
    assert_eq!(reply.body["status"], "accepted");
    assert_eq!(reply.body["deliveries"].as_array().unwrap().len(), 2);

    herald
        .wait_for_log(
            "Delivered",
            &[("channel", json!("email"))],
            Duration::from_secs(10),
        )
        .await;
    herald
        .wait_for_log(
            "Delivered",
            &[("channel", json!("sms"))],
            Duration::from_secs(10),
        )
        .await;
    let sms = std::fs::read_to_string(data.path().join("outbox/sms.jsonl")).unwrap();
    assert!(sms.contains("\"to\":\"+14155552671\""), "{sms}");
    let emails: Vec<_> = std::fs::read_dir(data.path().join("outbox/email"))
        .unwrap()
        .collect();
    assert_eq!(emails.len(), 1);
}
