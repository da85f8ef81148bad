//! `herald explain PAYLOAD.json`: runs a payload through the same intake and engine as
//! `serve` and prints the decision. Nothing is sent or stored.

use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use jiff::Timestamp;
use serde_json::json;

use super::{ConfigArgs, EXIT_CONFIG, EXIT_FAILURE};
use crate::config::duration::format_signed;
use crate::config::env::ProcessEnv;
use crate::config::{LoadOptions, load};
use crate::ingest::{self, IntakeError, event::Event};
use crate::message::Message;
use crate::rules::Decision;
use crate::rules::decision::InitialState;
use crate::timezone;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The webhook payload to explain, as a JSON file; `-` reads standard input.
    pub payload: PathBuf,
    /// Evaluate as if the event arrived at this UTC time (such as 2019-06-14T06:00:00Z)
    /// instead of now.
    #[arg(long)]
    pub now: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub config: ConfigArgs,
}

pub fn run(args: &ExplainArgs) -> ExitCode {
    let now = match &args.now {
        None => Timestamp::now(),
        Some(text) => match timezone::parse_timestamp(text) {
            Ok(now) => now,
            Err(message) => {
                eprintln!("error: --now: {message}");
                return ExitCode::from(EXIT_CONFIG);
            }
        },
    };
    let body = match read_payload(&args.payload) {
        Ok(body) => body,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let options = LoadOptions {
        config_dir: &args.config.config_dir,
        data_dir: &args.config.data_dir,
        env: &ProcessEnv,
        generation: 1,
    };
    let generation = match load(&options) {
        Ok(generation) => generation,
        Err(errors) => {
            for error in &errors.0 {
                eprintln!("error: {error}");
            }
            eprintln!(
                "configuration invalid: fix it before explaining payloads (see herald check)"
            );
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let result = ingest::parse_body(None, &body)
        .and_then(|payload| ingest::decide(&generation, payload, now));
    let output = match (&result, args.format) {
        (Ok((event, decision)), Format::Text) => text_report(event, decision),
        (Ok((event, decision)), Format::Json) => json_report(event, decision),
        (Err(error), Format::Text) => text_rejection(error),
        (Err(error), Format::Json) => json_rejection(error),
    };
    print!("{output}");
    if result.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILURE)
    }
}

fn read_payload(path: &PathBuf) -> Result<Vec<u8>, String> {
    if path.as_os_str() == "-" {
        let mut body = Vec::new();
        std::io::stdin()
            .read_to_end(&mut body)
            .map_err(|error| format!("cannot read standard input: {error}"))?;
        return Ok(body);
    }
    std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))
}

/// Status and body the server would answer with for this rejection.
pub fn rejection_status(error: &IntakeError) -> u16 {
    match error {
        IntakeError::UnsupportedMediaType(_) => 415,
        IntakeError::InvalidJson { .. } => 400,
        IntakeError::Schema(_) | IntakeError::InvalidEvent(_) | IntakeError::Engine(_) => 422,
    }
}

fn text_rejection(error: &IntakeError) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Rejected ({}): {error}", rejection_status(error));
    match error {
        IntakeError::InvalidJson { line, column, .. } => {
            let _ = writeln!(out, "  at line {line}, column {column}");
        }
        IntakeError::Schema(violations) => {
            for violation in violations {
                let pointer = if violation.pointer.is_empty() {
                    "/"
                } else {
                    &violation.pointer
                };
                let _ = writeln!(out, "  {pointer}: {}", violation.message);
            }
        }
        _ => {}
    }
    out
}

fn json_rejection(error: &IntakeError) -> String {
    let mut value = json!({
        "result": "rejected",
        "http_status": rejection_status(error),
        "error": error.to_string(),
    });
    if let IntakeError::Schema(violations) = error {
        value["violations"] = json!(violations);
    }
    format!(
        "{}\n",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    )
}

fn json_report(event: &Event, decision: &Decision) -> String {
    let value = json!({
        "result": if decision.has_pending() { "accepted" } else { "ignored" },
        "event": {
            "webhook_type": event.webhook_type,
            "id": event.id,
            "status": event.status,
            "event_ts": event.event_ts.map(timezone::format_utc),
            "age": event.event_ts.map(|ts| format_signed(decision.evaluated_at.duration_since(ts))),
        },
        "decision": decision,
    });
    format!(
        "{}\n",
        serde_json::to_string_pretty(&value).unwrap_or_default()
    )
}

fn text_report(event: &Event, decision: &Decision) -> String {
    let mut out = String::new();
    let now = timezone::format_utc(decision.evaluated_at);
    let _ = writeln!(out, "Schema: valid");
    let _ = write!(
        out,
        "Event: {} ID {} status {}",
        event.webhook_type, event.id, event.status
    );
    match event.event_ts {
        Some(ts) => {
            let _ = writeln!(
                out,
                ", EventTs {} (age {} at {now})",
                timezone::format_utc(ts),
                format_signed(decision.evaluated_at.duration_since(ts))
            );
        }
        None => {
            let _ = writeln!(out, ", no EventTs (evaluated at {now})");
        }
    }
    let _ = writeln!(out, "Event key: {}", decision.event_key);
    for warning in &decision.warnings {
        let _ = writeln!(out, "Warning: {warning}");
    }

    let _ = writeln!(out, "\nRules:");
    let width = decision
        .rules
        .iter()
        .map(|r| r.rule.len())
        .max()
        .unwrap_or(0);
    for trace in &decision.rules {
        let _ = writeln!(
            out,
            "  {:<width$}  line {:<4} {}: {}",
            trace.rule,
            trace.line,
            trace.verdict.as_str(),
            trace.detail
        );
    }

    if !decision.planned.is_empty() {
        let _ = writeln!(out, "\nDeliveries:");
    }
    for (index, delivery) in decision.planned.iter().enumerate() {
        let state = match &delivery.state {
            InitialState::Pending => "pending".to_string(),
            InitialState::Expired(reason) => format!("expired: {reason}"),
        };
        let _ = writeln!(
            out,
            "  {}. {} via rule {} ({state})",
            index + 1,
            delivery.channel,
            delivery.rule
        );
        let _ = writeln!(out, "     dedupe key: {}", delivery.dedupe_key);
        if let Some(key) = &delivery.supersede_key {
            let _ = writeln!(out, "     supersede key: {key}");
        }
        if let Some(time) = delivery.not_before {
            let _ = writeln!(out, "     not before: {}", timezone::format_utc(time));
        }
        if let Some(time) = delivery.not_after {
            let _ = writeln!(out, "     not after: {}", timezone::format_utc(time));
        }
        for note in &delivery.notes {
            let _ = writeln!(out, "     note: {note}");
        }
        write_message(&mut out, &delivery.message);
    }

    if !decision.skipped.is_empty() {
        let _ = writeln!(out, "\nSkipped:");
        for skip in &decision.skipped {
            let _ = writeln!(
                out,
                "  {} (rule {}): {}",
                skip.channel, skip.rule, skip.reason
            );
        }
    }
    for supersession in &decision.supersessions {
        let _ = writeln!(
            out,
            "\nSupersedes: pending deliveries with supersede key {} ({})",
            supersession.key,
            supersession.mode.as_str()
        );
    }

    let pending = decision
        .planned
        .iter()
        .filter(|d| d.state == InitialState::Pending)
        .count();
    let _ = match &decision.nothing_planned {
        Some(reason) => writeln!(out, "\nResult: nothing to send: {reason}"),
        None if pending == 0 => writeln!(
            out,
            "\nResult: nothing to send: every planned delivery has expired"
        ),
        None => writeln!(
            out,
            "\nResult: {pending} deliver{} to send",
            if pending == 1 { "y" } else { "ies" }
        ),
    };
    out
}

fn write_message(out: &mut String, message: &Message) {
    let indent = |text: &str| {
        text.lines()
            .map(|line| {
                if line.is_empty() {
                    "\n".to_string()
                } else {
                    format!("       {line}\n")
                }
            })
            .collect::<String>()
    };
    match message {
        Message::Email(email) => {
            let to = match &email.to_name {
                Some(name) => format!("{name} <{}>", email.to),
                None => email.to.clone(),
            };
            let _ = writeln!(out, "     From: {}", email.from);
            let _ = writeln!(out, "     To: {to}");
            let _ = writeln!(out, "     Subject: {}", email.subject);
            let _ = writeln!(out, "     --- text ---");
            out.push_str(&indent(&email.text));
            if let Some(html) = &email.html {
                let _ = writeln!(out, "     --- html ---");
                out.push_str(&indent(html));
            }
        }
        Message::Sms(sms) => {
            let _ = writeln!(out, "     To: {}", sms.to);
            let _ = writeln!(
                out,
                "     Encoding: {}, {} segment{}, {} characters",
                sms.encoding,
                sms.segments,
                if sms.segments == 1 { "" } else { "s" },
                sms.body.chars().count()
            );
            let _ = writeln!(out, "     --- text ---");
            out.push_str(&indent(&sms.body));
        }
        Message::Webhook(webhook) => {
            let pretty = serde_json::from_str::<serde_json::Value>(&webhook.body)
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or_else(|_| webhook.body.clone());
            let _ = writeln!(out, "     --- body ---");
            out.push_str(&indent(&pretty));
        }
    }
}
