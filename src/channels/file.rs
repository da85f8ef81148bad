//! The file outbox: e-mails as `.eml` files, SMS and webhooks as JSON lines, so that herald
//! runs without any external server.
//!
//! Layout under the channel's folder: `<channel>/<delivery id>.eml` for e-mails, and
//! `<channel>.jsonl` for SMS and webhooks, one JSON object per line.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::{Driver, Outgoing, Receipt, SendError};
use crate::message::{Message, email};

pub struct FileDriver {
    directory: PathBuf,
    channel: String,
    /// Serializes appends to the JSON lines file.
    append_lock: Mutex<()>,
}

impl FileDriver {
    pub fn new(directory: &Path, channel: &str) -> Result<FileDriver, String> {
        std::fs::create_dir_all(directory).map_err(|error| {
            format!(
                "cannot create the file outbox {}: {error}",
                directory.display()
            )
        })?;
        Ok(FileDriver {
            directory: directory.to_path_buf(),
            channel: channel.to_string(),
            append_lock: Mutex::new(()),
        })
    }

    async fn write_email(
        &self,
        outgoing: &Outgoing<'_>,
        message: &crate::message::EmailMessage,
    ) -> Result<Receipt, SendError> {
        let message_id =
            email::message_id(outgoing.instance_id, outgoing.delivery_id, &message.from);
        let built = email::build(message, &message_id).map_err(SendError::permanent)?;
        let folder = self.directory.join(&self.channel);
        tokio::fs::create_dir_all(&folder).await.map_err(io_error)?;
        let path = folder.join(format!("{}.eml", outgoing.delivery_id));
        let temporary = folder.join(format!(".{}.eml.tmp", outgoing.delivery_id));
        let mut file = tokio::fs::File::create(&temporary)
            .await
            .map_err(io_error)?;
        file.write_all(&built.formatted()).await.map_err(io_error)?;
        file.sync_all().await.map_err(io_error)?;
        drop(file);
        // Rename after the data is on disk, so a reader never sees half a message.
        tokio::fs::rename(&temporary, &path)
            .await
            .map_err(io_error)?;
        Ok(Receipt {
            provider_id: Some(path.display().to_string()),
        })
    }

    async fn append_line(
        &self,
        outgoing: &Outgoing<'_>,
        record: serde_json::Value,
    ) -> Result<Receipt, SendError> {
        let path = self.directory.join(format!("{}.jsonl", self.channel));
        let mut line = record.to_string();
        line.push('\n');
        let _guard = self.append_lock.lock().await;
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(io_error)?;
        file.write_all(line.as_bytes()).await.map_err(io_error)?;
        file.sync_data().await.map_err(io_error)?;
        Ok(Receipt {
            provider_id: Some(format!("{}#{}", path.display(), outgoing.delivery_id)),
        })
    }
}

fn io_error(error: std::io::Error) -> SendError {
    SendError::transient(format!("file outbox: {error}"))
}

#[async_trait]
impl Driver for FileDriver {
    async fn send(&self, outgoing: &Outgoing<'_>) -> Result<Receipt, SendError> {
        let written_at = crate::timezone::format_utc(jiff::Timestamp::now());
        match outgoing.message {
            Message::Email(message) => self.write_email(outgoing, message).await,
            Message::Sms(sms) => {
                let record = json!({
                    "delivery_id": outgoing.delivery_id,
                    "channel": self.channel,
                    "written_at": written_at,
                    "to": sms.to,
                    "body": sms.body,
                    "encoding": sms.encoding,
                    "segments": sms.segments,
                });
                self.append_line(outgoing, record).await
            }
            Message::Webhook(webhook) => {
                let body: serde_json::Value = serde_json::from_str(&webhook.body)
                    .unwrap_or(serde_json::Value::String(webhook.body.clone()));
                let record = json!({
                    "delivery_id": outgoing.delivery_id,
                    "channel": self.channel,
                    "written_at": written_at,
                    "body": body,
                });
                self.append_line(outgoing, record).await
            }
        }
    }
}
