//! `herald deliveries`: list, show, retry and cancel deliveries in the outbox. These commands
//! open the data directory's database directly, so they work whether or not `serve` runs; a
//! running server picks up a retried delivery within a second.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use jiff::Timestamp;

use super::{EXIT_CONFIG, EXIT_FAILURE};
use crate::config::duration::parse_duration;
use crate::message::{Message, mask_contact};
use crate::outbox::sqlite::SqliteStore;
use crate::outbox::{Change, DeliveryDetail, DeliveryState, DeliverySummary, ListFilter, Store};
use crate::timezone::{self, format_utc_seconds as format_utc};

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct DeliveriesArgs {
    /// Folder that holds the outbox database.
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "data", global = true)]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: DeliveriesCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries, newest first.
    List {
        /// Only these states, comma-separated: pending, sending, delivered, failed, expired,
        /// superseded, cancelled.
        #[arg(long, value_delimiter = ',')]
        status: Vec<String>,
        /// Only deliveries created since this UTC time (2026-12-04T10:00:00Z) or for this long
        /// (2h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only this channel.
        #[arg(long)]
        channel: Option<String>,
        /// Most rows to print.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Show one delivery with its attempt history. Recipients are masked and message bodies
    /// left out unless --reveal is given.
    Show {
        id: i64,
        /// Print the recipient and the message in clear.
        #[arg(long)]
        reveal: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: Format,
    },
    /// Send a delivery again: a failed, expired, superseded, cancelled or delivered one, or a
    /// pending one now instead of at its next retry time. The attempt budget starts over.
    Retry { id: i64 },
    /// Cancel a pending delivery so that it is never sent.
    Cancel {
        id: i64,
        /// Why, stored with the delivery.
        #[arg(long, default_value = "cancelled by an operator")]
        reason: String,
    },
}

pub fn run(args: &DeliveriesArgs) -> ExitCode {
    if !args
        .data_dir
        .join(crate::outbox::sqlite::DATABASE_FILE)
        .exists()
    {
        eprintln!(
            "error: no outbox in {}: pass --data-dir with the folder herald serve uses",
            args.data_dir.display()
        );
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(async {
        let store = match SqliteStore::open(&args.data_dir) {
            Ok(store) => store,
            Err(error) => {
                eprintln!("error: {error}");
                return ExitCode::from(EXIT_FAILURE);
            }
        };
        match execute(&store, &args.command).await {
            Ok(output) => {
                print!("{output}");
                ExitCode::SUCCESS
            }
            Err(message) => {
                eprintln!("error: {message}");
                ExitCode::from(EXIT_FAILURE)
            }
        }
    })
}

async fn execute(store: &SqliteStore, command: &DeliveriesCommand) -> Result<String, String> {
    let now = Timestamp::now();
    match command {
        DeliveriesCommand::List {
            status,
            since,
            channel,
            limit,
            format,
        } => {
            let mut states = Vec::new();
            for name in status {
                states.push(DeliveryState::parse(name.trim()).ok_or_else(|| {
                    format!("unknown status {name:?}: expected pending, sending, delivered, failed, expired, superseded or cancelled")
                })?);
            }
            let since = since
                .as_deref()
                .map(|text| parse_since(text, now))
                .transpose()?;
            let filter = ListFilter {
                states,
                since,
                channel: channel.clone(),
                limit: *limit,
            };
            let rows = store.list(filter).await.map_err(|e| e.to_string())?;
            Ok(match format {
                Format::Json => json_lines(&rows),
                Format::Text => list_text(&rows),
            })
        }
        DeliveriesCommand::Show { id, reveal, format } => {
            let Some(detail) = store.delivery(*id).await.map_err(|e| e.to_string())? else {
                return Err(format!("no delivery {id}"));
            };
            Ok(match format {
                Format::Json => {
                    let mut value = serde_json::to_value(&detail).map_err(|e| e.to_string())?;
                    if !reveal {
                        value["message"] = masked_message(&detail.message);
                    }
                    format!(
                        "{}\n",
                        serde_json::to_string_pretty(&value).unwrap_or_default()
                    )
                }
                Format::Text => show_text(&detail, *reveal),
            })
        }
        DeliveriesCommand::Retry { id } => {
            match store.retry(*id, now).await.map_err(|e| e.to_string())? {
                Change::Done => Ok(format!("delivery {id} is pending and due now\n")),
                Change::NotFound => Err(format!("no delivery {id}")),
                Change::NotAllowed(state) => Err(format!(
                    "delivery {id} is {state}: a delivery being sent cannot be retried; wait for its attempt to finish"
                )),
            }
        }
        DeliveriesCommand::Cancel { id, reason } => match store
            .cancel(*id, now, reason.clone())
            .await
            .map_err(|e| e.to_string())?
        {
            Change::Done => Ok(format!("delivery {id} is cancelled\n")),
            Change::NotFound => Err(format!("no delivery {id}")),
            Change::NotAllowed(state) => Err(format!(
                "delivery {id} is {state}: only pending deliveries can be cancelled"
            )),
        },
    }
}

fn parse_since(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Ok(time) = timezone::parse_timestamp(text) {
        return Ok(time);
    }
    let duration = parse_duration(text).map_err(|_| {
        format!("invalid --since {text:?}: give a UTC time such as 2026-12-04T10:00:00Z or a duration such as 2h")
    })?;
    let signed = jiff::SignedDuration::try_from(duration).map_err(|e| e.to_string())?;
    now.checked_sub(signed).map_err(|e| e.to_string())
}

fn json_lines(rows: &[DeliverySummary]) -> String {
    rows.iter()
        .map(|row| format!("{}\n", serde_json::to_string(row).unwrap_or_default()))
        .collect()
}

fn list_text(rows: &[DeliverySummary]) -> String {
    if rows.is_empty() {
        return "no deliveries\n".into();
    }
    let rule_width = rows.iter().map(|r| r.rule.len()).max().unwrap_or(4).max(4);
    let channel_width = rows
        .iter()
        .map(|r| r.channel.len())
        .max()
        .unwrap_or(7)
        .max(7);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>6} {:>6}  {:<10} {:<channel_width$} {:<rule_width$} {:>8}  {:<20}  NEXT ATTEMPT / REASON",
        "ID", "EVENT", "STATE", "CHANNEL", "RULE", "ATTEMPTS", "CREATED"
    );
    for row in rows {
        let tail = match (&row.next_attempt_at, &row.reason) {
            (Some(next), Some(reason)) => format!("{} (last error: {reason})", format_utc(*next)),
            (Some(next), None) => format_utc(*next),
            (None, Some(reason)) => reason.clone(),
            (None, None) => String::new(),
        };
        let _ = writeln!(
            out,
            "{:>6} {:>6}  {:<10} {:<channel_width$} {:<rule_width$} {:>8}  {:<20}  {tail}",
            row.id,
            row.event_id,
            row.state.as_str(),
            row.channel,
            row.rule,
            row.attempts,
            format_utc(row.created_at)
        );
    }
    out
}

fn masked_message(message: &Message) -> serde_json::Value {
    match message {
        Message::Email(email) => {
            serde_json::json!({"kind": "email", "to": mask_contact(&email.to)})
        }
        Message::Sms(sms) => {
            serde_json::json!({"kind": "sms", "to": mask_contact(&sms.to), "encoding": sms.encoding, "segments": sms.segments})
        }
        Message::Webhook(_) => serde_json::json!({"kind": "webhook"}),
    }
}

fn show_text(detail: &DeliveryDetail, reveal: bool) -> String {
    let summary = &detail.summary;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Delivery {} (event {}: {} {})",
        summary.id, summary.event_id, detail.webhook_type, detail.event_status
    );
    let _ = writeln!(out, "State:        {}", summary.state);
    let _ = writeln!(out, "Rule:         {}", summary.rule);
    let _ = writeln!(out, "Channel:      {}", summary.channel);
    let _ = writeln!(out, "Created:      {}", format_utc(summary.created_at));
    if let Some(next) = summary.next_attempt_at {
        let _ = writeln!(out, "Next attempt: {}", format_utc(next));
    }
    if let Some(closed) = detail.closed_at {
        let _ = writeln!(out, "Closed:       {}", format_utc(closed));
    }
    if let Some(reason) = &summary.reason {
        let _ = writeln!(out, "Reason:       {reason}");
    }
    if let Some(time) = detail.not_before {
        let _ = writeln!(out, "Not before:   {}", format_utc(time));
    }
    if let Some(time) = detail.not_after {
        let _ = writeln!(out, "Not after:    {}", format_utc(time));
    }
    let _ = writeln!(out, "Dedupe key:   {}", detail.dedupe_key);
    if let Some(key) = &detail.supersede_key {
        let _ = writeln!(out, "Supersede:    {key}");
    }
    for note in &detail.notes {
        let _ = writeln!(out, "Note:         {note}");
    }
    match (&detail.message, reveal) {
        (Message::Email(email), false) => {
            let _ = writeln!(
                out,
                "To:           {} (--reveal shows the message)",
                mask_contact(&email.to)
            );
        }
        (Message::Sms(sms), false) => {
            let _ = writeln!(
                out,
                "To:           {} ({}, {} segment(s); --reveal shows the text)",
                mask_contact(&sms.to),
                sms.encoding,
                sms.segments
            );
        }
        (Message::Webhook(_), false) => {}
        (message, true) => {
            let _ = writeln!(
                out,
                "Message:\n{}",
                serde_json::to_string_pretty(message).unwrap_or_default()
            );
        }
    }
    let _ = writeln!(out, "Attempts:     {}", detail.attempts.len());
    for attempt in &detail.attempts {
        let _ = write!(
            out,
            "  #{} {} {}",
            attempt.number,
            format_utc(attempt.started_at),
            attempt.outcome
        );
        let duration = attempt.finished_at.duration_since(attempt.started_at);
        let _ = write!(out, " ({} ms)", duration.as_millis());
        if let Some(error) = &attempt.error {
            let _ = write!(out, ": {error}");
        }
        if let Some(id) = &attempt.provider_id {
            let _ = write!(out, " [{id}]");
        }
        out.push('\n');
    }
    out
}
