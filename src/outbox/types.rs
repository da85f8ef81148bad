//! Values that cross the store interface.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::message::Message;
use crate::rules::SupersedeMode;

/// State of a delivery in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its due time.
    Pending,
    /// Leased by a sender.
    Sending,
    Delivered,
    /// Failed permanently, or ran out of attempts or time.
    Failed,
    /// Past its `not_after`; never sent.
    Expired,
    /// Closed by a later event with the same supersede key; never sent.
    Superseded,
    /// Closed by an operator.
    Cancelled,
}

impl DeliveryState {
    pub const ALL: [DeliveryState; 7] = [
        DeliveryState::Pending,
        DeliveryState::Sending,
        DeliveryState::Delivered,
        DeliveryState::Failed,
        DeliveryState::Expired,
        DeliveryState::Superseded,
        DeliveryState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Sending => "sending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Expired => "expired",
            DeliveryState::Superseded => "superseded",
            DeliveryState::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<DeliveryState> {
        DeliveryState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
    }

    pub fn is_open(self) -> bool {
        matches!(self, DeliveryState::Pending | DeliveryState::Sending)
    }
}

impl fmt::Display for DeliveryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An event and its planned deliveries, ready to commit.
#[derive(Clone, Debug)]
pub struct Intake {
    pub received_at: Timestamp,
    pub webhook_type: String,
    pub external_id: i64,
    pub status: String,
    pub event_ts: Option<Timestamp>,
    /// The event's dedupe key.
    pub event_key: String,
    pub generation: u64,
    /// The payload as received, stored until retention purges it.
    pub payload: String,
    /// The decision without rendered messages (rules, skipped channels, notes), as JSON.
    pub decision: String,
    pub deliveries: Vec<NewDelivery>,
    pub supersessions: Vec<NewSupersession>,
    /// How long dedupe keys of this event are remembered.
    pub dedupe_window: Duration,
}

#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub rule: String,
    pub channel: String,
    pub message: Message,
    pub dedupe_key: String,
    pub supersede_key: Option<String>,
    pub session_time: Option<Timestamp>,
    pub not_before: Option<Timestamp>,
    pub not_after: Option<Timestamp>,
    /// `Some(reason)` for a delivery that is expired at intake and is stored closed.
    pub expired: Option<String>,
    pub notes: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct NewSupersession {
    pub rule: String,
    pub key: String,
    pub mode: SupersedeMode,
    pub session_time: Option<Timestamp>,
}

/// Result of a `commit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitOutcome {
    Accepted {
        event_id: i64,
        deliveries: Vec<CommittedDelivery>,
        /// Earlier deliveries this event closed as superseded.
        superseded: Vec<i64>,
    },
    /// The event key was seen within the dedupe window; nothing was stored.
    Duplicate { event_id: i64 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CommittedDelivery {
    /// The new delivery's id, or the id of the earlier delivery it duplicates.
    pub id: i64,
    pub rule: String,
    pub channel: String,
    pub state: DeliveryState,
    /// Reason the delivery starts closed, or a note that it duplicates an earlier one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ClaimRequest {
    pub now: Timestamp,
    pub channels: Vec<ChannelClaim>,
}

/// Lease request for one channel.
#[derive(Clone, Debug)]
pub struct ChannelClaim {
    pub channel: String,
    /// Maximum number of deliveries to lease.
    pub limit: usize,
    /// How long the lease lasts; past it, the delivery is due again.
    pub lease: Duration,
}

/// A leased delivery.
#[derive(Clone, Debug)]
pub struct Claimed {
    pub id: i64,
    pub event_id: i64,
    pub channel: String,
    pub message: Message,
    /// Attempts so far, this one included; numbers the attempt in the history and the logs.
    pub attempt: u32,
    /// Attempts since the retry budget last began (at creation or an operator's retry), this
    /// one included; the retry policy's `max_attempts` limits this count.
    pub budget_attempt: u32,
    pub created_at: Timestamp,
    pub not_after: Option<Timestamp>,
    pub lease_token: i64,
}

/// Outcome of an attempt and the delivery's next step.
#[derive(Clone, Debug, PartialEq)]
pub enum AttemptOutcome {
    Delivered {
        provider_id: Option<String>,
    },
    /// Failed for now; try again at `retry_at`.
    Retry {
        error: String,
        retry_at: Timestamp,
    },
    /// Failed for good: a permanent error, or the attempts or time ran out.
    Failed {
        error: String,
    },
    /// Not sent, because its time has passed.
    Expired {
        reason: String,
    },
}

#[derive(Clone, Debug)]
pub struct AttemptReport {
    pub id: i64,
    pub lease_token: i64,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub outcome: AttemptOutcome,
    /// Whether a send was actually attempted; `false` for an expiry found before sending.
    pub sent: bool,
}

#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub states: Vec<DeliveryState>,
    pub since: Option<Timestamp>,
    pub channel: Option<String>,
    pub limit: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeliverySummary {
    pub id: i64,
    pub event_id: i64,
    pub rule: String,
    pub channel: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub created_at: Timestamp,
    pub next_attempt_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AttemptRecord {
    pub number: u32,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    pub outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_id: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DeliveryDetail {
    #[serde(flatten)]
    pub summary: DeliverySummary,
    pub webhook_type: String,
    pub event_status: String,
    pub dedupe_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub supersede_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_before: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closed_at: Option<Timestamp>,
    pub notes: Vec<String>,
    pub message: Message,
    pub attempts: Vec<AttemptRecord>,
}

/// The result of an operator's retry or cancel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    Done,
    NotFound,
    /// The delivery's state does not allow it; the state is given.
    NotAllowed(DeliveryState),
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PurgeReport {
    pub events: u64,
    pub deliveries: u64,
    pub dedupe_keys: u64,
}

/// A store failure. Intake responds with 503 to any of them, so the sender retries.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the store is unavailable: {0}")]
    Unavailable(String),
    #[error("the store timed out after {0:?}")]
    Timeout(Duration),
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}
