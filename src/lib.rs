//! herald: a notification gateway. It receives JSON webhooks, checks them against JSON Schema,
//! routes them with YAML rules, renders minijinja templates and delivers e-mail, SMS and
//! outbound webhooks through a durable outbox.

pub mod channels;
pub mod cli;
pub mod config;
pub mod ingest;
pub mod message;
pub mod metrics;
pub mod outbox;
pub mod phone;
pub mod render_check;
pub mod rules;
pub mod server;
pub mod sms_encoding;
pub mod templates;
pub mod timezone;
